"""matching/worker/logs.py: the per-order lines of the batches committed within GATHER_S go out
as one record, made when it is written; what is left is written when the process ends."""
from __future__ import annotations

import asyncio
import logging

from matching.engine.types import Side
from matching.worker import batch, logs

from .test_batch import TS, book, order


def test_the_lines_of_the_batches_committed_within_the_gathering_time_are_one_record() -> None:
    b = book()
    first, second, third = batch.new_batch(TS), batch.new_batch(TS), batch.new_batch(TS)
    batch.place(first, b, order("00000000-0000-7000-8000-0000000003a1", Side.SELL, "100.00", "1", client="bob"))
    batch.place(second, b, order("00000000-0000-7000-8000-0000000003a2", Side.BUY, None, "0.5"))
    batch.place(third, b, order("00000000-0000-7000-8000-0000000003a3", Side.BUY, "99.00", "1"))
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append(rec)

    log = logging.getLogger("pgbourse.orders")
    handler, level = Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def two_batches() -> list[int]:
        logs.batch_committed(first, "direct", 1, 0.001, 0.002, False)
        logs.batch_committed(second, "direct", 1, 0.001, 0.002, False)
        counts = [len(seen)]
        await asyncio.sleep(logs.GATHER_S / 2)
        counts.append(len(seen))
        await asyncio.sleep(logs.GATHER_S)
        return [*counts, len(seen)]

    async def one_batch_then_the_loop_ends() -> None:
        logs.batch_committed(third, "inbox", 1, 0.001, 0.002, False)

    try:
        counts = asyncio.run(two_batches())
        asyncio.run(one_batch_then_the_loop_ends())
        left = len(seen)
        logs.write_gathered()  # as the worker does before it ends (and atexit)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    # none while the gathering time runs, then both batches' lines in one record, in order
    assert counts == [0, 0, 1]
    made = seen[0].lines()  # type: ignore[attr-defined]
    assert made == batch.order_lines(first) + batch.order_lines(second)
    assert [(line["event"], line["order_id"][-2:]) for line in made] == [
        ("order accepted", "a1"), ("order accepted", "a2"), ("order matched", "a2")]
    # what a loop that has ended left is written when the process ends
    assert left == 1 and len(seen) == 2
    assert [line["order_id"][-2:] for line in seen[1].lines()] == ["a3"]  # type: ignore[attr-defined]
