"""A local WebSocket server that speaks Binance's @trade / @aggTrade format, in a thread.

`script` is a list of connections: each is the list of messages to send on that connection
before closing it abruptly (the next connection gets the next list). After the last list the
server keeps the connection open and silent."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from websockets.asyncio.server import serve


def trade(t: int, price: str, qty: str, buyer_is_maker: bool, symbol: str = "BTCUSDT") -> dict[str, Any]:
    return {"e": "trade", "E": 1700000000000 + t, "s": symbol, "t": t, "p": price, "q": qty,
            "T": 1700000000000 + t, "m": buyer_is_maker, "M": True}


def agg_trade(a: int, price: str, qty: str, buyer_is_maker: bool, symbol: str = "BTCUSDT") -> dict[str, Any]:
    return {"e": "aggTrade", "E": 1700000000000 + a, "s": symbol, "a": a, "p": price, "q": qty,
            "f": a * 10, "l": a * 10 + 2, "T": 1700000000000 + a, "m": buyer_is_maker, "M": True}


class FakeBinance:
    def __init__(self, script: list[list[dict[str, Any]]]) -> None:
        self.script = script
        self.connections = 0
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/btcusdt@trade"

    async def _handler(self, ws: Any) -> None:
        n = self.connections
        self.connections += 1
        if n < len(self.script):
            for message in self.script[n]:
                await ws.send(orjson.dumps(message).decode())
            ws.transport.abort()  # a dropped connection, not a clean close
            return
        await asyncio.Future()  # stay open and silent

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> FakeBinance:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)
