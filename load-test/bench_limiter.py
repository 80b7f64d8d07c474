#!/usr/bin/env python3
"""What one rate-limit check costs, for each way of keeping the counters across web processes.

    python load-test/bench_limiter.py --checks 20000

It (re)creates its own database (pgbourse_bench_limits, on the embedded PostgreSQL unless
DATABASE_URL names a server), migrates it, makes an API key, then times in this process, one
candidate at a time:
  auth, cached       orders.auth.authenticate of a key already looked up (what every request pays)
  share              orders.limits.take with the `share` store: memory only (the lean path)
  share, DRF         the same through django-ratelimit's get_usage (the DRF views)
  postgres           the `postgres` store: an upsert per check, one check at a time
  postgres x64       the same with 64 checks in flight (group commit: one statement for all)
  postgres, DRF      through django-ratelimit, sync, on Django's connection (an upsert per check)
  DatabaseCache      Django's database cache, as django-ratelimit would use it (add, then incr)
For each: wall time and CPU per check, of this process and of the PostgreSQL backends serving
it (from /proc). Then whether the candidate holds: 4 threads x --race checks of one budget at
once, and the count it ends with (Django's DatabaseCache increments by read-then-write, so it
loses increments; django-ratelimit refuses it as "not atomic" for that reason).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import CpuTimes, usage
from run_http_bench import _proc_table, backend_pids, database_url

from exchange_project import pgembed

PY = sys.executable
DB = "pgbourse_bench_limits"


def prepare(env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(**pgembed.connection_params("postgres"), autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    subprocess.run([PY, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"], env=env, check=True)


def pg_cpu() -> float:
    table = _proc_table()
    return sum(table[p][1] for p in backend_pids(DB) if p in table)


def measure(name: str, n: int, run: Any) -> dict[str, Any]:
    pg0, cpu0, wall0 = pg_cpu(), time.process_time(), time.perf_counter()
    run()
    wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, pg_cpu() - pg0
    row = {"name": name, "wall_us": 1e6 * wall / n, "cpu_us": 1e6 * cpu / n, "pg_us": 1e6 * pg / n}
    print(f"{name:16s} {row['wall_us']:9.1f} {row['cpu_us']:11.1f} {row['pg_us']:10.1f} "
          f"{row['cpu_us'] + row['pg_us']:10.1f}", flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", type=int, default=20000, help="checks per candidate (default 20000)")
    p.add_argument("--race", type=int, default=2000, help="checks per thread in the race (default 2000)")
    a = p.parse_args()

    if not os.environ.get("DATABASE_URL"):
        pgembed.ensure_running()
    os.environ.update({"DATABASE_URL": database_url(DB), "PGBOURSE_ENV": "development",
                       "DJANGO_SETTINGS_MODULE": "exchange_project.settings"})
    prepare(dict(os.environ))
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache.backends.db import DatabaseCache
    from django.db import connection

    from orders import auth, limits
    from orders.audit import command_actor

    budget = f"{10 * a.checks}/m"
    _, key = auth.api_key_create(client_id="bench-limits", role="trader", actor=command_actor("bench_limiter"),
                                 rates={"orders": budget, "commands": budget, "reads": budget})
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_cache (cache_key varchar(255) PRIMARY KEY, value text NOT NULL, "
                    "expires timestamp with time zone NOT NULL)")
    dbcache = DatabaseCache("bench_cache", {})
    m0 = CpuTimes.now()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{a.checks} checks per candidate")
    print(f"{'candidate':16s} {'wall us':>9s} {'cpu us here':>11s} {'pg cpu us':>10s} {'cpu us all':>10s}")

    async def async_part() -> tuple[auth.Caller, list[dict[str, Any]]]:
        caller = await auth.authenticate(key, "127.0.0.1")
        rows = []

        async def sequential(check: Any) -> None:
            for _ in range(a.checks):
                await check()

        async def concurrent(check: Any, width: int) -> None:
            for _ in range(a.checks // width):
                await asyncio.gather(*(check() for _ in range(width)))

        t0 = time.perf_counter()
        rows.append(await _timed("auth, cached", a.checks,
                                 lambda: sequential(lambda: auth.authenticate(key, "127.0.0.1"))))
        settings.RATE_LIMIT_STORE = "share"
        rows.append(await _timed("share", a.checks,
                                 lambda: sequential(lambda: limits.take(caller, limits.Action.ORDERS))))
        settings.RATE_LIMIT_STORE = "postgres"
        rows.append(await _timed("postgres", a.checks,
                                 lambda: sequential(lambda: limits.take(caller, limits.Action.COMMANDS))))
        rows.append(await _timed("postgres x64", a.checks,
                                 lambda: concurrent(lambda: limits.take(caller, limits.Action.READS), 64)))
        assert time.perf_counter() > t0
        return caller, rows

    async def _timed(name: str, n: int, make: Any) -> dict[str, Any]:
        pg0, cpu0, wall0 = pg_cpu(), time.process_time(), time.perf_counter()
        await make()
        wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, pg_cpu() - pg0
        row = {"name": name, "wall_us": 1e6 * wall / n, "cpu_us": 1e6 * cpu / n, "pg_us": 1e6 * pg / n}
        print(f"{name:16s} {row['wall_us']:9.1f} {row['cpu_us']:11.1f} {row['pg_us']:10.1f} "
              f"{row['cpu_us'] + row['pg_us']:10.1f}", flush=True)
        return row

    caller, _ = asyncio.run(async_part())

    class DrfRequest:  # what django-ratelimit and orders.auth.caller_of read of a DRF request
        user = caller
        META = {"REMOTE_ADDR": "127.0.0.1"}
        method = "POST"

    request = DrfRequest()
    settings.RATE_LIMIT_STORE = "share"
    measure("share, DRF", a.checks, lambda: [limits.take_sync(request, limits.Action.ORDERS) for _ in range(a.checks)])
    settings.RATE_LIMIT_STORE = "postgres"
    measure("postgres, DRF", a.checks,
            lambda: [limits.take_sync(request, limits.Action.ORDERS) for _ in range(a.checks)])

    def dbcache_check(k: str) -> None:
        if not dbcache.add(k, 1, 65):
            dbcache.incr(k)

    measure("DatabaseCache", a.checks, lambda: [dbcache_check("rl:bench") for _ in range(a.checks)])
    busy, steal = usage(m0, CpuTimes.now())
    print(f"machine busy {busy:.0f}%, taken by the host (steal) {steal:.0f}% over the timings")

    # -- does it hold: 4 threads counting one budget at once --------------------------------
    def race(name: str, check: Any) -> None:
        def work() -> None:
            from django.db import connection as thread_connection

            for _ in range(a.race):
                check()
            thread_connection.close()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race_key = "rl:race"
    race("DatabaseCache", lambda: dbcache_check(race_key))
    counted = dbcache.get(race_key)
    store = limits.PostgresStore()
    race("postgres", lambda: store.incr("race", 1, 65))
    print(f"race: 4 threads x {a.race} checks of one budget: DatabaseCache counted {counted}, "
          f"the postgres store {store.get('race')} (of {4 * a.race})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
