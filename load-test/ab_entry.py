#!/usr/bin/env python3
"""Two settings of the exchange side by side: WebSocket order entry (ws_bench.py entry) under
each, in alternating runs, each on a fresh database, and the ratio of each pair.

    python load-test/ab_entry.py --a LOG_ORDER_LEVEL=WARNING --b LOG_ORDER_LEVEL=INFO --pairs 6
    python load-test/ab_entry.py --a PGBOURSE_METRICS=off --b PGBOURSE_METRICS=on --pairs 6

Each run starts the matching worker and granian (as report.py's ws_entry does) with the
environment plus that side's settings, measures `ws_bench.py entry --batch 500 --window 8` for
--duration seconds, and stops them. The order alternates (a b, b a, a b, ...), so that a drift
of the machine during the session weighs on both sides alike, and two databases are taken in
turn, so that no run starts by dropping the one the run before it has just filled.

Per run it prints the orders/s and the CPU time spent per 1000 acknowledged orders by the
exchange's own processes (the worker and the web server, read from /proc: not the load generator
or PostgreSQL) and by the whole machine (/proc/stat); per pair, b / a of the orders/s and of the
exchange's CPU per order; at the end their medians and ranges, and the same of the pairs taken
two by two (an a-first pair with the b-first one after it, the geometric mean of their ratios:
whatever a run gains or loses by coming second in its pair cancels out), and what coming second
did to a run. On a shared machine one run's orders/s can differ from the next one's by tens of
percent: only pairs made next to each other say what a setting costs, and only many of them.
--json FILE writes the runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOAD_TEST = Path(__file__).resolve().parent
sys.path.insert(0, str(LOAD_TEST))
sys.path.insert(0, str(LOAD_TEST.parent))

import report  # load-test/report.py: its exchange() is the one its ws_entry runs against
from machine import CpuTimes, descendants_cpu_s  # load-test/machine.py


def settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"a setting is NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def one_run(side: str, env: dict[str, str], a: argparse.Namespace, n: int, db: str) -> dict[str, float]:
    """One side's run on database ``db``: its orders/s, and the CPU time the exchange's own
    processes (the worker and the web server, not the load generator or PostgreSQL) and the
    whole machine spent per thousand orders."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with report.exchange(db, a.port) as (run_env, key), \
                tempfile.NamedTemporaryFile(suffix=".json") as out:
            bench = subprocess.Popen([report.PY, str(LOAD_TEST / "ws_bench.py"), "--url",
                                      f"ws://127.0.0.1:{a.port}/stream", "--api-key", key, "entry", "--batch",
                                      str(a.batch), "--window", str(a.window), "--duration", str(a.duration),
                                      "--json", out.name], env=run_env, stdout=subprocess.DEVNULL)
            cpu0 = descendants_cpu_s(os.getpid(), frozenset({bench.pid}))
            machine0 = CpuTimes.now()
            if bench.wait() != 0:
                raise SystemExit(f"ws_bench.py exited with {bench.returncode}")
            cpu_s = descendants_cpu_s(os.getpid(), frozenset({bench.pid})) - cpu0
            machine_s = (CpuTimes.now().busy - machine0.busy) / os.sysconf("SC_CLK_TCK")
            figures = json.loads(Path(out.name).read_text())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    acked = max(1, figures["acked"])
    run = {"orders_per_s": float(figures["orders_per_s"]), "cpu_ms_per_1000": 1e6 * cpu_s / acked,
           "machine_cpu_ms_per_1000": 1e6 * machine_s / acked}
    print(f"  pair {n + 1} {side} ({' '.join(f'{k}={v}' for k, v in env.items())}): {run['orders_per_s']:,.0f} "
          f"orders/s; CPU per 1000 orders: the exchange's {run['cpu_ms_per_1000']:.1f} ms, the machine's "
          f"{run['machine_cpu_ms_per_1000']:.1f} ms", flush=True)
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", nargs="+", required=True, metavar="NAME=VALUE", help="the settings of side a (the base)")
    p.add_argument("--b", nargs="+", required=True, metavar="NAME=VALUE", help="the settings of side b")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--port", type=int, default=8760)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    sides = {"a": settings(a.a), "b": settings(a.b)}
    runs: list[dict[str, Any]] = []
    for n in range(a.pairs):
        order = ("a", "b") if n % 2 == 0 else ("b", "a")
        # Two databases, taken in turn: no run starts by dropping the one the run before it has
        # just filled (the cleanup of its files would weigh on that run alone).
        got = {side: one_run(side, sides[side], a, n, f"pgbourse_bench_ab_{(2 * n + i) % 2}")
               for i, side in enumerate(order)}
        runs.append({"pair": n + 1, "first": order[0],
                     "a_orders_per_s": got["a"]["orders_per_s"], "b_orders_per_s": got["b"]["orders_per_s"],
                     "b_over_a": got["b"]["orders_per_s"] / got["a"]["orders_per_s"],
                     "a_cpu_ms_per_1000": got["a"]["cpu_ms_per_1000"], "b_cpu_ms_per_1000": got["b"]["cpu_ms_per_1000"],
                     "cpu_b_over_a": got["b"]["cpu_ms_per_1000"] / got["a"]["cpu_ms_per_1000"],
                     "a_machine_cpu_ms_per_1000": got["a"]["machine_cpu_ms_per_1000"],
                     "b_machine_cpu_ms_per_1000": got["b"]["machine_cpu_ms_per_1000"],
                     "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        print(f"pair {n + 1}: orders/s b / a = {runs[-1]['b_over_a']:.3f}; "
              f"CPU per order b / a = {runs[-1]['cpu_b_over_a']:.3f}", flush=True)
    summary: dict[str, Any] = {"a": sides["a"], "b": sides["b"], "pairs": a.pairs, "duration_s": a.duration}
    for name in ("a_orders_per_s", "b_orders_per_s", "a_cpu_ms_per_1000", "b_cpu_ms_per_1000",
                 "a_machine_cpu_ms_per_1000", "b_machine_cpu_ms_per_1000"):
        summary[f"{name[:2]}median_{name[2:]}"] = statistics.median(r[name] for r in runs)
    for name in ("b_over_a", "cpu_b_over_a"):
        values = [r[name] for r in runs]
        # A pair run a-first and the next one b-first, together: whatever the second run of a
        # pair gains or loses by coming second cancels out in the geometric mean of their ratios.
        balanced = [math.sqrt(x * y) for x, y in zip(values[0::2], values[1::2])]
        summary |= {f"{name}_median": statistics.median(values), f"{name}_min": min(values),
                    f"{name}_max": max(values), f"{name}_balanced": balanced,
                    f"{name}_balanced_median": statistics.median(balanced) if balanced else None}
    # What coming second in a pair does to a run, whichever side it is (1.0: nothing).
    second = [(r["b_orders_per_s"] / r["a_orders_per_s"]) ** (1 if r["first"] == "a" else -1) for r in runs]
    summary["second_over_first_geomean"] = statistics.geometric_mean(second)
    summary["runs"] = runs
    print(f"{a.pairs} pairs: orders/s a median {summary['a_median_orders_per_s']:,.0f}, b median "
          f"{summary['b_median_orders_per_s']:,.0f}; the exchange's CPU per 1000 orders a median "
          f"{summary['a_median_cpu_ms_per_1000']:.1f} ms, b median {summary['b_median_cpu_ms_per_1000']:.1f} ms; "
          f"the machine's a median {summary['a_median_machine_cpu_ms_per_1000']:.1f} ms, b median "
          f"{summary['b_median_machine_cpu_ms_per_1000']:.1f} ms")
    for name, what in (("b_over_a", "orders/s"), ("cpu_b_over_a", "CPU per order")):
        line = (f"  {what} b / a: median of the pairs {summary[f'{name}_median']:.3f} "
                f"({summary[f'{name}_min']:.3f}-{summary[f'{name}_max']:.3f})")
        if summary[f"{name}_balanced"]:
            line += (f"; of the pairs two by two (a-first with b-first) {summary[f'{name}_balanced_median']:.3f} "
                     f"({', '.join(f'{v:.3f}' for v in summary[f'{name}_balanced'])})")
        print(line)
    print(f"  a run second in its pair against first, whichever side: {summary['second_over_first_geomean']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
