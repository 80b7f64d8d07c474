#!/usr/bin/env python3
"""Two settings of the exchange side by side: WebSocket order entry (ws_bench.py entry) under
each, in alternating runs, each on a fresh database, and the ratio of each pair.

    python load-test/ab_entry.py --a LOG_ORDER_LEVEL=WARNING --b LOG_ORDER_LEVEL=INFO --pairs 6
    python load-test/ab_entry.py --a PGBOURSE_METRICS=off --b PGBOURSE_METRICS=on --pairs 6

Each run starts the matching worker and granian (as report.py's ws_entry does) with the
environment plus that side's settings, measures `ws_bench.py entry --batch 500 --window 8` for
--duration seconds, and stops them. The order alternates (a b, b a, a b, ...), so that a drift
of the machine during the session weighs on both sides alike. It prints each run's orders/s,
each pair's b / a, and their median and range: on a shared machine one run can differ from the
next by tens of percent, and only the pairs made next to each other say what the setting costs.
--json FILE writes the runs.
"""
from __future__ import annotations

import argparse
import json
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


def settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"a setting is NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def one_run(side: str, env: dict[str, str], a: argparse.Namespace, n: int) -> float:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with report.exchange(f"pgbourse_bench_ab_{side}", a.port) as (run_env, key), \
                tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([report.PY, str(LOAD_TEST / "ws_bench.py"), "--url", f"ws://127.0.0.1:{a.port}/stream",
                            "--api-key", key, "entry", "--batch", str(a.batch), "--window", str(a.window),
                            "--duration", str(a.duration), "--json", out.name],
                           env=run_env, check=True, stdout=subprocess.DEVNULL)
            rate = float(json.loads(Path(out.name).read_text())["orders_per_s"])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    print(f"  pair {n + 1} {side} ({' '.join(f'{k}={v}' for k, v in env.items())}): {rate:,.0f} orders/s", flush=True)
    return rate


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
    ratios = []
    for n in range(a.pairs):
        order = ("a", "b") if n % 2 == 0 else ("b", "a")
        rate = {side: one_run(side, sides[side], a, n) for side in order}
        ratios.append(rate["b"] / rate["a"])
        runs.append({"pair": n + 1, "first": order[0], "a_orders_per_s": rate["a"], "b_orders_per_s": rate["b"],
                     "b_over_a": ratios[-1], "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        print(f"pair {n + 1}: b / a = {ratios[-1]:.3f}", flush=True)
    a_rates = [r["a_orders_per_s"] for r in runs]
    b_rates = [r["b_orders_per_s"] for r in runs]
    summary = {"a": sides["a"], "b": sides["b"], "pairs": a.pairs, "duration_s": a.duration,
               "a_median_orders_per_s": statistics.median(a_rates), "b_median_orders_per_s": statistics.median(b_rates),
               "b_over_a_median": statistics.median(ratios), "b_over_a_min": min(ratios), "b_over_a_max": max(ratios),
               "runs": runs}
    print(f"{a.pairs} pairs: a median {summary['a_median_orders_per_s']:,.0f} orders/s, b median "
          f"{summary['b_median_orders_per_s']:,.0f}; b / a median {summary['b_over_a_median']:.3f} "
          f"({summary['b_over_a_min']:.3f}-{summary['b_over_a_max']:.3f})")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
