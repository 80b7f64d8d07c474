"""The web process's one LISTEN connection.

The matching worker NOTIFYs inside its batch transaction, so a notification is delivered only
after the batch has committed. This hub receives:
  - the outcome channel: the result of each inbox command (matching.contract.PlaceOutcome,
    CommandOutcome), resolving the request waiting for it (keyed by order id, or "cmd:<id>"
    for a cancel/modify);
  - the market channel: each committed batch's market events (MarketPayload), handed to the
    subscribers registered by the feeds (marketdata.fanout, which fills the sockets' outboxes).
If the connection drops, it reconnects with backoff, wakes every waiting request (they then read
PostgreSQL, the record of truth) and tells the feed subscribers to make their clients resync.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from django.conf import settings

from matching.contract import (
    CONTROL_CHANNEL,
    MARKET_CHANNEL,
    OUTCOME_CHANNEL,
    MarketPayload,
    PlaceOutcome,
    decode_market,
    decode_outcomes,
)
from matching.worker.postgres import backoff_s, conninfo

log = logging.getLogger(__name__)

MarketCallback = Callable[[MarketPayload], None]
ResyncCallback = Callable[[], Awaitable[None] | None]


class Hub:
    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._market: list[MarketCallback] = []
        self._resync: list[ResyncCallback] = []
        self._control: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.connected_once = False
        self.reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------
    async def ensure_started(self, timeout: float = 2.0) -> None:
        """Start the LISTEN task on this loop and wait until LISTEN is active."""
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pgbourse-listener")
        assert self._ready is not None
        if not self._ready.is_set():
            await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def is_listening(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(settings.DB_OPERATION_TIMEOUT_S + settings.DB_CONNECT_TIMEOUT_S):
                    conn = await psycopg.AsyncConnection.connect(**conninfo("pgbourse-web-listen"), autocommit=True)
                    await conn.execute(f"LISTEN {OUTCOME_CHANNEL}")
                    await conn.execute(f"LISTEN {MARKET_CHANNEL}")
                    await conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                self._conn = conn
                async with conn:
                    assert self._ready is not None
                    if self.connected_once:
                        # Whatever was notified while we were away is lost to us: resync.
                        self.reconnects += 1
                        self._wake_all_waiters()
                        await self._notify_resync()
                        log.warning("LISTEN connection back after %d attempt(s); feed subscribers resync", attempt)
                    self.connected_once = True
                    self._ready.set()
                    attempt = 0
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, TimeoutError) as exc:
                delay = backoff_s(attempt, settings.DB_RECONNECT_MAX_S)
                attempt += 1
                log.warning("LISTEN connection lost or refused (attempt %d: %s); reconnecting in %.2f s",
                            attempt, exc, delay)
            else:
                delay = backoff_s(attempt, settings.DB_RECONNECT_MAX_S)
            if self._ready is not None:
                self._ready.clear()
            self._conn = None
            self._wake_all_waiters()
            await asyncio.sleep(delay)

    # -- outcomes -------------------------------------------------------------------------
    def expect(self, key: str) -> asyncio.Future[Any]:
        """Register interest in a command's outcome; call BEFORE the command can commit."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        return fut

    def forget(self, key: str, fut: asyncio.Future[Any]) -> None:
        waiting = self._waiters.get(key)
        if waiting is not None:
            try:
                waiting.remove(fut)
            except ValueError:
                pass
            if not waiting:
                del self._waiters[key]

    def _wake_all_waiters(self) -> None:
        # None means "no outcome seen; read PostgreSQL".
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
        self._waiters.clear()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == OUTCOME_CHANNEL:
            for outcome in decode_outcomes(payload):
                key = outcome.order_id if isinstance(outcome, PlaceOutcome) else f"cmd:{outcome.command_id}"
                futs = self._waiters.pop(key, None)
                if futs:
                    for fut in futs:
                        if not fut.done():
                            fut.set_result(outcome)
        elif channel == MARKET_CHANNEL:
            if not self._market:
                return  # no feed in this process yet: don't pay for parsing
            message = decode_market(payload)
            for callback in list(self._market):
                try:
                    callback(message)
                except Exception:  # one broken subscriber must not stop the others or the hub
                    log.exception("market subscriber failed")
        elif channel == CONTROL_CHANNEL:
            for control in list(self._control):
                control(payload)

    # -- market data ----------------------------------------------------------------------
    def add_market_subscriber(self, callback: MarketCallback) -> None:
        if callback not in self._market:
            self._market.append(callback)

    def add_control_subscriber(self, callback: Callable[[str], None]) -> None:
        if callback not in self._control:
            self._control.append(callback)

    def add_resync_subscriber(self, callback: ResyncCallback) -> None:
        if callback not in self._resync:
            self._resync.append(callback)

    async def _notify_resync(self) -> None:
        for callback in list(self._resync):
            result = callback()
            if asyncio.iscoroutine(result):
                await result


hub = Hub()
