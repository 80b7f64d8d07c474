"""The single Channels worker consumer that owns the books.

Run by Channels' own worker: ``python manage.py runworker --layer matching matching``. Its
channel layer (matching.worker.inbox) delivers ``worker.start`` once, then one
``inbox.batch`` message per batch of pending commands read from PostgreSQL. The consumer is a
thin shell over MatchingWorker; the composition root (exchange_project.asgi) gives it the
market-data feed to publish with and the trade aggregates to keep.

When the database is lost (it stops, crashes, hangs or cannot be reached) the consumer does not
end the process: it drops the worker (whose memory may be ahead of the record), stops taking
direct orders, and builds a new worker from the record as soon as PostgreSQL answers again,
retrying with a jittered backoff capped at MATCHING_RECONNECT_MAX_S and logging every attempt.
Any other failure is a fault of the worker: the process ends (exit code 70) and its
supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

import psycopg
from channels.consumer import AsyncConsumer
from django.conf import settings

from . import metrics, periodic
from .books import AnalyticsFactory, FeedFactory
from .direct import DirectServer
from .postgres import backoff_s, conninfo
from .service import MatchingWorker, WorkerStopped
from .store import is_database_lost

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
        self._recovery: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # -- bringing a worker up, and down ----------------------------------------------------
    async def worker_start(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._stop)
        await self._until_up()
        self.channel_layer.batch_done()

    def _stop(self) -> None:
        log.warning("matching worker stopping (SIGTERM)")
        logging.shutdown()
        os._exit(0)

    async def _up(self) -> None:
        started = time.monotonic()
        worker = self.worker = MatchingWorker(conninfo("pgbourse-worker"), self.feed_factory,
                                              analytics_factory=self.analytics_factory,
                                              slow_batch_ms=settings.MATCHING_SLOW_BATCH_MS,
                                              db_timeout_s=settings.MATCHING_DB_TIMEOUT_S)
        await worker.start()
        rebuilt = time.monotonic()
        if settings.MATCHING_DIRECT:
            # Orders may come straight from the web processes too; the address is advertised
            # only now, with the lock held and the books rebuilt.
            self.direct = DirectServer(worker.match_direct, self._on_failure)
            host, port = settings.MATCHING_DIRECT_BIND
            await worker.advertise(await self.direct.start(host, port, settings.MATCHING_DIRECT_ADVERTISE))
            worker.direct_address = self.direct.address
            log.info("direct order entry on %s", self.direct.address)
        loop = asyncio.get_running_loop()
        await periodic.heartbeat(worker)
        self._heartbeat = loop.create_task(self._guard(
            periodic.heartbeat_forever(worker, settings.HEARTBEAT_EVERY_S)))
        # The start's snapshot is stored after the worker is ready: a large book's takes seconds
        # to write, and nothing needs it before orders flow.
        self._timer = loop.create_task(self._guard(self._periodic()))
        metrics.started()
        log.info("matching worker ready", extra={"rebuild_s": round(rebuilt - started, 3),
                                                 "ready_s": round(time.monotonic() - started, 3),
                                                 "cpu_s": round(time.process_time(), 3),
                                                 "books": len(worker.books),
                                                 "open_orders": sum(b.engine.open_order_count
                                                                    for b in worker.books.values())})

    async def _down(self) -> None:
        """Drop the worker and everything it serves: the direct server and its connections (web
        processes then settle their unanswered orders through PostgreSQL), the timer, and its
        sessions (the lock with them)."""
        worker, direct, timer, heartbeat = self.worker, self.direct, self._timer, self._heartbeat
        self.worker = self.direct = self._timer = self._heartbeat = None
        for task in (timer, heartbeat):
            if task is not None:
                task.cancel()
        if direct is not None:
            await direct.close()
        if worker is not None:
            worker.fail(WorkerStopped("the database was lost"))
            await worker.close()

    async def _until_up(self) -> None:
        attempt = 0
        lost_at = time.monotonic()
        while True:
            try:
                await self._up()
            except BaseException as exc:  # sorted just below
                await self._down()
                if not is_database_lost(exc):
                    exit_on_failure(exc)
                delay = backoff_s(attempt, settings.MATCHING_RECONNECT_MAX_S)
                log.warning("matching worker: database unreachable (%s); attempt %d failed, retrying in %.2f s",
                            exc, attempt + 1, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.warning("matching worker: database back; books rebuilt after %.1f s and %d attempt(s)",
                            time.monotonic() - lost_at, attempt + 1)
            return

    def _on_failure(self, exc: BaseException) -> None:
        """A write or the timer failed. The database lost: recover in process (once, however many
        writes report it); anything else: end the process."""
        if isinstance(exc, WorkerStopped) or is_database_lost(exc):
            if self._recovery is None or self._recovery.done():
                log.warning("matching worker: lost the database (%s); rebuilding from it when it answers", exc)
                self._recovery = asyncio.get_running_loop().create_task(self._recover())
            return
        exit_on_failure(exc)

    async def _recover(self) -> None:
        await self._down()
        await self._until_up()
        # Pending rows read before the loss are still pending: the inbox reads them again.
        self.channel_layer.batch_done()

    # -- the inbox ------------------------------------------------------------------------
    async def inbox_batch(self, message: dict[str, Any]) -> None:
        worker = self.worker
        if worker is None or (self._recovery is not None and not self._recovery.done()):
            return  # recovering: the rows stay pending and are read again once it is done
        try:
            await worker.handle_inbox(message["items"])
        except BaseException as exc:  # memory may now be ahead of PostgreSQL
            self._on_failure(exc)
            return
        self.channel_layer.batch_done()

    async def _periodic(self) -> None:
        worker = self.worker
        assert worker is not None
        try:
            await periodic.persist_snapshots(worker, source="startup")
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning("the start's book snapshot was not stored: %s", exc)
        await periodic.run(worker, snapshot_every_s=settings.SNAPSHOT_FEED_EVERY_S,
                           persist_every_s=settings.SNAPSHOT_PERSIST_EVERY_S,
                           statistics_every_s=settings.STATISTICS_EVERY_S)

    async def _guard(self, job: Any) -> None:
        """A timer job of the worker (snapshots, heartbeat): its failure is the worker's."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._on_failure(exc)
