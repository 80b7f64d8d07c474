"""The single Channels worker consumer that owns the books.

Run by Channels' own worker: ``python manage.py runworker --layer matching matching``. Its
channel layer (matching.worker.inbox) delivers ``worker.start`` once, then one
``inbox.batch`` message per batch of pending commands read from PostgreSQL. The consumer is a
thin shell over MatchingWorker; the composition root (exchange_project.asgi) gives it the
market-data feed to publish with.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings

from . import metrics, periodic
from .books import FeedFactory
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

    def __init__(self, feed_factory: FeedFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feed_factory = feed_factory
        self.worker: MatchingWorker | None = None
        self.direct: DirectServer | None = None
        self._timer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    async def worker_start(self, message: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            self.worker = MatchingWorker(conninfo("pgbourse-worker"), self.feed_factory,
                                         slow_batch_ms=settings.MATCHING_SLOW_BATCH_MS)
            await self.worker.start()
            rebuilt = time.monotonic()
            if settings.MATCHING_DIRECT:
                # Orders may come straight from the web processes too; the address is
                # advertised only now, with the lock held and the books rebuilt.
                self.direct = DirectServer(self.worker.match_direct, exit_on_failure)
                host, port = settings.MATCHING_DIRECT_BIND
                await self.worker.advertise(await self.direct.start(host, port, settings.MATCHING_DIRECT_ADVERTISE))
                self.worker.direct_address = self.direct.address
                log.info("direct order entry on %s", self.direct.address)
            loop = asyncio.get_running_loop()
            await periodic.heartbeat(self.worker)
            self._heartbeat = loop.create_task(self._guard(
                periodic.heartbeat_forever(self.worker, settings.HEARTBEAT_EVERY_S)))
            # The start's snapshot is stored after the worker is ready: a large book's takes
            # seconds to write, and nothing needs it before orders flow.
            self._timer = loop.create_task(self._guard(self._periodic()))
            loop.add_signal_handler(signal.SIGTERM, self._stop)
            metrics.started()
        except BaseException as exc:
            exit_on_failure(exc)
        log.info("matching worker ready", extra={"rebuild_s": round(rebuilt - started, 3),
                                                 "ready_s": round(time.monotonic() - started, 3),
                                                 "cpu_s": round(time.process_time(), 3),
                                                 "books": len(self.worker.books),
                                                 "open_orders": sum(b.engine.open_order_count
                                                                    for b in self.worker.books.values())})
        self.channel_layer.batch_done()

    def _stop(self) -> None:
        log.warning("matching worker stopping (SIGTERM)")
        logging.shutdown()
        os._exit(0)

    async def inbox_batch(self, message: dict[str, Any]) -> None:
        assert self.worker is not None
        try:
            await self.worker.handle_inbox(message["items"])
        except BaseException as exc:
            exit_on_failure(exc)
        self.channel_layer.batch_done()

    async def _periodic(self) -> None:
        assert self.worker is not None
        await periodic.persist_snapshots(self.worker, source="startup")
        await periodic.run(self.worker, snapshot_every_s=settings.SNAPSHOT_FEED_EVERY_S,
                           persist_every_s=settings.SNAPSHOT_PERSIST_EVERY_S,
                           statistics_every_s=settings.STATISTICS_EVERY_S)

    @staticmethod
    async def _guard(job: Any) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            exit_on_failure(exc)
