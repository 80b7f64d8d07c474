"""orders.db against a PostgreSQL that stops answering: a statement fails within its bound."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from django.conf import settings

from orders import db

from .helpers import postgres_pids


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="needs the embedded PostgreSQL's processes")
def test_a_statement_on_a_hung_database_fails_within_its_bound(exchange: Any) -> None:
    # (exchange: the suite's database, migrated; this test's own pool in its own event loop)
    async def statement() -> float:
        started = time.monotonic()
        with pytest.raises(db.FAILURES):
            async with db.connection() as conn:
                await conn.execute("SELECT 1")
        return time.monotonic() - started

    async def scenario() -> float:
        async with db.connection() as conn:  # the pool's connections made while it answers
            await conn.execute("SELECT 1")
        pids = postgres_pids()
        try:
            # when every PostgreSQL process stops (SIGSTOP: connections stay open, nothing answers)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            return await statement()
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            await (await db.pool()).close()

    # then the statement fails at its bound, not after the driver's own attempt to cancel it on
    # the server that does not answer (5 s) and its wait for the end (5 s more)
    elapsed = asyncio.run(scenario())
    assert elapsed < settings.DB_OPERATION_TIMEOUT_S + 1.0, elapsed
