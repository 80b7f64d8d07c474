"""The matching worker's log lines about a committed batch: one "batch committed" line (size,
durations), and, when ``pgbourse.orders`` logs at INFO, one line per event worth knowing
about an order (matching.worker.batch.order_lines, made when the record is written), all in
one record."""

from __future__ import annotations

import logging
from functools import partial

from .batch import Batch, order_lines

batches_log = logging.getLogger("matching.worker.batches")
orders_log = logging.getLogger("pgbourse.orders")


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
        # Made where the record is written (exchange_project.logs.ThreadWriter's thread): a
        # committed batch is not changed any more.
        orders_log.info("orders", extra={"lines": partial(order_lines, batch)})
