"""Admission: how many order requests one web process has in flight at most (a place, a cancel,
a modify, or one WebSocket `orders` message of many orders).

Past the bound a request is refused at once (503 overloaded, with Retry-After) instead of
queueing: under an offered load above what the exchange sustains, the queues stay bounded, the
memory flat, and the requests that are admitted keep their latency. One bound for every entry
point (the lean HTTP path, the DRF views, the WebSocket): orders.services applies it.

When the web process's own CPU is what runs out, requests wait before they reach the services
(in the server, and for the event loop): there the sign is the loop's lag, how late a timer it
set fires. While the lag is above settings.SHED_LAG_MS, order requests are refused as soon as
they arrive, before their body is read: refusing costs a fraction of serving, so the process
catches up with those it took.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.conf import settings

from matching.contract import Code

from .errors import ApiError


class _Admission:
    __slots__ = ("in_flight", "refused", "lag_s", "_probe")

    def __init__(self) -> None:
        self.in_flight = 0
        self.refused = 0
        self.lag_s = 0.0
        self._probe: asyncio.Task[None] | None = None

    def watch_lag(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._measure_lag(), name="pgbourse-loop-lag")

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        every_s = LAG_PROBE_EVERY_S
        while True:
            due = loop.time() + every_s
            await asyncio.sleep(every_s)
            self.lag_s = max(0.0, loop.time() - due)


_by_loop: dict[int, _Admission] = {}


def _admission() -> _Admission:
    key = id(asyncio.get_running_loop())
    found = _by_loop.get(key)
    if found is None:
        found = _by_loop[key] = _Admission()
    return found


LAG_PROBE_EVERY_S = 0.05


def shedding() -> bool:
    """Whether this process is too far behind, or too full, to take a new order request (see
    the module): asked as a request arrives, before anything is read or looked up for it."""
    admission = _admission()
    admission.watch_lag()
    if admission.lag_s * 1000 > settings.SHED_LAG_MS or admission.in_flight >= settings.REQUESTS_IN_FLIGHT_MAX:
        admission.refused += 1
        return True
    return False


def overloaded() -> ApiError:
    return ApiError(503, Code.OVERLOADED, "The exchange is at capacity; retry shortly.")


@asynccontextmanager
async def admitted() -> AsyncIterator[None]:
    """Hold a place in flight for the block, or raise 503 overloaded at once."""
    admission = _admission()
    if admission.in_flight >= settings.REQUESTS_IN_FLIGHT_MAX:
        admission.refused += 1
        raise overloaded()
    admission.in_flight += 1
    try:
        yield
    finally:
        admission.in_flight -= 1


def in_flight() -> int:
    """Order requests this process has in flight now."""
    return _admission().in_flight
