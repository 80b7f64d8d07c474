"""The matching worker: the thin adapter between the pure engines and PostgreSQL.

One process owns every instrument's book (an advisory lock makes a second worker wait). For
each batch of pending commands it matches in memory, then commits everything the batch caused
in ONE SERIALIZABLE transaction: order states, the append-only OrderEvents, trades, processed
commands, the instruments' sequence counters, and the NOTIFYs that carry outcomes and market
data. On a serialization failure (SQLSTATE 40001) it retries the same writes: the events were
computed once, so nothing is matched twice. Any other failure ends the process (exit code 70):
memory may then be ahead of the database, and the supervisor's restart rebuilds the books from
PostgreSQL, where the unprocessed commands are still pending.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg import errors as pg_errors
from psycopg import pq

from marketdata.feed import FeedBuilder, pack
from orders.representation import fill_json, fmt, fmt_time, from_ns, order_json
from orders.selectors import FILLS_SQL, ORDER_COLUMNS, ORDER_SELECT, fills_by_order, order_row_json

from .direct import DUPLICATE
from .engine.engine import Engine
from .engine.grid import GridFormat
from .engine.types import (
    STP,
    Cancel,
    InstrumentSpec,
    InvalidNumber,
    Modify,
    OrderType,
    OrderUpdate,
    Place,
    Reason,
    Rejected,
    Side,
    Status,
    TimeInForce,
    Trade,
)

log = logging.getLogger("matching.worker")

LOCK_KEY = 0x70676272  # "pgbr": one key, the whole matching service
MAX_OUTCOME_BYTES = 7000
SNAPSHOT_EVERY_S = 1.0
PERSIST_SNAPSHOT_EVERY_S = 60.0
MAX_RETRIES = 20
STATISTICS_EVERY_S = 2.0
# The tables every order writes to. Their cached plans (psycopg prepares a statement after a few
# runs, and PostgreSQL then keeps a generic plan) are made from the statistics of the moment: on
# a new database that is "a few rows", so a join by order_id is planned as a scan of the whole
# table and stays so until autovacuum's next ANALYZE (a minute or more). Measured on a fresh
# database at 1,000 requests/s: 1.27 ms per queued cancel instead of 0.12.
HOT_TABLES = ("orders_order", "orders_orderevent", "orders_trade", "orders_ordercommand")
# ANALYZE a hot table once it has changed by more than it held at its last ANALYZE (so at
# 250, 500, 1k, 2k... rows while it grows: rarely), with a small sample: what the plans need is
# the tables' sizes, and at the default target (30,000 rows) one ANALYZE of orders_order at
# 52,000 rows took 550 ms of PostgreSQL's CPU in the middle of the load (pg_stat_statements:
# 17% of PostgreSQL's time in the first 30 s of an HTTP bench on a new database); at 10 (3,000
# rows) 55 ms. Autovacuum's own ANALYZE, at the server's target, replaces these later.
STATISTICS_TARGET = 10
STALE_STATISTICS_SQL = """
SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)
   AND s.n_mod_since_analyze > greatest(%s, c.reltuples)
"""
STALE_MIN_CHANGES = 250
SLOW_BATCH_MS = int(os.environ.get("PGBOURSE_SLOW_BATCH_MS", "250"))


# Row values to engine enums by plain dict lookup (Enum(value) is slow on the hot path).
_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
_TIFS = {t.value: t for t in TimeInForce}
_STPS = {s.value: s for s in STP}
_CACHE_MAX = 50_000


@dataclass(slots=True)
class Book:
    id: int
    symbol: str
    spec: InstrumentSpec
    engine: Engine
    feed: FeedBuilder
    grid: GridFormat
    # Decimal -> ticks/lots, memoised: orders cluster on few prices and sizes, and the exact
    # conversion (InstrumentSpec.price_to_ticks) is the worker's costliest per-order call.
    _ticks: dict[Decimal, int] = field(default_factory=dict)
    _lots: dict[Decimal, int] = field(default_factory=dict)

    def ticks(self, price: Decimal) -> int:
        found = self._ticks.get(price)
        if found is None:
            if len(self._ticks) >= _CACHE_MAX:
                self._ticks.clear()
            found = self._ticks[price] = self.spec.price_to_ticks(price)
        return found

    def lots(self, qty: Decimal) -> int:
        found = self._lots.get(qty)
        if found is None:
            if len(self._lots) >= _CACHE_MAX:
                self._lots.clear()
            found = self._lots[qty] = self.spec.qty_to_lots(qty)
        return found


@dataclass(slots=True)
class Batch:
    """Everything one batch of commands changes, ready to be written."""

    ts_ns: int
    when_iso: str = ""
    final: dict[str, tuple[Book, OrderUpdate | Rejected]] = field(default_factory=dict)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    trades: list[tuple[Any, ...]] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)
    places: list[tuple[dict[str, Any], Book]] = field(default_factory=list)
    placed: set[str] = field(default_factory=set)
    fills: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    market: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    books: dict[int, Book] = field(default_factory=dict)
    # Orders that arrived directly (matching.direct), not as pending rows: INSERTed with their
    # final state instead of UPDATEd, and answered to the sender instead of by NOTIFY.
    direct: set[str] = field(default_factory=set)
    # Direct cancels/modifies: (answer index, order id, result); their orders are read back in
    # the batch's own round trip (cursors in `reads`) and answered whole.
    targets: list[tuple[int, str, str]] = field(default_factory=list)
    reads: tuple[list[Any], list[Any]] | None = None
    # The statements' parameters, built when the batch is matched (see MatchingWorker.prepare).
    params: dict[str, Any] | None = None


# A direct cancel's or modify's order that no book holds open: its read-back decides the answer.
NOT_IN_BOOK = "not_in_book"
FINAL_STATUSES = frozenset(s.value for s in (Status.FILLED, Status.CANCELLED, Status.REJECTED))

# One direct order, as a web process sends it (orders.direct): the PlaceRequest's fields.
DIRECT_FIELDS = ("order_id", "client_id", "idempotency_key", "request_hash", "instrument_id", "side", "type",
                 "time_in_force", "post_only", "stp", "price", "quantity", "order_id_supplied")
# Direct orders already on record, by key or by a client-supplied order_id (rows travel as one
# JSON text, like every batch statement here).
KNOWN_SQL = """
SELECT o.order_id::text, o.client_id, o.idempotency_key
  FROM jsonb_array_elements(%(rows)s::jsonb) AS r
  JOIN orders_order o ON o.client_id = r->>1 AND o.idempotency_key = r->>2
UNION ALL
SELECT o.order_id::text, o.client_id, o.idempotency_key
  FROM jsonb_array_elements(%(rows)s::jsonb) AS r
  JOIN orders_order o ON o.order_id = (r->>0)::uuid
 WHERE (r->>12)::bool
"""
RECENT_MAX = 200_000
# At 0.5 ms a batch of ~666 orders commits in 48 ms instead of 57 (ws_bench.py entry: +4%).
GIL_SWITCH_INTERVAL_S = 0.0005


class Recent:
    """Membership of the last `size` (up to 2 * `size`) keys added, in O(1) per add.

    Two generations of sets: when the newer one is full it becomes the older and the oldest keys
    go all at once. (Evicting one by one from the front of a dict is quadratic: each
    `next(iter(d))` walks past the slots emptied before it: 40 s into a run at 8,000 orders/s
    it took half of the matching thread's time.)"""

    __slots__ = ("size", "newer", "older")

    def __init__(self, size: int = RECENT_MAX) -> None:
        self.size = size
        self.newer: set[Any] = set()
        self.older: set[Any] = set()

    def add(self, key: Any) -> None:
        self.newer.add(key)
        if len(self.newer) >= self.size:
            self.older, self.newer = self.newer, set()

    def __contains__(self, key: object) -> bool:
        return key in self.newer or key in self.older


class MatchingWorker:
    def __init__(self, conninfo: dict[str, Any]) -> None:
        self.conninfo = conninfo
        # Reads of the event loop (rebuild) and the snapshot feed's NOTIFYs.
        self.conn: psycopg.AsyncConnection[Any] | None = None
        # The session that holds the lock, advertises the direct path and commits every batch,
        # driven by a thread of its own (see commit).
        self.wconn: psycopg.Connection[Any] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pgbourse-commit")
        self.books: dict[int, Book] = {}
        self.lock = asyncio.Lock()
        self.batches = 0
        self.retries = 0
        # Orders placed lately (either way in), kept while their batch may still be committing:
        # the next batch's duplicate check cannot see them in PostgreSQL yet, and a pending row
        # read before the direct copy of the same order committed is not matched a second time
        # (see handle_rows).
        self.recent = Recent()  # order ids
        self.recent_keys = Recent()  # (client_id, idempotency_key)
        # Reads that must not queue behind a batch's commit on `conn` (duplicate checks).
        self.read_conn: psycopg.AsyncConnection[Any] | None = None
        # The last write handed out (see _turn): each write waits for the one before it.
        self._last_write: asyncio.Future[None] | None = None
        # Test seam: called (in the commit thread, with the commit connection) inside each write
        # attempt, after the transaction has begun.
        self.before_write: Callable[[psycopg.Connection[Any], int], None] | None = None

    # -- start ----------------------------------------------------------------------------
    async def start(self, wait_for_lock: bool = True) -> None:
        # The commit thread needs the GIL for a moment after each reply from PostgreSQL, and the
        # matching thread keeps it for up to the switch interval (CPython's default is 5 ms).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.wconn = await self._in_writer(psycopg.Connection.connect, **self.conninfo, autocommit=True)
        while True:
            if await self._in_writer(self._try_lock):
                break
            if not wait_for_lock:
                raise SystemExit("another matching worker holds the lock (pg advisory lock %d)" % LOCK_KEY)
            log.warning("another matching worker owns the books (advisory lock %d held); waiting", LOCK_KEY)
            await asyncio.sleep(1.0)
        # The same connection that holds the lock commits every batch: if it is lost, so is the
        # lock, and no commit can happen on it. It stays in autocommit mode: a batch's BEGIN and
        # COMMIT are sent as statements of its pipeline (see commit). The other connection's
        # transactions (rebuild, snapshots) are SERIALIZABLE too.
        self.conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
        await self.conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
        self.read_conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
        await self.rebuild()

    def _in_writer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run fn in the commit thread, the only thread that uses `wconn`."""
        return asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    def _try_lock(self) -> bool:
        assert self.wconn is not None
        row = self.wconn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        return bool(row and row[0])

    async def advertise(self, application_name: str) -> None:
        """Name the lock-holding session, so web processes find the direct path (and stop
        finding it the moment this session ends)."""
        assert self.wconn is not None
        await self._in_writer(self.wconn.execute, "SELECT set_config('application_name', %s, false)",
                              (application_name,))

    async def rebuild(self) -> None:
        """Rebuild every book from PostgreSQL: open orders by price and original priority."""
        assert self.conn is not None
        self.books.clear()
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT id, symbol, tick_size, lot_size, min_qty, max_qty, max_price, min_notional, last_seq, "
                "last_trade_id FROM orders_instrument ORDER BY id")
            instruments = await cur.fetchall()
            for iid, symbol, tick, lot, min_qty, max_qty, max_price, min_notional, last_seq, last_trade in instruments:
                spec = InstrumentSpec(symbol=symbol, tick_size=tick.normalize(), lot_size=lot.normalize(),
                                      min_qty=min_qty.normalize(), max_qty=max_qty.normalize(),
                                      max_price=max_price.normalize(),
                                      min_notional=None if min_notional is None else min_notional.normalize())
                cur = await self.conn.execute(
                    "SELECT order_id, client_id, side, price, quantity, filled_quantity, priority, stp, post_only "
                    "FROM orders_order WHERE instrument_id = %s AND status IN ('open', 'partially_filled') "
                    "ORDER BY priority", (iid,))
                orders = [{"order_id": str(oid), "client_id": cid, "side": side,
                           "price_ticks": spec.price_to_ticks(price), "qty_lots": spec.qty_to_lots(qty),
                           "filled_lots": _exact_lots(spec, filled), "priority": prio,
                           "stp": stp, "post_only": post_only}
                          for oid, cid, side, price, qty, filled, prio, stp, post_only in await cur.fetchall()]
                next_priority = max((o["priority"] for o in orders), default=0) + 1
                cur = await self.conn.execute(
                    "SELECT coalesce(max(priority), 0) FROM orders_order WHERE instrument_id = %s", (iid,))
                row = await cur.fetchone()
                next_priority = max(next_priority, (row[0] if row else 0) + 1)
                engine = Engine.restore(spec, {"version": 1, "symbol": symbol, "seq": last_seq,
                                               "next_trade_id": last_trade + 1, "next_priority": next_priority,
                                               "orders": orders})
                engine.check_invariants()
                self.books[iid] = Book(iid, symbol, spec, engine, _feed_for(spec, engine), GridFormat(spec))
        log.info("rebuilt %d book(s): %s", len(self.books),
                 ", ".join(f"{b.symbol} ({b.engine.open_order_count} open, seq {b.engine.seq})"
                           for b in self.books.values()))

    async def _book(self, instrument_id: int) -> Book:
        book = self.books.get(instrument_id)
        if book is None:
            # An instrument created after start (from the admin): it has no orders yet.
            await self.rebuild_one(instrument_id)
            book = self.books[instrument_id]
        return book

    async def rebuild_one(self, instrument_id: int) -> None:
        assert self.read_conn is not None
        # (the read connection: a batch may be committing on the other one; a new instrument's
        # sequence numbers are its own and no batch has touched them)
        cur = await self.read_conn.execute(
            "SELECT symbol, tick_size, lot_size, min_qty, max_qty, max_price, min_notional, last_seq, "
            "last_trade_id FROM orders_instrument WHERE id = %s", (instrument_id,))
        row = await cur.fetchone()
        assert row is not None, f"instrument {instrument_id} vanished"
        symbol, tick, lot, min_qty, max_qty, max_price, min_notional, last_seq, last_trade = row
        spec = InstrumentSpec(symbol=symbol, tick_size=tick.normalize(), lot_size=lot.normalize(),
                              min_qty=min_qty.normalize(), max_qty=max_qty.normalize(),
                              max_price=max_price.normalize(),
                              min_notional=None if min_notional is None else min_notional.normalize())
        engine = Engine(spec, seq=last_seq, next_trade_id=last_trade + 1)
        self.books[instrument_id] = Book(instrument_id, symbol, spec, engine, _feed_for(spec, engine), GridFormat(spec))

    # -- one batch ------------------------------------------------------------------------
    # -- the order of writes -------------------------------------------------------------
    # Matching and committing overlap: once a batch is matched (under `lock`, in memory) the
    # next one may be matched while the first commits. Writes still happen one at a time, in
    # the order the batches were matched, each after the previous one committed; nothing is
    # answered or announced before its own commit. A write that fails for any reason other
    # than a serialization failure (retried in place) ends the process without releasing its
    # turn, so no later batch can commit past it.
    def _turn(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """Called under `lock`: (the previous write to wait for, this write's own)."""
        previous, mine = self._last_write, asyncio.get_running_loop().create_future()
        self._last_write = mine
        return previous, mine

    async def _in_turn(self, turn: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
                       write: Callable[[], Awaitable[None]]) -> None:
        previous, mine = turn
        if previous is not None:
            await asyncio.shield(previous)
        await write()
        mine.set_result(None)

    # -- one batch ------------------------------------------------------------------------
    async def handle_rows(self, rows: list[dict[str, Any]]) -> None:
        """A batch of pending rows from the inbox: matched, then committed in its turn."""
        async with self.lock:
            started = time.perf_counter()
            ts_ns = time.time_ns()
            batch = Batch(ts_ns=ts_ns, when_iso=fmt_time(from_ns(ts_ns)))
            for row in rows:
                if row["kind"] == "place" and str(row["order_id"]) in self.recent:
                    continue  # its direct copy was matched and committed while this row was read
                book = await self._book(row["instrument_id"])
                batch.books[book.id] = book
                events = self._apply(book, row, batch.ts_ns)
                self._collect(batch, book, row, events)
            self._remember(batch)
            self.prepare(batch)
            turn = self._turn()
        matched = time.perf_counter()
        await self._in_turn(turn, lambda: self.commit(batch))
        self.batches += 1
        done = time.perf_counter()
        if (done - started) * 1000 > SLOW_BATCH_MS:
            log.info("slow batch: %d commands, %d trades: match %.1f ms, commit %.1f ms", len(rows),
                     len(batch.trades), (matched - started) * 1e3, (done - matched) * 1e3)

    async def handle_direct(self, items: list[list[Any]]) -> list[Any]:
        """match_direct and wait for the answers."""
        return await (await self.match_direct(items))

    async def match_direct(self, items: list[list[Any]]) -> asyncio.Task[list[Any]]:
        """Match what web processes sent straight to the worker (matching.direct):
        places `["place", *DIRECT_FIELDS]`, cancels `["cancel", order_id]` and modifies
        `["modify", order_id, price, quantity]`. Answers, per item and in order: a place's
        committed state (the REST body) or DUPLICATE; a cancel's or modify's
        `[result ("ok" or the refusal), the order as committed]`. For an order no book holds
        open: `["order_not_open", the order]` if it is finished, "order_not_found" if there is
        no such order, and "unknown_order" if it is still waiting in the inbox (or placed later
        in this batch): the inbox then orders the command after it. Returns once the batch is
        matched: the task it returns commits it in its turn, then answers.

        A placed order's row is written once, with its outcome, in the batch transaction: no
        pending row, no second write, no read-back. Duplicates are decided first, against
        PostgreSQL and within the batch; the unique constraints stay the last word (a row a web
        process stored as pending meanwhile is taken over by the upsert; anything else fails
        the batch).
        """
        async with self.lock:
            started = time.perf_counter()
            known = await self._known([item[1:] for item in items if item[0] == "place"])
            ts_ns = time.time_ns()
            batch = Batch(ts_ns=ts_ns, when_iso=fmt_time(from_ns(ts_ns)))
            created = from_ns(ts_ns)
            answers: list[Any] = [DUPLICATE] * len(items)
            placed: list[tuple[int, str]] = []
            for n, item in enumerate(items):
                if item[0] != "place":
                    batch.targets.append((n, item[1], self._direct_command(batch, item, ts_ns)))
                    continue
                row = dict(zip(DIRECT_FIELDS, item[1:]))
                oid, key = row["order_id"], (row["client_id"], row["idempotency_key"])
                if key in known or (row["order_id_supplied"] and oid in known) or oid in self.recent \
                        or oid in batch.direct:
                    continue
                known.add(key)
                known.add(oid)
                row["kind"] = "place"
                row["price"] = None if row["price"] is None else Decimal(row["price"])
                row["quantity"] = Decimal(row["quantity"])
                row["created_at"] = created
                book = await self._book(row["instrument_id"])
                batch.books[book.id] = book
                batch.direct.add(oid)
                self._collect(batch, book, row, self._apply(book, row, ts_ns))
                placed.append((n, oid))
            self._remember(batch)
            if batch.books or batch.targets:
                self.prepare(batch)
            # Answers rendered now, sent only once the batch has committed.
            bodies = dict(self._placed_orders(batch, direct=True))
            for n, oid in placed:
                answers[n] = bodies[oid]
            turn = self._turn()
        return asyncio.get_running_loop().create_task(
            self._finish_direct(batch, answers, turn, (started, time.perf_counter())))

    async def _finish_direct(self, batch: Batch, answers: list[Any],
                             turn: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
                             times: tuple[float, float]) -> list[Any]:
        async def write() -> None:
            if batch.books or batch.targets:
                await self.commit(batch)
                self.batches += 1

        await self._in_turn(turn, write)
        if batch.targets:
            current = self._read_back(batch)
            for n, oid, result in batch.targets:
                order = current.get(oid)
                if result != NOT_IN_BOOK:
                    answers[n] = [result, order]
                elif oid not in current:
                    answers[n] = "order_not_found"
                elif order is not None and order["status"] in FINAL_STATUSES:
                    answers[n] = ["order_not_open", order]
                else:
                    answers[n] = "unknown_order"
        started, matched = times
        done = time.perf_counter()
        if (done - started) * 1000 > SLOW_BATCH_MS:
            log.info("slow direct batch: %d items, %d trades: match %.1f ms, commit %.1f ms", len(answers),
                     len(batch.trades), (matched - started) * 1e3, (done - matched) * 1e3)
        return answers

    def _read_back(self, batch: Batch) -> dict[str, dict[str, Any] | None]:
        """The committed orders of the batch's direct cancels/modifies, rendered as GET shows them;
        None for an order of an instrument this worker has no book for yet (a pending order of an
        instrument added since it started: the inbox takes its command)."""
        assert batch.reads is not None
        order_rows, fill_rows = batch.reads
        rows = [dict(zip(ORDER_COLUMNS, r)) for r in order_rows]
        books = {str(r["order_id"]): self.books[r["instrument_id"]] for r in rows if r["instrument_id"] in self.books}
        fills = fills_by_order(fill_rows, books)  # type: ignore[arg-type]
        return {oid: order_row_json(r, books[oid], fills.get(oid, [])) if oid in books else None  # type: ignore[arg-type]
                for r in rows for oid in (str(r["order_id"]),)}

    def _direct_command(self, batch: Batch, item: list[Any], ts_ns: int) -> str:
        kind, oid = item[0], item[1]
        book = next((b for b in self.books.values() if b.engine.get_order(oid) is not None), None)
        if book is None:
            # Not open in memory: finished, unknown, or still a pending row in the inbox; the
            # batch's read-back tells which (see match_direct).
            return NOT_IN_BOOK
        row = {"kind": kind, "order_id": oid, "instrument_id": book.id, "direct": True,
               "price": None if kind == "cancel" or item[2] is None else Decimal(item[2]),
               "quantity": None if kind == "cancel" or item[3] is None else Decimal(item[3])}
        batch.books[book.id] = book
        events = self._apply(book, row, ts_ns)
        self._collect(batch, book, row, events)
        return str(row["result"])

    async def _known(self, orders: list[list[Any]]) -> set[Any]:
        """The (client_id, idempotency_key) pairs and order ids of these orders already stored."""
        assert self.read_conn is not None
        if not orders:
            return set()
        found: set[Any] = set()
        for row in orders:
            # Matched in a batch that may still be committing: not visible to the query yet.
            if (row[1], row[2]) in self.recent_keys:
                found.add((row[1], row[2]))
            if row[0] in self.recent:
                found.add(row[0])
        cur = await self.read_conn.execute(KNOWN_SQL, {"rows": orjson.dumps(orders).decode()})
        for oid, client_id, key in await cur.fetchall():
            found.add(oid)
            found.add((client_id, key))
        return found

    def _remember(self, batch: Batch) -> None:
        """Remember the batch's orders before it commits: the next batch, matched meanwhile,
        must see them as taken although PostgreSQL does not show them yet."""
        for row, _ in batch.places:
            self.recent.add(str(row["order_id"]))
            self.recent_keys.add((row["client_id"], row["idempotency_key"]))

    def _apply(self, book: Book, row: dict[str, Any], ts_ns: int) -> list[Any]:
        oid = str(row["order_id"])
        try:
            if row["kind"] == "place":
                return book.engine.place(Place(
                    order_id=oid, client_id=row["client_id"], side=_SIDES[row["side"]],
                    order_type=_TYPES[row["type"]],
                    price_ticks=None if row["price"] is None else book.ticks(row["price"]),
                    qty_lots=book.lots(row["quantity"]), tif=_TIFS[row["time_in_force"]],
                    post_only=row["post_only"], stp=_STPS[row["stp"]], ts_ns=ts_ns))
            if row["kind"] == "cancel":
                return book.engine.cancel(Cancel(order_id=oid, ts_ns=ts_ns))
            return book.engine.modify(Modify(
                order_id=oid, ts_ns=ts_ns,
                price_ticks=None if row["price"] is None else book.ticks(row["price"]),
                qty_lots=None if row["quantity"] is None else book.lots(row["quantity"])))
        except InvalidNumber as exc:
            # The instrument's grid changed (admin) after the order was validated.
            return [Rejected(oid, exc.reason, ts_ns)]

    def _collect(self, batch: Batch, book: Book, row: dict[str, Any], events: list[Any]) -> None:
        """Turn one command's events into rows to write, fills to answer with, and feed events.
        Prices and quantities become exact strings here (GridFormat); PostgreSQL parses them."""
        g, iid = book.grid, book.id
        if row["kind"] == "place":
            batch.placed.add(str(row["order_id"]))
        last_trade: dict[str, int] = {}
        refused: str | None = None
        for ev in events:
            kind = type(ev)
            if kind is OrderUpdate:
                batch.final[ev.order_id] = (book, ev)
                batch.events.append((ev.order_id, iid, ev.status.value,
                                     None if ev.price_ticks is None else g.price(ev.price_ticks),
                                     g.qty(ev.qty_lots), g.qty(ev.filled_lots),
                                     None if ev.reason is None else ev.reason.value,
                                     last_trade.pop(ev.order_id, None)))
            elif kind is Trade:
                price, qty = g.price(ev.price_ticks), g.qty(ev.qty_lots)
                batch.trades.append((iid, ev.trade_id, ev.seq, price, qty, ev.aggressor.value, ev.buy_order_id,
                                     ev.sell_order_id, ev.maker_order_id, ev.taker_order_id))
                last_trade[ev.maker_order_id] = last_trade[ev.taker_order_id] = ev.trade_id
                for oid in (ev.buy_order_id, ev.sell_order_id):
                    if oid not in batch.placed:
                        continue  # only this batch's new orders are answered with their fills
                    batch.fills[oid].append(fill_json(
                        trade_id=ev.trade_id, price=price, quantity=qty,
                        role="maker" if oid == ev.maker_order_id else "taker", seq=ev.seq,
                        executed_at=batch.when_iso))
            elif kind is Rejected:
                refused = ev.reason.value
                if row["kind"] == "place":
                    batch.final[ev.order_id] = (book, ev)
                    batch.events.append((ev.order_id, iid, "rejected", _text(row["price"]), _text(row["quantity"]),
                                         "0", ev.reason.value, None))
        if row["kind"] == "place":
            batch.places.append((row, book))
        elif "direct" in row:
            row["result"] = refused or "ok"  # answered to the sender, not by NOTIFY
        else:
            batch.commands.append((row["command_id"], refused or "ok"))
        client_of = {str(row["order_id"]): row["client_id"]} if row["kind"] == "place" else None
        batch.market[iid].extend(book.feed.events(events, client_of))

    def _order_updates(self, batch: Batch) -> list[tuple[Any, ...]]:
        """One row per order the batch touched: its final state (order_id, status, filled,
        quantity, price, reason, priority, whether quantity/price are to be set)."""
        rows: list[tuple[Any, ...]] = []
        for oid, (book, ev) in batch.final.items():
            if oid in batch.direct:
                continue
            if type(ev) is Rejected:
                rows.append((oid, "rejected", "0", None, None, ev.reason.value, None, False))
            else:
                g = book.grid
                rows.append((oid, ev.status.value, g.qty(ev.filled_lots), g.qty(ev.qty_lots),
                             None if ev.price_ticks is None else g.price(ev.price_ticks),
                             None if ev.reason is None else ev.reason.value, ev.priority, True))
        return rows

    def _new_orders(self, batch: Batch) -> list[tuple[Any, ...]]:
        """The rows of the batch's direct orders, as they stand at its end."""
        rows: list[tuple[Any, ...]] = []
        for row, book in batch.places:
            oid = row["order_id"]
            if oid not in batch.direct:
                continue
            _, ev = batch.final[oid]
            if type(ev) is Rejected:
                state: tuple[Any, ...] = ("rejected", _text(row["price"]), _text(row["quantity"]), "0",
                                          ev.reason.value, None)
            else:
                g = book.grid
                state = (ev.status.value, None if ev.price_ticks is None else g.price(ev.price_ticks),
                         g.qty(ev.qty_lots), g.qty(ev.filled_lots),
                         None if ev.reason is None else ev.reason.value, ev.priority)
            rows.append((oid, row["client_id"], row["idempotency_key"], row["request_hash"], book.id, row["side"],
                         row["type"], row["time_in_force"], row["post_only"], row["stp"], *state))
        return rows

    def _outcomes(self, batch: Batch) -> list[str]:
        """NOTIFY payloads resolving the waiting requests: each place's order as committed (with
        its fills), each cancel/modify's result; packed under the NOTIFY size limit."""
        items: list[bytes] = []
        for oid, order in self._placed_orders(batch, direct=False):
            blob = orjson.dumps({"k": oid, "o": order})
            if len(blob) > MAX_OUTCOME_BYTES:
                blob = orjson.dumps({"k": oid})  # too big for a NOTIFY: the waiter reads PostgreSQL
            items.append(blob)
        for command_id, result in batch.commands:
            items.append(orjson.dumps({"k": f"cmd:{command_id}", "r": result}))
        payloads: list[str] = []
        chunk: list[bytes] = []
        size = 2
        for blob in items:
            if chunk and size + len(blob) + 1 > 7900:
                payloads.append((b"[" + b",".join(chunk) + b"]").decode())
                chunk, size = [], 2
            chunk.append(blob)
            size += len(blob) + 1
        if chunk:
            payloads.append((b"[" + b",".join(chunk) + b"]").decode())
        return payloads

    def _placed_orders(self, batch: Batch, direct: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each placed order of the batch (direct ones, or the others) as committed, with its fills."""
        when = batch.when_iso
        for row, book in batch.places:
            oid = str(row["order_id"])
            if (oid in batch.direct) is not direct:
                continue
            _, ev = batch.final[oid]
            spec, g = book.spec, book.grid
            if type(ev) is Rejected:
                status, reason = "rejected", ev.reason.value
                qty_s = fmt(row["quantity"], spec.lot_size) or ""
                price_s = fmt(row["price"], spec.tick_size)
                filled_s, remaining_s = g.qty(0), qty_s
            else:
                status, reason = ev.status.value, None if ev.reason is None else ev.reason.value
                qty_s, filled_s, remaining_s = g.qty(ev.qty_lots), g.qty(ev.filled_lots), g.qty(ev.remaining_lots)
                price_s = None if ev.price_ticks is None else g.price(ev.price_ticks)
            order = order_json(
                order_id=oid, client_id=row["client_id"], instrument=book.symbol, side=row["side"],
                type=row["type"], time_in_force=row["time_in_force"], post_only=row["post_only"], stp=row["stp"],
                price=price_s, quantity=qty_s, filled_quantity=filled_s, remaining_quantity=remaining_s,
                status=status, reason=reason, idempotency_key=row["idempotency_key"],
                created_at=when if oid in batch.direct else fmt_time(row["created_at"]), updated_at=when,
                fills=batch.fills.get(oid, []))
            yield oid, order

    def prepare(self, batch: Batch) -> None:
        """Build the batch's statement parameters. Called under `lock` as soon as the batch is
        matched: the instruments' counters are read from the engines now, before the next
        batch moves them, and the commit itself is then only I/O."""
        market: list[str] = []
        for iid, evs in batch.market.items():
            market.extend(pack(batch.books[iid].symbol, evs))
        # Each row set travels as ONE JSON text parameter: dumping Python lists into PostgreSQL
        # arrays element by element was the worker's largest cost. PostgreSQL reads it as jsonb
        # (parsed once; `->>` on json re-parses the element per field): an INSERT of 2,000
        # order rows took 62 ms instead of 117.
        batch.params = {
            "when": from_ns(batch.ts_ns),
            "orders": orjson.dumps(self._order_updates(batch)).decode(),
            "new_orders": orjson.dumps(self._new_orders(batch)).decode(),
            "direct_count": len(batch.direct),
            "events": orjson.dumps(batch.events).decode(),
            "trades": orjson.dumps(batch.trades).decode(),
            "commands": orjson.dumps(batch.commands).decode(),
            "instruments": orjson.dumps([(b.id, b.engine.seq, b.engine.next_trade_id - 1)
                                         for b in batch.books.values()]).decode(),
            "outcomes": orjson.dumps(self._outcomes(batch)).decode(),
            "market": orjson.dumps(market).decode(),
        }

    async def commit(self, batch: Batch) -> None:
        """Write the batch in ONE SERIALIZABLE transaction; retried whole on 40001.

        The statements run in the commit thread, on the lock-holding connection: while this
        event loop matches the next batch (pure Python, holding the GIL for tens of ms), the
        thread waits on PostgreSQL with the GIL released, so the two overlap. (Driven from the
        event loop, the pipeline made no progress while a batch was being matched: at 4,000
        orders/s the worker and its backend took turns instead of working together.)"""
        if batch.params is None:
            self.prepare(batch)
        assert batch.params is not None
        statements, reads = self._statements(batch, batch.params)
        attempt = 0
        while True:
            attempt += 1
            try:
                batch.reads = await self._in_writer(self._commit_sync, statements, reads, attempt)
                return
            except pg_errors.SerializationFailure:
                self.retries += 1
                if attempt >= MAX_RETRIES:
                    raise
                log.info("batch hit a serialization failure (40001), retrying (attempt %d)", attempt + 1)
                await asyncio.sleep(0.001 * attempt)

    def _commit_sync(self, statements: list[tuple[str, dict[str, Any]]], reads: list[tuple[str, dict[str, Any]]],
                     attempt: int) -> tuple[list[Any], list[Any]] | None:
        """One attempt, in the commit thread: BEGIN, every statement and COMMIT go out as one
        pipeline and come back in one round trip. (psycopg's transaction block waits for the
        statements' results before it sends COMMIT: a second round trip.) Returns the rows of
        `reads`, read inside the transaction."""
        conn = self.wconn
        assert conn is not None
        try:
            with conn.pipeline():
                conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                if self.before_write is not None:
                    self.before_write(conn, attempt)
                for query, params in statements:
                    conn.execute(query, params)
                cursors = [conn.execute(query, params) for query, params in reads]
                conn.execute("COMMIT")
        except BaseException:
            # The statements after the failing one, COMMIT included, were skipped: end the
            # aborted transaction (if the connection is still there).
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        if not cursors:
            return None
        orders, fills = cursors
        return orders.fetchall(), fills.fetchall()

    @staticmethod
    def _statements(batch: Batch, params: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]],
                                                                  list[tuple[str, dict[str, Any]]]]:
        """The batch's statements, in order, and the reads that follow them (a direct cancel's
        or modify's order and fills, answered whole)."""
        out: list[tuple[str, dict[str, Any]]] = []
        # Fixed order of writes (orders, events, trades, commands, instruments) in every batch.
        if batch.direct:
            # Written once, with the outcome. A pending row of the same order (stored by a web
            # process that gave up waiting for this answer) is taken over. Any other row under
            # one of these keys leaves a row out: the cast fails, the batch does not commit, and
            # the worker restarts from PostgreSQL (its memory is ahead).
            out.append(("""
                WITH ins AS (
                INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side,
                                          type, time_in_force, post_only, stp, status, price, quantity,
                                          filled_quantity, reason, priority, created_at, updated_at)
                SELECT (r->>0)::uuid, r->>1, r->>2, r->>3, (r->>4)::bigint, r->>5, r->>6, r->>7, (r->>8)::bool,
                       r->>9, r->>10, (r->>11)::numeric, (r->>12)::numeric, (r->>13)::numeric, r->>14,
                       (r->>15)::bigint, %(when)s, %(when)s
                  FROM jsonb_array_elements(%(new_orders)s::jsonb) WITH ORDINALITY AS x(r, n) ORDER BY n
                ON CONFLICT (order_id) DO UPDATE
                   SET status = excluded.status, price = excluded.price, quantity = excluded.quantity,
                       filled_quantity = excluded.filled_quantity, reason = excluded.reason,
                       priority = excluded.priority, updated_at = excluded.updated_at
                 WHERE orders_order.status = 'pending' AND orders_order.client_id = excluded.client_id
                   AND orders_order.idempotency_key = excluded.idempotency_key
                RETURNING 1)
                SELECT (CASE WHEN count(*) = %(direct_count)s THEN '0'
                             ELSE 'direct order collides with a stored order' END)::int FROM ins""", params))
        if params["orders"] != "[]":
            out.append(("""
                UPDATE orders_order o
                   SET status = u->>1, filled_quantity = (u->>2)::numeric,
                       quantity = CASE WHEN (u->>7)::bool THEN (u->>3)::numeric ELSE o.quantity END,
                       price = CASE WHEN (u->>7)::bool THEN (u->>4)::numeric ELSE o.price END,
                       reason = u->>5, priority = coalesce((u->>6)::bigint, o.priority), updated_at = %(when)s
                  FROM jsonb_array_elements(%(orders)s::jsonb) AS u
                 WHERE o.order_id = (u->>0)::uuid""", params))
        if batch.events:
            out.append(("""
                INSERT INTO orders_orderevent (order_id, instrument_id, status, price, quantity, filled_quantity,
                                               reason, trade_id, created_at)
                SELECT (e->>0)::uuid, (e->>1)::bigint, e->>2, (e->>3)::numeric, (e->>4)::numeric,
                       (e->>5)::numeric, e->>6, (e->>7)::bigint, %(when)s
                  FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS x(e, n) ORDER BY n""", params))
        if batch.trades:
            out.append(("""
                INSERT INTO orders_trade (instrument_id, trade_id, seq, price, quantity, aggressor_side,
                                          buy_order_id, sell_order_id, maker_order_id, taker_order_id, executed_at)
                SELECT (t->>0)::bigint, (t->>1)::bigint, (t->>2)::bigint, (t->>3)::numeric, (t->>4)::numeric,
                       t->>5, (t->>6)::uuid, (t->>7)::uuid, (t->>8)::uuid, (t->>9)::uuid, %(when)s
                  FROM jsonb_array_elements(%(trades)s::jsonb) WITH ORDINALITY AS x(t, n) ORDER BY n""", params))
        if batch.commands:
            out.append(("""
                UPDATE orders_ordercommand c SET processed = true, result = u->>1, processed_at = %(when)s
                  FROM jsonb_array_elements(%(commands)s::jsonb) AS u WHERE c.id = (u->>0)::bigint""", params))
        if batch.books:
            out.append(("""
                UPDATE orders_instrument i SET last_seq = (u->>1)::bigint, last_trade_id = (u->>2)::bigint
                  FROM jsonb_array_elements(%(instruments)s::jsonb) AS u WHERE i.id = (u->>0)::bigint""", params))
        # NOTIFY inside the transaction: delivered only if, and when, it commits.
        out.append(("SELECT count(pg_notify('pgb_outcome', p)) FROM json_array_elements_text(%(outcomes)s::json) AS p",
                    params))
        out.append(("SELECT count(pg_notify('pgb_market', p)) FROM json_array_elements_text(%(market)s::json) AS p",
                    params))
        if not batch.targets:
            return out, []
        ids = {"ids": list({uuid.UUID(oid) for _, oid, _ in batch.targets})}
        return out, [(f"{ORDER_SELECT} WHERE order_id = ANY(%(ids)s)", ids), (FILLS_SQL, ids)]

    # -- periodic -------------------------------------------------------------------------
    async def publish_snapshots(self) -> None:
        """The `snapshot` feed: top 5 levels per side, every second, from committed state."""
        async with self.lock:
            assert self.conn is not None
            ts_ns = time.time_ns()
            payloads: list[str] = []
            for book in self.books.values():
                payloads.extend(pack(book.symbol, [book.feed.snapshot(ts_ns)]))
            turn = self._turn()
        conn = self.conn

        async def write() -> None:
            # In its turn: after the batches matched before it (which it reflects) committed.
            if payloads:
                async with conn.transaction():
                    await conn.execute("SELECT count(pg_notify('pgb_market', p)) FROM unnest(%s::text[]) AS p",
                                       [payloads])

        await self._in_turn(turn, write)

    async def refresh_statistics(self, tables: tuple[str, ...] = HOT_TABLES,
                                 min_changes: int = STALE_MIN_CHANGES) -> list[str]:
        """ANALYZE the hot tables whose statistics are stale (see HOT_TABLES), on a connection of
        its own so that matching never waits for it; every backend then replans them."""
        try:
            async with await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True) as conn:
                cur = await conn.execute(STALE_STATISTICS_SQL, (list(tables), min_changes))
                stale = [name for (name,) in await cur.fetchall()]
                if stale:
                    await conn.execute(f"SET default_statistics_target = {STATISTICS_TARGET}")
                for name in stale:
                    await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:  # only a planning aid: never a reason to stop matching
            log.warning("statistics refresh failed: %s", exc)
            return []
        if stale:
            log.info("statistics refreshed: %s", ", ".join(stale))
        return stale

    async def persist_snapshots(self, source: str = "worker") -> int:
        """Store each book's full engine snapshot (restorable) with its levels.

        Only taking the snapshot holds up matching. It is written once the batches it reflects
        have committed, on a connection of its own and outside the order of writes: a large
        book's snapshot is megabytes of jsonb (150,000 open orders: 27 MB), and written in turn
        it held every commit behind it for 1.7 s."""
        async with self.lock:
            ts = from_ns(time.time_ns())
            taken = [(book, book.engine.seq, book.engine.depth(10**9), book.engine.snapshot())
                     for book in self.books.values()]
            reflects = self._last_write
        if reflects is not None:
            await asyncio.shield(reflects)
        rows = []
        for book, seq, depth, snapshot in taken:
            g = book.grid
            rows.append((book.id, seq, ts, source,
                         orjson.dumps([[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count]
                                       for lv in depth.bids]).decode(),
                         orjson.dumps([[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count]
                                       for lv in depth.asks]).decode(),
                         orjson.dumps(snapshot).decode()))
        if rows:
            async with await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True) as conn:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO marketdata_booksnapshot (instrument_id, seq, taken_at, source, bids, asks, "
                        "engine_snapshot) VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)", rows)
        return len(rows)

    async def close(self) -> None:
        for conn in (self.conn, self.read_conn):
            if conn is not None:
                await conn.close()
        if self.wconn is not None:
            await self._in_writer(self.wconn.close)
        self._writer.shutdown(wait=False)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _exact_lots(spec: InstrumentSpec, value: Decimal) -> int:
    """Lots for a filled quantity, which may be below the instrument's minimum order size."""
    lots = value / spec.lot_size
    assert lots == lots.to_integral_value(), f"filled quantity {value} is off the lot grid"
    return int(lots)


def _feed_for(spec: InstrumentSpec, engine: Engine) -> FeedBuilder:
    depth = engine.depth(10**9)
    levels = [("buy", lv.price_ticks, lv.qty_lots) for lv in depth.bids]
    levels += [("sell", lv.price_ticks, lv.qty_lots) for lv in depth.asks]
    return FeedBuilder(spec, levels, seq=engine.seq)


def exit_on_failure(exc: BaseException) -> None:
    """A failure the worker cannot reason about: log it and end the process so the supervisor
    restarts it and the books are rebuilt from PostgreSQL."""
    log.critical("matching worker failed; exiting so it restarts from PostgreSQL", exc_info=exc)
    logging.shutdown()
    os._exit(70)


__all__ = ["MatchingWorker", "Reason", "exit_on_failure"]
