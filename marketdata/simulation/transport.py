"""The three ways a program outside the server places orders, behind one interface:

  http    POST /orders, DELETE /orders/{id}, PATCH /orders/{id} on keep-alive connections
  ws      `op: orders` batches and `op: cancel` on one WS /stream connection (no modify there)
  direct  in-process orders.validation + orders.services, as the web processes call them

Every call answers like the REST API: (HTTP status, body), the body an order or the one error
shape {"code", "detail", "fields"}. load_orders and simulate use these, so both take the real
order path (validation, idempotency, the matching worker, PostgreSQL) whichever they choose.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

Answer = tuple[int, dict[str, Any]]
# Messages a WebSocket client may have in flight: the server pipelines up to 8 orders_place
# calls per connection (marketdata.consumers.PLACE_CONCURRENCY), so 8 keeps it busy.
WS_WINDOW = 8
WS_MAX_BATCH = 1000  # marketdata.consumers.MAX_ORDERS_PER_MESSAGE
LOST = 599  # the status of a request whose answer never came (connection lost)


def _default(value: Any) -> Any:
    return str(value)  # Decimal: exact, as a string


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default)


class Transport(Protocol):
    name: str
    can_modify: bool

    async def place(self, bodies: Sequence[dict[str, Any]]) -> list[Answer]: ...
    async def cancel(self, order_id: str) -> Answer: ...
    async def modify(self, order_id: str, change: dict[str, Any]) -> Answer: ...
    async def close(self) -> None: ...


def lost(detail: str) -> dict[str, Any]:
    return {"code": "connection_lost", "detail": detail, "fields": {}}


def http_base(url: str) -> str:
    """http://host:port from an http(s):// or ws(s):// URL (path dropped)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def stream_url(url: str) -> str:
    """ws://host:port/stream?batch=1 from an http(s):// or ws(s):// URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.rstrip("/").endswith("/stream") else "/stream"
    return urlunsplit((scheme, parts.netloc, path, "batch=1", ""))


# -- HTTP -----------------------------------------------------------------------------------
class _Connection:
    """One keep-alive HTTP/1.1 connection: one request at a time, Content-Length or chunked."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None, headers: bytes) -> Answer:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body or b'')}\r\n"
                    ).encode() + headers + b"\r\n"
            try:
                self.writer.write(head + (body or b""))
                await self.writer.drain()
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed by the server")
            except (ConnectionError, OSError):
                self.close()
                # Most often a keep-alive connection the server closed while it was idle: once
                # more on a new connection. Should the first copy have arrived after all, the
                # idempotency key makes the second a 200 with the same order (a cancel: 409).
                if attempt == 2:
                    raise
                continue
            return await self._response(status_line)
        raise AssertionError("unreachable")

    async def _response(self, status_line: bytes) -> Answer:
        assert self.reader is not None
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            data = b""
            while (size := int((await self.reader.readline()).split(b";")[0], 16)) > 0:
                data += await self.reader.readexactly(size + 2)
                data = data[:-2]
            await self.reader.readline()
        else:
            data = await self.reader.readexactly(length)
        if close:
            self.close()
        body = orjson.loads(data) if data else {}
        return status, body if isinstance(body, dict) else {"results": body}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpTransport:
    name = "http"
    can_modify = True

    def __init__(self, url: str, connections: int = 32) -> None:
        parts = urlsplit(http_base(url))
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"an http:// URL is needed, got {url!r}")
        self._all = [_Connection(parts.hostname, parts.port or 80) for _ in range(connections)]
        self._free: asyncio.Queue[_Connection] = asyncio.Queue()
        for conn in self._all:
            self._free.put_nowait(conn)
        self._headers = b"Content-Type: application/json\r\nAccept: application/json\r\n"

    async def request(self, method: str, path: str, body: Any = None) -> Answer:
        conn = await self._free.get()
        try:
            return await conn.request(method, path, None if body is None else dumps(body), self._headers)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            return LOST, lost(f"{method} {path}: {exc!r}")
        finally:
            self._free.put_nowait(conn)

    async def place(self, bodies: Sequence[dict[str, Any]]) -> list[Answer]:
        return list(await asyncio.gather(*(self.request("POST", "/orders", b) for b in bodies)))

    async def cancel(self, order_id: str) -> Answer:
        return await self.request("DELETE", f"/orders/{order_id}")

    async def modify(self, order_id: str, change: dict[str, Any]) -> Answer:
        return await self.request("PATCH", f"/orders/{order_id}", change)

    async def close(self) -> None:
        for conn in self._all:
            conn.close()


# -- WebSocket ------------------------------------------------------------------------------
class WsTransport:
    """Orders as `op: orders` messages of up to 1,000 bodies, at most `window` in flight; the
    replies are matched by the message id, so they may come in any order."""

    name = "ws"
    can_modify = False  # WS /stream has no modify op

    def __init__(self, url: str, window: int = WS_WINDOW) -> None:
        self.url = stream_url(url)
        self._window = asyncio.Semaphore(window)
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._closed: str | None = None

    async def connect(self) -> WsTransport:
        import websockets

        self._ws = await websockets.connect(self.url, max_size=2**26, open_timeout=10)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        import websockets

        try:
            async for frame in self._ws:
                events = orjson.loads(frame)
                for event in events if isinstance(events, list) else [events]:
                    fut = self._waiting.pop(str(event.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(event)
        except websockets.ConnectionClosed as exc:
            self._closed = f"closed: {exc}"
        finally:
            self._closed = self._closed or "closed"
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(self._closed))
            self._waiting.clear()

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise ConnectionError(self._closed)
        req_id = str(next(self._ids))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = fut
        await self._ws.send(dumps({**message, "id": req_id}))
        return await fut

    @staticmethod
    def _answer(reply: dict[str, Any]) -> Answer:
        if reply.get("event") == "error":
            body = {k: v for k, v in reply.items() if k not in ("event", "status", "op", "id")}
            body.setdefault("fields", {})
            return int(reply.get("status", 400)), body
        return int(reply["status"]), reply["order"]

    async def place(self, bodies: Sequence[dict[str, Any]]) -> list[Answer]:
        chunks = [bodies[n:n + WS_MAX_BATCH] for n in range(0, len(bodies), WS_MAX_BATCH)]
        return [a for part in await asyncio.gather(*(self._place_chunk(c) for c in chunks)) for a in part]

    async def _place_chunk(self, bodies: Sequence[dict[str, Any]]) -> list[Answer]:
        async with self._window:
            try:
                reply = await self._request({"op": "orders", "orders": list(bodies)})
            except (ConnectionError, OSError) as exc:
                return [(LOST, lost(str(exc)))] * len(bodies)
        if reply.get("event") != "orders_ack":  # the whole message refused (too_many_inflight, ...)
            return [self._answer(reply)] * len(bodies)
        return [self._answer(ack) for ack in reply["acks"]]

    async def cancel(self, order_id: str) -> Answer:
        try:
            return self._answer(await self._request({"op": "cancel", "order_id": order_id}))
        except (ConnectionError, OSError) as exc:
            return LOST, lost(str(exc))

    async def modify(self, order_id: str, change: dict[str, Any]) -> Answer:
        raise NotImplementedError("WS /stream has no modify op")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


# -- in-process -----------------------------------------------------------------------------
class DirectTransport:
    """The order path without a server: what POST /orders does after parsing the body. Needs
    Django set up (a management command) and the matching worker running."""

    name = "direct"
    can_modify = True

    async def place(self, bodies: Sequence[dict[str, Any]]) -> list[Answer]:
        from orders.errors import ApiError
        from orders.instruments import by_symbol
        from orders.services import orders_place
        from orders.validation import instrument_symbol, place_request

        answers: list[Answer | None] = [None] * len(bodies)
        valid: list[tuple[int, Any]] = []
        for n, body in enumerate(bodies):
            try:
                symbol = instrument_symbol(body)
                valid.append((n, place_request(body, await by_symbol(symbol) if symbol else None)))
            except ApiError as exc:
                answers[n] = (exc.status_code, exc.body())
        if valid:
            try:
                results = [(r.status, r.body) for r in await orders_place([p for _, p in valid])]
            except ApiError as exc:
                results = [(exc.status_code, exc.body())] * len(valid)
            for (n, _), answer in zip(valid, results):
                answers[n] = answer
        return [a for a in answers if a is not None]

    async def _command(self, order_id: str, kind: str, data: Any = None) -> Answer:
        from orders.errors import ApiError
        from orders.services import order_command

        try:
            result = await order_command(order_id, kind, data)
        except ApiError as exc:
            return exc.status_code, exc.body()
        return result.status, result.body

    async def cancel(self, order_id: str) -> Answer:
        return await self._command(order_id, "cancel")

    async def modify(self, order_id: str, change: dict[str, Any]) -> Answer:
        return await self._command(order_id, "modify", change)

    async def close(self) -> None:
        return None


async def open_transport(via: str, url: str, connections: int = 32, window: int = WS_WINDOW) -> Transport:
    if via == "http":
        return HttpTransport(url, connections)
    if via == "ws":
        return await WsTransport(url, window).connect()
    if via == "direct":
        return DirectTransport()
    raise ValueError(f"unknown transport {via!r}: http, ws or direct")
