"""Raw psycopg access for the web processes (order entry, reads, LISTEN), beside Django's ORM.

Every statement of a request goes through ``connection()``: a pooled connection (autocommit off,
asynchronous commit), within a bound (DB_OPERATION_TIMEOUT_S: a hung database is a timeout,
never a hang), behind a breaker. When the database fails, the breaker opens: requests are
refused at once with 503 (and Retry-After) instead of each waiting out its own timeout, and one
probe per process looks for the database with a jittered backoff capped at
DB_RECONNECT_MAX_S; once it answers, the pool drops the connections the outage broke and the
breaker closes.

The ORM serves the admin only; every API read and write is here, on the event loop, so that
no request holds a thread while PostgreSQL does not answer.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from django.conf import settings
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from matching.worker.postgres import backoff_s, conninfo

log = logging.getLogger(__name__)

# What a database that cannot be reached, or stopped answering, raises here.
FAILURES = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError, OSError)


class DatabaseDown(Exception):
    """The breaker is open: the database failed lately and has not answered since."""


class _Database:
    """One event loop's pool and breaker."""

    def __init__(self) -> None:
        kwargs = conninfo("pgbourse-web")
        # Order entry commits asynchronously: nothing is acknowledged on these commits alone
        # (see orders.services). Set once per connection instead of per transaction.
        kwargs["options"] = (kwargs.get("options", "") + " -c synchronous_commit=off").strip()
        self.conninfo = kwargs
        self.pool = AsyncConnectionPool(kwargs=kwargs, min_size=min(4, settings.DB_POOL_MAX),
                                        max_size=settings.DB_POOL_MAX, timeout=settings.DB_CONNECT_TIMEOUT_S,
                                        open=False, name="orders")
        self.opened = False
        self.down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if not self.opened:
            self.opened = True
            # The first requests wait (within the bound) for the pool's first connections rather
            # than for a PoolTimeout while it is still opening them.
            try:
                await self.pool.open(wait=True, timeout=settings.DB_CONNECT_TIMEOUT_S)
            except PoolTimeout:
                pass  # it keeps trying in the background; connection() bounds each wait

    def failed(self, exc: BaseException) -> None:
        """A statement failed for want of a database: open the breaker and start the probe."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("database unreachable (%s: %s); refusing requests until it answers",
                        type(exc).__name__, exc)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._look_for_it(), name="pgbourse-db-probe")

    async def _look_for_it(self) -> None:
        attempt = 0
        while True:
            delay = backoff_s(attempt, settings.DB_RECONNECT_MAX_S)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                async with asyncio.timeout(settings.DB_OPERATION_TIMEOUT_S + settings.DB_CONNECT_TIMEOUT_S):
                    conn = await psycopg.AsyncConnection.connect(**self.conninfo, autocommit=True)
                    async with conn:
                        await conn.execute("SELECT 1")
                    # Connections the outage broke are dropped before anyone is given one.
                    await self.pool.check()
            except FAILURES as exc:
                log.warning("database still unreachable (attempt %d: %s); next look in at most %.1f s",
                            attempt, exc, settings.DB_RECONNECT_MAX_S)
                continue
            assert self.down_since is not None
            log.warning("database back after %.1f s (%d attempt(s)); accepting requests again",
                        time.monotonic() - self.down_since, attempt)
            self.down_since = None
            return


_databases: dict[int, _Database] = {}


def _database() -> _Database:
    loop_id = id(asyncio.get_running_loop())
    found = _databases.get(loop_id)
    if found is None:
        found = _databases[loop_id] = _Database()
    return found


def is_down() -> bool:
    """Whether this process's breaker is open (the database failed and has not answered since)."""
    return _database().down_since is not None


def report_failure(exc: BaseException) -> None:
    """Tell the breaker that a statement failed for want of a database (a caller that saw a
    failure outside ``connection()``)."""
    _database().failed(exc)


@asynccontextmanager
async def connection(bound: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection for one request's statements, within ``bound`` seconds (default
    DB_OPERATION_TIMEOUT_S). Raises DatabaseDown while the breaker is open, and a FAILURES
    exception (the breaker then opens) when the database fails."""
    database = _database()
    if database.down_since is not None:
        raise DatabaseDown()
    await database.open()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (settings.DB_OPERATION_TIMEOUT_S if bound is None else bound)
    try:
        # At the bound the connection's socket is cut, and the statement in flight fails at once.
        # Cancelling the task instead would have the driver ask the hung server to cancel the
        # statement, then wait for its end: seconds more (psycopg allows 5 s for each).
        async with asyncio.timeout_at(deadline + SEVER_GRACE_S), database.pool.connection() as conn:
            severing = loop.call_at(deadline, sever, conn)
            try:
                yield conn
            finally:
                severing.cancel()
    except FAILURES as exc:
        database.failed(exc)
        raise


# What a severed statement may take to fail before the task is cancelled after all.
SEVER_GRACE_S = 0.25


def sever(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down: a statement waiting on it reads the end at once (the
    driver raises OperationalError, and the pool discards the connection)."""
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed


async def pool() -> AsyncConnectionPool:
    """The process's pool (one per event loop), for callers that manage their own bounds."""
    database = _database()
    await database.open()
    return database.pool
