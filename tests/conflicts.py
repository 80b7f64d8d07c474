"""A worker that matches what is pending in the inbox while another transaction conflicts with
its first commit: the SERIALIZABLE batch must fail with 40001 once and be retried whole."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from marketdata.analytics import InstrumentAnalytics
from marketdata.feed import FeedBuilder
from matching.worker.inbox import COLUMNS, PENDING_SQL, pending
from matching.worker.service import MatchingWorker
from matching.worker.store import Store


def match_pending_with_one_conflict(exchange: Any, symbol: str, monkeypatch: Any) -> MatchingWorker:
    """Run one worker (in this process) over the pending inbox; on the batch's first attempt,
    another connection changes ``symbol``'s instrument row after the batch's snapshot. Returns
    the closed worker (its ``retries`` counts the 40001s)."""
    begin = Store._begin

    def conflicting_write(store: Store, conn: psycopg.Connection[Any], attempt: int) -> None:
        begin(store, conn, attempt)
        if attempt == 1:
            # the batch is in pipeline mode: fetching forces its snapshot to be taken now
            conn.execute("SELECT 1").fetchone()
            with exchange.connect() as other:
                other.execute("UPDATE orders_instrument SET is_active = is_active WHERE symbol = %s", (symbol,))

    async def scenario() -> MatchingWorker:
        worker = MatchingWorker(exchange.conninfo, FeedBuilder, analytics_factory=InstrumentAnalytics)
        await worker.start(wait_for_lock=False)
        monkeypatch.setattr(Store, "_begin", conflicting_write)
        async with await psycopg.AsyncConnection.connect(**exchange.conninfo, autocommit=True) as conn:
            cur = await conn.execute(PENDING_SQL, {"limit": 100})
            items = [pending(dict(zip(COLUMNS, r))) for r in await cur.fetchall()]
        await worker.handle_inbox(items)
        await worker.close()
        return worker

    return asyncio.run(scenario())
