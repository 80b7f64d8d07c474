"""From engine events to market-data messages (pure: no Django, no I/O, no clock).

The matching worker feeds each batch's events through one FeedBuilder per instrument (it is
given this class by the composition root, exchange_project.asgi) and NOTIFYs the resulting
events inside the batch's transaction (matching.contract.market_payloads). The builder keeps a mirror of
the price levels exactly as a feed client reconstructs them from book_delta messages, so the
checksum on each delta is the checksum of the client's book after applying that delta.

Wire events (names of the specification):
  new_trade    {trade_id, price, quantity, aggressor_side, buy_order_id, sell_order_id,
                maker_order_id, taker_order_id, time, seq}
  book_delta   {side: "bid"|"ask", price, new_quantity ("0" removes the level), seq, checksum}
  order_update {order_id, client_id, side, status, price, quantity, filled_quantity,
                remaining_quantity, reason, time}
  ticker       {best_bid, best_bid_size, best_ask, best_ask_size, last_price, seq, time}
  snapshot     {bids: [[price, qty], ...top 5], asks: [...], seq, time}
  candle       {interval, open_time, open, high, low, close, volume, close_time, quote_volume,
                trade_count, taker_buy_volume, taker_buy_quote_volume, vwap, seq, closed, time}
  ticker_24h   {open_time, close_time, open, high, low, last, change, change_percent, volume,
                quote_volume, vwap, trade_count, seq, time}
Every event also carries "event" and "instrument". Candles and the 24 h statistics are folded by
marketdata.analytics (the worker's InstrumentAnalytics) and shaped here.
"""
from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterable
from typing import Any

from matching.engine.grid import GridFormat
from matching.engine.types import BookDelta, InstrumentSpec, OrderUpdate, Rejected, Side, Trade
from matching.records import iso_from_ns

from .checksum import DEPTH, level_digits


class _Side:
    """Levels of one side, best first, as a client holds them. Each level also keeps its
    checksum digits (Kraken's rule) ready, and the side keeps its top levels' digits joined
    until a change reaches them: most deltas of a deep book are below the top 10 and leave the
    checksum's input as it was."""

    def __init__(self, descending: bool, grid: GridFormat) -> None:
        self.descending = descending
        self.grid = grid
        self.qty: dict[int, int] = {}
        self.digits: dict[int, str] = {}
        self.keys: list[int] = []  # sort keys: -price for bids, price for asks
        self._top: str | None = None  # the top DEPTH levels' digits, joined

    def set(self, price: int, qty: int) -> None:
        key = -price if self.descending else price
        if qty == 0:
            if price in self.qty:
                del self.qty[price]
                del self.digits[price]
                at = bisect.bisect_left(self.keys, key)
                self.keys.pop(at)
                if at < DEPTH:
                    self._top = None
        else:
            at = bisect.bisect_left(self.keys, key)
            if price not in self.qty:
                self.keys.insert(at, key)
            self.qty[price] = qty
            self.digits[price] = level_digits(self.grid.price(price)) + level_digits(self.grid.qty(qty))
            if at < DEPTH:
                self._top = None

    def top_digits(self) -> str:
        """The checksum digits of the top DEPTH levels, best first."""
        if self._top is None:
            digits = self.digits
            if self.descending:
                self._top = "".join([digits[-key] for key in self.keys[:DEPTH]])
            else:
                self._top = "".join([digits[key] for key in self.keys[:DEPTH]])
        return self._top

    def top(self, n: int) -> list[tuple[int, int]]:
        out = []
        for key in self.keys[:n]:
            price = -key if self.descending else key
            out.append((price, self.qty[price]))
        return out


class FeedBuilder:
    def __init__(self, spec: InstrumentSpec, levels: Iterable[tuple[str, int, int]] = (), seq: int = 0) -> None:
        """levels: (side "buy"/"sell", price_ticks, qty_lots) of the book as rebuilt."""
        self.spec = spec
        self.symbol = spec.symbol
        grid = GridFormat(spec)
        self.bids = _Side(descending=True, grid=grid)
        self.asks = _Side(descending=False, grid=grid)
        for side, price, qty in levels:
            (self.bids if side == "buy" else self.asks).set(price, qty)
        self.seq = seq
        self.last_price: str | None = None
        self._ticker_key: tuple[Any, ...] | None = None
        self._p = grid.price
        self._q = grid.qty
        self._iso_ns = -1
        self._iso = ""

    def _time(self, ts_ns: int) -> str:
        # Every event of a batch carries the batch's timestamp: format it once.
        if ts_ns != self._iso_ns:
            self._iso_ns, self._iso = ts_ns, iso_from_ns(ts_ns)
        return self._iso

    def checksum(self) -> int:
        """marketdata.checksum.book_checksum of the top 10 levels, from the cached digits."""
        return zlib.crc32((self.asks.top_digits() + self.bids.top_digits()).encode()) & 0xFFFFFFFF

    def events(self, events: Iterable[Any], client_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Wire events for engine events, in order; then a ticker if the top of book or last
        price changed. client_of maps order ids to client ids for rejected orders."""
        out: list[dict[str, Any]] = []
        sym = self.symbol
        last_ts = 0
        for ev in events:
            kind = type(ev)
            if kind is BookDelta:
                (self.bids if ev.side is Side.BUY else self.asks).set(ev.price_ticks, ev.qty_lots)
                self.seq = ev.seq
                last_ts = ev.ts_ns
                out.append({"event": "book_delta", "instrument": sym, "side": "bid" if ev.side is Side.BUY else "ask",
                            "price": self._p(ev.price_ticks), "new_quantity": self._q(ev.qty_lots), "seq": ev.seq,
                            "checksum": self.checksum()})
            elif kind is Trade:
                self.seq = ev.seq
                last_ts = ev.ts_ns
                self.last_price = self._p(ev.price_ticks)
                out.append({"event": "new_trade", "instrument": sym, "trade_id": ev.trade_id,
                            "price": self.last_price, "quantity": self._q(ev.qty_lots),
                            "aggressor_side": ev.aggressor.value, "buy_order_id": ev.buy_order_id,
                            "sell_order_id": ev.sell_order_id, "maker_order_id": ev.maker_order_id,
                            "taker_order_id": ev.taker_order_id, "time": self._time(ev.ts_ns), "seq": ev.seq})
            elif kind is OrderUpdate:
                last_ts = ev.ts_ns
                out.append({"event": "order_update", "instrument": sym, "order_id": ev.order_id,
                            "client_id": ev.client_id, "side": ev.side.value, "status": ev.status.value,
                            "price": None if ev.price_ticks is None else self._p(ev.price_ticks),
                            "quantity": self._q(ev.qty_lots), "filled_quantity": self._q(ev.filled_lots),
                            "remaining_quantity": self._q(ev.remaining_lots),
                            "reason": None if ev.reason is None else ev.reason.value,
                            "time": self._time(ev.ts_ns)})
            elif kind is Rejected and client_of is not None and ev.order_id in client_of:
                # A rejected place: tell its owner. (A refused cancel/modify changes no order.)
                last_ts = ev.ts_ns
                out.append({"event": "order_update", "instrument": sym, "order_id": ev.order_id,
                            "client_id": client_of[ev.order_id], "status": "rejected",
                            "reason": ev.reason.value, "time": self._time(ev.ts_ns)})
        if last_ts:
            # The top of book in ticks, compared before anything is formatted.
            bid, ask = self.bids.top(1), self.asks.top(1)
            key = (bid[0] if bid else None, ask[0] if ask else None, self.last_price)
            if key != self._ticker_key:
                self._ticker_key = key
                out.append(self.ticker(last_ts))
        return out

    def ticker(self, ts_ns: int) -> dict[str, Any]:
        bid = self.bids.top(1)
        ask = self.asks.top(1)
        return {"event": "ticker", "instrument": self.symbol,
                "best_bid": self._p(bid[0][0]) if bid else None, "best_bid_size": self._q(bid[0][1]) if bid else None,
                "best_ask": self._p(ask[0][0]) if ask else None, "best_ask_size": self._q(ask[0][1]) if ask else None,
                "last_price": self.last_price, "seq": self.seq, "time": self._time(ts_ns)}

    def snapshot(self, ts_ns: int, depth: int = 5) -> dict[str, Any]:
        return {"event": "snapshot", "instrument": self.symbol,
                "bids": [[self._p(p), self._q(q)] for p, q in self.bids.top(depth)],
                "asks": [[self._p(p), self._q(q)] for p, q in self.asks.top(depth)],
                "seq": self.seq, "time": iso_from_ns(ts_ns)}


# --------------------------------------------------------------------------------------------
# Candles and 24 h statistics (folded by matching.aggregates)
# --------------------------------------------------------------------------------------------


def candle_event(symbol: str, interval: str, fields: dict[str, Any], closed: bool, ts_ns: int) -> dict[str, Any]:
    """A candle of ``interval`` as it stands after a batch (``closed``: its interval has ended and
    it will not change again). ``seq`` is the last trade it holds."""
    return {"event": "candle", "instrument": symbol, "interval": interval, **fields, "closed": closed,
            "time": iso_from_ns(ts_ns)}


def ticker_24h_event(symbol: str, fields: dict[str, Any], ts_ns: int) -> dict[str, Any]:
    """The rolling 24 h statistics after a batch that traded (or once minutes left the window);
    ``seq`` is the last trade in the window."""
    return {"event": "ticker_24h", "instrument": symbol, **fields, "time": iso_from_ns(ts_ns)}
