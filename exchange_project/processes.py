"""The exchange's processes, as commands: the matching worker and the ASGI server. Used by
`manage.py runexchange` (which supervises them) and by the test suite (which starts them the
same way against its throwaway database)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("granian", "daphne", "uvicorn")


def worker_command() -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "runworker", "--layer", "matching", "matching"]


def server_command(port: int, server: str | None = None, workers: int = 1, host: str = "127.0.0.1",
                   fast: bool = True) -> list[str]:
    """The ASGI server's command line (default: settings.ASGI_SERVER, granian by measurement:
    docs/decisions.md). fast=False picks the pure-Python event loop / parser where the server
    has a choice (for comparisons in load-test/)."""
    if server is None:
        from django.conf import settings

        server = settings.ASGI_SERVER
    if server == "granian":
        # asginl: ASGI without lifespan (Channels' ProtocolTypeRouter has no lifespan route).
        # --backpressure: the server hands the application more requests at once than it admits
        # (orders.admission), so that the excess is refused at once instead of waiting unseen in
        # the server; a web worker that dies is started again.
        from django.conf import settings

        return [sys.executable, "-m", "granian", "--interface", "asginl", "--host", host, "--port", str(port),
                "--workers", str(workers), "--loop", "uvloop" if fast else "asyncio", "--log-level", "warning",
                "--backpressure", str(16 * settings.REQUESTS_IN_FLIGHT_MAX), "--respawn-failed-workers",
                "--respawn-interval", "0.2",
                "exchange_project.asgi:application"]
    if server == "daphne":
        if workers != 1:
            raise ValueError("daphne runs one process; use --server uvicorn for several")
        return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "--proxy-headers",
                "exchange_project.asgi:application"]
    if server == "uvicorn":
        loop, http = ("auto", "auto") if fast else ("asyncio", "h11")
        return [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(workers),
                "--loop", loop, "--http", http, "--no-access-log", "--lifespan", "off",
                "exchange_project.asgi:application"]
    raise ValueError(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")
    env["PYTHONUNBUFFERED"] = "1"
    # A parent on the embedded PostgreSQL is development (settings.PGBOURSE_ENV), and so are the
    # processes it starts, though it hands them a DATABASE_URL (of that same embedded server).
    if not os.environ.get("DATABASE_URL"):
        env.setdefault("PGBOURSE_ENV", "development")
    if extra:
        env.update(extra)
    return env


def metrics_dir(name: str) -> str:
    """A fresh directory for the metrics of one running exchange (its worker and web processes
    write there; /metrics merges them): var/metrics/<name>, emptied. Pass it to the children as
    PROMETHEUS_MULTIPROC_DIR."""
    path = ROOT / "var" / "metrics" / name
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    return str(path)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child started with start_new_session=True and everything it spawned (granian's
    worker processes): SIGTERM to the group, then SIGKILL to whatever is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers, even when the leader exited
    except ProcessLookupError:
        pass
    proc.wait()
