"""What the worker does on a timer: the `snapshot` feed (top of book every second, published in
its turn with the batches, with the candles whose interval has ended), persisted book
snapshots, and fresh planner statistics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import psycopg
from psycopg import sql

from matching.contract import MARKET_CHANNEL, market_payloads
from matching.records import datetime_from_ns

from .service import MatchingWorker

log = logging.getLogger("matching.worker.periodic")

# The tables every order writes to. Their cached plans (psycopg prepares a statement after a few
# runs, and PostgreSQL then keeps a generic plan) are made from the statistics of the moment: on
# a new database that is "a few rows", so a join by order_id is planned as a scan of the whole
# table, and stays so until autovacuum's next ANALYZE (a minute or more).
HOT_TABLES = ("orders_order", "orders_orderevent", "orders_trade", "orders_ordercommand")
# A hot table is analyzed once it has changed by more than it held at its last ANALYZE (so at
# 250, 500, 1k, 2k... rows while it grows: rarely), with a small sample: what the plans need is
# the tables' sizes, and a full-size sample of a large table costs PostgreSQL a noticeable
# share of its CPU in the middle of the load. Autovacuum's own ANALYZE replaces these later.
STATISTICS_TARGET = 10
STALE_MIN_CHANGES = 250
STALE_STATISTICS_SQL = """
SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)
   AND s.n_mod_since_analyze > greatest(%s, c.reltuples)
"""
INSERT_SNAPSHOT = ("INSERT INTO marketdata_booksnapshot (instrument_id, seq, taken_at, source, bids, asks, "
                   "engine_snapshot) VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb) RETURNING id")


async def publish_snapshots(worker: MatchingWorker) -> None:
    """The `snapshot` feed: top 5 levels per side, from committed state, and what the clock made
    due in the aggregates (a candle closed by the end of its interval). Written in its turn,
    after the batches matched before it (which it reflects) have committed."""
    async with worker.lock:
        ts_ns = worker.now_ns()
        payloads: list[str] = []
        for book in worker.books.values():
            payloads.extend(market_payloads(book.symbol, [book.feed.snapshot(ts_ns), *book.analytics.due(ts_ns)]))
        turn = worker.next_turn()
    conn = worker.conn
    assert conn is not None

    async def write() -> None:
        if payloads:
            async with conn.transaction():
                await conn.execute(f"SELECT count(pg_notify('{MARKET_CHANNEL}', p)) FROM unnest(%s::text[]) AS p",
                                   [payloads])

    await worker.in_turn(turn, write)


async def persist_snapshots(worker: MatchingWorker, source: str = "worker",
                            instrument_ids: set[int] | None = None) -> list[dict[str, Any]]:
    """Store each book's full engine snapshot (restorable) with its levels; what was stored
    (id, instrument, seq, level and order counts).

    Only taking the snapshot holds up matching. It is written once the batches it reflects have
    committed, on a connection of its own and outside the order of writes: a large book's
    snapshot is megabytes of jsonb, and written in turn it would hold every commit behind it."""
    async with worker.lock:
        taken_at = datetime_from_ns(time.time_ns())
        taken = [(book, book.engine.seq, book.engine.depth(10**9), book.engine.snapshot())
                 for book in worker.books.values() if instrument_ids is None or book.id in instrument_ids]
        reflects = worker.last_write
    if reflects is not None:
        await asyncio.shield(reflects)
    stored: list[dict[str, Any]] = []
    if not taken:
        return stored
    async with await psycopg.AsyncConnection.connect(**worker.conninfo, autocommit=True) as conn:
        for book, seq, depth, snapshot in taken:
            g = book.grid
            bids = [[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count] for lv in depth.bids]
            asks = [[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count] for lv in depth.asks]
            cur = await conn.execute(INSERT_SNAPSHOT, (book.id, seq, taken_at, source, orjson.dumps(bids).decode(),
                                                       orjson.dumps(asks).decode(), orjson.dumps(snapshot).decode()))
            row = await cur.fetchone()
            assert row is not None
            stored.append({"id": row[0], "instrument": book.symbol, "seq": seq, "bid_levels": len(bids),
                           "ask_levels": len(asks), "orders": len(snapshot["orders"])})
    return stored


async def refresh_statistics(conninfo: dict[str, Any], tables: tuple[str, ...] = HOT_TABLES,
                             min_changes: int = STALE_MIN_CHANGES) -> list[str]:
    """ANALYZE the hot tables whose statistics are stale (see HOT_TABLES), on a connection of
    its own so that matching never waits for it; every backend then replans them."""
    try:
        async with await psycopg.AsyncConnection.connect(**conninfo, autocommit=True) as conn:
            cur = await conn.execute(STALE_STATISTICS_SQL, (list(tables), min_changes))
            stale = [name for (name,) in await cur.fetchall()]
            if stale:
                await conn.execute(sql.SQL("SET default_statistics_target = {}").format(sql.Literal(STATISTICS_TARGET)))
            for name in stale:
                await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:  # only a planning aid: never a reason to stop matching
        log.warning("statistics refresh failed: %s", exc)
        return []
    if stale:
        log.info("statistics refreshed: %s", ", ".join(stale))
    return stale


async def run(worker: MatchingWorker, *, snapshot_every_s: float, persist_every_s: float,
              statistics_every_s: float) -> None:
    """The timer loop (until cancelled). A failure of its own is the caller's (the task's)."""
    loop = asyncio.get_running_loop()
    next_persist = loop.time() + persist_every_s
    next_statistics = loop.time() + statistics_every_s
    while True:
        await asyncio.sleep(snapshot_every_s)
        await publish_snapshots(worker)
        if loop.time() >= next_persist:
            next_persist = loop.time() + persist_every_s
            try:
                await persist_snapshots(worker)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                # On a session of its own: the books and their commits do not depend on it.
                log.warning("book snapshot not stored: %s", exc)
        if loop.time() >= next_statistics:
            next_statistics = loop.time() + statistics_every_s
            await refresh_statistics(worker.conninfo)
