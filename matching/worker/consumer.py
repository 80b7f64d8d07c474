"""The single Channels worker consumer that owns the books.

Run by Channels' own worker: ``python manage.py runworker --layer matching matching``. Its
channel layer (matching.worker.inbox) delivers ``worker.start`` once, then one
``inbox.batch`` message per batch of pending commands read from PostgreSQL. The consumer is a
thin shell over MatchingWorker; the composition root (exchange_project.asgi) gives it the
market-data feed to publish with and the trade aggregates to keep.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings

from . import periodic
from .books import AnalyticsFactory, FeedFactory
from .direct import DirectServer
from .postgres import conninfo
from .service import MatchingWorker

log = logging.getLogger("matching.worker.consumer")


def exit_on_failure(exc: BaseException) -> None:
    """A failure the worker cannot reason about: log it and end the process so that the
    supervisor restarts it and the books are rebuilt from PostgreSQL."""
    log.critical("matching worker failed; exiting so it restarts from PostgreSQL", exc_info=exc)
    logging.shutdown()
    os._exit(70)


class MatchingConsumer(AsyncConsumer):  # type: ignore[misc]
    channel_layer_alias = "matching"

    def __init__(self, feed_factory: FeedFactory, analytics_factory: AnalyticsFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feed_factory = feed_factory
        self.analytics_factory = analytics_factory
        self.worker: MatchingWorker | None = None
        self.direct: DirectServer | None = None
        self._timer: asyncio.Task[None] | None = None

    async def worker_start(self, message: dict[str, Any]) -> None:
        try:
            self.worker = MatchingWorker(conninfo("pgbourse-worker"), self.feed_factory,
                                         analytics_factory=self.analytics_factory,
                                         slow_batch_ms=settings.MATCHING_SLOW_BATCH_MS)
            await self.worker.start()
            await periodic.persist_snapshots(self.worker, source="startup")
            if settings.MATCHING_DIRECT:
                # Orders may come straight from the web processes too; the address is
                # advertised only now, with the lock held and the books rebuilt.
                self.direct = DirectServer(self.worker.match_direct, exit_on_failure)
                host, port = settings.MATCHING_DIRECT_BIND
                await self.worker.advertise(await self.direct.start(host, port, settings.MATCHING_DIRECT_ADVERTISE))
                log.info("direct order entry on %s", self.direct.address)
            self._timer = asyncio.get_running_loop().create_task(self._periodic())
        except BaseException as exc:
            exit_on_failure(exc)
        log.info("matching worker ready")
        self.channel_layer.batch_done()

    async def inbox_batch(self, message: dict[str, Any]) -> None:
        assert self.worker is not None
        try:
            await self.worker.handle_inbox(message["items"])
        except BaseException as exc:
            exit_on_failure(exc)
        self.channel_layer.batch_done()

    async def _periodic(self) -> None:
        assert self.worker is not None
        try:
            await periodic.run(self.worker, snapshot_every_s=settings.SNAPSHOT_FEED_EVERY_S,
                               persist_every_s=settings.SNAPSHOT_PERSIST_EVERY_S,
                               statistics_every_s=settings.STATISTICS_EVERY_S)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            exit_on_failure(exc)
