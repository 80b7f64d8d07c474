// The local order book and the client sync procedure of docs/websocket.md ("The client sync procedure"),
// the same steps as marketdata/client.py: subscribe to book and trades, buffer sequenced
// events until the book_snapshot (seq N) arrives, drop seq <= N, apply the rest in order with
// no gap, compare the checksum of the top 10 levels after every book_delta; on a gap, a
// mismatch or resync_required, ask for the book again and use only the answer to the latest
// request. No DOM here: the page listens to what it reports.
import { bookChecksum, CHECKSUM_DEPTH, toUnits } from "./exact.js";

/** One side: price text -> quantity text, with the prices kept sorted best first. */
export class BookSide {
  constructor(descending, priceDecimals) {
    this.descending = descending;
    this.decimals = priceDecimals;
    this.levels = new Map();
    this.keys = []; // BigInt price units, best first
  }

  clear() {
    this.levels.clear();
    this.keys = [];
  }

  _index(units) {
    // First position whose key is not better than `units` (binary search).
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const better = this.descending ? this.keys[mid] > units : this.keys[mid] < units;
      if (better) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  set(price, quantity) {
    const units = toUnits(price, this.decimals);
    const key = this._key(units);
    if (/^0*\.?0*$/.test(quantity)) {
      if (this.levels.delete(key)) this.keys.splice(this._index(units), 1);
      return;
    }
    if (!this.levels.has(key)) this.keys.splice(this._index(units), 0, units);
    this.levels.set(key, [price, quantity]);
  }

  _key(units) {
    return units.toString();
  }

  /** [[price, quantity], ...] best first; all levels when n is undefined. */
  top(n) {
    const keys = n === undefined ? this.keys : this.keys.slice(0, n);
    return keys.map((units) => this.levels.get(units.toString()));
  }

  get size() {
    return this.keys.length;
  }
}

export class BookSync {
  /** send(message): puts a client message on the socket. listener(kind, detail): "synced",
   * "resync", "book", "trade". */
  constructor(instrument, priceDecimals, send, listener) {
    this.instrument = instrument;
    this.bids = new BookSide(true, priceDecimals);
    this.asks = new BookSide(false, priceDecimals);
    this.send = send;
    this.listener = listener;
    this.seq = null;
    this.buffer = [];
    this.snapshotsDue = 0;
    this.checksumsVerified = 0;
    this.resyncs = {};
    this.lastResync = null;
  }

  /** The first subscription (book, trades and the page's other channels). */
  start(channels) {
    this.buffer = [];
    this.seq = null;
    this.snapshotsDue = 1;
    this.send({ op: "subscribe", instrument: this.instrument, channels });
  }

  get synced() {
    return this.seq !== null && this.buffer === null;
  }

  handle(event) {
    const kind = event.event;
    if (kind === "resync_required") {
      if (!event.instruments || event.instruments.includes(this.instrument)) {
        this.resync(`server: ${event.reason}`);
      }
      return;
    }
    if (event.instrument !== this.instrument) return;
    if (kind === "book_snapshot") {
      this._snapshot(event);
    } else if (kind === "book_delta" || kind === "new_trade") {
      if (this.buffer !== null) this.buffer.push(event);
      else this._apply(event);
    }
  }

  _snapshot(snap) {
    // Only the answer to the latest request counts: an earlier one may predate lost events.
    this.snapshotsDue -= 1;
    if (this.snapshotsDue > 0 || this.buffer === null) {
      this.snapshotsDue = Math.max(this.snapshotsDue, 0);
      return;
    }
    this.bids.clear();
    this.asks.clear();
    for (const [price, qty] of snap.bids) this.bids.set(price, qty);
    for (const [price, qty] of snap.asks) this.asks.set(price, qty);
    this.seq = Number(snap.seq);
    const buffered = this.buffer;
    this.buffer = null;
    for (const event of buffered) {
      if (!this._apply(event)) return;
    }
    this.listener("synced", { seq: this.seq });
    this.listener("book", null);
  }

  /** Applies one sequenced event; false when it forced a resync. */
  _apply(event) {
    const seq = Number(event.seq);
    if (seq <= this.seq) return true; // already in the snapshot
    if (seq !== this.seq + 1) {
      this.resync(`gap: seq ${this.seq} -> ${seq}`);
      return false;
    }
    this.seq = seq;
    if (event.event === "book_delta") {
      (event.side === "bid" ? this.bids : this.asks).set(event.price, event.new_quantity);
      if (event.checksum !== undefined) {
        if (this.checksum() !== Number(event.checksum)) {
          this.resync(`checksum mismatch at seq ${seq}`);
          return false;
        }
        this.checksumsVerified += 1;
      }
      this.listener("book", event);
    } else {
      this.listener("trade", event);
    }
    return true;
  }

  checksum() {
    return bookChecksum(this.asks.top(CHECKSUM_DEPTH), this.bids.top(CHECKSUM_DEPTH));
  }

  resync(reason) {
    const kind = reason.split(":")[0];
    this.resyncs[kind] = (this.resyncs[kind] || 0) + 1;
    this.lastResync = { reason, at: new Date() };
    this.buffer = [];
    this.snapshotsDue += 1;
    this.listener("resync", { reason });
    this.send({ op: "subscribe", instrument: this.instrument, channels: ["book"] });
  }

  /** Everything the local book holds (for the page's own checks and its tests). */
  state() {
    return {
      instrument: this.instrument, seq: this.seq, synced: this.synced, checksumsVerified: this.checksumsVerified,
      resyncs: { ...this.resyncs }, bids: this.bids.top(), asks: this.asks.top(),
    };
  }
}
