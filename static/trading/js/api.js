// The exchange's two doors, as the page uses them. Every REST request carries
// `Authorization: Bearer <key>` and every socket starts with an `auth` message when the page was
// given an API key (config.apiKey, empty until keys exist); today orders name their client_id.

export class ApiError extends Error {
  /** status: HTTP status (0: no answer); body: the one error shape {code, detail, fields}. */
  constructor(status, body) {
    super(body.detail || body.code || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "http_error";
    this.fields = body.fields || {};
    this.body = body;
  }
}

export class Rest {
  constructor(apiKey) {
    this.apiKey = apiKey || "";
  }

  headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    return headers;
  }

  /** JSON in, {status, body} out for 2xx; throws ApiError otherwise. */
  async request(method, path, body) {
    const init = { method, headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, { code: "network_error", detail: String(err) });
    }
    const text = await response.text();
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = { code: "invalid_response", detail: text.slice(0, 200) };
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return { status: response.status, body: data };
  }

  get(path) { return this.request("GET", path); }

  /** GET that answers null on 404: for endpoints this server may not have yet. */
  async optional(path) {
    try {
      return (await this.get(path)).body;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  }
}

/** WS /stream with batch frames, request ids and reconnection. onEvent(event) gets every event;
 * onState(state, detail) hears "open", "closed" (with the delay to the next try). */
export class Stream {
  constructor(url, apiKey, onEvent, onState) {
    this.url = url;
    this.apiKey = apiKey || "";
    this.onEvent = onEvent;
    this.onState = onState;
    this.nextId = 1;
    this.waiting = new Map();
    this.backoffMs = 500;
    this.ws = null;
    this.queue = [];
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoffMs = 500;
      if (this.apiKey) ws.send(JSON.stringify({ op: "auth", key: this.apiKey }));
      this.onState("open");
      for (const message of this.queue.splice(0)) ws.send(message);
    };
    ws.onmessage = (msg) => {
      const frame = JSON.parse(msg.data);
      for (const event of Array.isArray(frame) ? frame : [frame]) {
        const waiter = event.id !== undefined ? this.waiting.get(String(event.id)) : undefined;
        if (waiter) {
          this.waiting.delete(String(event.id));
          waiter(event);
        } else {
          this.onEvent(event);
        }
      }
    };
    ws.onclose = () => {
      for (const waiter of this.waiting.values()) {
        waiter({ event: "error", status: 0, code: "connection_lost", detail: "the socket closed", fields: {} });
      }
      this.waiting.clear();
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, 15000);
      this.onState("closed", { delay });
      setTimeout(() => this.connect(), delay);
    };
  }

  send(message) {
    const text = JSON.stringify(message);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.queue.push(text);
  }

  /** Sends with an id; resolves with the reply that carries it. */
  request(message) {
    const id = `p${this.nextId++}`;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.send({ ...message, id });
    });
  }
}

/** A WS error event as the REST error shape. */
export function wsError(event) {
  return new ApiError(event.status || 400, { code: event.code, detail: event.detail, fields: event.fields || {} });
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
