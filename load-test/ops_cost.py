#!/usr/bin/env python3
"""What the operations layer costs per order, in CPU, measured in-process (one core, no I/O
but the metrics' memory-mapped files and a log stream to /dev/null):

- the worker's metrics of a committed batch (matching.worker.metrics.batch_committed), in
  prometheus_client's multiprocess mode as `make run` uses it;
- the worker's per-order log lines of a batch (order_lines and the JSON / text formatter);
- the web side's per-order work: the "order received" lines (orders.logs) and the latency /
  request metrics of an HTTP request and of a WebSocket `orders` message.

    python load-test/ops_cost.py --orders 600 --repeat 200

A batch is made by the worker's own functions (matching.worker.batch) from the same order mix as
ws_bench.py's entry mode (limit orders around 30,000, some crossing). The end-to-end cost is
what the benchmarks with PGBOURSE_METRICS=on|off and LOG_ORDER_LEVEL=INFO|WARNING measure
(docs/operations.md); this program says where it goes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# prometheus_client reads these when it is imported.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pgbourse-ops-cost-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")
os.environ.setdefault("PGBOURSE_METRICS", "on")

import django

django.setup()

from exchange_project.logs import JsonFormatter, TextFormatter
from marketdata.feed import FeedBuilder
from matching.contract import PlaceOrder, Transport
from matching.engine.engine import Engine
from matching.engine.types import STP, OrderType, Side, TimeInForce
from matching.records import INSTRUMENT_COLUMNS, spec_of
from matching.worker import batch as batches
from matching.worker import metrics as worker_metrics
from matching.worker.books import NoAggregates, book_of
from orders import logs as web_logs
from orders import metrics as web_metrics

INSTRUMENT = dict(zip(INSTRUMENT_COLUMNS, (1, "BTC-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
                                           Decimal("1000"), Decimal("10000000"), None, True, 0, 0, False, 0)))


def orders(rng: random.Random, n: int) -> list[PlaceOrder]:
    out = []
    for _ in range(n):
        side = rng.choice((Side.BUY, Side.SELL))
        offset = rng.randint(-20, 40)
        ticks = 3_000_000 - offset if side is Side.BUY else 3_000_000 + offset
        oid = str(uuid.uuid4())
        out.append(PlaceOrder(order_id=oid, client_id=f"c{rng.randint(0, 9)}", idempotency_key=oid, request_hash="h",
                              instrument_id=1, side=side, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                              post_only=False, stp=STP.CANCEL_TAKER, price=str(Decimal(ticks) / 100),
                              quantity=str(Decimal(rng.randint(1, 20)) / 1000), transport=Transport.WS))
    return out


def timed(label: str, per: int, repeat: int, fn: object) -> float:
    """Prints and returns the µs of CPU per order of ``fn``."""
    started = time.process_time()
    for _ in range(repeat):
        fn()  # type: ignore[operator]
    spent = (time.process_time() - started) / repeat / per * 1e6
    print(f"{label:<66} {spent:8.2f} µs of CPU per order")
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=600, help="orders per batch (ws_bench entry: ~600)")
    p.add_argument("--repeat", type=int, default=200)
    a = p.parse_args()
    rng = random.Random(1)
    spec = spec_of(INSTRUMENT)
    book = book_of(INSTRUMENT, Engine(spec), FeedBuilder, NoAggregates)
    runs = []
    for _ in range(20):
        run = batches.new_batch(time.time_ns())
        for cmd in orders(rng, a.orders):
            batches.place(run, book, cmd)
        runs.append(run)
    run = runs[-1]
    trades = sum(len(r.trades) for r in runs) / len(runs)
    print(f"batches of {a.orders} orders, {trades:.0f} trades each; metrics dir {os.environ['PROMETHEUS_MULTIPROC_DIR']}")

    timed("worker: metrics of a committed batch", a.orders, a.repeat,
          lambda: worker_metrics.batch_committed(run, "direct", a.orders, 0.01, 0.02))
    timed("worker: the lines of a batch (order_lines), before rendering", a.orders, a.repeat,
          lambda: batches.order_lines(run))
    # Written as ThreadWriter writes them (rendered, joined, one write), to /dev/null.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    spent: dict[str, float] = {}
    for name, formatter in (("JSON", JsonFormatter()), ("text", TextFormatter())):
        def lines(formatter: logging.Formatter = formatter) -> None:
            record = logging.makeLogRecord({"name": "pgbourse.orders", "levelno": logging.INFO, "levelname": "INFO",
                                            "msg": "orders", "lines": partial(batches.order_lines, run)})
            devnull.write("".join([formatter.format(record) + "\n"]))
        spent[f"worker {name}"] = timed(f"worker: per-order log lines of a batch, made and written, {name}", a.orders,
                                        a.repeat, lines)

    placed = [cmd for cmd, _, _ in run.places]
    log = logging.getLogger("pgbourse.orders")
    sink = logging.StreamHandler(devnull)
    log.handlers = [sink]
    log.propagate = False
    log.setLevel(logging.INFO)
    loop = asyncio.new_event_loop()

    async def received(requests: list[list[PlaceOrder]]) -> None:
        for request in requests:
            web_logs.orders_received(request, lambda _: "BTC-USD")
        web_logs.write_received()  # what the timer does within RECEIVED_GATHER_S

    one_message, one_each = [placed], [[o] for o in placed]
    for name, formatter in (("JSON", JsonFormatter()), ("text", TextFormatter())):
        sink.setFormatter(formatter)
        spent[f"web {name}"] = timed(f"web: \"order received\" lines of a message, made and written, {name}", a.orders,
                                     a.repeat, lambda: loop.run_until_complete(received(one_message)))
        timed(f"web: the same, each order in a request of its own (HTTP), {name}", a.orders, a.repeat,
              lambda: loop.run_until_complete(received(one_each)))
    for name in ("JSON", "text"):
        print(f"{'per-order lines at INFO, worker and web, ' + name:<66} "
              f"{spent['worker ' + name] + spent['web ' + name]:8.2f} µs of CPU per order")
    log.setLevel(logging.WARNING)
    timed("web: the same with LOG_ORDER_LEVEL=WARNING", a.orders, a.repeat,
          lambda: loop.run_until_complete(received(one_each)))
    started = time.perf_counter()
    timed("web: metrics of one HTTP order (latency, answer)", 1, a.repeat * 50,
          lambda: web_metrics.http_answered("place", 201, started))
    timed("web: metrics of a WebSocket `orders` message", a.orders, a.repeat,
          lambda: web_metrics.ws_answered(started, a.orders))


if __name__ == "__main__":
    main()
