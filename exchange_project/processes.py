"""The exchange's processes, as commands: the matching worker and the ASGI server. Used by
`manage.py runexchange` (which supervises them) and by the test suite (which starts them the
same way against its throwaway database)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("daphne", "uvicorn")


def worker_command() -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "runworker", "--layer", "matching", "matching"]


def server_command(port: int, server: str = "daphne", workers: int = 1, host: str = "127.0.0.1") -> list[str]:
    if server == "daphne":
        if workers != 1:
            raise ValueError("daphne runs one process; use --server uvicorn for several")
        return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "--proxy-headers",
                "exchange_project.asgi:application"]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(workers),
                "--no-access-log", "--lifespan", "off", "exchange_project.asgi:application"]
    raise ValueError(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env
