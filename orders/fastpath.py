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

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from prometheus_client import Counter, Histogram
from psycopg_pool import PoolTimeout

from matching.contract import Code

from . import auth, limits
from .errors import ApiError, database_unavailable
from .instruments import by_symbol
from .services import order_command, orders_place
from .validation import instrument_symbol, parse_json, place_request

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ORDERS_TOTAL = Counter("pgbourse_order_requests_total", "Order entry requests on the fast path",
                       ["operation", "status"])
ORDER_LATENCY = Histogram("pgbourse_order_request_seconds", "Fast-path order entry latency",
                          buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
JSON_HEADERS = [(b"content-type", b"application/json"), (b"vary", b"Accept")]
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
    authorization = x_api_key = None
    cookie = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"accept":
            accept = value
        elif name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            x_api_key = value
        elif name == b"cookie":
            cookie = True
    # The browsable API's HTML form (form-encoded, or asking for HTML back) stays with DRF.
    if content_type and not content_type.startswith(b"application/json"):
        return None
    key = auth.key_from_headers(authorization, x_api_key)
    if key is None and cookie:
        return None  # perhaps a staff session: Django's
    return None if b"text/html" in accept else (*route, key)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, Code.BODY_TOO_LARGE, f"Request body exceeds {MAX_BODY} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: dict[str, Any],
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(headers or ())]})
    await send({"type": "http.response.body", "body": payload})


async def place_order(body: bytes, caller: auth.Caller, *, test_only: bool = False) -> tuple[int, dict[str, Any]]:
    data = auth.bind_client(caller, parse_json(body))
    instrument = await by_symbol(symbol) if (symbol := instrument_symbol(data)) else None
    order = place_request(data, instrument)
    if test_only:
        assert instrument is not None
        return 200, {"instrument": instrument.symbol, "side": order.side.value, "type": order.type.value,
                     "price": order.price, "quantity": order.quantity, "time_in_force": order.time_in_force.value,
                     "post_only": order.post_only, "stp": order.stp.value, "client_id": order.client_id,
                     "idempotency_key": order.idempotency_key, "valid": True}
    (result,) = await orders_place([order])
    return result.status, result.body


async def command_order(operation: str, order_id: str, body: bytes, caller: auth.Caller) -> tuple[int, dict[str, Any]]:
    """Cancel or modify: the same service as the DRF views and the WebSocket."""
    data = parse_json(body) if operation == "modify" else None
    result = await order_command(order_id, operation, data, client_id=caller.limited_to)
    return result.status, result.body


def http_application(django_app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        auth.start_background()
        route = _route(scope) if scope["type"] == "http" else None
        if route is None:
            await django_app(scope, receive, send)
            return
        operation, order_id, key = route
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = []
        try:
            caller = await auth.authenticate(key, auth.client_ip(scope))
            auth.require(caller, auth.TRADE)
            usage = await limits.take(caller, limits.Action.ORDERS if operation in ("place", "test")
                                      else limits.Action.COMMANDS)
            if usage is not None:
                headers = usage.headers()
                if usage.limited:
                    raise limits.limited(usage)
            body = await _read_body(receive)
            if operation in ("place", "test"):
                status, payload = await place_order(body, caller, test_only=operation == "test")
            else:
                status, payload = await command_order(operation, order_id, body, caller)
        except ApiError as exc:
            status, payload = exc.status_code, exc.body()
            headers = exc.headers or headers
        except (psycopg.Error, PoolTimeout, TimeoutError):
            status, payload = 503, database_unavailable().body()
        except ConnectionError:
            return
        ORDERS_TOTAL.labels(operation, str(status)).inc()
        ORDER_LATENCY.observe(time.perf_counter() - started)
        await _respond(send, status, payload, headers)

    return app
