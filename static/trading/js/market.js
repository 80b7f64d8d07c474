// What the page shows of the market: the price ladder, the depth chart, the trade tape and the
// ticker. Each render reads the synced local book; the page calls them at most once a frame.
import { fromUnits, ratio, toUnits } from "./exact.js";
import { el } from "./dom.js";

export const LADDER_LEVELS = 20;
const DEPTH_CHART_LEVELS = 200;
const TAPE_LENGTH = 60;

/** Cumulative quantities (BigInt lot units) of levels best first. */
function cumulative(levels, lotDecimals) {
  let sum = 0n;
  return levels.map(([price, qty]) => {
    sum += toUnits(qty, lotDecimals);
    return { price, qty, cum: sum };
  });
}

export class Ladder {
  /** onPick(price, side): a click on a level. myPrices(): {buy: Set, sell: Set} of own open orders. */
  constructor(root, grid, onPick, myPrices) {
    this.root = root;
    this.grid = grid;
    this.onPick = onPick;
    this.myPrices = myPrices;
  }

  render(book) {
    const { lotDecimals, priceDecimals } = this.grid;
    const asks = cumulative(book.asks.top(LADDER_LEVELS), lotDecimals);
    const bids = cumulative(book.bids.top(LADDER_LEVELS), lotDecimals);
    const deepest = [asks.at(-1), bids.at(-1)].reduce((m, l) => (l && l.cum > m ? l.cum : m), 0n);
    const mine = this.myPrices();
    const row = (level, side) => {
      const own = mine[side === "ask" ? "sell" : "buy"].has(level.price);
      const tr = el("tr", { class: `${side}${own ? " own" : ""}`, "data-price": level.price, "data-qty": level.qty,
                            title: own ? "you have an open order at this price" : "" },
        el("td", { class: "price" }, level.price),
        el("td", { class: "qty" }, level.qty),
        el("td", { class: "cum" }, fromUnits(level.cum, lotDecimals)));
      tr.style.setProperty("--depth", `${(ratio(level.cum, deepest) * 100).toFixed(2)}%`);
      tr.addEventListener("click", () => this.onPick(level.price, side));
      return tr;
    };
    const body = el("tbody");
    for (const level of [...asks].reverse()) body.append(row(level, "ask"));
    const bestAsk = asks[0] && toUnits(asks[0].price, priceDecimals);
    const bestBid = bids[0] && toUnits(bids[0].price, priceDecimals);
    const spread = bestAsk !== undefined && bestBid !== undefined ? fromUnits(bestAsk - bestBid, priceDecimals) : "–";
    body.append(el("tr", { class: "spread" }, el("td", { colSpan: 3 }, `spread ${spread}`)));
    for (const level of bids) body.append(row(level, "bid"));
    this.root.replaceChildren(body);
  }
}

export class DepthChart {
  constructor(canvas, grid) {
    this.canvas = canvas;
    this.grid = grid;
  }

  render(book) {
    const { lotDecimals, priceDecimals } = this.grid;
    const canvas = this.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    const scale = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * scale)) canvas.width = Math.round(width * scale);
    if (canvas.height !== Math.round(height * scale)) canvas.height = Math.round(height * scale);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const bids = cumulative(book.bids.top(DEPTH_CHART_LEVELS), lotDecimals);
    const asks = cumulative(book.asks.top(DEPTH_CHART_LEVELS), lotDecimals);
    if (!bids.length && !asks.length) {
      ctx.fillStyle = "#8b93a7";
      ctx.fillText("no orders yet", 12, 20);
      return;
    }
    // Pixels are floats; the sums behind them were exact.
    const prices = [...bids, ...asks].map((l) => toUnits(l.price, priceDecimals));
    // A tenth of the range (at least a tick) on either side, so the outermost levels show.
    const lowest = prices.reduce((a, b) => (b < a ? b : a));
    const highest = prices.reduce((a, b) => (b > a ? b : a));
    const margin = (highest - lowest) / 10n || 1n;
    const low = lowest - margin;
    const high = highest + margin;
    const span = high - low;
    const deepest = [bids.at(-1), asks.at(-1)].reduce((m, l) => (l && l.cum > m ? l.cum : m), 1n);
    const pad = 18;
    const x = (price) => pad + ratio(toUnits(price, priceDecimals) - low, span) * (width - 2 * pad);
    const y = (cum) => height - pad - ratio(cum, deepest) * (height - 2 * pad);
    const draw = (levels, edge, stroke, fill) => {
      if (!levels.length) return;
      ctx.beginPath();
      ctx.moveTo(x(levels[0].price), height - pad);
      let prev = 0n;
      for (const level of levels) {
        ctx.lineTo(x(level.price), y(prev));
        ctx.lineTo(x(level.price), y(level.cum));
        prev = level.cum;
      }
      // The last total holds out to the edge: the book goes on beyond what is drawn.
      ctx.lineTo(edge, y(prev));
      ctx.lineTo(edge, height - pad);
      ctx.closePath();
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.strokeStyle = stroke;
      ctx.stroke();
    };
    draw(bids, pad, "#26a69a", "rgba(38,166,154,0.25)");
    draw(asks, width - pad, "#ef5350", "rgba(239,83,80,0.25)");
    ctx.fillStyle = "#8b93a7";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(fromUnits(low, priceDecimals), pad, height - 4);
    const highText = fromUnits(high, priceDecimals);
    ctx.fillText(highText, width - pad - ctx.measureText(highText).width, height - 4);
    ctx.fillText(fromUnits(deepest, lotDecimals), pad, 12);
  }
}

export class Tape {
  constructor(root) {
    this.root = root;
    this.seen = new Set();
  }

  /** trades: newest first, as GET /trades or new_trade events. */
  add(trades) {
    const rows = [];
    for (const trade of trades) {
      if (this.seen.has(trade.trade_id)) continue;
      this.seen.add(trade.trade_id);
      const time = new Date(trade.time || trade.executed_at);
      rows.push(el("tr", { class: trade.aggressor_side === "buy" ? "buy" : "sell", "data-trade-id": trade.trade_id },
        el("td", { class: "time" }, time.toLocaleTimeString([], { hour12: false })),
        el("td", { class: "price" }, trade.price),
        el("td", { class: "qty" }, trade.quantity)));
    }
    this.root.prepend(...rows);
    while (this.root.children.length > TAPE_LENGTH) this.root.lastChild.remove();
  }
}

export class Ticker {
  constructor(root) {
    this.root = root;
    this.last = null;
  }

  field(name) {
    return this.root.querySelector(`[data-field="${name}"]`);
  }

  render(book) {
    const bid = book.bids.top(1)[0];
    const ask = book.asks.top(1)[0];
    this.field("best_bid").textContent = bid ? `${bid[0]} × ${bid[1]}` : "–";
    this.field("best_ask").textContent = ask ? `${ask[0]} × ${ask[1]}` : "–";
    this.field("last_price").textContent = this.last ?? "–";
  }

  trade(trade) {
    this.last = trade.price;
    const node = this.field("last_price");
    node.classList.toggle("up", trade.aggressor_side === "buy");
    node.classList.toggle("down", trade.aggressor_side === "sell");
  }
}
