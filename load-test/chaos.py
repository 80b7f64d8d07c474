#!/usr/bin/env python3
"""Faults under load, and what the exchange made of them: nothing lost, nothing duplicated,
nothing hung, and back by itself.

    python load-test/chaos.py                                   # every scenario, 60 s versions
    python load-test/chaos.py db-stop db-hang --fault-s 10 --rate 300
    python load-test/chaos.py --short                           # the versions make test runs

It runs an exchange of its own (`manage.py runexchange`, which supervises the worker and the
server, against an embedded PostgreSQL under var/chaos/, started and stopped here), offers it
an open-loop stream of limit orders and cancels over HTTP (each request answered or timed out
after --timeout-s), and injects one fault per scenario:

  db-stop        PostgreSQL stopped (fast shutdown) for --fault-s, then started
  db-hang        every PostgreSQL process SIGSTOPped for --fault-s (a hung database), then SIGCONT
  db-hang-master the postmaster alone SIGSTOPped (no new connection), then SIGCONT
  db-crash       PostgreSQL killed in the middle of the load (immediate shutdown), then started
  worker-kill    the matching worker killed with SIGKILL at --kills random moments
  worker-freeze  the worker SIGSTOPped for --fault-s (longer than the 2 s ack bound), then SIGCONT
  web-kill       the web process (the ASGI server's worker) killed with SIGKILL
  overload       --overload times the rate the exchange sustains, for --overload-s

Then it checks the record against every answer (every line of the summary must hold):
  lost        an order answered 200/201/202 that PostgreSQL does not hold (must be 0)
  duplicated  an idempotency key held twice, or an order whose fills do not sum to its filled
              quantity (must be 0)
  failed-yet-executed   an order answered 503 (nothing happened) that exists (must be 0)
  timed_out   requests without any answer within --timeout-s (must be 0; a connection refused
              or cut by a killed process is counted apart, as connection_failed)
  book_check  the books rebuilt from the record are consistent (manage.py book_check)
and prints per scenario: offered, answered by status, worst latency (and during the fault),
the time from the fault's end to the first order answered 201, and the memory (RSS) of each
process before and after, and how late the generator's own event loop ran (generator_lag_*:
while it is late, answers that came wait to be read, and count as the exchange's time).
--json FILE writes the summaries.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The short versions (`--short`, and make test's tests/orders/test_faults.py): 100 orders and
# cancels a second, a 3 s fault after 2 s of load and 5 s of load after it (a restarted
# PostgreSQL can take seconds of those to accept connections), 4 kills, 6 s of overload.
SHORT = {"rate": 100.0, "fault_s": 3.0, "lead_s": 2.0, "tail_s": 5.0, "kills": 4, "overload_s": 6.0}

SCENARIOS = ("db-stop", "db-hang", "db-hang-master", "db-crash", "worker-kill", "worker-freeze", "web-kill",
             "overload")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The exchange under test
# --------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def rss_kb(pid: int) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Exchange:
    """runexchange on its own embedded PostgreSQL (var/chaos/<name>/pgdata) and port."""

    def __init__(self, name: str, env: dict[str, str] | None = None, port: int = 0) -> None:
        self.home = ROOT / "var" / "chaos" / name
        self.pgdata = self.home / "pgdata"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
        self.env = {**inherited, "PGBOURSE_PGDATA": str(self.pgdata), "PYTHONUNBUFFERED": "1",
                    "DJANGO_SETTINGS_MODULE": "exchange_project.settings", "LOG_LEVEL": "WARNING", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""  # the admin key its first start printed (its budgets are far above any load here)

    def _pgembed(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "exchange_project.pgembed", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout

    def start(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self._pgembed("start")  # started here: runexchange leaves it running and we stop it
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runexchange", "--port",
                                      str(self.port)], env=self.env, cwd=ROOT, start_new_session=True,
                                     stdout=open(self.home / "exchange.log", "wb"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT)
        self.key = self._printed_admin_key(90)
        self.wait_placing(90)

    def _printed_admin_key(self, limit_s: float) -> str:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            found = re.search(r"API key of client 'admin' \(admin\): (pgb_\S+)",
                              (self.home / "exchange.log").read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the exchange printed no admin key; see {self.home}/exchange.log")

    def wait_placing(self, limit_s: float) -> float:
        """Seconds until a probe order is answered 201 (or 200)."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            try:
                status, _ = asyncio.run(request(self.url, "POST", "/orders", probe_order(), 5, self.key))
                if status in (200, 201):
                    return time.monotonic() - started
            except (OSError, TimeoutError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the exchange did not place an order within {limit_s} s; see {self.home}/exchange.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self._pgembed("stop")
        except subprocess.CalledProcessError:
            pass

    # -- the parts --------------------------------------------------------------------------
    def worker_pid(self) -> int | None:
        assert self.proc is not None
        return next((p for p in _children(self.proc.pid) if "runworker" in _cmdline(p)), None)

    def server_pid(self) -> int | None:
        assert self.proc is not None
        return next((p for p in _children(self.proc.pid) if "granian" in _cmdline(p) or "uvicorn" in _cmdline(p)
                     or "daphne" in _cmdline(p)), None)

    def web_pids(self) -> list[int]:
        server = self.server_pid()
        return [] if server is None else (_descendants(server) or [server])

    def postgres_pids(self) -> list[int]:
        pidfile = self.pgdata / "postmaster.pid"
        master = int(pidfile.read_text().split()[0])
        return [master, *_descendants(master)]

    def rss(self) -> dict[str, int]:
        worker = self.worker_pid()
        return {"worker_kb": rss_kb(worker) if worker else 0,
                "web_kb": sum(rss_kb(p) for p in self.web_pids()),
                "postgres_kb": sum(rss_kb(p) for p in self.postgres_pids())}

    def pg_stop(self, mode: str = "fast") -> None:
        self._pgembed("stop") if mode == "fast" else self._pg_ctl("-m", mode, "stop")

    def _pg_ctl(self, *args: str) -> None:
        code = ("import sys; from exchange_project import pgembed; "
                "pgembed._pg_ctl('-w', *sys.argv[1:], check=False)")
        subprocess.run([sys.executable, "-c", code, *args], env=self.env, cwd=ROOT, capture_output=True)

    def pg_start(self) -> None:
        self._pgembed("start")

    def pg_start_watched(self, clock: Any) -> tuple[float, float]:
        """Start PostgreSQL and return (asked, up): when the start was asked and when a connection
        first succeeded, on ``clock``, so that its own start (crash recovery included) is known."""
        import psycopg

        socket_dir = self.socket_dir()
        asked = clock()
        starting = subprocess.Popen([sys.executable, "-m", "exchange_project.pgembed", "start"], env=self.env,
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                psycopg.connect(host=socket_dir, port=5432, user="postgres", dbname="pgbourse",
                                connect_timeout=1).close()
                up = clock()
                break
            except psycopg.OperationalError:
                time.sleep(0.02)
        starting.wait()
        return asked, up

    def signal_postgres(self, sig: int, master_only: bool = False) -> None:
        pids = self.postgres_pids()
        for pid in pids[:1] if master_only else pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def check_books(self) -> tuple[bool, str]:
        out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "book_check"], env=self.env, cwd=ROOT,
                             capture_output=True, text=True)
        return out.returncode == 0, (out.stdout + out.stderr).strip().splitlines()[-1] if (out.stdout + out.stderr) \
            else ""

    def socket_dir(self) -> str:
        return subprocess.run([sys.executable, "-c", "from exchange_project import pgembed; "
                               "print(pgembed.socket_dir())"], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(host=self.socket_dir(), port=5432, user="postgres", dbname="pgbourse",
                               autocommit=True)


# --------------------------------------------------------------------------------------------
# The load
# --------------------------------------------------------------------------------------------

INSTRUMENT = "BTC-USD"
MID_TICKS = 3_000_000


def probe_order() -> dict[str, Any]:
    return {"idempotency_key": f"probe-{uuid.uuid4().hex}", "client_id": "chaos-probe", "instrument": INSTRUMENT,
            "side": "buy", "type": "limit", "price": "1.00", "quantity": "0.0001"}


def auth_line(key: str) -> str:
    return f"Authorization: Bearer {key}\r\n" if key else ""


async def request(base: str, method: str, path: str, body: Any, timeout_s: float, key: str = "") -> tuple[int, Any]:
    """One HTTP/1.1 request on a connection of its own; (status, parsed JSON body)."""
    host, port = base.split("//", 1)[1].split(":")
    payload = b"" if body is None else json.dumps(body).encode()
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"{auth_line(key)}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                         + payload)
            data = await reader.read()
        finally:
            writer.close()
    head, _, text = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(text) if text.strip() else None


@dataclass
class Sent:
    at: float  # scheduled, seconds from the start
    kind: str
    key: str
    client: str
    status: int = 0  # 0: no answer
    # no answer: "timeout" (sent, and nothing within --timeout-s), "connection" (refused or cut),
    # or "unsent" (its time was up before a connection of this client was free to send it: the
    # load generator's own backlog, on a machine it shares with the exchange)
    error: str = ""
    body: Any = None
    latency_s: float = 0.0  # from its schedule (what an open-loop client waits)
    service_s: float = 0.0  # from the moment it was written on its connection (what the exchange took)


class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length answers, no pipelining)."""

    def __init__(self, base: str, key: str = "") -> None:
        self.auth = auth_line(key)
        self.host, port = base.split("//", 1)[1].split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                              f"{self.auth}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                           if line.lower().startswith(b"content-length:")), 0)
            text = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        return status, json.loads(text) if text.strip() else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Load:
    """An open-loop stream: request i is scheduled at i / rate whatever the exchange does, waits
    for one of ``connections`` keep-alive connections, and its latency runs from its schedule."""

    base: str
    rate: float
    timeout_s: float
    connections: int = 64
    seed: int = 1
    prefix: str = "chaos"  # the client ids' prefix: what the checks read back
    key: str = ""  # the API key every request carries (an admin's: the clients are many)
    sent: list[Sent] = field(default_factory=list)
    resting: list[str] = field(default_factory=list)

    async def run(self, duration_s: float) -> None:
        rng = random.Random(self.seed)
        queue: asyncio.Queue[tuple[Sent, str, str, Any] | None] = asyncio.Queue()
        start = time.monotonic()
        workers = [asyncio.create_task(self._connection(queue, start)) for _ in range(self.connections)]
        n = 0
        while True:
            due = n / self.rate
            if due >= duration_s:
                break
            await asyncio.sleep(max(0.0, start + due - time.monotonic()))
            queue.put_nowait(self._next(rng, due))
            n += 1
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)

    def _next(self, rng: random.Random, at: float) -> tuple[Sent, str, str, Any]:
        client = f"{self.prefix}{rng.randrange(16)}"
        if self.resting and rng.random() < 0.15:
            order_id = self.resting.pop(rng.randrange(len(self.resting)))
            sent = Sent(at, "cancel", order_id, client)
            self.sent.append(sent)
            return sent, "DELETE", f"/orders/{order_id}", None
        side = rng.choice(("buy", "sell"))
        offset = rng.randint(-3, 30)  # negative: through the touch
        ticks = MID_TICKS - offset if side == "buy" else MID_TICKS + offset
        key = f"{self.prefix}-{len(self.sent)}-{uuid.uuid4().hex[:8]}"
        body = {"idempotency_key": key, "client_id": client, "instrument": INSTRUMENT, "side": side,
                "type": "limit", "price": f"{ticks // 100}.{ticks % 100:02d}",
                "quantity": f"0.{rng.randint(1, 50):04d}"}
        sent = Sent(at, "place", key, client)
        self.sent.append(sent)
        return sent, "POST", "/orders", body

    async def _connection(self, queue: asyncio.Queue[tuple[Sent, str, str, Any] | None], start: float) -> None:
        conn = Connection(self.base, self.key)
        while (item := await queue.get()) is not None:
            sent, method, path, body = item
            remaining = self.timeout_s - (time.monotonic() - start - sent.at)
            try:
                if remaining <= 0:
                    sent.error = "unsent"
                    continue
                written = time.monotonic()
                async with asyncio.timeout(self.timeout_s):
                    sent.status, sent.body = await conn.call(method, path, body)
                sent.service_s = time.monotonic() - written
            except TimeoutError:
                sent.error = "timeout"
                conn.close()
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                # Refused, or cut by a process that died: an answer at once, if not a good one.
                sent.error = "connection"
            sent.latency_s = time.monotonic() - start - sent.at
            if sent.kind == "place" and sent.status in (200, 201) and isinstance(sent.body, dict) \
                    and sent.body.get("status") in ("open", "partially_filled"):
                self.resting.append(sent.body["order_id"])
        conn.close()


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


async def _at(delay_s: float, action: Any) -> None:
    await asyncio.sleep(delay_s)
    await asyncio.to_thread(action)


def run_scenario(ex: Exchange, name: str, a: argparse.Namespace) -> dict[str, Any]:
    rate = a.rate * (a.overload if name == "overload" else 1)
    load = Load(ex.url, rate, a.timeout_s, connections=a.overload_connections if name == "overload" else 64,
                seed=sum(map(ord, name)), prefix=f"chaos-{name}-", key=ex.key)
    before = ex.rss()
    fault_at = a.lead_s
    fault_end = fault_at + a.fault_s
    duration = fault_end + a.tail_s
    kill_times: list[float] = []
    db_up: list[float] = []  # PostgreSQL's restart asked, and its first connection, from the load's start

    async def drive() -> None:
        started = time.monotonic()

        def pg_start() -> None:
            db_up.extend(ex.pg_start_watched(lambda: time.monotonic() - started))

        faults: list[Any] = []
        if name == "db-stop":
            faults = [_at(fault_at, ex.pg_stop), _at(fault_end, pg_start)]
        elif name == "db-crash":
            faults = [_at(fault_at, lambda: ex.pg_stop("immediate")), _at(fault_at + 1, pg_start)]
        elif name in ("db-hang", "db-hang-master"):
            master = name == "db-hang-master"
            faults = [_at(fault_at, lambda: ex.signal_postgres(signal.SIGSTOP, master)),
                      _at(fault_end, lambda: ex.signal_postgres(signal.SIGCONT, master))]
        elif name == "worker-freeze":
            pid = ex.worker_pid()
            assert pid is not None
            faults = [_at(fault_at, lambda: os.kill(pid, signal.SIGSTOP)),
                      _at(fault_end, lambda: os.kill(pid, signal.SIGCONT))]
        elif name == "worker-kill":
            rng = random.Random(7)
            kill_times.extend(sorted(rng.uniform(fault_at, fault_end) for _ in range(a.kills)))

            def kill_worker() -> None:
                pid = ex.worker_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
            faults = [_at(t, kill_worker) for t in kill_times]
        elif name == "web-kill":
            def kill_web() -> None:
                for pid in ex.web_pids()[-1:]:
                    os.kill(pid, signal.SIGKILL)
            faults = [_at(fault_at, kill_web)]
        elif name == "overload":
            pass
        await asyncio.gather(load.run(duration if name != "overload" else a.overload_s), *faults)

    samples: list[dict[str, int]] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(2)
            samples.append(await asyncio.to_thread(ex.rss))

    # The generator's own event loop: how late a 10 ms sleep wakes. While it is late, no answer
    # is read, and the time counts in every pending request's service time as if the exchange's.
    lags: list[float] = []

    async def watch_own_loop() -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - asked - 0.01)

    async def drive_and_sample() -> None:
        sampler = asyncio.create_task(sample())
        watcher = asyncio.create_task(watch_own_loop())
        try:
            await drive()
        finally:
            sampler.cancel()
            watcher.cancel()

    # uvloop (the server's loop too): the generator shares the machine with the exchange, and on
    # asyncio's own loop its 2,000 connections took the CPU the exchange's answers needed.
    # And no collection of the generator's own heap while it measures (timeit's rule): run from
    # the test suite, that heap holds everything the suite built before, and a collection of it
    # pauses every connection's reading of its answer: time that would count as the exchange's.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        uvloop.run(drive_and_sample())
    finally:
        gc.enable()
        gc.unfreeze()
    if name == "overload":
        fault_end = a.overload_s
    recovered_s = ex.wait_placing(120)
    summary = summarize(ex, name, load, before, fault_at, fault_end, recovered_s)
    summary["generator_lag_p99_s"] = round(percentile(lags, 99), 3)
    summary["generator_lag_max_s"] = round(max(lags, default=0.0), 3)
    if db_up:
        # the restarted PostgreSQL's own start (crash recovery included) is not the exchange's
        asked, up = db_up
        first_ok = min((s.at + s.latency_s for s in load.sent if s.at > up and s.kind == "place"
                        and s.status in (200, 201)), default=None)
        summary["database_restart_s"] = round(up - asked, 3)
        summary["back_after_database_up_s"] = None if first_ok is None else round(first_ok - up, 3)
    # Memory over the run: the largest sample, and the last against the one a quarter in.
    if samples:
        summary["rss_max"] = {k: max(s[k] for s in samples) for k in samples[0]}
        summary["rss_quarter_in"] = samples[len(samples) // 4]
        summary["rss_end"] = samples[-1]
    return summary


def summarize(ex: Exchange, name: str, load: Load, before: dict[str, int], fault_at: float, fault_end: float,
              recovered_s: float) -> dict[str, Any]:
    statuses = Counter(s.status for s in load.sent)
    places = [s for s in load.sent if s.kind == "place"]
    with ex.connect() as conn:
        like = load.prefix.replace("_", "\\_") + "%"
        rows = conn.execute("SELECT idempotency_key, order_id::text, count(*) OVER (PARTITION BY client_id, "
                            "idempotency_key) FROM orders_order WHERE client_id LIKE %s", (like,)).fetchall()
        mismatched = conn.execute("""
            SELECT count(*) FROM (SELECT o.order_id FROM orders_order o
              LEFT JOIN orders_trade t ON t.buy_order_id = o.order_id OR t.sell_order_id = o.order_id
             WHERE o.client_id LIKE %s AND o.status <> 'pending'
             GROUP BY o.order_id, o.filled_quantity HAVING o.filled_quantity <> coalesce(sum(t.quantity), 0)) x
        """, (like,)).fetchone()[0]
    stored = {key: order_id for key, order_id, _ in rows}
    duplicated = sum(1 for _, _, n in rows if n > 1) + mismatched
    lost = [s.key for s in places if s.status in (200, 201, 202) and (
        s.key not in stored or stored[s.key] != (s.body or {}).get("order_id"))]
    failed_yet_executed = [s.key for s in places if s.status == 503 and s.key in stored]
    during = [s for s in load.sent if fault_at <= s.at <= fault_end]
    after = [s for s in load.sent if s.at > fault_end and s.kind == "place" and s.status in (200, 201)]
    first_ok = min((s.at + s.latency_s for s in after), default=None)
    books_ok, books_line = ex.check_books()
    return {
        "scenario": name, "offered": len(load.sent), "rate": load.rate,
        "answered": {str(k): v for k, v in sorted(statuses.items())},
        "timed_out": sum(1 for s in load.sent if s.error == "timeout"),
        "connection_failed": sum(1 for s in load.sent if s.error == "connection"),
        "unsent": sum(1 for s in load.sent if s.error == "unsent"),
        "worst_latency_s": round(max((s.latency_s for s in load.sent), default=0), 3),
        "accepted_p99_s": round(percentile([s.latency_s for s in load.sent if 200 <= s.status < 300], 99), 3),
        "refused_p99_s": round(percentile([s.latency_s for s in load.sent if s.status in (429, 503)], 99), 3),
        "accepted_service_p99_s": round(percentile([s.service_s for s in load.sent if 200 <= s.status < 300], 99), 3),
        "refused_service_p99_s": round(percentile([s.service_s for s in load.sent if s.status in (429, 503)], 99), 3),
        "accepted_per_s": round(sum(1 for s in load.sent if 200 <= s.status < 300)
                                / max(1e-9, max((s.at for s in load.sent), default=0)), 1),
        "worst_latency_during_fault_s": round(max((s.latency_s for s in during if s.status), default=0), 3),
        # From the moment each request was written (the exchange's part of the latency, without
        # the wait for one of the generator's connections).
        "worst_service_s": round(max((s.service_s for s in load.sent if s.status), default=0), 3),
        "back_after_s": None if first_ok is None else round(max(0.0, first_ok - fault_end), 3),
        "probe_placed_after_s": round(recovered_s, 3),
        "lost": len(lost), "duplicated": duplicated, "failed_yet_executed": len(failed_yet_executed),
        "book_check": books_ok, "book_check_says": books_line,
        "rss_before": before, "rss_after": ex.rss(),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def holds(summary: dict[str, Any]) -> bool:
    return (summary["lost"] == 0 and summary["duplicated"] == 0 and summary["failed_yet_executed"] == 0
            and summary["timed_out"] == 0 and summary["book_check"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(SCENARIOS)} (default: all of them)")
    parser.add_argument("--rate", type=float, default=300, help="orders and cancels per second (default 300)")
    parser.add_argument("--fault-s", type=float, default=10, help="how long a fault lasts (default 10)")
    parser.add_argument("--lead-s", type=float, default=5, help="load before the fault (default 5)")
    parser.add_argument("--tail-s", type=float, default=10, help="load after the fault (default 10)")
    parser.add_argument("--kills", type=int, default=20, help="worker-kill: how many kills (default 20)")
    parser.add_argument("--overload", type=float, default=3, help="overload: times the rate it sustains")
    parser.add_argument("--sustained", type=float, default=5000,
                        help="overload: the rate the exchange sustains here (docs/performance.md)")
    parser.add_argument("--overload-s", type=float, default=60)
    parser.add_argument("--overload-connections", type=int, default=2000,
                        help="overload: clients at once (each a keep-alive connection)")
    parser.add_argument("--timeout-s", type=float, default=10, help="a request without an answer by then")
    parser.add_argument("--short", action="store_true", help="the short versions make test runs")
    parser.add_argument("--json", type=Path, help="write the summaries here")
    parser.add_argument("--port", type=int, default=0, help="the exchange's HTTP port (default: a free one)")
    a = parser.parse_args()
    unknown = [name for name in a.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    a.scenarios = a.scenarios or list(SCENARIOS)
    if a.short:
        vars(a).update(SHORT)
    results = []
    for name in a.scenarios:
        ex = Exchange(name, port=a.port)
        if name == "overload":
            a.rate = a.sustained
        try:
            ex.start()
            summary = run_scenario(ex, name, a)
        finally:
            ex.stop()
        results.append(summary)
        print(json.dumps(summary))
        print(f"{name}: {'holds' if holds(summary) else 'BROKEN'}; offered {summary['offered']}, answered "
              f"{summary['answered']}, worst {summary['worst_latency_s']} s (during the fault "
              f"{summary['worst_latency_during_fault_s']} s), back after {summary['back_after_s']} s"
              + (f" ({summary['back_after_database_up_s']} s after PostgreSQL accepted connections again, "
                 f"{summary['database_restart_s']} s after its restart was asked)" if "database_restart_s" in summary
                 else "") + f", lost "
              f"{summary['lost']}, duplicated {summary['duplicated']}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0 if all(holds(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
