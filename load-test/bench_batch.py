#!/usr/bin/env python3
"""The matching worker's CPU per order for a batch, without a database: match, rows, answers,
market events (matching.worker.batch), with the trade aggregates (candles, positions:
marketdata.analytics) and with a stand-in that keeps none, alternately, in one process.

    python load-test/bench_batch.py                      # 5 rounds of 200 batches of 500 orders
    python load-test/bench_batch.py --rounds 9 --batches 400

The orders are ws_bench.py's mix (limit orders around 30,000 that keep a two-sided book, some
crossing; 8 clients), so the share of orders that trade is the benchmark's. It prints, per variant,
the median over the rounds of the CPU time per order (process time, so other processes on the
machine count less than in wall time) and the ratio. This is only the worker's pure part of the
order path; PostgreSQL's part (the candle and position upserts) is in the end-to-end benchmarks.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketdata.analytics import InstrumentAnalytics
from marketdata.feed import FeedBuilder
from matching.contract import PlaceOrder
from matching.engine.engine import Engine
from matching.engine.types import STP, InstrumentSpec, OrderType, Side, TimeInForce
from matching.worker import batch as batches
from matching.worker.books import NoAggregates, book_of

SPEC = InstrumentSpec("BTC-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                      Decimal("10000000"))


def orders(count: int, seed: int) -> list[PlaceOrder]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        side = rng.choice((Side.BUY, Side.SELL))
        offset = rng.randint(-20, 40)
        ticks = 3_000_000 - offset if side is Side.BUY else 3_000_000 + offset
        out.append(PlaceOrder(order_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), client_id=f"bench-{n % 8}",
                              idempotency_key=uuid.uuid4().hex, request_hash="0" * 64, instrument_id=1, side=side,
                              type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, post_only=False,
                              stp=STP.CANCEL_TAKER, price=str(Decimal(ticks) / 100),
                              quantity=str(Decimal(rng.randint(1, 20)) / 1000)))
    return out


def run(factory: Any, stream: list[PlaceOrder], batch_size: int) -> tuple[float, int]:
    instrument = {"id": 1, "symbol": SPEC.symbol, "tick_size": SPEC.tick_size, "lot_size": SPEC.lot_size,
                  "min_qty": SPEC.min_qty, "max_qty": SPEC.max_qty, "max_price": SPEC.max_price,
                  "min_notional": None}
    book = book_of(instrument, Engine(SPEC), FeedBuilder, factory, now_ns=time.time_ns())
    trades = 0
    ts = time.time_ns()
    started = time.process_time()
    for at in range(0, len(stream), batch_size):
        ts += 20_000_000
        b = batches.new_batch(ts)
        for cmd in stream[at:at + batch_size]:
            batches.place(b, book, cmd)
        batches.statement_params(b)
        list(batches.placed_states(b, direct=True))
        trades += len(b.trades)
    return time.process_time() - started, trades


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    stream = orders(a.batches * a.batch, seed=2)
    per_order: dict[str, list[float]] = {"without aggregates": [], "with aggregates": []}
    trades = 0
    for _ in range(a.rounds):
        for label, factory in (("without aggregates", NoAggregates), ("with aggregates", InstrumentAnalytics)):
            cpu, trades = run(factory, stream, a.batch)
            per_order[label].append(cpu / len(stream) * 1e6)
    print(f"{len(stream):,} orders in batches of {a.batch} ({trades:,} trades, {trades / len(stream):.2f} per order), "
          f"{a.rounds} rounds, alternating:")
    for label, values in per_order.items():
        print(f"  {label:20s} median {statistics.median(values):6.2f} us CPU per order "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(per_order["with aggregates"]) / statistics.median(per_order["without aggregates"])
    print(f"  with / without: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
