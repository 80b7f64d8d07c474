"""The worker's books: one per instrument, each an engine with the feed that mirrors it and the
trade aggregates it keeps (candles, positions), rebuilt from the record on start (bootstrap)
and for an instrument added since."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import psycopg

from matching.engine.engine import Engine
from matching.engine.events import Trade
from matching.engine.grid import GridFormat
from matching.engine.types import InstrumentSpec, InvalidNumber, Reason
from matching.records import (
    INSTRUMENT_COLUMNS,
    INSTRUMENTS_SQL,
    MAX_PRIORITY_SQL,
    OPEN_ORDERS_SQL,
    datetime_from_ns,
    engine_from_rows,
    spec_of,
)

log = logging.getLogger("matching.worker.books")

# Decimal string -> ticks/lots, memoised per book: orders cluster on few prices and sizes, and
# the exact conversion is the worker's costliest call per order. Bounded by starting over.
_MEMO_MAX = 50_000


class Feed(Protocol):
    """What the worker needs of a market-data feed (marketdata.feed.FeedBuilder): wire events
    for a command's engine events, and the periodic top-of-book snapshot."""

    def events(self, events: Iterable[Any], client_of: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

    def snapshot(self, ts_ns: int, depth: int = 5) -> dict[str, Any]: ...


# (spec, the book's levels as (side "buy"|"sell", price_ticks, qty_lots), its seq) -> a feed
FeedFactory = Callable[[InstrumentSpec, list[tuple[str, int, int]], int], Feed]


class Analytics(Protocol):
    """What the worker needs of an instrument's trade aggregates
    (marketdata.analytics.InstrumentAnalytics): each trade folded as it is matched, then per
    batch the rows to write and the market events to publish with it, and the events its timer
    makes due (a candle whose interval ended)."""

    def trade(self, ev: Trade, buyer: str, seller: str) -> None: ...

    def flush(self, ts_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(candle rows, position rows, market events) of the trades folded since the last flush."""
        ...

    def due(self, ts_ns: int) -> list[dict[str, Any]]: ...


# (spec, its stored candles (the recent ones), its stored positions, now in ns) -> aggregates
AnalyticsFactory = Callable[[InstrumentSpec, list[dict[str, Any]], list[dict[str, Any]], int], Analytics]


class NoAggregates:
    """Analytics that keep nothing (an AnalyticsFactory too): for a journal replay, which is
    about orders, and for measuring the order path without the aggregates."""

    def __init__(self, *args: Any) -> None:
        pass

    def trade(self, ev: Trade, buyer: str, seller: str) -> None:
        pass

    def flush(self, ts_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return [], [], []

    def due(self, ts_ns: int) -> list[dict[str, Any]]:
        return []

CANDLE_COLUMNS = ("interval", "open_time", "open", "high", "low", "close", "volume", "quote_volume",
                  "taker_buy_volume", "taker_buy_quote_volume", "trade_count", "first_seq", "last_seq")
# The candles that may still be current (or just closed) and the last 24 h of 1m candles.
RECENT_CANDLES_SQL = (f"SELECT {', '.join(CANDLE_COLUMNS)} FROM marketdata_candle "
                      "WHERE instrument_id = %s AND open_time >= %s ORDER BY open_time")
RECENT_CANDLES_S = 2 * 86_400
POSITION_COLUMNS = ("client_id", "net_quantity", "cost_basis", "bought_quantity", "sold_quantity", "bought_quote",
                    "sold_quote", "realized_pnl", "trade_count", "last_seq")
POSITIONS_SQL = f"SELECT {', '.join(POSITION_COLUMNS)} FROM orders_position WHERE instrument_id = %s"


@dataclass(slots=True)
class Book:
    id: int
    symbol: str
    spec: InstrumentSpec
    engine: Engine
    feed: Feed
    grid: GridFormat
    analytics: Analytics
    # Operations: a halted book refuses new orders and modifies (matching.worker.batch); the
    # number of the last command that changed its record (the journal, OrderEvent.command_seq).
    halted: bool = False
    command_seq: int = 0
    _ticks: dict[str, int] = field(default_factory=dict)
    _lots: dict[str, int] = field(default_factory=dict)

    def ticks(self, price: str) -> int:
        """InvalidNumber if the price is off this instrument's grid (it changed since the
        order was validated)."""
        found = self._ticks.get(price)
        if found is None:
            if len(self._ticks) >= _MEMO_MAX:
                self._ticks.clear()
            found = self._ticks[price] = self.spec.price_to_ticks(_decimal(price, Reason.INVALID_PRICE))
        return found

    def lots(self, quantity: str) -> int:
        found = self._lots.get(quantity)
        if found is None:
            if len(self._lots) >= _MEMO_MAX:
                self._lots.clear()
            found = self._lots[quantity] = self.spec.qty_to_lots(_decimal(quantity, Reason.INVALID_QUANTITY))
        return found


def _decimal(text: str, bad: Reason) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidNumber(bad) from None


def book_of(instrument: dict[str, Any], engine: Engine, feed_factory: FeedFactory,
            analytics_factory: AnalyticsFactory, *, candles: list[dict[str, Any]] | None = None,
            positions: list[dict[str, Any]] | None = None, now_ns: int = 0) -> Book:
    spec = spec_of(instrument)
    depth = engine.depth(10**9)
    levels = [("buy", lv.price_ticks, lv.qty_lots) for lv in depth.bids]
    levels += [("sell", lv.price_ticks, lv.qty_lots) for lv in depth.asks]
    return Book(instrument["id"], instrument["symbol"], spec, engine, feed_factory(spec, levels, engine.seq),
                GridFormat(spec), analytics_factory(spec, candles or [], positions or [], now_ns),
                halted=bool(instrument.get("halted", False)), command_seq=int(instrument.get("last_command_seq", 0)))


async def read_book(conn: psycopg.AsyncConnection[Any], instrument: dict[str, Any],
                    feed_factory: FeedFactory, analytics_factory: AnalyticsFactory) -> Book:
    """One instrument's book from its open orders (records.engine_from_rows), with its aggregates
    as stored."""
    started = time.perf_counter()
    cur = await conn.execute(OPEN_ORDERS_SQL, (instrument["id"],))
    open_orders = await cur.fetchall()
    cur = await conn.execute(MAX_PRIORITY_SQL, (instrument["id"],))
    row = await cur.fetchone()
    read = time.perf_counter()
    engine = engine_from_rows(spec_of(instrument), open_orders, last_seq=instrument["last_seq"],
                              last_trade_id=instrument["last_trade_id"], max_priority=row[0] if row else 0)
    now_ns = time.time_ns()
    since = datetime_from_ns(now_ns - RECENT_CANDLES_S * 10**9)
    cur = await conn.execute(RECENT_CANDLES_SQL, (instrument["id"], since))
    candles = [dict(zip(CANDLE_COLUMNS, r)) for r in await cur.fetchall()]
    cur = await conn.execute(POSITIONS_SQL, (instrument["id"],))
    positions = [dict(zip(POSITION_COLUMNS, r)) for r in await cur.fetchall()]
    book = book_of(instrument, engine, feed_factory, analytics_factory, candles=candles, positions=positions,
                   now_ns=now_ns)
    log.info("book rebuilt", extra={"instrument": instrument["symbol"], "open_orders": engine.open_order_count,
                                    "read_s": round(read - started, 3),
                                    "build_s": round(time.perf_counter() - read, 3)})
    return book


async def read_instruments(conn: psycopg.AsyncConnection[Any],
                           instrument_id: int | None = None) -> list[dict[str, Any]]:
    if instrument_id is None:
        cur = await conn.execute(INSTRUMENTS_SQL + " ORDER BY id")
    else:
        cur = await conn.execute(INSTRUMENTS_SQL + " WHERE id = %s", (instrument_id,))
    return [dict(zip(INSTRUMENT_COLUMNS, r)) for r in await cur.fetchall()]


async def load_books(conn: psycopg.AsyncConnection[Any], feed_factory: FeedFactory,
                     analytics_factory: AnalyticsFactory) -> dict[int, Book]:
    """Every book, in one SERIALIZABLE snapshot of the record: open orders by price and
    original priority, with the instruments' sequence counters and aggregates."""
    books: dict[int, Book] = {}
    async with conn.transaction():
        for instrument in await read_instruments(conn):
            books[instrument["id"]] = await read_book(conn, instrument, feed_factory, analytics_factory)
    return books
