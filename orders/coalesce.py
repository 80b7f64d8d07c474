"""Group commit for the order path: concurrent requests of one process share one statement.

A request that needs PostgreSQL (insert its order, queue its cancel, read the order back) hands
its part to a Coalescer and awaits the answer. While one statement is in flight the next
requests queue up, so a batch grows with the load and the per-request cost of a round trip,
a statement and a commit shrinks with it; at low load a batch is one request and nothing waits.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Coalescer(Generic[Item, Answer]):
    """``run`` takes the items of every queued caller at once and answers a dict that each
    caller reads its own items' answers from (so one caller's items may arrive in another's
    batch). A failure of ``run`` is every waiter's failure."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[dict[int, Answer]]], *,
                 max_batch: int = 1000, max_in_flight: int = 2) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[list[Item], asyncio.Future[dict[int, Answer]]]] = []
        self._flushing = 0

    async def submit(self, items: list[Item]) -> dict[int, Answer]:
        """The answers to this caller's items, keyed by their index in ``items`` (an item the
        statement had nothing to say about is absent)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[int, Answer]] = loop.create_future()
        self._queue.append((items, fut))
        if self._flushing < self._max_in_flight:
            self._flushing += 1
            loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._queue:
                taken: list[tuple[list[Item], asyncio.Future[dict[int, Answer]]]] = []
                size = 0
                while self._queue and size < self._max_batch:
                    entry = self._queue.pop(0)
                    taken.append(entry)
                    size += len(entry[0])
                try:
                    answers = await self._run([item for items, _ in taken for item in items])
                except BaseException as exc:
                    for _, fut in taken:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for items, fut in taken:
                    if not fut.done():
                        fut.set_result({n - start: answers[n] for n in range(start, start + len(items))
                                        if n in answers})
                    start += len(items)
        finally:
            self._flushing -= 1


_by_loop: dict[tuple[int, object], Coalescer] = {}  # type: ignore[type-arg]


def coalescer(run: Callable[[list[Item]], Awaitable[dict[int, Answer]]], **options: int) -> Coalescer[Item, Answer]:
    """The running event loop's Coalescer for ``run`` (futures belong to one loop)."""
    key = (id(asyncio.get_running_loop()), run)
    found = _by_loop.get(key)
    if found is None:
        found = _by_loop[key] = Coalescer(run, **options)
    return found
