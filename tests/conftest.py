"""The live exchange the tests talk to: a throwaway PostgreSQL database (embedded server unless
DATABASE_URL is set), the matching worker and the ASGI server as real processes, real HTTP and
real WebSockets. Each test makes its own instrument, so tests never see each other's books."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exchange_project import pgembed
from exchange_project.processes import ROOT, child_env, server_command, stop_process_group, worker_command

# The embedded PostgreSQL, if DATABASE_URL names none; stopped at the end if this run started it.
STARTED_DATABASE = not os.environ.get("DATABASE_URL") and pgembed.ensure_running(quiet=True)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if STARTED_DATABASE:
        pgembed.stop()

LOG_DIR = ROOT / "var" / "test-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(db: dict[str, Any]) -> str:
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{db['NAME']}?host={host}&port={db.get('PORT') or 5432}"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{user}{password}@{host}{port}/{db['NAME']}"


def conninfo(db: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"dbname": db["NAME"], "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
              "host": db.get("HOST") or None, "port": db.get("PORT") or None}
    return {k: v for k, v in kwargs.items() if v is not None}


@dataclass
class Exchange:
    http: str
    ws: str
    port: int
    database_url: str
    conninfo: dict[str, Any]
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    # -- processes ------------------------------------------------------------------------
    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}-{self.starts.get(name, 0)}.log"

    def _spawn(self, name: str, cmd: list[str]) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        out = open(self._log(name), "wb")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=ROOT, start_new_session=True)

    def start_worker(self, wait: bool = True) -> None:
        self._spawn("worker", worker_command())
        if wait:
            self.wait_for_log("worker", "matching worker ready", 30)

    def kill_worker(self) -> None:
        """kill -9 the matching worker."""
        proc = self.procs.get("worker")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def start_server(self) -> None:
        self._spawn("server", server_command(self.port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.procs["server"].poll() is not None:
                    raise RuntimeError("server died:\n" + self._log("server").read_text()[-3000:]) from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def wait_for_log(self, name: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self._log(name).read_text(errors="replace"):
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} died:\n" + self._log(name).read_text()[-3000:])
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready:\n" + self._log(name).read_text()[-3000:])

    def log_text(self, name: str) -> str:
        return self._log(name).read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process_group(proc)

    # -- data -----------------------------------------------------------------------------
    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(**{**self.conninfo, **kwargs}, autocommit=True)

    def make_instrument(self, symbol: str | None = None, tick_size: str = "0.01", lot_size: str = "0.0001",
                        min_qty: str = "0.0001", max_qty: str = "1000", max_price: str = "10000000",
                        min_notional: str | None = None) -> str:
        symbol = symbol or f"T{uuid.uuid4().hex[:8].upper()}-USD"
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO orders_instrument (symbol, tick_size, lot_size, min_qty, max_qty, max_price, "
                "min_notional, is_active, last_seq, last_trade_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, true, 0, 0, now())",
                (symbol, tick_size, lot_size, min_qty, max_qty, max_price, min_notional))
        return symbol


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> Iterator[None]:
    """Always create the throwaway test database. (pytest-django's own fixture creates it only
    for tests marked django_db; these tests reach the database through the live processes.)"""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        old = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(old, verbosity=0)


@pytest.fixture(scope="session")
def exchange(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Exchange]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    assert db["NAME"].startswith("test_"), f"refusing to run the live tests against {db['NAME']}"
    url = database_url(db)
    port = free_port()
    log_dir = LOG_DIR / f"run-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    ex = Exchange(http=f"http://127.0.0.1:{port}", ws=f"ws://127.0.0.1:{port}/stream", port=port,
                  database_url=url, conninfo=conninfo(db),
                  env=child_env({"DATABASE_URL": url, "ORDER_ACK_TIMEOUT_S": "2", "LOG_LEVEL": "INFO"}),
                  log_dir=log_dir)
    try:
        ex.start_worker()
        ex.start_server()
        yield ex
    finally:
        ex.stop()
