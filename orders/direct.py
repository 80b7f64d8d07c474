"""The web process's side of the direct order path (matching.worker.direct): one connection to
the matching worker per event loop, found through PostgreSQL, shared by every request.

`send(commands)` answers each command with the worker's answer (matching.contract), or raises
  - WorkerUnavailable: nothing was sent (no worker advertised, or it refused the connection);
    the caller can use the inbox path as if this one did not exist;
  - WorkerLost: the orders were sent but no answer came (connection dropped, or none within
    ORDER_ACK_TIMEOUT_S less ORDER_SETTLE_S); each may or may not have been committed, and the
    caller settles that in PostgreSQL (orders.services) in the rest of the ack bound.
"""
from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from django.conf import settings

from matching.contract import (
    APPLICATION_PREFIX,
    Answer,
    Command,
    DecodeError,
    Hello,
    Request,
    decode_response,
    frame,
    parse_advertisement,
    read_frame,
)

from .db import FAILURES, DatabaseDown, connection

log = logging.getLogger(__name__)

LOOKUP_EVERY_S = 0.5  # while no worker is reachable, look for one at most this often
FIND_WORKER_SQL = ("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                   "AND application_name LIKE %s ORDER BY backend_start DESC LIMIT 1")


class WorkerUnavailable(Exception):
    pass


class WorkerLost(Exception):
    pass


class DirectClient:
    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Future[bool] | None = None
        self._waiters: dict[int, asyncio.Future[list[Answer]]] = {}
        self._next_id = 0
        self._next_lookup = 0.0

    async def send(self, commands: list[Command], timeout: float | None = None) -> list[Answer]:
        """``timeout``: how long to wait for the answers (default: the ack bound less the time
        kept for settling a lost answer)."""
        if self._writer is None or self._writer.is_closing():
            if not await self._connect():
                raise WorkerUnavailable()
        assert self._writer is not None
        self._next_id += 1
        request_id = self._next_id
        fut: asyncio.Future[list[Answer]] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        waiters[request_id] = fut
        self._writer.write(frame(Request(request_id=request_id, commands=commands)))
        wait = timeout or settings.ORDER_ACK_TIMEOUT_S - settings.ORDER_SETTLE_S
        try:
            return await asyncio.wait_for(asyncio.shield(fut), wait)
        except TimeoutError:
            raise WorkerLost("no answer in time") from None
        finally:
            waiters.pop(request_id, None)

    async def _connect(self) -> bool:
        """Find the worker and connect; concurrent callers share one attempt."""
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        if time.monotonic() < self._next_lookup:
            return False
        self._connecting = asyncio.get_running_loop().create_future()
        ok = False
        try:
            ok = await self._open()
        finally:
            if not ok:
                self._next_lookup = time.monotonic() + LOOKUP_EVERY_S
            self._connecting.set_result(ok)
            self._connecting = None
        return ok

    async def _open(self) -> bool:
        try:
            async with connection() as conn:
                cur = await conn.execute(FIND_WORKER_SQL, (APPLICATION_PREFIX + "%",))
                row = await cur.fetchone()
        except (psycopg.Error, *FAILURES, DatabaseDown):
            return False
        found = parse_advertisement(row[0]) if row else None
        if found is None:
            return False
        host, port, token = found
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError) as exc:
            log.info("matching worker at %s:%d not reachable (%s); orders go through the inbox", host, port, exc)
            return False
        writer.write(frame(Hello(token=token)))
        self._writer = writer
        # Each connection has its own waiters: the end of an old connection fails only its own.
        self._waiters = {}
        asyncio.get_running_loop().create_task(self._read(reader, writer, self._waiters),
                                               name="pgbourse-direct-client")
        log.info("direct order path to the matching worker at %s:%d", host, port)
        return True

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    waiters: dict[int, asyncio.Future[list[Answer]]]) -> None:
        try:
            while True:
                response = decode_response(await read_frame(reader))
                fut = waiters.get(response.request_id)
                if fut is not None and not fut.done():
                    fut.set_result(response.answers)
        except DecodeError as exc:
            log.error("connection to the matching worker closed: a frame does not match the contract (%s)", exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            lost = [f for f in waiters.values() if not f.done()]
            for f in lost:
                f.set_exception(WorkerLost("connection to the matching worker lost"))
            if lost:
                log.warning("connection to the matching worker lost with %d request(s) in flight", len(lost))


_clients: dict[int, DirectClient] = {}


def client() -> DirectClient:
    """The running event loop's client (a connection belongs to one loop)."""
    key = id(asyncio.get_running_loop())
    found = _clients.get(key)
    if found is None:
        found = _clients[key] = DirectClient()
    return found
