"""What one WebSocket send costs the ASGI server, without Channels or the exchange.

Starts the server on a trivial ASGI app (this file's `app`): for each request from the client it
sends N identical text frames with `await send(...)` in a loop, and reports the server
process's CPU time (all its threads) and wall time per send. The client is one `websockets`
connection that reads everything. This is the floor under the fan-out: at 500 subscribers,
every round of frames costs 500 of these sends however little is in each frame.

  python load-test/ws_send_cost.py                       # granian (the exchange's server)
  python load-test/ws_send_cost.py --server uvicorn --ws websockets
  python load-test/ws_send_cost.py --events 1            # one event per frame instead of 40
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import CpuTimes, usage

EVENT = ('{"event":"book_delta","instrument":"BTC-USD","side":"bid","price":"30000.12",'
         '"new_quantity":"0.0123","seq":123456,"checksum":1234567890}')


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    frame = {"type": "websocket.send", "text": "[" + ",".join([EVENT] * int(os.environ["WS_SEND_EVENTS"])) + "]"}
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        count = int(message["text"])
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            await send(frame)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await send({"type": "websocket.send", "text": f"done {cpu / count * 1e6:.1f} {wall / count * 1e6:.1f}"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(port: int, counts: list[int]) -> list[tuple[int, float, float]]:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=2**24, open_timeout=30) as ws:
        out = []
        for count in counts:
            await ws.send(str(count))
            while True:
                text = await ws.recv()
                if isinstance(text, str) and text.startswith("done "):
                    _, cpu, wall = text.split()
                    out.append((count, float(cpu), float(wall)))
                    break
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--ws", default="websockets", help="uvicorn's --ws implementation")
    parser.add_argument("--events", type=int, default=40, help="events per frame (default 40, ~5.6 KB)")
    parser.add_argument("--sends", default="2000,10000,10000", help="comma list: sends per round")
    args = parser.parse_args()
    port = free_port()
    here = Path(__file__).resolve().parent
    if args.server == "granian":
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--port", str(port), "--loop", "uvloop",
               "--log-level", "warning", "ws_send_cost:app"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--port", str(port), "--loop", "uvloop", "--ws", args.ws,
               "--log-level", "warning", "ws_send_cost:app"]
    env = {**os.environ, "WS_SEND_EVENTS": str(args.events), "PYTHONPATH": str(here)}
    server = subprocess.Popen(cmd, cwd=here, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)
        before = CpuTimes.now()
        rounds = asyncio.run(drive(port, [int(n) for n in args.sends.split(",")]))
        busy, steal = usage(before, CpuTimes.now())
    finally:
        server.terminate()
        server.wait(10)
    size = len("[" + ",".join([EVENT] * args.events) + "]")
    label = args.server if args.server == "granian" else f"uvicorn --ws {args.ws}"
    print(f"{label}: {size}-byte text frames, one `await send()` each")
    for count, cpu, wall in rounds:
        print(f"  {count:6d} sends: {cpu:5.1f} us of server CPU per send, {wall:5.1f} us wall")
    print(f"  machine busy {busy:.0f}%, taken by the host (steal) {steal:.0f}%")


if __name__ == "__main__":
    main()
