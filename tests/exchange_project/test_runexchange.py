"""`manage.py runexchange` (what `make run` runs) stops cleanly: its WebSockets get a close frame,
and the embedded PostgreSQL it started stops with it (one started by `make db-start` stays)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import websockets

from exchange_project.processes import ROOT, child_env
from tests.conftest import free_port
from tests.http import call


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runexchange", "--port", str(port)],
                            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if call(f"http://127.0.0.1:{port}", "GET", "/instruments", timeout=5)[0] == 200:
                return proc
        except OSError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


def test_ctrl_c_closes_every_websocket_with_a_close_frame(exchange: Any, tmp_path: Path) -> None:
    port = free_port()
    sym = exchange.make_instrument()
    proc = start(child_env(exchange.env), port, tmp_path / "run.log")
    try:
        async def scenario() -> Any:
            async with websockets.connect(f"ws://127.0.0.1:{port}/stream") as ws:
                await ws.send(json.dumps({"op": "subscribe", "instrument": sym, "channels": ["trades"]}))
                await ws.recv()
                # when the operator stops the exchange (Ctrl-C)
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 15)
                except websockets.ConnectionClosed as closed:
                    return closed.rcvd

        received = asyncio.run(scenario())
        # then the socket was closed with 1001 "going away", not dropped
        assert received is not None and received.code == 1001, received
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_stops_the_embedded_postgresql_it_started(tmp_path: Path) -> None:
    # (under var/: the server runs as its own OS user, which must reach the data directory)
    pgdata = ROOT / "var" / f"test-pgdata-{os.getpid()}"
    env = child_env({"PGBOURSE_PGDATA": str(pgdata)})
    env.pop("DATABASE_URL", None)
    try:
        stopped_with_it(env, tmp_path)
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)


def stopped_with_it(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = start(env, port, tmp_path / "run.log")
    status = [sys.executable, "-m", "exchange_project.pgembed", "status"]
    assert subprocess.run(status, env=env, capture_output=True, text=True, cwd=ROOT).stdout.startswith("running")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0
    assert subprocess.run(status, env=env, capture_output=True, text=True, cwd=ROOT).stdout.startswith("stopped")
    assert "embedded PostgreSQL stopped" in (tmp_path / "run.log").read_text()
