"""orders/coalesce.py: concurrent callers share one statement, each reads its own answers."""
from __future__ import annotations

import asyncio

from orders.coalesce import Coalescer


def test_callers_queued_behind_a_statement_share_the_next_one() -> None:
    runs: list[list[str]] = []

    async def run(items: list[str]) -> dict[int, str]:
        runs.append(list(items))
        await asyncio.sleep(0.01)
        return {n: item.upper() for n, item in enumerate(items) if item != "skip"}

    async def scenario() -> list[dict[int, str]]:
        c = Coalescer(run, max_in_flight=1)
        first = asyncio.ensure_future(c.submit(["a"]))
        await asyncio.sleep(0.001)  # its statement is in flight
        return [await first, *await asyncio.gather(c.submit(["b", "skip"]), c.submit(["c"]))]

    answers = asyncio.run(scenario())
    # the first went alone; the two that queued behind it went together
    assert runs == [["a"], ["b", "skip", "c"]]
    # each caller's answers are keyed by its own indices; an item without an answer is absent
    assert answers == [{0: "A"}, {0: "B"}, {0: "C"}]


def test_a_batch_never_exceeds_its_size_and_a_failure_is_every_waiters() -> None:
    sizes: list[int] = []

    async def run(items: list[int]) -> dict[int, int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        if 13 in items:
            raise RuntimeError("statement failed")
        return dict(enumerate(items))

    async def scenario() -> list[object]:
        c = Coalescer(run, max_batch=4, max_in_flight=1)
        return await asyncio.gather(*(c.submit([n, n + 100]) for n in range(10, 20)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert max(sizes) <= 4 and sum(sizes) == 20
    failed = [n for n, r in zip(range(10, 20), results) if isinstance(r, RuntimeError)]
    assert 13 in failed and len(failed) == 2  # the caller with 13 and the one sharing its statement
    assert results[0] == {0: 10, 1: 110}


def test_nothing_waits_at_low_load() -> None:
    async def run(items: list[int]) -> dict[int, int]:
        return {0: items[0] * 2}

    async def scenario() -> dict[int, int]:
        return await Coalescer(run).submit([21])

    assert asyncio.run(scenario()) == {0: 42}
