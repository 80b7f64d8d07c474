"""The channel layer the matching worker consumer reads: PostgreSQL itself.

``manage.py runworker --layer matching matching`` runs Channels' standard worker with this
layer. A web process "sends" a command to the worker by committing it as a pending row (an
order, or a cancel/modify row) and NOTIFYing the inbox channel; ``receive()`` here wakes on
that NOTIFY (with a slow poll as a safety net), reads every pending command in arrival order
and hands them to MatchingConsumer as one message of contract commands.

Why not channels-postgres or a broker: the design allows PostgreSQL only, and
channels-postgres dropped and redelivered messages when tried (docs/decisions.md). Rows are the record: a worker
that dies between any two steps finds the same pending rows when it restarts.

Batches are strictly sequential: receive() does not read the next batch until the consumer
has committed the previous one (``batch_done()``), so a pending row is never handed out twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from channels.layers import BaseChannelLayer

from matching.contract import INBOX_CHANNEL, CancelOrder, ModifyOrder, PlaceOrder
from matching.engine.types import STP, OrderType, Side, TimeInForce

from .batch import Pending
from .postgres import backoff_s

log = logging.getLogger("matching.worker.inbox")

POLL_S = 0.5
PENDING_SQL = """
(SELECT o.inbox_seq, 'place' AS kind, NULL::bigint AS command_id, o.order_id, o.instrument_id, o.client_id,
        o.side, o.type, o.time_in_force, o.post_only, o.stp, o.price, o.quantity, o.idempotency_key,
        o.request_hash, o.created_at
   FROM orders_order o WHERE o.status = 'pending' ORDER BY o.inbox_seq LIMIT %(limit)s)
UNION ALL
(SELECT c.inbox_seq, c.kind, c.id, c.order_id, o.instrument_id, o.client_id,
        o.side, o.type, o.time_in_force, o.post_only, o.stp, c.new_price, c.new_quantity, o.idempotency_key,
        o.request_hash, o.created_at
   FROM orders_ordercommand c JOIN orders_order o ON o.order_id = c.order_id
  WHERE NOT c.processed ORDER BY c.inbox_seq LIMIT %(limit)s)
ORDER BY inbox_seq LIMIT %(limit)s
"""
COLUMNS = ("inbox_seq", "kind", "command_id", "order_id", "instrument_id", "client_id", "side", "type",
           "time_in_force", "post_only", "stp", "price", "quantity", "idempotency_key", "request_hash", "created_at")


def _text(value: Any) -> str | None:
    return None if value is None else format(value, "f")


def pending(row: dict[str, Any]) -> Pending:
    """A PENDING_SQL row as the contract command it stands for."""
    oid = str(row["order_id"])
    if row["kind"] == "place":
        command: PlaceOrder | CancelOrder | ModifyOrder = PlaceOrder(
            order_id=oid, client_id=row["client_id"], idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"], instrument_id=row["instrument_id"], side=Side(row["side"]),
            type=OrderType(row["type"]), time_in_force=TimeInForce(row["time_in_force"]),
            post_only=row["post_only"], stp=STP(row["stp"]),
            price=_text(row["price"]), quantity=format(row["quantity"], "f"))
        return Pending(command, row["instrument_id"], created_at=row["created_at"])
    if row["kind"] == "cancel":
        command = CancelOrder(order_id=oid)
    else:
        command = ModifyOrder(order_id=oid, price=_text(row["price"]), quantity=_text(row["quantity"]))
    return Pending(command, row["instrument_id"], command_id=row["command_id"])


class PostgresInboxLayer(BaseChannelLayer):
    extensions: list[str] = []

    def __init__(self, conninfo: dict[str, Any] | None = None, batch_limit: int = 2000, timeout_s: float = 5.0,
                 reconnect_max_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conninfo = conninfo
        self.batch_limit = batch_limit
        self.timeout_s = timeout_s
        self.reconnect_max_s = reconnect_max_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._started = False
        self._idle: asyncio.Event | None = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            if self.conninfo is None:
                from .postgres import conninfo

                self.conninfo = conninfo("pgbourse-worker-inbox")
            self._conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
            await self._conn.execute(f"LISTEN {INBOX_CHANNEL}")
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                async with asyncio.timeout(1):
                    await conn.close()
            except (psycopg.Error, OSError, TimeoutError):
                pass

    def batch_done(self) -> None:
        """Called by the consumer once a batch is committed: the next receive() may read."""
        assert self._idle is not None
        self._idle.set()

    async def receive(self, channel: str) -> dict[str, Any]:
        if channel.startswith("specific."):
            # The consumer's own reply channel: nothing is ever sent to it.
            await asyncio.Future()
        if self._idle is None:
            self._idle = asyncio.Event()
        if not self._started:
            # First message: the consumer takes the ownership lock and rebuilds its books
            # before any pending row is read.
            self._started = True
            return {"type": "worker.start"}
        attempt = 0
        while True:
            await self._idle.wait()
            try:
                async with asyncio.timeout(self.timeout_s):
                    conn = await self._connect()
                    cur = await conn.execute(PENDING_SQL, {"limit": self.batch_limit})
                    rows = [dict(zip(COLUMNS, r)) for r in await cur.fetchall()]
            except (psycopg.Error, OSError, TimeoutError) as exc:
                # The database is away: the consumer is recovering too. Read again once it
                # answers (a NOTIFY sent meanwhile is lost, but the rows are still there).
                await self._drop()
                delay = backoff_s(attempt, self.reconnect_max_s)
                attempt += 1
                log.warning("inbox: database unreachable (%s); reading again in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if rows:
                self._idle.clear()
                return {"type": "inbox.batch", "items": [pending(r) for r in rows]}
            # Sleep until an insert NOTIFYs (psycopg keeps notifications that arrived while we
            # were querying, so none is missed), or the safety-net poll interval passes.
            try:
                async for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                    break
            except (psycopg.Error, OSError):
                await self._drop()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise NotImplementedError("commands reach the worker as committed rows (orders.services), not messages")

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}matching-worker"

    async def flush(self) -> None:
        if self._conn is not None:
            await self._conn.close()
