#!/usr/bin/env python3
"""Analytics reads on a large history: 1-day ranges of 1-minute klines, the 24 h ticker and VWAP,
over real HTTP, with 10,000,000 trades stored.

    python load-test/analytics_bench.py                      # build once (minutes), then measure
    python load-test/analytics_bench.py --requests 200       # measure again on the same history
    python load-test/analytics_bench.py --trades 100000 --db pgbourse_bench_analytics_small

The history lives in its own database (``--db``, default pgbourse_bench_analytics, on the
embedded PostgreSQL unless DATABASE_URL names a server; it is built only when it does not hold
exactly ``--trades`` trades, or with ``--rebuild``). It is consistent with the schema and with the
aggregates: ``--trades`` trades of BENCH-USD over the last ``--days`` days, written straight into
PostgreSQL with generate_series (deterministic prices and sizes, a price that wanders by a few
percent, buyers and sellers from ``--clients`` clients, each order filled by ``--fills-per-order``
trades, so every order's quantity is the sum of its fills), ``--resting`` open orders around the
last price (the book the ticker's touch reads), then the candles and positions computed by the
project's own ``manage.py analytics_check --rebuild`` (the recomputation analytics_check checks
against), timed.

Then it starts the ASGI server (no matching worker: these are reads) against that database and
sends each request ``--requests`` times, one at a time on one keep-alive connection, after
``--warmup`` unmeasured ones, and prints the latency from sending to the end of the body:
p50, p95, max, with the size of the answer. The machine's busy and steal shares during the
measurement say whether it was quiet (load-test/machine.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import CpuTimes, usage

from exchange_project import pgembed
from exchange_project.processes import child_env, server_command, stop_process_group

PY = sys.executable
SYMBOL = "BENCH-USD"
CHUNK = 1_000_000

# Trade i of n: seq = trade_id = i; a price that wanders (a step every 1,000 trades) around
# 30,000.00 with a little noise; 1-50 lots of 0.0001; two buys for each sell as aggressor; the
# buy order of group (i-1)/F and the sell order of group (i-1+F/2)/F (so the two sides' orders
# do not start and end together); times spread evenly over the span, in order.
TRADES_SQL = """
INSERT INTO orders_trade (instrument_id, trade_id, seq, price, quantity, aggressor_side, buy_order_id, sell_order_id,
                          maker_order_id, taker_order_id, executed_at)
SELECT %(instrument)s, i, i, p.ticks * 0.01, (1 + (i * 7) %% 50) * 0.0001, a.side, b.id, s.id,
       CASE WHEN a.side = 'buy' THEN s.id ELSE b.id END, CASE WHEN a.side = 'buy' THEN b.id ELSE s.id END,
       %(start)s + (i - 1) * %(step_us)s * interval '1 microsecond'
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
  CROSS JOIN LATERAL (SELECT 3000000 + ((i / 1000) * 7919) %% 60001 - 30000 + (i * 31) %% 201 - 100 AS ticks) p
  CROSS JOIN LATERAL (SELECT CASE WHEN i %% 3 = 0 THEN 'sell' ELSE 'buy' END AS side) a
  CROSS JOIN LATERAL (SELECT md5('bench-buy-' || ((i - 1) / %(fills)s))::uuid AS id) b
  CROSS JOIN LATERAL (SELECT md5('bench-sell-' || ((i - 1 + %(fills)s / 2) / %(fills)s))::uuid AS id) s"""
# Every order of the trades, filled by them: its quantity is the sum of its fills.
ORDERS_SQL = """
INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side, type,
                          time_in_force, post_only, stp, price, quantity, filled_quantity, status, reason, priority,
                          created_at, updated_at)
SELECT o.id, 'bench-' || (abs(hashtext(o.id::text)) %% %(clients)s), o.id::text, repeat('0', 64), %(instrument)s,
       o.side, 'limit', 'GTC', false, 'cancel_taker', CASE WHEN o.side = 'buy' THEN 40000 ELSE 20000 END,
       o.qty, o.qty, 'filled', NULL, NULL, o.first_at, o.last_at
  FROM (SELECT buy_order_id AS id, 'buy' AS side, sum(quantity) AS qty, min(executed_at) AS first_at,
               max(executed_at) AS last_at FROM orders_trade WHERE instrument_id = %(instrument)s GROUP BY 1
        UNION ALL
        SELECT sell_order_id, 'sell', sum(quantity), min(executed_at), max(executed_at)
          FROM orders_trade WHERE instrument_id = %(instrument)s GROUP BY 1) o"""
RESTING_SQL = """
INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side, type,
                          time_in_force, post_only, stp, price, quantity, filled_quantity, status, reason, priority,
                          created_at, updated_at)
SELECT md5('bench-rest-' || n)::uuid, 'bench-' || (n %% %(clients)s), 'rest-' || n, repeat('0', 64),
       %(instrument)s, CASE WHEN n %% 2 = 0 THEN 'buy' ELSE 'sell' END, 'limit', 'GTC', false, 'cancel_taker',
       (%(last)s + CASE WHEN n %% 2 = 0 THEN -1 - n %% 500 ELSE 1 + n %% 500 END) * 0.01,
       (1 + n %% 20) * 0.0001, 0, 'open', NULL, n, now(), now()
  FROM generate_series(1, %(resting)s) AS n"""


def database_url(db: str) -> str:
    if os.environ.get("DATABASE_URL"):
        base = os.environ["DATABASE_URL"]
        head, _, tail = base.rpartition("/")
        query = tail.partition("?")[2]
        return f"{head}/{db}" + (f"?{query}" if query else "")
    params = pgembed.connection_params(db)
    return f"postgresql://{params['user']}@/{db}?host={params['host']}&port={params['port']}"


def connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def trade_count(url: str) -> int | None:
    import psycopg

    try:
        with connect(url) as conn:
            row = conn.execute("SELECT i.last_trade_id FROM orders_instrument i WHERE symbol = %s",
                               (SYMBOL,)).fetchone()
            return None if row is None else int(row[0])
    except psycopg.Error:
        return None


def build(a: argparse.Namespace, url: str, env: dict[str, str]) -> None:
    import psycopg

    if not a.db.startswith("pgbourse_bench"):
        raise SystemExit("--db must start with pgbourse_bench: this program drops and recreates it")
    admin = database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{a.db}"')
    subprocess.run([PY, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"], env=env, check=True)
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    start = now - dt.timedelta(days=a.days)
    step_us = a.days * 86_400_000_000 // a.trades
    with connect(url) as conn:
        instrument = conn.execute(
            "INSERT INTO orders_instrument (symbol, tick_size, lot_size, min_qty, max_qty, max_price, min_notional, "
            "is_active, last_seq, last_trade_id, created_at) VALUES (%s, 0.01, 0.0001, 0.0001, 1000, 10000000, NULL, "
            "true, %s, %s, now()) RETURNING id", (SYMBOL, a.trades, a.trades)).fetchone()[0]
        for lo in range(1, a.trades + 1, CHUNK):
            hi = min(lo + CHUNK - 1, a.trades)
            conn.execute(TRADES_SQL, {"instrument": instrument, "start": start, "step_us": step_us, "lo": lo,
                                      "hi": hi, "fills": a.fills_per_order})
            print(f"  trades {hi:,} / {a.trades:,} ({time.monotonic() - started:.0f} s)", flush=True)
        conn.execute(ORDERS_SQL, {"instrument": instrument, "clients": a.clients})
        last = conn.execute("SELECT price / 0.01 FROM orders_trade WHERE instrument_id = %s ORDER BY seq DESC "
                            "LIMIT 1", (instrument,)).fetchone()[0]
        conn.execute(RESTING_SQL, {"instrument": instrument, "clients": a.clients, "resting": a.resting,
                                   "last": int(last)})
        orders = conn.execute("SELECT count(*) FROM orders_order").fetchone()[0]
        print(f"  {orders:,} orders ({time.monotonic() - started:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE orders_trade")
        conn.execute("VACUUM ANALYZE orders_order")
    rebuild_started = time.monotonic()
    subprocess.run([PY, str(ROOT / "manage.py"), "analytics_check", "--rebuild", "--instrument", SYMBOL], env=env,
                   check=True)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE marketdata_candle")
        conn.execute("VACUUM ANALYZE orders_position")
    print(f"  candles and positions by analytics_check --rebuild: {time.monotonic() - rebuild_started:.0f} s; "
          f"history built in {time.monotonic() - started:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(port: int, path: str, warmup: int, requests: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: list[float] = []
    size = 0
    body: Any = None
    for n in range(warmup + requests):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"GET {path}: {resp.status} {data[:300]!r}")
        if n >= warmup:
            times.append(elapsed)
        size, body = len(data), data
    conn.close()
    times.sort()
    parsed = json.loads(body)
    return {"p50": statistics.median(times) * 1000, "p95": times[int(0.95 * (len(times) - 1))] * 1000,
            "max": times[-1] * 1000, "bytes": size, "rows": len(parsed) if isinstance(parsed, list) else 1}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trades", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=10, help="the history's span, ending now")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--fills-per-order", type=int, default=50)
    p.add_argument("--resting", type=int, default=10_000, help="open orders in the book")
    p.add_argument("--db", default="pgbourse_bench_analytics")
    p.add_argument("--rebuild", action="store_true", help="build the history even if it is there")
    p.add_argument("--check", action="store_true", help="also time manage.py analytics_check on the history")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    if not os.environ.get("DATABASE_URL"):
        pgembed.ensure_running()
    url = database_url(a.db)
    env = child_env({"DATABASE_URL": url})
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; db {a.db}",
          flush=True)
    if a.rebuild or trade_count(url) != a.trades:
        print(f"building {a.trades:,} trades over {a.days} days:", flush=True)
        build(a, url, env)
    else:
        print(f"history of {a.trades:,} trades already in {a.db}", flush=True)
    if a.check:
        started = time.monotonic()
        subprocess.run([PY, str(ROOT / "manage.py"), "analytics_check", "--instrument", SYMBOL], env=env, check=True)
        print(f"analytics_check over the history: {time.monotonic() - started:.0f} s", flush=True)

    port = free_port()
    server = subprocess.Popen(server_command(port, "granian"), env=env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)
        now_ms = int(time.time() * 1000)
        day_ago = now_ms - 86_400_000
        queries = [
            ("floor: GET /instruments (no analytics)", "/instruments"),
            ("1 day of 1m klines", f"/klines?instrument={SYMBOL}&interval=1m&start={day_ago}&limit=1500"),
            ("24 h ticker", f"/ticker/24h?instrument={SYMBOL}"),
            ("VWAP of the last 24 h", f"/analytics/vwap?instrument={SYMBOL}&window=24h"),
            ("VWAP of the whole history", f"/analytics/vwap?instrument={SYMBOL}&from=0"),
            ("7 days of 1h klines", f"/klines?instrument={SYMBOL}&interval=1h&start={now_ms - 7 * 86_400_000}"),
            ("1 day of 1m klines, gaps filled", f"/klines?instrument={SYMBOL}&interval=1m&start={day_ago}"
                                                "&limit=1500&fill=previous"),
            ("a client's positions", "/positions/bench-7"),
        ]
        cpu0 = CpuTimes.now()
        print(f"\n{a.requests} requests each (after {a.warmup} unmeasured), one at a time, HTTP keep-alive, granian:")
        for label, path in queries:
            r = measure(port, path, a.warmup, a.requests)
            print(f"  {label:40s} p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  max {r['max']:6.1f} ms  "
                  f"({r['rows']} row(s), {r['bytes']:,} bytes)   GET {path}", flush=True)
        busy, steal = usage(cpu0, CpuTimes.now())
        print(f"machine busy {busy:.0f}%, taken by the host (steal) {steal:.0f}%")
    finally:
        stop_process_group(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
