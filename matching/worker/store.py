"""Where a batch becomes true: its statements, committed in ONE SERIALIZABLE transaction.

The session that commits is the one that holds the worker's ownership lock (a session advisory
lock) and advertises the direct path: if it is lost, so are the lock, the advertisement and
any way to commit. It is a synchronous connection driven by a thread of its own: matching is
pure Python and holds the GIL for tens of milliseconds per batch, and a pipeline driven from
the event loop made no progress meanwhile; in the thread it waits on PostgreSQL with the GIL
released, so matching the next batch and committing this one overlap.

A batch's BEGIN, its statements and COMMIT go out as one pipeline: one round trip. On a
serialization failure (SQLSTATE 40001) the same statements are sent again: the events were
computed once, so nothing is matched twice. Any other failure is the caller's to handle (the
worker then stops: its memory may be ahead of the record).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from matching.contract import MARKET_CHANNEL, OUTCOME_CHANNEL
from matching.records import FILLS_SQL, ORDERS_BY_ID_SQL

from . import metrics
from .batch import Batch

log = logging.getLogger("matching.worker.store")

T = TypeVar("T")

LOCK_KEY = 0x70676272  # "pgbr": one key, the whole matching service
MAX_RETRIES = 20

Statement = tuple[str, dict[str, Any]]


class DatabaseLost(Exception):
    """PostgreSQL stopped answering the worker (a statement outlived its bound)."""


def is_database_lost(exc: BaseException) -> bool:
    """A failure of the database or of the way to it, as opposed to a fault of the worker: the
    worker then waits for the database and rebuilds from it, in process."""
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, DatabaseLost, TimeoutError, OSError))

# Written once, with the outcome. A pending row of the same order (stored by a web process that
# gave up waiting for its answer) is taken over. Any other row under one of these keys leaves a
# row out: the cast fails, the batch does not commit, and the worker restarts from PostgreSQL.
INSERT_NEW_ORDERS = """
WITH ins AS (
INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side, type,
                          time_in_force, post_only, stp, status, price, quantity, filled_quantity, reason, priority,
                          created_at, updated_at)
SELECT r.order_id, r.client_id, r.idempotency_key, r.request_hash, r.instrument_id, r.side, r.type,
       r.time_in_force, r.post_only, r.stp, r.status, r.price, r.quantity, r.filled_quantity, r.reason, r.priority,
       %(when)s, %(when)s
  FROM json_populate_recordset(NULL::orders_order, %(new_orders)s::json) WITH ORDINALITY AS r
 ORDER BY r.ordinality
ON CONFLICT (order_id) DO UPDATE
   SET status = excluded.status, price = excluded.price, quantity = excluded.quantity,
       filled_quantity = excluded.filled_quantity, reason = excluded.reason,
       priority = excluded.priority, updated_at = excluded.updated_at
 WHERE orders_order.status = 'pending' AND orders_order.client_id = excluded.client_id
   AND orders_order.idempotency_key = excluded.idempotency_key
RETURNING 1)
SELECT (CASE WHEN count(*) = %(direct_count)s THEN '0'
             ELSE 'direct order collides with a stored order' END)::int FROM ins"""

UPDATE_ORDERS = """
UPDATE orders_order o
   SET status = u.status, filled_quantity = u.filled_quantity,
       quantity = CASE WHEN u.set_terms THEN u.quantity ELSE o.quantity END,
       price = CASE WHEN u.set_terms THEN u.price ELSE o.price END,
       reason = u.reason, priority = coalesce(u.priority, o.priority), updated_at = %(when)s
  FROM json_to_recordset(%(orders)s::json) AS u(order_id uuid, status text, filled_quantity numeric,
                                                quantity numeric, price numeric, reason text, priority bigint,
                                                set_terms bool)
 WHERE o.order_id = u.order_id"""

INSERT_EVENTS = """
INSERT INTO orders_orderevent (order_id, instrument_id, status, price, quantity, filled_quantity, reason, trade_id,
                               command_seq, created_at)
SELECT e.order_id, e.instrument_id, e.status, e.price, e.quantity, e.filled_quantity, e.reason, e.trade_id,
       e.command_seq, %(when)s
  FROM json_populate_recordset(NULL::orders_orderevent, %(events)s::json) WITH ORDINALITY AS e
 ORDER BY e.ordinality"""

INSERT_TRADES = """
INSERT INTO orders_trade (instrument_id, trade_id, seq, price, quantity, aggressor_side, buy_order_id, sell_order_id,
                          maker_order_id, taker_order_id, executed_at)
SELECT t.instrument_id, t.trade_id, t.seq, t.price, t.quantity, t.aggressor_side, t.buy_order_id, t.sell_order_id,
       t.maker_order_id, t.taker_order_id, %(when)s
  FROM json_populate_recordset(NULL::orders_trade, %(trades)s::json) WITH ORDINALITY AS t
 ORDER BY t.ordinality"""

# The batch's trades per candle, added to what is stored (open and close by seq, so the order
# in which deltas arrive does not matter; a retried transaction adds them once).
UPSERT_CANDLES = """
INSERT INTO marketdata_candle AS c (instrument_id, interval, open_time, open, high, low, close, volume, quote_volume,
                                    taker_buy_volume, taker_buy_quote_volume, trade_count, first_seq, last_seq)
SELECT d.instrument_id, d.interval, d.open_time, d.open, d.high, d.low, d.close, d.volume, d.quote_volume,
       d.taker_buy_volume, d.taker_buy_quote_volume, d.trade_count, d.first_seq, d.last_seq
  FROM json_populate_recordset(NULL::marketdata_candle, %(candles)s::json) WITH ORDINALITY AS d
 ORDER BY d.ordinality
ON CONFLICT (instrument_id, interval, open_time) DO UPDATE
   SET open = CASE WHEN excluded.first_seq < c.first_seq THEN excluded.open ELSE c.open END,
       close = CASE WHEN excluded.last_seq > c.last_seq THEN excluded.close ELSE c.close END,
       first_seq = least(c.first_seq, excluded.first_seq), last_seq = greatest(c.last_seq, excluded.last_seq),
       high = greatest(c.high, excluded.high), low = least(c.low, excluded.low),
       volume = c.volume + excluded.volume, quote_volume = c.quote_volume + excluded.quote_volume,
       taker_buy_volume = c.taker_buy_volume + excluded.taker_buy_volume,
       taker_buy_quote_volume = c.taker_buy_quote_volume + excluded.taker_buy_quote_volume,
       trade_count = c.trade_count + excluded.trade_count"""

# Whole states (an average cost depends on every fill before it), folded by the worker.
UPSERT_POSITIONS = """
INSERT INTO orders_position (client_id, instrument_id, net_quantity, cost_basis, bought_quantity, sold_quantity,
                             bought_quote, sold_quote, realized_pnl, trade_count, last_seq, updated_at)
SELECT p.client_id, p.instrument_id, p.net_quantity, p.cost_basis, p.bought_quantity, p.sold_quantity,
       p.bought_quote, p.sold_quote, p.realized_pnl, p.trade_count, p.last_seq, %(when)s
  FROM json_populate_recordset(NULL::orders_position, %(positions)s::json) WITH ORDINALITY AS p
 ORDER BY p.ordinality
ON CONFLICT (client_id, instrument_id) DO UPDATE
   SET net_quantity = excluded.net_quantity, cost_basis = excluded.cost_basis,
       bought_quantity = excluded.bought_quantity, sold_quantity = excluded.sold_quantity,
       bought_quote = excluded.bought_quote, sold_quote = excluded.sold_quote,
       realized_pnl = excluded.realized_pnl, trade_count = excluded.trade_count, last_seq = excluded.last_seq,
       updated_at = excluded.updated_at"""

UPDATE_COMMANDS = """
UPDATE orders_ordercommand c SET processed = true, result = u.result, processed_at = %(when)s
  FROM json_to_recordset(%(commands)s::json) AS u(id bigint, result text) WHERE c.id = u.id"""

UPDATE_INSTRUMENTS = """
UPDATE orders_instrument i SET last_seq = u.last_seq, last_trade_id = u.last_trade_id,
                              last_command_seq = u.last_command_seq, halted = u.halted
  FROM json_to_recordset(%(instruments)s::json) AS u(id bigint, last_seq bigint, last_trade_id bigint,
                                                     last_command_seq bigint, halted bool)
 WHERE i.id = u.id"""

# Operations: inbox admin commands answered, and the direct ones that changed something.
UPDATE_ADMIN = """
UPDATE orders_admincommand c SET processed = true, result = u.result, command_seq = u.command_seq,
                                 processed_at = %(when)s
  FROM json_to_recordset(%(admin_done)s::json) AS u(id bigint, result jsonb, command_seq bigint) WHERE c.id = u.id"""
INSERT_ADMIN = """
INSERT INTO orders_admincommand (kind, instrument_id, client_id, command, processed, result, command_seq, created_at,
                                 processed_at)
SELECT a.kind, a.instrument_id, a.client_id, a.command, true, a.result, a.command_seq, %(when)s, %(when)s
  FROM json_to_recordset(%(admin_log)s::json) AS a(kind text, instrument_id bigint, client_id text, command jsonb,
                                                   result jsonb, command_seq bigint)"""

# NOTIFY inside the transaction: delivered only if, and when, it commits.
NOTIFY_OUTCOMES = (f"SELECT count(pg_notify('{OUTCOME_CHANNEL}', p)) "
                   "FROM json_array_elements_text(%(outcomes)s::json) AS p")
NOTIFY_MARKET = (f"SELECT count(pg_notify('{MARKET_CHANNEL}', p)) "
                 "FROM json_array_elements_text(%(market)s::json) AS p")


def statements(batch: Batch, params: dict[str, Any]) -> list[Statement]:
    """A batch's statements (params: batch.statement_params), in the fixed order of writes
    (orders, events, trades, candles, positions, commands, instruments, then the NOTIFYs): every
    batch locks rows in the same order."""
    out: list[Statement] = []
    if batch.direct:
        out.append((INSERT_NEW_ORDERS, params))
    if params["orders"] != "[]":
        out.append((UPDATE_ORDERS, params))
    if batch.events:
        out.append((INSERT_EVENTS, params))
    if batch.trades:
        out.append((INSERT_TRADES, params))
    if params["candles"] != "[]":
        out.append((UPSERT_CANDLES, params))
    if params["positions"] != "[]":
        out.append((UPSERT_POSITIONS, params))
    if batch.commands:
        out.append((UPDATE_COMMANDS, params))
    if batch.books:
        out.append((UPDATE_INSTRUMENTS, params))
    if batch.admin_done:
        out.append((UPDATE_ADMIN, params))
    if batch.admin_log:
        out.append((INSERT_ADMIN, params))
    out.append((NOTIFY_OUTCOMES, params))
    out.append((NOTIFY_MARKET, params))
    return out


def read_back(order_ids: list[str]) -> list[Statement]:
    """The reads that follow a batch's writes in its transaction: orders and their fills, as
    committed (a direct cancel's or modify's answer)."""
    ids = {"ids": list({uuid.UUID(oid) for oid in order_ids})}
    return [(ORDERS_BY_ID_SQL, ids), (FILLS_SQL, ids)]


class Store:
    """The lock-holding, committing session and the thread that drives it."""

    def __init__(self, conninfo: dict[str, Any], timeout_s: float) -> None:
        self.conninfo = conninfo
        self.timeout_s = timeout_s
        self.conn: psycopg.Connection[Any] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="pgbourse-commit")
        self.retries = 0
        # A call of the commit thread outlived its bound: the thread is still inside it.
        self._stuck = False

    async def _bounded(self, fn: Callable[..., T], *args: Any) -> T:
        """fn in the commit thread, within the bound: a database that hangs (the postmaster and
        its backends stopped) raises DatabaseLost instead of holding every later batch."""
        try:
            return await asyncio.wait_for(self._run(fn, *args), self.timeout_s)
        except TimeoutError:
            self._stuck = True
            raise DatabaseLost(f"PostgreSQL did not answer the commit within {self.timeout_s:g} s") from None

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run fn in the commit thread, the only thread that uses the connection."""
        return asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args))

    async def connect(self) -> None:
        # Autocommit: a batch's BEGIN and COMMIT are statements of its pipeline (see commit).
        self.conn = await self._bounded(lambda: psycopg.Connection.connect(**self.conninfo, autocommit=True))

    async def try_lock(self) -> bool:
        def lock() -> bool:
            assert self.conn is not None
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            return bool(row and row[0])

        return await self._bounded(lock)

    async def advertise(self, application_name: str) -> None:
        """Name the lock-holding session, so web processes find the direct path (and stop
        finding it the moment this session ends)."""
        def name() -> None:
            assert self.conn is not None
            self.conn.execute("SELECT set_config('application_name', %s, false)", (application_name,))

        await self._bounded(name)

    async def commit(self, writes: list[Statement], reads: list[Statement]) -> list[list[Any]]:
        """Write in ONE SERIALIZABLE transaction, retried whole on 40001; the rows of ``reads``,
        read inside it after the writes."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._bounded(self._commit_sync, writes, reads, attempt)
            except pg_errors.SerializationFailure:
                self.retries += 1
                metrics.retried()
                if attempt >= MAX_RETRIES:
                    raise
                log.info("batch hit a serialization failure (40001), retrying (attempt %d)", attempt + 1)
                await asyncio.sleep(0.001 * attempt)

    def _begin(self, conn: psycopg.Connection[Any], attempt: int) -> None:
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")

    def _commit_sync(self, writes: list[Statement], reads: list[Statement], attempt: int) -> list[list[Any]]:
        """One attempt, in the commit thread: BEGIN, every statement and COMMIT in one pipeline.
        (psycopg's transaction block waits for the statements' results before it sends COMMIT:
        a second round trip.)"""
        conn = self.conn
        assert conn is not None
        try:
            with conn.pipeline():
                self._begin(conn, attempt)
                for query, params in writes:
                    conn.execute(query, params)
                cursors = [conn.execute(query, params) for query, params in reads]
                conn.execute("COMMIT")
        except BaseException:
            # The statements after the failing one, COMMIT included, were skipped: end the
            # aborted transaction (if the connection is still there).
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        return [cur.fetchall() for cur in cursors]

    async def execute(self, query: str, params: dict[str, Any]) -> None:
        """One statement on the lock-holding session (the heartbeat: proof that this session,
        and with it the lock, is alive), in the commit thread between commits."""
        def run() -> None:
            assert self.conn is not None
            self.conn.execute(query, params)

        await self._bounded(run)

    async def close(self) -> None:
        """Close the session (and with it the lock). When the commit thread is stuck in a call,
        the close is queued behind it: the session ends as soon as that call returns, so a
        worker that restarts meanwhile waits for the lock rather than for a session that a
        late COMMIT might still use."""
        if self.conn is not None:
            if self._stuck:
                self._thread.submit(self.conn.close)
            else:
                try:
                    await self._bounded(self.conn.close)
                except DatabaseLost:
                    pass
        self._thread.shutdown(wait=False)
