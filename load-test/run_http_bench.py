#!/usr/bin/env python3
"""Runs the exchange under one ASGI server configuration and drives it with http_load.py.

    python load-test/run_http_bench.py --server uvicorn --workers 2 --rates 2000 --duration 60
    python load-test/run_http_bench.py --server granian --workers 2 --search --duration 10

For one configuration it: starts the embedded PostgreSQL if it is down; (re)creates its own
database (``--db``, default pgbourse_bench; never another one) and migrates it; creates BTC-USD;
starts the matching worker and the ASGI server against it; then, for each endpoint (``test``:
POST /orders/test, validate and return, the bare-endpoint ceiling; ``orders``: the durable
POST /orders path) runs http_load.py at each ``--rates`` value, or with ``--search`` finds the
highest sustainable rate (bisection to ``--resolution``). Sustainable means: zero errors,
p50 < 100 ms and a completed rate of at least 97% of the offered one. Between runs it waits
until the worker has no pending order, so one run's backlog does not land in the next, and before each
run PostgreSQL writes out what is dirty (CHECKPOINT), so that an earlier run's writes do not either.

API keys and limits are as the environment says (PGBOURSE_AUTH, PGBOURSE_RATE_LIMITS,
PGBOURSE_RATE_LIMIT_STORE reach the server): unless PGBOURSE_AUTH=off it makes a trader key per
load client (``--clients``, lt-000...) with budgets of 1,000,000/s, so the limiter is consulted
on every request and never refuses one, and hands them to http_load.py (--keys). To compare:
    PGBOURSE_AUTH=off PGBOURSE_RATE_LIMITS=off python load-test/run_http_bench.py ...   (before)
    python load-test/run_http_bench.py ...                                              (after)

Beside the generator's own report it measures, from /proc, the CPU time each part used during
the run (server processes, matching worker, the PostgreSQL backends connected to the benchmark
database, the generator) and how busy the whole machine was. PostgreSQL's own background
processes (WAL writer, checkpointer) are not counted. The machine's busy share, the share the
host took (steal, see machine.py) and the load average before each run tell whether the box
was quiet (a concurrent test suite is not; a busy host is not either). Everything it started is stopped when it ends, on error or Ctrl-C too.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import CpuTimes, usage

from exchange_project import pgembed
from exchange_project.processes import (
    SERVERS,
    child_env,
    metrics_dir,
    server_command,
    stop_process_group,
    worker_command,
)

PY = sys.executable
LOAD = str(ROOT / "load-test" / "http_load.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBE_BODY = (b'{"idempotency_key":"probe","client_id":"probe","instrument":"BTC-USD","side":"buy",'
              b'"type":"limit","price":"1.00","quantity":"0.0001"}')
# The benchmark's keys must not be what limits it: budgets far above any rate it offers.
BENCH_BUDGET = "1000000/s"


# -- /proc accounting ----------------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds) for every live process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is state (field 3); utime, stime are fields 14, 15.
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def tree_cpu(table: dict[int, tuple[int, float]], root: int) -> float:
    total = 0.0
    stack = [root]
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, []))
    return total


def backend_pids(db: str) -> list[int]:
    """PostgreSQL backends connected to the benchmark database (not other users of the cluster)."""
    import psycopg

    with psycopg.connect(**pgembed.connection_params(db)) as conn:  # type: ignore[arg-type]
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (db,)).fetchall()
    return [int(r[0]) for r in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listens_on(root: int, port: int) -> bool:
    """Whether a process in root's tree has a listening socket on port (Linux /proc)."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    table = _proc_table()
    pids = [pid for pid in table if pid == root or _descends(table, pid, root)]
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
        except OSError:
            continue
    return False


def _descends(table: dict[int, tuple[int, float]], pid: int, root: int) -> bool:
    seen = 0
    while pid in table and seen < 64:
        pid = table[pid][0]
        if pid == root:
            return True
        seen += 1
    return False


# -- database ------------------------------------------------------------------------------------

def database_url(db: str) -> str:
    params = pgembed.connection_params(db)
    return f"postgresql://{params['user']}@/{db}?host={params['host']}&port={params['port']}"


def prepare_database(db: str, fresh: bool, env: dict[str, str]) -> None:
    import psycopg

    if not db.startswith("pgbourse_bench"):
        raise SystemExit("--db must start with pgbourse_bench: this program drops and recreates it")
    admin = pgembed.connection_params("postgres")
    with psycopg.connect(**admin, autocommit=True) as conn:  # type: ignore[arg-type]
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{db}"')
    subprocess.run([PY, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"], env=env, check=True)
    subprocess.run([PY, str(ROOT / "manage.py"), "shell", "-c",
                    "from exchange_project.management.commands.runexchange import ensure_default_instrument;"
                    "ensure_default_instrument()"], env=env, check=True, stdout=subprocess.DEVNULL)


def make_keys(clients: list[str], env: dict[str, str], path: Path) -> None:
    """A trader key per client (and for the readiness probe), {client: key} in ``path``."""
    done = subprocess.run([PY, str(ROOT / "manage.py"), "create_api_key", *[a for c in clients for a in ("--client", c)],
                           "--role", "trader", "--rotate", "--json", "--name", "run_http_bench",
                           "--orders-rate", BENCH_BUDGET, "--commands-rate", BENCH_BUDGET, "--reads-rate", BENCH_BUDGET],
                          env=env, check=True, capture_output=True, text=True)
    path.write_text(done.stdout.strip().splitlines()[-1])


def pending_orders(db: str) -> int:
    import psycopg

    with psycopg.connect(**pgembed.connection_params(db)) as conn:  # type: ignore[arg-type]
        row = conn.execute("SELECT count(*) FROM orders_order WHERE status = 'pending'").fetchone()
        cmds = conn.execute("SELECT count(*) FROM orders_ordercommand WHERE NOT processed").fetchone()
    return int(row[0]) + int(cmds[0])  # type: ignore[index]


def checkpoint(db: str) -> None:
    """Writes out what earlier runs (this program's, or another's) left dirty in PostgreSQL's
    buffers, so that their checkpoint does not land in the run about to start."""
    import psycopg

    with psycopg.connect(**pgembed.connection_params(db), autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute("CHECKPOINT")


def wait_drained(db: str, limit_s: float = 120.0) -> int:
    deadline = time.monotonic() + limit_s
    while (n := pending_orders(db)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return n


# -- processes -----------------------------------------------------------------------------------

class Stack:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logdir = Path(tempfile.mkdtemp(prefix="pgbourse-bench-"))
        self.keys_file: Path | None = None
        self.probe_key = ""
        if env.get("PGBOURSE_AUTH", "required") != "off":
            self.keys_file = self.logdir / "keys.json"
            make_keys([f"lt-{n:03d}" for n in range(args.clients)] + ["probe"], env, self.keys_file)
            self.probe_key = json.loads(self.keys_file.read_text())["probe"]

    def start(self) -> None:
        a = self.args
        if not a.port:
            a.port = free_port()
        elif not port_is_free(a.port):
            raise SystemExit(f"port {a.port} is in use (another server?); omit --port to pick a free one")
        self._spawn("worker", worker_command())
        self._spawn("server", server_command(a.port, a.server, a.workers, fast=a.variant == "fast"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited with {proc.returncode}; log: {self.logdir / name}.log\n"
                                     + (self.logdir / f"{name}.log").read_text()[-3000:])
            # Only our own server may answer: check it listens before trusting the probe.
            if listens_on(self.procs["server"].pid, a.port) and self._probe():
                # Warm every server process (each has its own pool and LISTEN connection).
                for _ in range(20 * a.workers):
                    self._probe()
                return
            time.sleep(0.3)
        raise SystemExit("server did not answer POST /orders/test within 60 s")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it until it ends
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _probe(self) -> bool:
        auth = b"Authorization: Bearer %s\r\n" % self.probe_key.encode() if self.probe_key else b""
        try:
            with socket.create_connection(("127.0.0.1", self.args.port), timeout=2) as s:
                s.sendall(b"POST /orders/test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (auth, len(PROBE_BODY), PROBE_BODY))
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process_group(proc)


# -- runs ----------------------------------------------------------------------------------------

def run_load(stack: Stack, endpoint: str, rate: float, duration: float, warmup: float,
             extra: list[str]) -> dict[str, Any]:
    a = stack.args
    checkpoint(a.db)
    load1 = os.getloadavg()[0]
    out = stack.logdir / f"load-{endpoint}-{int(rate)}.json"
    cmd = [PY, LOAD, "--url", f"http://127.0.0.1:{a.port}", "--endpoint", endpoint, "--rate", str(rate),
           "--duration", str(duration), "--warmup", str(warmup), "--connections", str(a.connections),
           "--seed", str(a.seed), "--json", str(out), "--allow-errors", "--clients", str(a.clients), *extra]
    if stack.keys_file is not None:
        cmd += ["--keys", str(stack.keys_file)]
    if a.mix:
        cmd += ["--mix", a.mix]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    # Sample over the measured window only (after warm-up), like the generator's statistics.
    time.sleep(warmup + 0.1)
    pg = backend_pids(a.db)
    t0, m0 = _proc_table(), CpuTimes.now()
    w0 = time.monotonic()
    time.sleep(duration)
    t1, m1 = _proc_table(), CpuTimes.now()
    wall = time.monotonic() - w0
    text, _ = gen.communicate()
    result = json.loads(out.read_text())
    result["report"] = text.rstrip()

    def cpu(root: int | None) -> float:
        return 0.0 if root is None else tree_cpu(t1, root) - tree_cpu(t0, root)

    # Backends alive at both ends of the window (the pools keep theirs open).
    pg_cpu = sum(t1[p][1] - t0[p][1] for p in pg if p in t0 and p in t1)

    done = max(1, result["completed_rate"] * duration)
    result["cpu"] = {
        "server": cpu(stack.procs["server"].pid), "worker": cpu(stack.procs["worker"].pid),
        "postgres": pg_cpu, "generator": cpu(gen.pid), "wall": wall,
    }
    result["cpu_ms_per_req"] = {k: 1000 * v / done for k, v in result["cpu"].items() if k != "wall"}
    result["machine_busy_pct"], result["steal_pct"] = usage(m0, m1)
    result["load1_before"] = load1
    result["pending_after"] = wait_drained(a.db) if endpoint == "orders" else 0
    return result


def sustainable(r: dict[str, Any]) -> bool:
    return (r["errors"] == 0 and r["p50_ms"] is not None and r["p50_ms"] < 100
            and r["completed_rate"] >= 0.97 * r["offered_rate"])


def describe(r: dict[str, Any]) -> str:
    c = r["cpu_ms_per_req"]
    return (f"{r['report']}\ncpu ms/req  server {c['server']:.2f}  worker {c['worker']:.2f}  "
            f"postgres {c['postgres']:.2f}  generator {c['generator']:.2f}   machine busy "
            f"{r['machine_busy_pct']:.0f}%, taken by the host (steal) {r['steal_pct']:.0f}% "
            f"(load1 before {r['load1_before']:.2f})"
            f"   -> {'SUSTAINED' if sustainable(r) else 'NOT sustained'}")


def summary_line(label: str, r: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    c = r["cpu_ms_per_req"]
    return (f"{label}: completed {r['completed_rate']:.0f}/s, p50 {ms(r['p50_ms'])}, p99 {ms(r['p99_ms'])}, "
            f"errors {r['errors']}, cpu ms/req server {c['server']:.2f} worker {c['worker']:.2f} "
            f"pg {c['postgres']:.2f} gen {c['generator']:.2f}, steal {r['steal_pct']:.0f}%, "
            f"{'sustained' if sustainable(r) else 'NOT sustained'}")


def search(stack: Stack, endpoint: str, a: argparse.Namespace, extra: list[str]) -> tuple[float, list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    lo, hi = 0.0, None
    rate = a.start
    while True:
        r = run_load(stack, endpoint, rate, a.duration, a.warmup, extra)
        runs.append(r)
        print(f"\n[{endpoint} @ {rate:.0f}/s]\n{describe(r)}", flush=True)
        if sustainable(r):
            lo = rate
        else:
            hi = rate
        if hi is None:
            rate = rate * 2 if rate * 2 <= a.max_rate else a.max_rate
            if rate == lo:
                break
        else:
            if hi - lo <= a.resolution:
                break
            rate = round((lo + hi) / 2 / a.resolution) * a.resolution or a.resolution
            if rate in (lo, hi):
                break
    return lo, runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=SERVERS, default="granian")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--variant", choices=("fast", "plain"), default="fast",
                   help="fast: uvloop (+httptools for uvicorn) when installed; plain: asyncio (+h11)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--db", default="pgbourse_bench", help="benchmark database, dropped and recreated")
    p.add_argument("--keep-db", action="store_true", help="reuse the database instead of recreating it")
    p.add_argument("--endpoints", default="test,orders", help="comma list of test,orders (default both)")
    p.add_argument("--rates", default="2000", help="comma list of offered rates (ignored with --search)")
    p.add_argument("--search", action="store_true", help="find the highest sustainable rate per endpoint")
    p.add_argument("--start", type=float, default=500, help="first rate of --search (default 500)")
    p.add_argument("--max-rate", type=float, default=4000, help="highest rate --search tries (default 4000)")
    p.add_argument("--resolution", type=float, default=100, help="--search stops at this step (default 100)")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--connections", type=int, default=128)
    p.add_argument("--mix", default="", help="passed to http_load.py (default: its realistic mix)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=50, help="distinct client ids, one API key each (default 50)")
    p.add_argument("--pool-max", type=int, default=0, help="DB_POOL_MAX for the server (default: settings')")
    p.add_argument("--json", metavar="PATH", help="write every run's results as JSON")
    a, extra = p.parse_known_args()
    # server_command() reads the server's settings (its admission bound) in this process.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")

    if not os.environ.get("DATABASE_URL"):
        pgembed.ensure_running()
    env = child_env({"DATABASE_URL": database_url(a.db)})
    # As `make run` does: the worker's and the server's metrics in one directory (PGBOURSE_METRICS
    # and LOG_LEVEL / LOG_ORDER_LEVEL pass through from this environment).
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir(f"bench-{a.db}"))
    if a.pool_max:
        env["DB_POOL_MAX"] = str(a.pool_max)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"server {a.server} x{a.workers} ({a.variant}), db {a.db}; API keys "
          f"{env.get('PGBOURSE_AUTH', 'required')}, rate limits {env.get('PGBOURSE_RATE_LIMITS', 'on')} "
          f"(store {env.get('PGBOURSE_RATE_LIMIT_STORE', 'share')})", flush=True)
    prepare_database(a.db, not a.keep_db, env)
    stack = Stack(a, env)
    results: list[dict[str, Any]] = []
    summary: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        best: dict[str, float] = {}
        for endpoint in [e.strip() for e in a.endpoints.split(",") if e.strip()]:
            if a.search:
                best[endpoint], runs = search(stack, endpoint, a, extra)
                results += runs
                summary.append(f"{endpoint:6s} max sustainable {best[endpoint]:.0f} req/s "
                               f"({a.duration:g} s runs, resolution {a.resolution:g})")
            else:
                for rate in [float(x) for x in a.rates.split(",")]:
                    r = run_load(stack, endpoint, rate, a.duration, a.warmup, extra)
                    results.append(r)
                    print(f"\n[{endpoint} @ {rate:.0f}/s]\n{describe(r)}", flush=True)
                    summary.append(summary_line(f"{endpoint:6s} @ {rate:5.0f}/s", r))
        if a.search and {"test", "orders"} <= best.keys() and best["test"]:
            summary.append(f"ratio orders/test = {best['orders'] / best['test']:.2f}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        stack.stop()
    print(f"\n== {a.server} x{a.workers} ({a.variant}) ==\n" + "\n".join(summary))
    print(f"server/worker logs: {stack.logdir}")
    if a.json:
        Path(a.json).write_text(json.dumps({"server": a.server, "workers": a.workers, "variant": a.variant,
                                            "runs": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
