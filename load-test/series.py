"""What the benchmarks keep beside their summary, for load-test/report.py to plot: per-second
samples (how many completed in each second of the run, and their latency percentiles) and the
latency distribution as a histogram on logarithmic bins. Pure, stdlib only.

Percentiles here are the benchmarks' own rule: the value at index int(p/100 * n) of the sorted
sample, clamped to the last one (what http_load.py and ws_bench.py print).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# Histogram bins per factor of ten in latency: 20 gives steps of ~12%, fine enough to show a
# distribution's shape and its tail without a bin per sample.
BINS_PER_DECADE = 20


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """p-th percentile of an already sorted sample (None if it is empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def per_second(samples: Iterable[tuple[float, float, int]]) -> list[dict[str, Any]]:
    """Samples (seconds since the measured window began, latency in seconds, items completed)
    grouped by whole second: [{"t": second, "completed": items, "p50_ms", "p95_ms", "p99_ms",
    "max_ms"}], one entry for every second from 0 to the last one (a second in which nothing
    completed has completed 0 and no latencies)."""
    buckets: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for t, latency, items in samples:
        if t < 0:
            continue
        second = int(t)
        buckets.setdefault(second, []).append(latency)
        counts[second] = counts.get(second, 0) + items
    out: list[dict[str, Any]] = []
    for second in range(max(buckets) + 1 if buckets else 0):
        lat = sorted(buckets.get(second, ()))

        def ms(p: float, lat: list[float] = lat) -> float | None:
            v = percentile(lat, p)
            return None if v is None else round(v * 1000, 3)

        out.append({"t": second, "completed": counts.get(second, 0), "p50_ms": ms(50), "p95_ms": ms(95),
                    "p99_ms": ms(99), "max_ms": round(lat[-1] * 1000, 3) if lat else None})
    return out


def histogram(latencies_s: Iterable[float]) -> dict[str, Any]:
    """Latencies (seconds) counted on logarithmic bins in milliseconds: {"edges_ms": [e0 .. en],
    "counts": [c0 .. c(n-1)]}, bin i holding e_i <= latency < e_(i+1), from the bin of the
    smallest latency to that of the largest."""
    ms = [v * 1000 for v in latencies_s if v > 0]
    if not ms:
        return {"edges_ms": [], "counts": []}
    first = math.floor(math.log10(min(ms)) * BINS_PER_DECADE)
    last = math.floor(math.log10(max(ms)) * BINS_PER_DECADE)
    counts = [0] * (last - first + 1)
    for v in ms:
        k = min(last, max(first, math.floor(math.log10(v) * BINS_PER_DECADE)))
        counts[k - first] += 1
    edges = [round(10 ** (k / BINS_PER_DECADE), 6) for k in range(first, last + 2)]
    return {"edges_ms": edges, "counts": counts}
