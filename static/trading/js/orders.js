// Order entry and "my orders". Orders go over REST (POST /orders) or the socket (op: order), as
// the form says; cancels the same way; modifies over REST (the socket has no modify). Errors
// come back in the one shape {code, detail, fields: {field: [{code, detail}]}} and each field's
// codes are shown next to that field.
import { ApiError, newKey, wsError } from "./api.js";
import { el } from "./dom.js";

const OPEN = new Set(["pending", "open", "partially_filled"]);
const FORM_FIELDS = ["side", "type", "price", "quantity", "time_in_force", "post_only"];

/** Writes an error's codes beside the inputs of `scope` (elements with data-error-for). */
export function showErrors(scope, error, generalName = "general") {
  for (const node of scope.querySelectorAll("[data-error-for]")) node.replaceChildren();
  if (!error) return;
  const slot = (name) => scope.querySelector(`[data-error-for="${name}"]`);
  const general = slot(generalName);
  let shown = false;
  for (const [field, problems] of Object.entries(error.fields || {})) {
    const target = slot(field) || general;
    for (const problem of problems) {
      target.append(el("span", { class: "error", "data-code": problem.code },
        target === general && field !== "non_field" ? `${field}: ${problem.code}` : problem.code,
        el("small", {}, ` ${problem.detail}`)));
      shown = true;
    }
  }
  if (!shown) {
    general.append(el("span", { class: "error", "data-code": error.code }, error.code,
      el("small", {}, ` ${error.message}`)));
  }
}

export class Orders {
  constructor({ form, table, rest, stream, instrument, clientId, onChange }) {
    this.form = form;
    this.table = table;
    this.rest = rest;
    this.stream = stream;
    this.instrument = instrument;
    this.clientId = clientId; // () => the client_id field's value
    this.onChange = onChange;
    this.orders = new Map();
    this.editing = new Map(); // order id -> the values typed in its modify inputs
    // order id -> the server's refusal of the last cancel or modify: kept here, not only in the
    // row, because the orders channel re-renders the table at any moment
    this.refusals = new Map();
    this.rows = new Map(); // order id -> {row, actions, refusal}: the row kept, updated in place
    this.reloading = null;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    form.elements.type.addEventListener("change", () => this.syncType());
    this.syncType();
  }

  via() {
    return this.form.elements.via.value;
  }

  syncType() {
    const market = this.form.elements.type.value === "market";
    this.form.elements.price.disabled = market;
    this.form.querySelector(".price-field").classList.toggle("disabled", market);
  }

  body() {
    const f = this.form.elements;
    const body = {
      idempotency_key: newKey(), client_id: this.clientId(), instrument: this.instrument,
      side: f.side.value, type: f.type.value, quantity: f.quantity.value.trim(),
      time_in_force: f.time_in_force.value, post_only: f.post_only.checked,
    };
    if (body.type === "limit") body.price = f.price.value.trim();
    return body;
  }

  async place(body) {
    if (this.via() === "ws") {
      const reply = await this.stream.request({ op: "order", ...body });
      if (reply.event === "error") throw wsError(reply);
      return { status: reply.status, order: reply.order };
    }
    const { status, body: order } = await this.rest.request("POST", "/orders", body);
    return { status, order };
  }

  async submit() {
    const result = this.form.querySelector("[data-result]");
    result.textContent = "sending…";
    result.dataset.status = "sending";
    delete result.dataset.orderId;
    showErrors(this.form, null);
    try {
      const { status, order } = await this.place(this.body());
      this.upsert(order);
      const filled = order.fills.length ? `, ${order.fills.length} fill(s)` : "";
      result.textContent = `${status} ${order.side} ${order.quantity} → ${order.status}${filled}`;
      result.dataset.orderId = order.order_id;
      result.dataset.status = order.status;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      result.textContent = `${err.status} ${err.code}`;
      result.dataset.status = "error";
      showErrors(this.form, err);
    }
  }

  /** (Re)loads open and recent orders of the client on this instrument. */
  async load() {
    const client = this.clientId();
    if (!client) {
      this.orders.clear();
      this.render();
      return;
    }
    const query = new URLSearchParams({ client_id: client, instrument: this.instrument, limit: "100" });
    try {
      const { body } = await this.rest.get(`/orders?${query}`);
      this.orders.clear();
      for (const order of body.results) this.orders.set(order.order_id, order);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.table.querySelector("caption").textContent = `could not load orders: ${err.code}`;
    }
    this.render();
  }

  upsert(order) {
    if (order.client_id !== this.clientId() || order.instrument !== this.instrument) return;
    const known = this.orders.get(order.order_id);
    // An order_update event has no fills or type; what it has replaces what we knew.
    this.orders.set(order.order_id, { ...(known || {}), ...order });
    this.render();
  }

  /** An order_update event from the socket's orders channel. */
  update(event) {
    if (!this.orders.has(event.order_id)) {
      // An order placed elsewhere (another tab, a script): read the list again, once for a burst.
      this.reloading ??= setTimeout(() => {
        this.reloading = null;
        this.load();
      }, 250);
      return;
    }
    this.upsert({ ...event, instrument: this.instrument });
  }

  openPrices() {
    const prices = { buy: new Set(), sell: new Set() };
    for (const order of this.orders.values()) {
      if (OPEN.has(order.status) && order.price) prices[order.side].add(order.price);
    }
    return prices;
  }

  async cancel(orderId) {
    this.refusals.delete(orderId);
    try {
      let order;
      if (this.via() === "ws") {
        const reply = await this.stream.request({ op: "cancel", order_id: orderId });
        if (reply.event === "error") throw wsError(reply);
        order = reply.order;
      } else {
        order = (await this.rest.request("DELETE", `/orders/${orderId}`)).body;
      }
      this.upsert(order);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.refusals.set(orderId, err);
      if (err.body.order) this.upsert(err.body.order);
      this.render();
    }
  }

  async modify(orderId, change) {
    this.refusals.delete(orderId);
    try {
      const order = (await this.rest.request("PATCH", `/orders/${orderId}`, change)).body;
      this.editing.delete(orderId);
      this.upsert(order);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.refusals.set(orderId, err);
      this.render();
    }
  }

  /** Puts modify inputs in the row; what is typed is kept in `editing`, and saved from there. */
  editRow(orderId, row) {
    const order = this.orders.get(orderId);
    const typed = this.editing.get(orderId) || { price: order.price || "", quantity: order.quantity };
    this.editing.set(orderId, typed);
    const price = el("input", { name: "price", value: typed.price, size: 9, disabled: !order.price });
    const qty = el("input", { name: "quantity", value: typed.quantity, size: 9 });
    price.addEventListener("input", () => { typed.price = price.value; });
    qty.addEventListener("input", () => { typed.quantity = qty.value; });
    const save = el("button", { type: "button", class: "save" }, "save");
    save.addEventListener("click", () => {
      const now = this.orders.get(orderId);
      const change = {};
      if (now.price && typed.price.trim() !== now.price) change.price = typed.price.trim();
      if (typed.quantity.trim() !== now.quantity) change.quantity = typed.quantity.trim();
      this.modify(orderId, change);
    });
    row.querySelector(".edit-cell").replaceChildren(
      el("label", {}, "price ", price), el("span", { class: "errors", "data-error-for": "price" }),
      el("label", {}, " qty ", qty), el("span", { class: "errors", "data-error-for": "quantity" }), save,
      el("span", { class: "errors", "data-error-for": "general" }));
  }

  /** The order's row, made once and then updated in place: an update from the socket never
   * replaces the inputs someone is typing in, nor moves the focus. */
  row(order) {
    const id = order.order_id;
    let entry = this.rows.get(id);
    if (!entry) {
      const row = el("tr", { "data-order-id": id }, ...Array.from({ length: 7 }, () => el("td")),
        el("td", { class: "edit-cell" }));
      for (const [i, name] of [[1, "side"], [3, "price"], [4, "qty"], [5, "filled"], [6, "status"]]) {
        row.children[i].className = name;
      }
      entry = { row, actions: null };
      this.rows.set(id, entry);
    }
    const { row } = entry;
    const open = OPEN.has(order.status);
    row.className = `${order.side} ${open ? "open" : "done"}`;
    row.dataset.status = order.status;
    const texts = [
      order.created_at ? new Date(order.created_at).toLocaleTimeString([], { hour12: false }) : "",
      order.side, order.type || "", order.price || "market", order.quantity, order.filled_quantity,
      order.status + (order.reason ? ` (${order.reason})` : ""),
    ];
    texts.forEach((text, i) => {
      if (row.children[i].textContent !== text) row.children[i].textContent = text;
    });
    if (!open) this.editing.delete(id);
    const actions = !open ? "none" : this.editing.has(id) ? "edit" : "buttons";
    if (actions !== entry.actions) {
      entry.actions = actions;
      entry.refusal = null; // the new cell's error slots are empty: shown again below
      if (actions === "edit") {
        this.editRow(id, row);
      } else if (actions === "buttons") {
        const cancel = el("button", { type: "button", class: "cancel" }, "cancel");
        cancel.addEventListener("click", () => this.cancel(id));
        const edit = el("button", { type: "button", class: "modify" }, "modify");
        edit.addEventListener("click", () => {
          this.editing.delete(id);
          this.editRow(id, row);
          entry.actions = "edit";
        });
        row.querySelector(".edit-cell").replaceChildren(cancel, edit,
          el("span", { class: "errors", "data-error-for": "general" }));
      } else {
        row.querySelector(".edit-cell").replaceChildren();
      }
    }
    const refusal = this.refusals.get(id);
    if (refusal !== entry.refusal) {
      entry.refusal = refusal;
      showErrors(row, refusal);
    }
    return row;
  }

  render() {
    const sorted = [...this.orders.values()].sort((a, b) =>
      (OPEN.has(b.status) - OPEN.has(a.status)) || (a.created_at < b.created_at ? 1 : -1));
    const body = this.table.querySelector("tbody");
    sorted.forEach((order, i) => {
      const row = this.row(order);
      // Moved only when out of place: moving a row would take the focus from its inputs.
      if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
    for (const [id, { row }] of this.rows) {
      if (!this.orders.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    this.table.querySelector("caption").textContent =
      this.clientId() ? `${sorted.filter((o) => OPEN.has(o.status)).length} open, ${sorted.length} in all` :
        "enter a client id to see your orders";
    this.onChange();
  }
}

export { FORM_FIELDS };
