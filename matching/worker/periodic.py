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

from matching.contract import MARKET_CHANNEL, SnapshotInfo, market_payloads
from matching.records import datetime_from_ns

from . import metrics, snapshots
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


# The heartbeat (orders.models.WorkerStatus), from the lock-holding session: a fresh row means
# that session, and with it the ownership lock, is alive.
HEARTBEAT_SQL = """
INSERT INTO orders_workerstatus (id, owner, backend_pid, direct_address, started_at, heartbeat_at, last_batch_at,
                                 batches, retries, books)
VALUES (1, %(owner)s, pg_backend_pid(), %(address)s, now() - make_interval(secs => %(uptime_s)s), now(),
        now() - make_interval(secs => %(since_batch_s)s), %(batches)s, %(retries)s, %(books)s::jsonb)
ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, backend_pid = excluded.backend_pid,
       direct_address = excluded.direct_address, started_at = excluded.started_at,
       heartbeat_at = excluded.heartbeat_at, last_batch_at = excluded.last_batch_at, batches = excluded.batches,
       retries = excluded.retries, books = excluded.books
"""


async def heartbeat(worker: MatchingWorker) -> None:
    """Refresh the heartbeat row and sample the books (their depth gauges)."""
    books = metrics.books_sampled(list(worker.books.values()))
    now = time.monotonic()
    await worker.store.execute(HEARTBEAT_SQL, {
        "owner": worker.owner, "address": worker.direct_address, "uptime_s": now - worker.started_at,
        "since_batch_s": None if worker.last_batch_at is None else now - worker.last_batch_at,
        "batches": worker.batches, "retries": worker.retries, "books": orjson.dumps(books).decode()})


async def heartbeat_forever(worker: MatchingWorker, every_s: float) -> None:
    """Until cancelled: a failure (the session is gone, and with it the lock) is the caller's."""
    while True:
        await heartbeat(worker)
        await asyncio.sleep(every_s)


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
                            instrument_ids: set[int] | None = None) -> list[SnapshotInfo]:
    """Store each book's full engine snapshot (restorable) with its levels; what was stored.
    Only taking the snapshot holds up matching (matching.worker.snapshots)."""
    async with worker.lock:
        taken_at = datetime_from_ns(time.time_ns())
        taken = [snapshots.take(book) for book in worker.books.values()
                 if instrument_ids is None or book.id in instrument_ids]
        reflects = worker.last_write
    if reflects is not None:
        await asyncio.shield(reflects)
    return await snapshots.write(worker.conninfo, taken, source, taken_at)


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
