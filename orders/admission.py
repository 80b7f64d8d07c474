"""Admission: how many orders and commands one web process has in flight at most.

Past the bound a request is refused at once (503 overloaded, with Retry-After) instead of
queueing: under an offered load above what the exchange sustains, the queues stay bounded, the
memory flat, and the requests that are admitted keep their latency. One bound for every entry
point (the lean HTTP path, the DRF views, the WebSocket): orders.services applies it.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.conf import settings

from matching.contract import Code

from .errors import ApiError


class _Admission:
    __slots__ = ("in_flight", "refused")

    def __init__(self) -> None:
        self.in_flight = 0
        self.refused = 0


_by_loop: dict[int, _Admission] = {}


def _admission() -> _Admission:
    key = id(asyncio.get_running_loop())
    found = _by_loop.get(key)
    if found is None:
        found = _by_loop[key] = _Admission()
    return found


def overloaded() -> ApiError:
    return ApiError(503, Code.OVERLOADED, "The exchange is at capacity; retry shortly.")


@asynccontextmanager
async def admitted(count: int) -> AsyncIterator[None]:
    """Hold ``count`` places in flight for the block, or raise 503 overloaded at once."""
    admission = _admission()
    if admission.in_flight + count > settings.ORDERS_IN_FLIGHT_MAX:
        admission.refused += count
        raise overloaded()
    admission.in_flight += count
    try:
        yield
    finally:
        admission.in_flight -= count


def in_flight() -> int:
    """Orders and commands this process has in flight now."""
    return _admission().in_flight
