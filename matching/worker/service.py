"""MatchingWorker: the one process that owns every book, from a batch of commands to its commit.

Commands arrive two ways, as the same contract messages: straight from the web processes
(matching.worker.direct) and as pending rows of the PostgreSQL inbox (matching.worker.inbox).
A batch is matched under ``lock``, in memory; its rows, answers and market events are built
then (matching.worker.batch), and it is committed in its turn (matching.worker.store).

The order of writes: once a batch is matched the next one may be matched while the first
commits, but writes happen one at a time, in the order the batches were matched, each after
the previous one committed, and nothing is answered or announced before its own commit. A
write that fails for any reason other than a serialization failure (retried in place) never
releases its turn, and fails every write waiting behind it: no later batch can commit past it.
Memory may then be ahead of the record, so this worker is done: the consumer builds a new one
from the record (after a lost database, in process) or ends the process (any other failure).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from matching.contract import (
    FINAL_STATUSES,
    Answer,
    CancelOrder,
    Code,
    Command,
    CommandResult,
    Duplicate,
    ModifyOrder,
    Placed,
    PlaceOrder,
    Refused,
)
from matching.records import order_states

from . import batch as batches
from .batch import Batch, Pending
from .books import AnalyticsFactory, Book, FeedFactory, load_books, read_book, read_instruments
from .dedupe import Taken
from .store import Store, read_back, statements

log = logging.getLogger("matching.worker")

# The commit thread needs the GIL for a moment after each reply from PostgreSQL, and the
# matching thread keeps it for up to the switch interval (CPython's default is 5 ms).
GIL_SWITCH_INTERVAL_S = 0.0005
# What the record's columns can hold (orders.models): a longer value would fail the batch.
_MAX_LENGTHS = {"client_id": 64, "idempotency_key": 128, "request_hash": 64}

Turn = tuple["asyncio.Future[None] | None", "asyncio.Future[None]"]


class MatchingWorker:
    def __init__(self, conninfo: dict[str, Any], feed_factory: FeedFactory, *, analytics_factory: AnalyticsFactory,
                 slow_batch_ms: float = 250, db_timeout_s: float = 5.0, rebuild_timeout_s: float = 300.0) -> None:
        self.conninfo = conninfo
        self.feed_factory = feed_factory
        self.analytics_factory = analytics_factory
        self.slow_batch_s = slow_batch_ms / 1000
        # How long a statement may take before the database counts as lost (a commit, a
        # duplicate check), and how long the rebuild of every book may take.
        self.db_timeout_s = db_timeout_s
        self.rebuild_timeout_s = rebuild_timeout_s
        self.store = Store(conninfo, db_timeout_s)
        # Reads of the event loop (rebuild) and the snapshot feed's NOTIFYs.
        self.conn: psycopg.AsyncConnection[Any] | None = None
        # Reads that must not queue behind anything else (duplicate checks, a new instrument).
        self.read_conn: psycopg.AsyncConnection[Any] | None = None
        self.books: dict[int, Book] = {}
        self.lock = asyncio.Lock()
        self.batches = 0
        self.taken = Taken()
        # The last write handed out (see next_turn): each write waits for the one before it.
        self.last_write: asyncio.Future[None] | None = None
        # Set, with the exception, once a write failed: every write waiting for its turn then
        # fails too (nothing may commit past a failed batch), and the worker is done.
        self.failure: asyncio.Future[None] | None = None
        self._last_ns = 0

    @property
    def retries(self) -> int:
        return self.store.retries

    # -- start ----------------------------------------------------------------------------
    async def start(self, wait_for_lock: bool = True) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.failure = asyncio.get_running_loop().create_future()
        await self.store.connect()
        while not await self.store.try_lock():
            if not wait_for_lock:
                raise SystemExit("another matching worker holds the lock")
            log.warning("another matching worker owns the books (advisory lock held); waiting")
            await asyncio.sleep(1.0)
        self.conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
        await self.conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
        self.read_conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
        await self.rebuild()

    async def advertise(self, application_name: str) -> None:
        await self.store.advertise(application_name)

    async def rebuild(self) -> None:
        """Every book from the record (matching.worker.books)."""
        assert self.conn is not None
        self.books = await asyncio.wait_for(load_books(self.conn, self.feed_factory, self.analytics_factory),
                                            self.rebuild_timeout_s)
        log.info("rebuilt %d book(s): %s", len(self.books),
                 ", ".join(f"{b.symbol} ({b.engine.open_order_count} open, seq {b.engine.seq})"
                           for b in self.books.values()))

    async def _book(self, instrument_id: int) -> Book | None:
        book = self.books.get(instrument_id)
        if book is None:
            # An instrument created after start (from the admin). (The read connection: a batch
            # may be committing on the other one; a new instrument's counters are its own.)
            assert self.read_conn is not None
            async with asyncio.timeout(self.db_timeout_s):
                found = await read_instruments(self.read_conn, instrument_id)
                if not found:
                    return None
                book = self.books[instrument_id] = await read_book(self.read_conn, found[0], self.feed_factory,
                                                                   self.analytics_factory)
        return book

    def now_ns(self) -> int:
        """A batch's time: the clock, but never before the previous batch's, so that trade times
        never go backwards while their seq goes forward (candles are cut by time)."""
        self._last_ns = max(time.time_ns(), self._last_ns)
        return self._last_ns

    # -- the order of writes --------------------------------------------------------------
    def next_turn(self) -> Turn:
        """Called under ``lock``: (the previous write to wait for, this write's own)."""
        previous, mine = self.last_write, asyncio.get_running_loop().create_future()
        self.last_write = mine
        return previous, mine

    async def in_turn(self, turn: Turn, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` once the previous write has committed. A failure of this write, or of
        any write before it, fails every write after it: its turn is never released."""
        previous, mine = turn
        failure = self.failure
        assert failure is not None
        if previous is not None and not previous.done():
            await asyncio.wait((previous, failure), return_when=asyncio.FIRST_COMPLETED)
        if failure.done():
            raise WorkerStopped("an earlier write failed") from failure.exception()
        try:
            await write()
        except BaseException as exc:
            self.fail(exc)
            raise
        mine.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """No write may commit from now on (memory may be ahead of the record)."""
        if self.failure is not None and not self.failure.done():
            self.failure.set_exception(exc)
            self.failure.exception()  # retrieved: the writes that fail with it report it

    async def _commit(self, batch: Batch, params: dict[str, Any], reads: list[Any]) -> list[list[Any]]:
        rows = await self.store.commit(statements(batch, params), reads)
        self.batches += 1
        return rows

    # -- the inbox ------------------------------------------------------------------------
    async def handle_inbox(self, items: list[Pending]) -> None:
        """A batch of pending rows from the inbox: matched, then committed in its turn; the
        answers go out as NOTIFYs of the same transaction."""
        async with self.lock:
            started = time.perf_counter()
            batch = batches.new_batch(self.now_ns())
            for item in items:
                cmd = item.command
                if isinstance(cmd, PlaceOrder) and cmd.order_id in self.taken.order_ids:
                    continue  # its direct copy was matched and committed while this row was read
                book = await self._book(item.instrument_id)
                assert book is not None, f"instrument {item.instrument_id} of a stored order vanished"
                if isinstance(cmd, PlaceOrder):
                    batches.place(batch, book, cmd, created_at=item.created_at)
                else:
                    assert item.command_id is not None
                    batch.commands.append((item.command_id, batches.command(batch, book, cmd)))
            self.taken.remember(batches.taken(batch))
            params = batches.statement_params(batch)
            turn = self.next_turn()
        matched = time.perf_counter()

        async def write() -> None:
            await self._commit(batch, params, [])

        await self.in_turn(turn, write)
        self._log_slow("inbox", len(items), batch, started, matched)

    # -- the direct path ------------------------------------------------------------------
    async def handle_direct(self, commands: list[Command]) -> list[Answer]:
        """match_direct, and wait for the answers."""
        return await (await self.match_direct(commands))

    async def match_direct(self, commands: list[Command]) -> asyncio.Task[list[Answer]]:
        """Match commands sent straight from web processes. Returns once the batch is matched:
        the task it returns commits it in its turn, then answers, one answer per command, in
        order: ``Placed`` with the committed order, or ``Duplicate`` when its key (or its
        client-chosen order_id) is taken; for a cancel or modify ``CommandResult`` with the
        order as committed (see there for an order no book holds open); ``Refused`` for a
        command the worker will not take at all.

        A placed order's row is written once, with its outcome, in the batch transaction: no
        pending row, no second write, no read-back. Duplicates are decided first, against
        PostgreSQL and within the batch; the unique constraints stay the last word (a row a
        web process stored as pending meanwhile is taken over; anything else fails the batch).
        """
        async with self.lock:
            started = time.perf_counter()
            answers: list[Answer] = [_DUPLICATE] * len(commands)
            refused = {n: code for n, cmd in enumerate(commands) if (code := _refusal(cmd)) is not None}
            places = [cmd for n, cmd in enumerate(commands) if isinstance(cmd, PlaceOrder) and n not in refused]
            assert self.read_conn is not None
            async with asyncio.timeout(self.db_timeout_s):
                known = await self.taken.known(self.read_conn, places)
            batch = batches.new_batch(self.now_ns())
            # Direct cancels/modifies: (answer index, order id, result or None when no book
            # holds the order open: the batch's read-back decides the answer then).
            targets: list[tuple[int, str, Code | None]] = []
            placed: list[tuple[int, str]] = []
            for n, cmd in enumerate(commands):
                if n in refused:
                    answers[n] = Refused(code=refused[n])
                elif isinstance(cmd, PlaceOrder):
                    key = (cmd.client_id, cmd.idempotency_key)
                    oid = cmd.order_id
                    if key in known or (cmd.order_id_supplied and oid in known) or oid in self.taken.order_ids \
                            or oid in batch.direct:
                        continue
                    book = await self._book(cmd.instrument_id)
                    if book is None:
                        answers[n] = Refused(code=Code.UNKNOWN_INSTRUMENT)
                        continue
                    known.add(key)
                    known.add(oid)
                    batches.place(batch, book, cmd)
                    placed.append((n, oid))
                else:
                    targets.append((n, cmd.order_id, self._direct_command(batch, cmd)))
            self.taken.remember(batches.taken(batch))
            writes = bool(batch.books or targets)
            params = batches.statement_params(batch) if writes else {}
            # Answers built now, sent only once the batch has committed.
            states = {state.order_id: state for state in batches.placed_states(batch, direct=True)}
            for n, oid in placed:
                answers[n] = Placed(order=states[oid])
            turn = self.next_turn()
        matched = time.perf_counter()
        return asyncio.get_running_loop().create_task(
            self._finish_direct(batch, params if writes else None, answers, targets, turn, started, matched))

    def _direct_command(self, batch: Batch, cmd: CancelOrder | ModifyOrder) -> Code | None:
        book = next((b for b in self.books.values() if b.engine.get_order(cmd.order_id) is not None), None)
        if book is None:
            # Not open in memory: finished, unknown, or still a pending row in the inbox.
            return None
        return batches.command(batch, book, cmd)

    async def _finish_direct(self, batch: Batch, params: dict[str, Any] | None, answers: list[Answer],
                             targets: list[tuple[int, str, Code | None]], turn: Turn,
                             started: float, matched: float) -> list[Answer]:
        read: list[list[Any]] = []

        async def write() -> None:
            nonlocal read
            if params is not None:
                read = await self._commit(batch, params, read_back([oid for _, oid, _ in targets]) if targets else [])

        await self.in_turn(turn, write)
        if targets:
            order_rows, fill_rows = read
            stored = {str(row[0]) for row in order_rows}
            states = order_states(order_rows, fill_rows, {b.id: (b.symbol, b.spec) for b in self.books.values()})
            for n, oid, result in targets:
                state = states.get(oid)
                if result is not None:
                    answers[n] = CommandResult(code=result, order=state)
                elif oid not in stored:
                    answers[n] = CommandResult(code=Code.ORDER_NOT_FOUND)
                elif state is not None and state.status in FINAL_STATUSES:
                    answers[n] = CommandResult(code=Code.ORDER_NOT_OPEN, order=state)
                else:
                    # Still pending (or of an instrument this worker has no book for yet): the
                    # inbox orders the command after its place.
                    answers[n] = CommandResult(code=Code.DEFERRED)
        self._log_slow("direct", len(answers), batch, started, matched)
        return answers

    def _log_slow(self, source: str, size: int, batch: Batch, started: float, matched: float) -> None:
        done = time.perf_counter()
        if done - started > self.slow_batch_s:
            log.info("slow %s batch: %d commands, %d trades: match %.1f ms, commit %.1f ms", source, size,
                     len(batch.trades), (matched - started) * 1e3, (done - matched) * 1e3)

    async def close(self) -> None:
        for conn in (self.conn, self.read_conn):
            if conn is not None:
                await conn.close()
        await self.store.close()


_DUPLICATE = Duplicate()


class WorkerStopped(Exception):
    """A write of this worker failed before: nothing more commits through it."""


def _refusal(cmd: Command) -> Code | None:
    """Why the worker will not take a command at all, or None. Web processes validate every
    command first; this is the worker's own guard, so that no command can fail a batch (and
    with it every other order of the batch)."""
    try:
        uuid.UUID(cmd.order_id)
    except ValueError:
        return Code.INVALID_UUID
    if isinstance(cmd, PlaceOrder):
        for name, limit in _MAX_LENGTHS.items():
            value: str = getattr(cmd, name)
            if not value or len(value) > limit:
                return Code.TOO_LONG if value else Code.REQUIRED
            if "\x00" in value:
                return Code.INVALID_STRING
    return None
