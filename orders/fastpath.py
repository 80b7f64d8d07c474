"""The lean HTTP path for order entry, beside Django.

The writes (POST /orders with a JSON body, cancel and modify) are the hot path of the exchange.
Through Django they would pay for the request object, every middleware (each a thread hop under
ASGI) and DRF's negotiation (docs/decisions.md); worse, a synchronous DRF view that waits for
the matching worker holds Django's one thread-sensitive executor thread, so cancels would queue
behind each other one at a time. Here the body is parsed by orjson,
validated by the same orders.validation used everywhere, handled by orders.services, and
answered; everything else (GET, the browsable API's HTML forms, admin) goes to Django untouched.
POST /orders/test validates like a real order and returns it without storing anything (as
Binance's /order/test): the bare endpoint that docs/performance.md compares the order path to.

Each request is authenticated (orders.auth: 401/403 before its body is read) and counted
against its caller's budget (orders.limits: 429 with Retry-After); every answer carries the
budget left (X-RateLimit-Limit, -Remaining, -Reset). A request with no key but a session cookie
goes to Django, where a staff session is accepted (and CSRF checked).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from django.conf import settings

from matching.contract import Code

from . import auth, limits, metrics
from .admission import overloaded, shedding
from .callers import client_ip
from .db import FAILURES, DatabaseDown
from .errors import RETRY_AFTER_S, RETRY_STATUSES, ApiError, database_unavailable
from .instruments import by_symbol
from .logs import new_request_id, request_id
from .services import order_command, orders_place
from .validation import instrument_symbol, parse_json, place_request, tested_order

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json"), (b"vary", b"Accept")]
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})
RETRY_AFTER = str(RETRY_AFTER_S).encode()
MAX_BODY = 64 * 1024


def _route(scope: Scope) -> tuple[str, str, str | None] | None:
    """(operation, order id, the API key presented) when this request takes the lean path,
    else None (Django's).

    The hot writes: POST /orders and /orders/test (place), DELETE /orders/{id} and
    POST /orders/{id}/cancel (cancel), PATCH or PUT /orders/{id} (modify).
    """
    method = scope["method"]
    path = scope["path"]
    if method == "POST" and path in ("/orders", "/orders/"):
        route = ("place", "")
    elif method == "POST" and path == "/orders/test":
        route = ("test", "")
    else:
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "orders" or not parts[2]:
            return None
        if len(parts) == 3 and method == "DELETE":
            route = ("cancel", parts[2])
        elif len(parts) == 3 and method in ("PATCH", "PUT"):
            route = ("modify", parts[2])
        elif len(parts) == 4 and parts[3] == "cancel" and method == "POST":
            route = ("cancel", parts[2])
        else:
            return None
    content_type = b""
    accept = b""
    supplied_id = None
    authorization = x_api_key = None
    cookie = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"accept":
            accept = value
        elif name == b"x-request-id":
            supplied_id = value
        elif name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            x_api_key = value
        elif name == b"cookie":
            cookie = True
    media = content_type.split(b";", 1)[0].strip().lower()
    # The browsable API's HTML forms (form-encoded, or asking for HTML back) stay with DRF.
    if media in FORM_TYPES or b"text/html" in accept:
        return None
    key = auth.key_from_headers(authorization, x_api_key)
    if key is None and cookie:
        return None  # perhaps a staff session: Django's
    request_id.set(new_request_id(supplied_id))
    if media != b"application/json" and route[0] != "cancel":
        # A body of another type, or of none named, is refused rather than guessed at.
        return ("unsupported", "", key)
    return (*route, key)


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, by the deadline (settings.HTTP_BODY_TIMEOUT_S): a client that trickles
    its body is cut off with 408 rather than holding the request open."""
    chunks: list[bytes] = []
    size = 0
    deadlines = _body_deadlines()
    task = deadlines.watch()
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, Code.BODY_TOO_LARGE, f"Request body exceeds {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        raise ApiError(408, Code.REQUEST_TIMEOUT,
                       f"The request body did not arrive within {settings.HTTP_BODY_TIMEOUT_S:g} s.") from None
    finally:
        deadlines.readers.pop(task, None)


class _BodyDeadlines:
    """The bodies being read in one event loop and when each must be complete, under one timer
    that wakes every BODY_SWEEP_S while any is being read, rather than a timer set and cancelled
    for every request (asyncio.timeout): a body is cut off within BODY_SWEEP_S of its deadline."""

    __slots__ = ("readers", "cut", "_sweeper")

    def __init__(self) -> None:
        self.readers: dict[asyncio.Task[Any], float] = {}
        self.cut: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self.readers[task] = loop.time() + settings.HTTP_BODY_TIMEOUT_S
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(), name="pgbourse-body-deadlines")
        return task

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled for its deadline (and is then no longer cancelled)."""
        if task not in self.cut:
            return False
        self.cut.discard(task)
        task.uncancel()
        return True

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.readers:
            await asyncio.sleep(BODY_SWEEP_S)
            now = loop.time()
            for task, deadline in list(self.readers.items()):
                if deadline <= now and task not in self.cut:
                    self.cut.add(task)
                    task.cancel()


BODY_SWEEP_S = 0.25
_deadlines_by_loop: dict[int, _BodyDeadlines] = {}


def _body_deadlines() -> _BodyDeadlines:
    key = id(asyncio.get_running_loop())
    found = _deadlines_by_loop.get(key)
    if found is None:
        found = _deadlines_by_loop[key] = _BodyDeadlines()
    return found


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive() that gives the body already read, then the connection's own messages."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: dict[str, Any],
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode()),
               (b"x-request-id", (request_id.get() or "").encode()), *(headers or ())]
    if status in RETRY_STATUSES and not any(name == b"retry-after" for name, _ in headers):
        headers.append((b"retry-after", RETRY_AFTER))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def place_order(body: bytes, caller: auth.Caller, *, test_only: bool = False) -> tuple[int, dict[str, Any]]:
    data = auth.bind_client(caller, parse_json(body))
    instrument = await by_symbol(symbol) if (symbol := instrument_symbol(data)) else None
    order = place_request(data, instrument)
    if test_only:
        return 200, tested_order(order, instrument)
    (result,) = await orders_place([order])
    return result.status, result.body


async def command_order(operation: str, order_id: str, body: bytes, caller: auth.Caller) -> tuple[int, dict[str, Any]]:
    """Cancel or modify: the same service as the DRF views and the WebSocket."""
    data = parse_json(body) if operation == "modify" else None
    result = await order_command(order_id, operation, data, client_id=caller.limited_to)
    return result.status, result.body


def http_application(django_app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        auth.start_background()  # at the first message of any kind: the lifespan's, in every process
        if scope["type"] != "http":
            await django_app(scope, receive, send)
            return
        route = _route(scope)
        if route is None:
            # Django's requests get the same body deadline; its own limits apply after that.
            try:
                body = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024 * 1024)
            except ApiError as exc:
                await _respond(send, exc.status_code, exc.body())
                return
            except ConnectionError:
                return
            await django_app(scope, _replaying(body, receive), send)
            return
        operation, order_id, key = route
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = []
        try:
            if operation != "test" and shedding():
                raise overloaded()
            caller = await auth.authenticate(key, client_ip(scope))
            auth.require(caller, auth.TRADE)
            usage = await limits.take(caller, limits.Action.COMMANDS if operation in ("cancel", "modify")
                                      else limits.Action.ORDERS)
            if usage is not None:
                headers = usage.headers()
                if usage.limited:
                    raise limits.limited(usage)
            body = await _read_body(receive, MAX_BODY)
            if operation == "unsupported":
                raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE,
                               "Send the body as JSON, with Content-Type: application/json.")
            if operation in ("place", "test"):
                status, payload = await place_order(body, caller, test_only=operation == "test")
            else:
                status, payload = await command_order(operation, order_id, body, caller)
        except ApiError as exc:
            status, payload = exc.status_code, exc.body()
            headers = exc.headers or headers
        except (psycopg.Error, *FAILURES, DatabaseDown):
            status, payload = 503, database_unavailable().body()
        except ConnectionError:
            return
        await _respond(send, status, payload, headers)
        metrics.http_answered(operation, status, started)

    return app
