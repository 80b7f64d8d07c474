"""The single Channels worker consumer that owns the books.

Run by Channels' own worker: `python manage.py runworker --layer matching matching`. Its channel
layer (matching.inbox.PostgresInboxLayer) delivers "worker.start" once, then one "inbox.batch"
message per batch of pending commands read from PostgreSQL. The consumer is a thin shell over
matching.worker.MatchingWorker, which holds the engines and writes to PostgreSQL.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.consumer import AsyncConsumer

from orders.db import conninfo_kwargs

from .direct import DirectServer, bind_address
from .worker import (
    PERSIST_SNAPSHOT_EVERY_S,
    SNAPSHOT_EVERY_S,
    STATISTICS_EVERY_S,
    MatchingWorker,
    exit_on_failure,
)

log = logging.getLogger("matching.consumer")


class MatchingConsumer(AsyncConsumer):
    channel_layer_alias = "matching"

    worker: MatchingWorker | None = None
    direct: DirectServer | None = None
    _ticker: asyncio.Task[None] | None = None

    async def worker_start(self, message: dict[str, Any]) -> None:
        try:
            self.worker = MatchingWorker(conninfo_kwargs("pgbourse-worker"))
            await self.worker.start()
            await self.worker.persist_snapshots(source="startup")
            bind = bind_address()
            if bind is not None:
                # Orders may come straight from the web processes too (matching.direct); its
                # address is advertised only now, with the lock held and the books rebuilt.
                self.direct = DirectServer(self.worker.match_direct, exit_on_failure)
                await self.worker.advertise(await self.direct.start(*bind))
                log.info("direct order entry on %s", self.direct.address)
            self._ticker = asyncio.get_running_loop().create_task(self._periodic())
        except BaseException as exc:  # noqa: BLE001 - anything here leaves no usable worker
            exit_on_failure(exc)
        log.info("matching worker ready")
        self.channel_layer.batch_done()

    async def inbox_batch(self, message: dict[str, Any]) -> None:
        assert self.worker is not None
        try:
            await self.worker.handle_rows(message["rows"])
        except BaseException as exc:  # noqa: BLE001 - memory may now be ahead of PostgreSQL
            exit_on_failure(exc)
        self.channel_layer.batch_done()

    async def _periodic(self) -> None:
        assert self.worker is not None
        loop = asyncio.get_running_loop()
        next_persist = loop.time() + PERSIST_SNAPSHOT_EVERY_S
        next_statistics = loop.time() + STATISTICS_EVERY_S
        try:
            while True:
                await asyncio.sleep(SNAPSHOT_EVERY_S)
                await self.worker.publish_snapshots()
                if loop.time() >= next_persist:
                    next_persist = loop.time() + PERSIST_SNAPSHOT_EVERY_S
                    await self.worker.persist_snapshots()
                if loop.time() >= next_statistics:
                    next_statistics = loop.time() + STATISTICS_EVERY_S
                    await self.worker.refresh_statistics()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            exit_on_failure(exc)
