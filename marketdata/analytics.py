"""The matching worker's trade aggregates of one instrument (``InstrumentAnalytics``): the
current candle of every interval, the rolling 24 h window and the clients' positions, folded
trade by trade through the pure folds of matching.aggregates, written with each batch and
published as wire events (marketdata.feed). The composition root (exchange_project.asgi) gives
it to the worker, so that nothing under matching/ imports this app.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

from matching.aggregates import (
    INTERVALS,
    MINUTE_MS,
    Candle,
    Position,
    Scale,
    ms_of,
    ms_of_ns,
    ticker_fields,
    window_bounds,
)
from matching.engine.types import InstrumentSpec, Side, Trade

from .feed import candle_event, ticker_24h_event

_BUY: Final = Side.BUY  # (a module constant: an Enum member looked up on its class costs a descriptor call)


# --------------------------------------------------------------------------------------------


class _Window:
    """The rolling 24 h window: its 1-minute candles, oldest first, with running sums; the
    high and low are recomputed only when the minute that held one of them leaves."""

    __slots__ = ("minutes", "total", "_stale")

    def __init__(self) -> None:
        self.minutes: deque[Candle] = deque()
        self.total: Candle | None = None
        self._stale = False

    def add(self, minute: Candle, delta: Candle) -> None:
        """``delta`` was just merged into ``minute`` (appended first if it is new)."""
        if not self.minutes or self.minutes[-1] is not minute:
            self.minutes.append(minute)
        if self.total is None:
            self.total = delta.copy()
        else:
            self.total.merge(delta)

    def expire(self, first_ms: int) -> bool:
        """Drop the minutes before ``first_ms``; whether any left."""
        dropped = False
        while self.minutes and self.minutes[0].open_ms < first_ms:
            gone = self.minutes.popleft()
            dropped = True
            total = self.total
            assert total is not None
            if not self.minutes:
                self.total = None
                continue
            total.volume -= gone.volume
            total.quote -= gone.quote
            total.taker_buy_volume -= gone.taker_buy_volume
            total.taker_buy_quote -= gone.taker_buy_quote
            total.trades -= gone.trades
            first = self.minutes[0]
            total.first_seq, total.open = first.first_seq, first.open
            if gone.high >= total.high or gone.low <= total.low:
                self._stale = True
        return dropped

    def stats(self) -> Candle | None:
        total = self.total
        if total is not None and self._stale:
            total.high = max(m.high for m in self.minutes)
            total.low = min(m.low for m in self.minutes)
            self._stale = False
        return total


class InstrumentAnalytics:
    """One instrument's candles (every interval), rolling 24 h statistics and positions, in
    the matching worker. Per batch: ``trade`` for each trade, in matching order, then ``flush``
    for the rows to write and the events to publish; ``due`` on the worker's timer.

    The candle rows are the batch's own trades per candle: the store ADDS them to what is stored
    (so the record is right whatever this process holds). The positions are whole states (an
    average cost depends on the order of every fill), from the record at start, then folded here.
    """

    def __init__(self, spec: InstrumentSpec, candles: Iterable[Mapping[str, Any]],
                 positions: Iterable[Mapping[str, Any]], now_ns: int) -> None:
        """candles: stored rows (interval, open_time, and the candle's columns) at least of the
        last 24 h of 1m candles and of the latest candle of each interval; positions: the
        instrument's stored rows."""
        self.scale = Scale(spec)
        self.symbol = spec.symbol
        now_ms = ms_of_ns(now_ns)
        self.current: dict[str, Candle] = {}
        # intervals whose current candle has been announced closed (or needs not be)
        self.closed: set[str] = set()
        self.window = _Window()
        rows = sorted(candles, key=lambda r: ms_of(r["open_time"]))
        first_ms, _ = window_bounds(now_ms)
        for row in rows:
            open_ms = ms_of(row["open_time"])
            candle = Candle.from_row(row, self.scale, open_ms)
            interval = row["interval"]
            self.current[interval] = candle
            if interval == "1m" and open_ms >= first_ms:
                self.window.add(candle, candle)
        for interval, candle in self.current.items():
            if candle.open_ms + INTERVALS[interval] <= now_ms:
                self.closed.add(interval)
        self.positions: dict[str, Position] = {r["client_id"]: Position.from_row(r, self.scale) for r in positions}
        self._minutes: dict[int, Candle] = {}  # this batch's trades by minute
        self._candle: Candle | None = None  # the last of them, and its trades' time
        self._candle_ns = -1
        self._touched: set[str] = set()  # clients whose position this batch changed

    def trade(self, ev: Trade, buyer: str, seller: str) -> None:
        """One trade of the batch being matched, with the clients of its two orders."""
        price, qty, seq = ev.price_ticks, ev.qty_lots, ev.seq
        ts_ns = ev.ts_ns
        # A batch's trades share its time: the minute's candle is looked up once per batch.
        candle = self._candle if ts_ns == self._candle_ns else None
        if candle is None:
            ms = ts_ns // 1_000_000
            minute = ms - ms % MINUTE_MS
            candle = self._minutes.get(minute)
            if candle is None:
                candle = self._minutes[minute] = Candle.of_trade(minute, seq, price, qty, ev.aggressor is _BUY)
                self._candle, self._candle_ns = candle, ts_ns
            else:
                self._candle, self._candle_ns = candle, ts_ns
                candle.add(seq, price, qty, ev.aggressor is _BUY)
        else:
            candle.add(seq, price, qty, ev.aggressor is _BUY)
        positions = self.positions
        pos = positions.get(buyer)
        if pos is None:
            pos = positions[buyer] = Position()
        pos.apply(True, price, qty, seq)
        pos = positions.get(seller)
        if pos is None:
            pos = positions[seller] = Position()
        pos.apply(False, price, qty, seq)
        touched = self._touched
        touched.add(buyer)
        touched.add(seller)

    def flush(self, ts_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The batch's candle rows (deltas), position rows (whole) and wire events (closed
        candles, the current candle of each interval, ticker_24h); empty if it traded nothing."""
        if not self._minutes:
            return [], [], []
        scale = self.scale
        deltas: dict[tuple[str, int], Candle] = {}
        for minute_ms in sorted(self._minutes):
            delta = self._minutes[minute_ms]
            for interval, size in INTERVALS.items():
                key = (interval, minute_ms - minute_ms % size)
                held = deltas.get(key)
                if held is None:
                    deltas[key] = delta.copy(key[1])
                else:
                    held.merge(delta)
        events: list[dict[str, Any]] = []
        updated: dict[str, Candle] = {}
        for (interval, open_ms), delta in deltas.items():
            current = self.current.get(interval)
            if current is None or open_ms > current.open_ms:
                if current is not None and interval not in self.closed:
                    events.append(self._candle_event(interval, current, True, ts_ns))
                current = self.current[interval] = delta.copy()
                self.closed.discard(interval)
                if interval == "1m":
                    self.window.add(current, delta)
            elif open_ms == current.open_ms:
                current.merge(delta)
                if interval == "1m":
                    self.window.add(current, delta)
            else:
                # An older candle than the one held (the clock went back across a restart):
                # written to the record, not shown live.
                continue
            updated[interval] = current
        events.extend(self._candle_event(interval, candle, False, ts_ns) for interval, candle in updated.items())
        self.window.expire(window_bounds(ms_of_ns(ts_ns))[0])
        events.append(self._ticker_event(ts_ns))
        rows = [delta.row(scale, interval) for (interval, _), delta in deltas.items()]
        positions = [self.positions[client].row(scale, client) for client in sorted(self._touched)]
        self._minutes = {}
        self._candle, self._candle_ns = None, -1
        self._touched = set()
        return rows, positions, events

    def due(self, ts_ns: int) -> list[dict[str, Any]]:
        """Events the clock makes due (the worker's timer): each candle whose interval has
        ended, announced closed once; a ticker_24h when minutes left the 24 h window."""
        now_ms = ms_of_ns(ts_ns)
        events = []
        for interval, candle in self.current.items():
            if interval not in self.closed and candle.open_ms + INTERVALS[interval] <= now_ms:
                self.closed.add(interval)
                events.append(self._candle_event(interval, candle, True, ts_ns))
        if self.window.expire(window_bounds(now_ms)[0]):
            events.append(self._ticker_event(ts_ns))
        return events

    def _candle_event(self, interval: str, candle: Candle, closed: bool, ts_ns: int) -> dict[str, Any]:
        return candle_event(self.symbol, interval, candle.fields(self.scale, INTERVALS[interval]), closed, ts_ns)

    def _ticker_event(self, ts_ns: int) -> dict[str, Any]:
        open_ms, close_ms = window_bounds(ms_of_ns(ts_ns))
        return ticker_24h_event(self.symbol, ticker_fields(self.window.stats(), self.scale, open_ms, close_ms), ts_ns)
