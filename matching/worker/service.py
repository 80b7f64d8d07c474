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
import gc
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg

from matching.contract import (
    ADMIN_COMMANDS,
    FINAL_STATUSES,
    OUTCOME_CHANNEL,
    AdminAnswer,
    AdminCommand,
    AdminOutcome,
    Answer,
    BookState,
    CancelAll,
    CancelOrder,
    Code,
    Command,
    CommandResult,
    Duplicate,
    ModifyOrder,
    Placed,
    PlaceOrder,
    ReadWorkerState,
    Refused,
    SetHalted,
    SnapshotsTaken,
    TakeSnapshot,
    WorkerState,
    outcome_payloads,
    to_builtins,
)
from matching.records import order_states

from . import batch as batches
from . import logs, metrics, snapshots
from .batch import Batch, Pending
from .books import AnalyticsFactory, Book, FeedFactory, load_books, read_book, read_instruments
from .dedupe import Taken
from .store import Store, read_back, statements

log = logging.getLogger("matching.worker")

# An inbox snapshot command is answered once its snapshots are stored: its row is marked
# processed and its outcome NOTIFYed then, in a transaction of their own.
FINISH_ADMIN_SQL = """
WITH done AS (UPDATE orders_admincommand SET processed = true, result = %(result)s::jsonb, processed_at = now()
               WHERE id = %(id)s AND NOT processed RETURNING id)
SELECT count(pg_notify('""" + OUTCOME_CHANNEL + """', p)) FROM done, unnest(%(payloads)s::text[]) AS p"""

# Snapshot commands of a batch: (answer index or inbox command id, the snapshots taken).
SnapshotJobs = list[tuple[int, list[snapshots.Taken]]]

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
        # Operations: who owns the books, since when, and when the last batch committed.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.direct_address: str | None = None
        self.started_at = time.monotonic()
        self.last_batch_at: float | None = None
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
        # A large book is millions of objects made at once: the cyclic collector would walk them
        # again and again while they are made, and at every full collection after. Off while
        # they are made, then they join what gc.freeze() keeps out of every collection (they
        # leave it by reference counting: an order taken off the book drops its links).
        gc.disable()
        try:
            self.books = await asyncio.wait_for(load_books(self.conn, self.feed_factory, self.analytics_factory),
                                                self.rebuild_timeout_s)
        finally:
            gc.enable()
            gc.freeze()
        log.info("rebuilt %d book(s): %s", len(self.books),
                 ", ".join(f"{b.symbol} ({b.engine.open_order_count} open, seq {b.engine.seq})"
                           for b in self.books.values()))

    async def _all_books(self) -> list[Book]:
        """Every instrument's book, those created since start included."""
        assert self.read_conn is not None
        for instrument in await read_instruments(self.read_conn):
            if instrument["id"] not in self.books:
                self.books[instrument["id"]] = await read_book(self.read_conn, instrument, self.feed_factory,
                                                               self.analytics_factory)
        return list(self.books.values())

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
            jobs: SnapshotJobs = []
            for item in items:
                cmd = item.command
                if isinstance(cmd, ADMIN_COMMANDS):
                    assert item.command_id is not None
                    await self._admin(batch, cmd, item.command_id, jobs)
                    continue
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
        for command_id, taken in jobs:
            await self._finish_inbox_snapshot(command_id, taken, batch)
        self._after_commit("inbox", len(items), batch, started, matched)

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
            targets: list[tuple[int, str, Code | None, str | None]] = []
            placed: list[tuple[int, str]] = []
            jobs: SnapshotJobs = []
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
                    if book.halted:
                        answers[n] = Refused(code=Code.INSTRUMENT_HALTED)
                        batch.refused.append((book.symbol, Code.INSTRUMENT_HALTED, oid, cmd.client_id))
                        continue
                    known.add(key)
                    known.add(oid)
                    batches.place(batch, book, cmd)
                    placed.append((n, oid))
                elif isinstance(cmd, ADMIN_COMMANDS):
                    answer = await self._admin(batch, cmd, None, jobs, index=n)
                    if answer is not None:
                        answers[n] = answer
                else:
                    targets.append((n, cmd.order_id, self._direct_command(batch, cmd), cmd.client_id))
            self.taken.remember(batches.taken(batch))
            writes = bool(batch.books or targets or batch.admin_log)
            params = batches.statement_params(batch) if writes else {}
            # Answers built now, sent only once the batch has committed.
            states = {state.order_id: state for state in batches.placed_states(batch, direct=True)}
            for n, oid in placed:
                answers[n] = Placed(order=states[oid])
            turn = self.next_turn()
        matched = time.perf_counter()
        return asyncio.get_running_loop().create_task(
            self._finish_direct(batch, params if writes else None, answers, targets, turn, started, matched, jobs))

    def _direct_command(self, batch: Batch, cmd: CancelOrder | ModifyOrder) -> Code | None:
        for book in self.books.values():
            resting = book.engine.get_order(cmd.order_id)
            if resting is not None:
                break
        else:
            # Not open in memory: finished, unknown, or still a pending row in the inbox.
            return None
        if cmd.client_id is not None and resting.client_id != cmd.client_id:
            return Code.ORDER_NOT_FOUND  # another client's: left alone, and not revealed
        return batches.command(batch, book, cmd)

    async def _finish_direct(self, batch: Batch, params: dict[str, Any] | None, answers: list[Answer],
                             targets: list[tuple[int, str, Code | None, str | None]], turn: Turn,
                             started: float, matched: float, jobs: SnapshotJobs) -> list[Answer]:
        read: list[list[Any]] = []

        async def write() -> None:
            nonlocal read
            if params is not None:
                read = await self._commit(batch, params, read_back([t[1] for t in targets]) if targets else [])

        await self.in_turn(turn, write)
        if targets:
            order_rows, fill_rows = read
            stored = {str(row[0]) for row in order_rows}
            states = order_states(order_rows, fill_rows, {b.id: (b.symbol, b.spec) for b in self.books.values()})
            for n, oid, result, client_id in targets:
                state = states.get(oid)
                if result is Code.ORDER_NOT_FOUND or (client_id is not None and state is not None
                                                      and state.client_id != client_id):
                    answers[n] = CommandResult(code=Code.ORDER_NOT_FOUND)
                elif result is not None:
                    answers[n] = CommandResult(code=result, order=state)
                elif oid not in stored:
                    answers[n] = CommandResult(code=Code.ORDER_NOT_FOUND)
                elif state is not None and state.status in FINAL_STATUSES:
                    answers[n] = CommandResult(code=Code.ORDER_NOT_OPEN, order=state)
                else:
                    # Still pending (or of an instrument this worker has no book for yet): the
                    # inbox orders the command after its place.
                    answers[n] = CommandResult(code=Code.DEFERRED)
        for n, taken in jobs:
            answers[n] = SnapshotsTaken(snapshots=await snapshots.write(self.conninfo, taken, "admin", batch.when))
        self._after_commit("direct", len(answers), batch, started, matched)
        return answers

    def _after_commit(self, source: str, size: int, batch: Batch, started: float, matched: float) -> None:
        """A batch committed: its metrics now, its log lines once its answers are on their way."""
        done = time.perf_counter()
        if batch.books or batch.refused:
            self.last_batch_at = time.monotonic()
        try:
            metrics.batch_committed(batch, source, size, matched - started, done - matched)
        except Exception:
            # Counting is no reason to stop matching (the batch has committed): loud, not fatal.
            log.exception("metrics of a committed batch failed")
        # Two turns of the loop later: the answers (whose sending is woken in the next turn) are on
        # their way before the lines are rendered, so that they cost CPU, not latency.
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, logs.batch_committed, batch, source, size, matched - started,
                       done - matched, done - started > self.slow_batch_s)

    # -- operations: admin commands, in their turn among the orders -----------------------
    async def _admin(self, batch: Batch, cmd: AdminCommand, command_id: int | None, jobs: SnapshotJobs,
                     index: int = 0) -> AdminAnswer | None:
        """Carry out an admin command inside the batch being matched. Its answer (None for a
        snapshot, answered once it is stored); an inbox command's answer is recorded with it."""
        answer: AdminAnswer
        instrument_id = getattr(cmd, "instrument_id", None)
        command_seq: int | None = None
        if isinstance(cmd, TakeSnapshot):
            books = await self._all_books() if cmd.instrument_id is None else \
                [b for b in [await self._book(cmd.instrument_id)] if b is not None]
            if books:
                jobs.append((index if command_id is None else command_id, [snapshots.take(b) for b in books]))
                return None
            answer = Refused(code=Code.UNKNOWN_INSTRUMENT)
        elif isinstance(cmd, ReadWorkerState):
            answer = self.state()
        elif isinstance(cmd, SetHalted):
            book = await self._book(cmd.instrument_id)
            if book is None:
                answer = Refused(code=Code.UNKNOWN_INSTRUMENT)
            else:
                answer = batches.set_halted(batch, book, cmd.halted)
                command_seq = book.command_seq if answer.changed else None
                log.warning("instrument %s %s", book.symbol, "halted" if cmd.halted else "resumed")
        else:
            assert isinstance(cmd, CancelAll)
            if cmd.instrument_id is None:
                books = await self._all_books()
            else:
                book = await self._book(cmd.instrument_id)
                books = [] if book is None else [book]
            if cmd.instrument_id is not None and not books:
                answer = Refused(code=Code.UNKNOWN_INSTRUMENT)
            else:
                answer = batches.cancel_all(batch, books, cmd.client_id)
                log.warning("cancel-all (instrument %s, client %s): %d order(s) cancelled",
                            cmd.instrument_id, cmd.client_id, answer.cancelled)
        if command_id is not None or command_seq is not None or getattr(answer, "cancelled", 0):
            batches.admin_done(batch, cmd, answer, command_id=command_id, instrument_id=instrument_id,
                               command_seq=command_seq)
        return answer

    async def _finish_inbox_snapshot(self, command_id: int, taken: list[snapshots.Taken], batch: Batch) -> None:
        answer = SnapshotsTaken(snapshots=await snapshots.write(self.conninfo, taken, "admin", batch.when))
        payloads = outcome_payloads([AdminOutcome(command_id=command_id, answer=answer)])
        async with await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True) as conn:
            await conn.execute(FINISH_ADMIN_SQL, {"id": command_id, "payloads": payloads,
                                                  "result": orjson.dumps(to_builtins(answer)).decode()})

    def state(self) -> WorkerState:
        """What the worker holds, now."""
        books = []
        for b in self.books.values():
            depth = b.engine.depth(10**9)
            books.append(BookState(instrument=b.symbol, open_orders=b.engine.open_order_count,
                                   bid_levels=len(depth.bids), ask_levels=len(depth.asks), seq=b.engine.seq,
                                   command_seq=b.command_seq, halted=b.halted))
        now = time.monotonic()
        return WorkerState(owner=self.owner, direct_address=self.direct_address,
                           uptime_s=round(now - self.started_at, 3),
                           batches=self.batches, retries=self.retries,
                           last_batch_age_s=None if self.last_batch_at is None else round(now - self.last_batch_at, 3),
                           books=books)

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
    if isinstance(cmd, ADMIN_COMMANDS):
        return None
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
