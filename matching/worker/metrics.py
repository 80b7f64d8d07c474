"""The matching worker's metrics of record (Prometheus), counted where the truth is: after the
batch that makes them true has committed.

Every process of the exchange (this worker and each web process) writes its values to the
directory named by PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode), and a
web process's /metrics merges them into one scrape (orders.health). Without that variable,
each process keeps its own values (a worker run alone has no scrape).

Counted once per batch, not once per order: a batch's orders are tallied by label first, so a
batch of 600 orders costs a handful of increments. The names are the specification's.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

from matching.engine.types import InstrumentSpec, Rejected

from .batch import Batch
from .books import Book

ENABLED: bool = settings.METRICS_ENABLED

ORDERS_RECEIVED = Counter("orders_received", "New orders taken in by the matching worker (duplicates excluded)",
                          ["instrument", "type", "side", "transport"])
ORDERS_MATCHED = Counter("orders_matched", "Orders that traded for the first time", ["instrument"])
TRADES = Counter("trades", "Trades", ["instrument"])
TRADED_QUANTITY = Counter("traded_quantity", "Quantity traded, in the instrument's base unit", ["instrument"])
ORDERS_REJECTED = Counter("orders_rejected", "Orders refused: by validation at the edge, by the worker or the engine",
                          ["instrument", "reason"])
ORDER_COMMANDS = Counter("order_commands", "Cancels and modifies the books carried out or refused",
                         ["instrument", "kind", "result"])
DEPTH = Gauge("current_orderbook_depth", "Resting quantity, in the instrument's base unit", ["instrument", "side"],
              multiprocess_mode="livemostrecent")
LEVELS = Gauge("current_orderbook_levels", "Price levels", ["instrument", "side"], multiprocess_mode="livemostrecent")
RESTING = Gauge("current_orderbook_orders", "Resting orders", ["instrument", "side"],
                multiprocess_mode="livemostrecent")
HALTED = Gauge("instrument_halted", "1 while the instrument is halted", ["instrument"],
               multiprocess_mode="livemostrecent")
BATCH_COMMANDS = Histogram("matching_batch_commands", "Commands per batch", ["source"],
                           buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
MATCH_SECONDS = Histogram("matching_batch_match_seconds", "Matching a batch (in memory, under the lock)", ["source"],
                          buckets=_SECONDS)
COMMIT_SECONDS = Histogram("matching_batch_commit_seconds",
                           "From a batch matched to committed (its turn, then its transaction)", ["source"],
                           buckets=_SECONDS)
RETRIES = Counter("matching_commit_retries", "Batch transactions retried after a serialization failure (40001)")
WORKER_STARTS = Counter("matching_worker_starts", "Matching worker starts (books rebuilt from PostgreSQL)")


def batch_committed(batch: Batch, source: str, commands: int, match_s: float, commit_s: float) -> None:
    """Everything a committed batch did."""
    if not ENABLED:
        return
    BATCH_COMMANDS.labels(source).observe(commands)
    MATCH_SECONDS.labels(source).observe(match_s)
    COMMIT_SECONDS.labels(source).observe(commit_s)
    received: Tally[tuple[str, str, str, str]] = Tally()
    rejected: Tally[tuple[str, str]] = Tally()
    for cmd, book, _ in batch.places:
        received[(book.symbol, cmd.type.value, cmd.side.value, cmd.transport.value)] += 1
        final = batch.final[cmd.order_id][1]
        if type(final) is Rejected:
            rejected[(book.symbol, final.reason.value)] += 1
    for symbol, code, _, _ in batch.refused:
        rejected[(symbol, code.value)] += 1
    for key, n in received.items():
        ORDERS_RECEIVED.labels(*key).inc(n)
    for key, n in rejected.items():
        ORDERS_REJECTED.labels(*key).inc(n)
    changes: Tally[tuple[str, str, str]] = Tally()
    for kind, book, _, _, code in batch.changes:
        changes[(book.symbol, kind, code.value)] += 1
    for key, n in changes.items():
        ORDER_COMMANDS.labels(*key).inc(n)
    for iid, n in batch.first_matches.items():
        ORDERS_MATCHED.labels(batch.books[iid].symbol).inc(n)
    for iid, (count, lots) in batch.traded.items():
        book = batch.books[iid]
        TRADES.labels(book.symbol).inc(count)
        traded(book.symbol, book.spec, lots)


# This process's traded lots per instrument, exact, and what its counter has been given so far. A
# Prometheus value is a float: the counter is brought to the float of the exact total each time,
# instead of adding each batch's float to the last (a sum of floats drifts; 10,000 fills of 0.0001
# would not make 1). The counter's float is kept here, so that nothing reads the counter back.
_traded: dict[str, tuple[int, float]] = {}


def traded(symbol: str, spec: InstrumentSpec, lots: int) -> None:
    total, counted = _traded.get(symbol, (0, 0.0))
    total += lots
    step = max(0.0, float(spec.lots_to_qty(total)) - counted)
    TRADED_QUANTITY.labels(symbol).inc(step)
    _traded[symbol] = (total, counted + step)  # the sum the counter itself makes of its steps


def retried() -> None:
    if ENABLED:
        RETRIES.inc()


def started() -> None:
    if ENABLED:
        WORKER_STARTS.inc()


def books_sampled(books: list[Book]) -> list[dict[str, Any]]:
    """Sample the books (the heartbeat, every second): the depth gauges, and each book's state
    as the heartbeat row stores it. O(levels) per book, once a second, never per batch."""
    states: list[dict[str, Any]] = []
    for book in books:
        depth = book.engine.depth(10**9)
        state: dict[str, Any] = {"instrument": book.symbol, "open_orders": book.engine.open_order_count,
                                 "seq": book.engine.seq, "command_seq": book.command_seq, "halted": book.halted}
        for side, levels in (("buy", depth.bids), ("sell", depth.asks)):
            lots = levels[-1].cum_qty_lots if levels else 0
            orders = sum(level.order_count for level in levels)
            state[f"{side}_levels"] = len(levels)
            state[f"{side}_orders"] = orders
            if ENABLED:
                # A float only as a Prometheus sample: the book and the record stay in lots.
                DEPTH.labels(book.symbol, side).set(float(book.spec.lots_to_qty(lots)))
                LEVELS.labels(book.symbol, side).set(len(levels))
                RESTING.labels(book.symbol, side).set(orders)
        if ENABLED:
            HALTED.labels(book.symbol).set(1 if book.halted else 0)
        states.append(state)
    return states
