#!/usr/bin/env python3
"""Restart to ready with a large book: how long the matching worker takes from its start to
"ready" (lock taken, every book rebuilt from the open orders and checked, direct path
advertised) with N open orders on record.

    python load-test/restart_bench.py --orders 1000000 --runs 3

It builds its own database (``--db``, default pgbourse_bench_restart, dropped and recreated;
``--keep-db`` reuses it) with one instrument and N open orders written straight into
PostgreSQL by generate_series, consistent with the engine's rules: bids below 30,000.00 and
asks above it (an uncrossed book) on ``--levels`` price levels per side, FIFO priorities
1..N, one in ten partially filled, the instrument's sequence counters past them. Then, ``--runs``
times: start the worker (exchange_project.processes.worker_command) against it, wait for its
"matching worker ready" line, and print what it took: the wall time from the process start,
and the worker's own account (rebuild: lock and books; ready: up to the advertisement), with
its resident memory. Everything it started is stopped when it ends.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "load-test"))

from machine import CpuTimes, usage

from exchange_project import pgembed
from exchange_project.processes import child_env, stop_process_group, worker_command

PY = sys.executable
SYMBOL = "RESTART-USD"
BUILD_SQL = """
INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side, type,
                          time_in_force, post_only, stp, price, quantity, filled_quantity, status, reason, priority,
                          created_at, updated_at)
SELECT md5('restart-' || i)::uuid, 'client-' || (i %% 997), 'restart-' || i, repeat('0', 64), %(instrument)s,
       CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END, 'limit', 'GTC', false, 'cancel_taker',
       CASE WHEN i %% 2 = 0 THEN 30000.00 - 0.01 * (1 + (i / 2) %% %(levels)s)
            ELSE 30000.00 + 0.01 * (1 + (i / 2) %% %(levels)s) END,
       0.0010 * (1 + i %% 20),
       CASE WHEN i %% 10 = 0 THEN 0.0001 * (1 + i %% 5) ELSE 0 END,
       CASE WHEN i %% 10 = 0 THEN 'partially_filled' ELSE 'open' END, NULL, i, now(), now()
  FROM generate_series(1, %(orders)s) AS i
"""


def database_url(db: str) -> str:
    params = pgembed.connection_params(db)
    return f"postgresql://{params['user']}@/{db}?host={params['host']}&port={params['port']}"


def build(db: str, orders: int, levels: int, env: dict[str, str]) -> None:
    import psycopg

    if not db.startswith("pgbourse_bench"):
        raise SystemExit("--db must start with pgbourse_bench: this program drops and recreates it")
    with psycopg.connect(**pgembed.connection_params("postgres"), autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    subprocess.run([PY, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"], env=env, check=True)
    started = time.monotonic()
    with psycopg.connect(**pgembed.connection_params(db), autocommit=True) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "INSERT INTO orders_instrument (symbol, tick_size, lot_size, min_qty, max_qty, max_price, is_active, "
            "last_seq, last_trade_id, last_command_seq, halted, created_at) VALUES "
            "(%s, 0.01, 0.0001, 0.0001, 1000, 10000000, true, %s, 0, %s, false, now()) RETURNING id",
            (SYMBOL, orders, orders)).fetchone()
        assert row is not None
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(BUILD_SQL, {"instrument": row[0], "orders": orders, "levels": levels})
        conn.execute("VACUUM ANALYZE orders_order")
    print(f"built {orders:,} open orders on {levels:,} levels a side in {time.monotonic() - started:.1f} s")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def one_start(env: dict[str, str], timeout_s: float) -> dict[str, float]:
    log = Path(tempfile.mkstemp(prefix="pgbourse-restart-", suffix=".log")[1])
    with log.open("wb") as out:
        before = CpuTimes.now()
        started = time.monotonic()
        proc = subprocess.Popen(worker_command(), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        try:
            while True:
                text = log.read_text(errors="replace")
                if "matching worker ready" in text:
                    wall = time.monotonic() - started
                    busy, steal = usage(before, CpuTimes.now())
                    break
                if proc.poll() is not None or time.monotonic() - started > timeout_s:
                    raise SystemExit(f"the worker did not get ready:\n{text[-3000:]}")
                time.sleep(0.02)
            line = next(t for t in text.splitlines() if "matching worker ready" in t)
            figures = {k: float(v) for k, v in re.findall(r"(rebuild_s|ready_s|cpu_s|open_orders)=([\d.]+)", line)}
            return {"wall_s": wall, **figures, "rss_mb": rss_mb(proc.pid), "busy": busy, "steal": steal}
        finally:
            stop_process_group(proc)
            log.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1_000_000)
    p.add_argument("--levels", type=int, default=2_000, help="price levels per side")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--db", default="pgbourse_bench_restart")
    p.add_argument("--keep-db", action="store_true", help="reuse the database built by an earlier run")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--json", metavar="PATH", help="also write every start's figures and the medians as JSON")
    a = p.parse_args()
    if not os.environ.get("DATABASE_URL"):
        pgembed.ensure_running(quiet=True)
    env = child_env({"DATABASE_URL": database_url(a.db), "LOG_FORMAT": "text", "LOG_LEVEL": "INFO",
                     "PGBOURSE_METRICS": "off"})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if not a.keep_db:
        build(a.db, a.orders, a.levels, env)
    results = [one_start(env, a.timeout) for _ in range(a.runs)]
    for n, r in enumerate(results, 1):
        print(f"start {n}: ready after {r['wall_s']:.2f} s from the process start (worker: rebuild "
              f"{r.get('rebuild_s', 0):.2f} s, ready {r.get('ready_s', 0):.2f} s, its CPU {r.get('cpu_s', 0):.2f} s), "
              f"{int(r.get('open_orders', 0)):,} open orders, RSS {r['rss_mb']:.0f} MB; machine {r['busy']:.0f}% busy, "
              f"steal {r['steal']:.0f}%")
    median_wall = statistics.median(r["wall_s"] for r in results)
    median_rebuild = statistics.median(r.get("rebuild_s", 0) for r in results)
    print(f"median: {median_wall:.2f} s to ready ({median_rebuild:.2f} s of it rebuilding)")
    if a.json:
        Path(a.json).write_text(json.dumps({"orders": a.orders, "levels": a.levels, "runs": results,
                                            "median_wall_s": median_wall, "median_rebuild_s": median_rebuild},
                                           indent=2) + "\n")


if __name__ == "__main__":
    main()
