"""Replaying a file of orders through a transport at a given rate, and what came back.

Orders go out in the file's order: one per request over HTTP (as many at once as there are
connections), in `orders` messages over the WebSocket and in orders_place batches in-process
(a few in flight). With a rate, the n-th order is due at start + n / rate and waits for it; a
server that cannot keep up shows as a throughput below the rate, never as lost orders.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .transport import Answer, Transport

# With a rate, a message carries at most this many seconds' worth of orders, so the pacing stays
# smooth (at 1,000/s: 50 orders every 50 ms rather than 500 every half second).
PACING_S = 0.05


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class Tally:
    """What the exchange answered: statuses, rejections by code, trades, latencies."""

    statuses: Counter[int] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    trades: int = 0
    latencies_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, answers: Sequence[Answer], latency_s: float) -> None:
        self.latencies_s.append(latency_s)
        for status, body in answers:
            self.statuses[status] += 1
            if status >= 400:
                self.rejected[str(body.get("code", "unknown"))] += 1
            elif status == 201:
                # A trade has one taker, and a new order's answer lists the trades it took.
                self.trades += sum(1 for fill in body.get("fills", ()) if fill.get("role") == "taker")

    def summary(self, unit: str) -> dict[str, Any]:
        elapsed = (self.finished or time.monotonic()) - self.started
        answered = sum(self.statuses.values())
        lat = sorted(self.latencies_s)
        ms = {name: None if (v := percentile(lat, p)) is None else round(v * 1000, 2)
              for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
        return {"orders": answered, "accepted": self.statuses[201], "duplicates": self.statuses[200],
                "pending": self.statuses[202], "rejected": sum(self.rejected.values()),
                "rejected_by_code": dict(sorted(self.rejected.items())),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "trades": self.trades, "elapsed_s": round(elapsed, 3),
                "orders_per_s": round(answered / elapsed, 1) if elapsed > 0 else None,
                "latency_ms": ms, "latency_of": unit}


def format_summary(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    lines = [
        f"orders answered  {s['orders']:,} in {s['elapsed_s']:.2f} s = {s['orders_per_s'] or 0:,.0f} orders/s",
        f"accepted (201)   {s['accepted']:,}   duplicates (200) {s['duplicates']:,}   pending (202) {s['pending']:,}",
        f"rejected         {s['rejected']:,}" + "".join(f"\n  {code:<28} {n:,}" for code, n in
                                                   s["rejected_by_code"].items()),
        f"trades           {s['trades']:,} (taken by the orders placed)",
        f"latency per {s['latency_of']}: p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, "
        f"max {lat['max']} ms",
    ]
    return "\n".join(lines)


async def replay(transport: Transport, bodies: Sequence[dict[str, Any]], *, rate: float, batch: int,
                 inflight: int, on_answers: Callable[[int], None] | None = None) -> Tally:
    """Send every body once; returns the tally when every answer is in."""
    per_request = 1 if transport.name == "http" else batch
    if rate > 0:
        per_request = max(1, min(per_request, int(rate * PACING_S)))
    slots = asyncio.Semaphore(inflight)
    tally = Tally()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def send(part: Sequence[dict[str, Any]]) -> None:
        try:
            sent = time.monotonic()
            answers = await transport.place(part)
            tally.record(answers, time.monotonic() - sent)
            if on_answers is not None:
                on_answers(len(part))
        finally:
            slots.release()

    tasks: set[asyncio.Task[None]] = set()
    for n in range(0, len(bodies), per_request):
        if rate > 0 and (delay := start + n / rate - loop.time()) > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = loop.create_task(send(bodies[n:n + per_request]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    tally.finished = time.monotonic()
    return tally
