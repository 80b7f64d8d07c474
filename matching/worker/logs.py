"""The matching worker's log lines about a committed batch: one "batch committed" line (size,
durations), and, when ``pgbourse.orders`` logs at INFO, one line per event worth knowing
about an order (matching.worker.batch.order_lines).

Per-order lines are many, and a log record costs more than the lines of a small batch or of an
HTTP request's one order: ``Gathered`` logs what is added to it within GATHER_S as one record,
whose lines are made where the record is written (exchange_project.logs.ThreadWriter's thread).
The worker gathers committed batches that way, the web processes (orders.logs) the orders they
receive."""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Callable
from contextvars import Context
from functools import partial
from typing import Any, Generic, TypeVar

from .batch import Batch, order_lines

batches_log = logging.getLogger("matching.worker.batches")
orders_log = logging.getLogger("pgbourse.orders")

GATHER_S = 0.05
GATHER_MAX = 1000  # things added, at most, before the record is logged at the next turn of the loop

T = TypeVar("T")
# A record of what many requests or batches added belongs to none of them: each line says its own.
_NOBODYS = Context()


class Gathered(Generic[T]):
    """What is added within GATHER_S, in one event loop, logged at INFO as one record of lines
    (``lines`` makes them from what was added, when the record is written). Added under another
    event loop (the first having ended, perhaps), what was gathered is logged first; at exit,
    and when ``write_gathered`` is called, what is left."""

    def __init__(self, logger: logging.Logger, message: str, lines: Callable[[list[T]], list[dict[str, Any]]]) -> None:
        self.logger, self.message, self.lines = logger, message, lines
        self.items: list[T] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        _every.append(self)

    def add(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        if self.items and self.loop is not loop:
            self.write()
        if not self.items:
            self.loop = loop
            loop.call_later(GATHER_S, self.write, context=_NOBODYS)
        self.items.append(item)
        if len(self.items) == GATHER_MAX:
            loop.call_soon(self.write, context=_NOBODYS)

    def write(self) -> None:
        if self.items:
            items, self.items, self.loop = self.items, [], None
            self.logger.info(self.message, extra={"lines": partial(self.lines, items)})


_every: list[Gathered[Any]] = []


def write_gathered() -> None:
    """Logs what every ``Gathered`` holds (before logging.shutdown, when a process ends)."""
    for gathered in _every:
        gathered.write()


atexit.register(write_gathered)  # runs before logging's own (registered earlier, run later)


def batches_lines(batches: list[Batch]) -> list[dict[str, Any]]:
    return [line for batch in batches for line in order_lines(batch)]


# A committed batch is not changed any more: its lines can be made when they are written.
committed = Gathered(orders_log, "orders", batches_lines)


def batch_committed(batch: Batch, source: str, size: int, match_s: float, commit_s: float, slow: bool) -> None:
    if batches_log.isEnabledFor(logging.INFO):
        batches_log.log(logging.WARNING if slow else logging.INFO,
                        "slow batch committed" if slow else "batch committed",
                        extra={"source": source, "commands": size, "trades": len(batch.trades),
                               "match_ms": round(match_s * 1e3, 2), "commit_ms": round(commit_s * 1e3, 2)})
    elif slow:
        batches_log.warning("slow batch committed", extra={"source": source, "commands": size,
                                                             "match_ms": round(match_s * 1e3, 2),
                                                             "commit_ms": round(commit_s * 1e3, 2)})
    if orders_log.isEnabledFor(logging.INFO) and (batch.places or batch.refused or batch.trades or batch.changes):
        committed.add(batch)
