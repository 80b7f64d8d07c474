// The trading page: wires the socket, the local book and the parts of the page together.
import { Candles, CANDLE_INTERVAL, DayTicker } from "./analytics.js";
import { Rest, Stream } from "./api.js";
import { BookSync } from "./book.js";
import { decimalsOf } from "./exact.js";
import { DepthChart, Ladder, Tape, Ticker } from "./market.js";
import { Orders } from "./orders.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const $ = (selector) => document.querySelector(selector);
const LOG_LENGTH = 20;
const CLIENT_KEY = "pgbourse.client_id";
const API_KEY = "pgbourse.api_key";
// The key this browser was given (pasted into the page), else the page's own (development's demo key).
const apiKey = localStorage.getItem(API_KEY) || config.apiKey || "";
const rest = new Rest(apiKey);

function setStatus(state, text) {
  const node = $("#sync-status");
  node.dataset.state = state;
  node.textContent = text;
}

function log(text, level = "info") {
  const list = $("#sync-log");
  const item = document.createElement("li");
  item.className = level;
  item.textContent = `${new Date().toLocaleTimeString([], { hour12: false })} ${text}`;
  list.prepend(item);
  while (list.children.length > LOG_LENGTH) list.lastChild.remove();
}

async function choose(instruments) {
  const picker = $("#instrument");
  for (const inst of instruments) picker.append(new Option(inst.symbol, inst.symbol));
  const wanted = config.instrument || instruments[0].symbol;
  const inst = instruments.find((i) => i.symbol === wanted);
  if (!inst) throw new Error(`no instrument ${wanted}`);
  picker.value = inst.symbol;
  picker.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("instrument", picker.value);
    location.assign(url);
  });
  return inst;
}

/** The API key field (a new key reloads the page with it) and who the key is (GET /account):
 * a trader's or read-only key acts for its own client only, so the client id is its client;
 * an admin key may act for any client, named in the client id field. */
async function accountFields() {
  const keyInput = $("#api-key");
  const shown = $("#account");
  keyInput.value = apiKey;
  keyInput.addEventListener("change", () => {
    const key = keyInput.value.trim();
    if (key) localStorage.setItem(API_KEY, key);
    else localStorage.removeItem(API_KEY);
    location.reload();
  });
  const input = $("#client-id");
  input.value = localStorage.getItem(CLIENT_KEY) || `web-${Math.random().toString(16).slice(2, 8)}`;
  if (!apiKey) {
    shown.textContent = "no API key: market data only";
    return input;
  }
  try {
    const { body: account } = await rest.get("/account");
    shown.dataset.role = account.role;
    shown.textContent = account.client_id ? `${account.role} of ${account.client_id}` : `${account.role}: any client`;
    if (account.client_id) {
      input.value = account.client_id;
      input.readOnly = true;
      return input;
    }
  } catch (err) {
    shown.dataset.role = "refused";
    shown.textContent = `key refused: ${err.code}`;
    log(`API key refused: ${err.code} ${err.message}`, "warn");
  }
  localStorage.setItem(CLIENT_KEY, input.value);
  return input;
}

async function main() {
  const { body: instruments } = await rest.get("/instruments");
  if (!instruments.length) {
    setStatus("error", "no instruments: create one in the admin");
    return;
  }
  const inst = await choose(instruments);
  document.title = `${inst.symbol} · pgbourse`;
  const grid = { priceDecimals: decimalsOf(inst.tick_size), lotDecimals: decimalsOf(inst.lot_size) };
  for (const [name, value] of Object.entries({ tick: inst.tick_size, lot: inst.lot_size, min: inst.min_qty })) {
    $(`#grid [data-field="${name}"]`).textContent = value;
  }
  const clientInput = await accountFields();

  let renderQueued = false;
  let renders = 0;
  let sync = null;
  const ladder = new Ladder($("#ladder"), grid, (price) => {
    const form = $("#order-form");
    form.elements.type.value = "limit";
    form.elements.price.value = price;
    form.elements.type.dispatchEvent(new Event("change"));
  }, () => orders.openPrices());
  const depth = new DepthChart($("#depth"), grid);
  const tape = new Tape($("#tape tbody"));
  const ticker = new Ticker($("#ticker"));
  const render = () => {
    renderQueued = false;
    if (!sync || !sync.synced) return;
    ladder.render(sync);
    depth.render(sync);
    ticker.render(sync);
    renders += 1;
    $("#book").dataset.seq = String(sync.seq);
    if ($("#sync-status").dataset.state === "live") $("#sync-status").textContent = describe();
  };
  const schedule = () => {
    if (!renderQueued) {
      renderQueued = true;
      requestAnimationFrame(render);
    }
  };
  const describe = () => {
    const resyncs = Object.values(sync.resyncs).reduce((a, b) => a + b, 0);
    const last = sync.lastResync ? ` · ${resyncs} resync(s), last: ${sync.lastResync.reason}` : "";
    return `live · seq ${sync.seq} · ${sync.checksumsVerified} checksums verified${last}`;
  };

  const candles = new Candles($("#candles"), rest, inst.symbol);
  const candlesReady = candles.start().catch((err) => {
    $("#candles").hidden = true;
    log(`candles unavailable: ${err}`, "warn");
    return false;
  });
  const day = new DayTicker($("#ticker-24h"), rest, inst.symbol);
  day.start();

  const { body: recent } = await rest.get(`/trades?instrument=${encodeURIComponent(inst.symbol)}&limit=60`);
  tape.add(recent);
  if (recent.length) ticker.last = recent[0].price;

  let ordersClient = null;
  const subscribeOrders = () => {
    if (ordersClient) stream.send({ op: "unsubscribe", instrument: inst.symbol, channels: ["orders"], client_id: ordersClient });
    ordersClient = clientInput.value.trim() || null;
    if (ordersClient) stream.send({ op: "subscribe", instrument: inst.symbol, channels: ["orders"], client_id: ordersClient });
  };

  const onEvent = (event) => {
    switch (event.event) {
      case "book_snapshot": case "book_delta": case "new_trade": case "resync_required":
        sync.handle(event);
        break;
      case "ticker":
        if (event.instrument === inst.symbol && event.last_price) ticker.last = event.last_price;
        schedule();
        break;
      case "order_update":
        if (event.client_id === ordersClient) orders.update(event);
        break;
      case "candle":
        if (event.instrument === inst.symbol) candles.update(event);
        break;
      case "ticker_24h":
        if (event.instrument === inst.symbol) day.show(event);
        break;
      case "error":
        log(`server: ${event.code} ${event.detail || ""}`, "warn");
        break;
      default:
        break;
    }
  };
  const streamUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${config.streamPath}?batch=1`;
  const stream = new Stream(streamUrl, apiKey, onEvent, (state, detail) => {
    if (state === "open") {
      setStatus("syncing", "connected · waiting for the book");
      sync.start(["book", "trades", "ticker"]);
      ordersClient = null;
      subscribeOrders();
      candlesReady.then((ok) => {
        if (ok) stream.send({ op: "subscribe", instrument: inst.symbol, channels: ["candles", "ticker_24h"],
                              interval: CANDLE_INTERVAL });
      });
    } else {
      setStatus("disconnected", `disconnected · reconnecting in ${(detail.delay / 1000).toFixed(1)} s`);
      log("socket closed", "warn");
    }
  });
  sync = new BookSync(inst.symbol, grid.priceDecimals, (message) => stream.send(message), (kind, detail) => {
    if (kind === "synced") {
      setStatus("live", describe());
      log(`book synced at seq ${detail.seq}`);
      schedule();
    } else if (kind === "resync") {
      setStatus("resyncing", `resyncing: ${detail.reason}`);
      log(`resync: ${detail.reason}`, "warn");
    } else if (kind === "trade") {
      tape.add([detail]);
      ticker.trade(detail);
      schedule();
    } else {
      schedule();
    }
  });

  const orders = new Orders({
    form: $("#order-form"), table: $("#my-orders"), rest, stream, instrument: inst.symbol,
    clientId: () => clientInput.value.trim(), onChange: schedule,
  });
  clientInput.addEventListener("change", () => {
    if (clientInput.readOnly) return;
    localStorage.setItem(CLIENT_KEY, clientInput.value.trim());
    subscribeOrders();
    orders.load();
  });
  await orders.load();
  stream.connect();

  // For people poking at the page from the console, and for the page's browser test.
  window.pgbourse = { state: () => sync.state(), renders: () => renders, orders: () => [...orders.orders.values()],
                      candles: () => candles.state() };
}

main().catch((err) => {
  setStatus("error", `failed to start: ${err.message || err}`);
  throw err;
});
