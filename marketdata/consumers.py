"""WS /stream: market data feeds and streaming order entry, one Channels consumer per socket.

Client messages (JSON objects; an optional "id" is echoed in the reply):
  {"op": "auth", "key": K}                              -> authenticated | error
  {"op": "subscribe",   "instrument": X, "channels": [...], "client_id": C (for "orders"),
                         "interval": "1m" or ["1m", "1h"] (for "candles")}
  {"op": "unsubscribe", "instrument": X, "channels": [...] (default: all)}
  {"op": "ping"}
  {"op": "order", ...the body of POST /orders}          -> order_ack | error
  {"op": "orders", "orders": [body, ...]}               -> one orders_ack with a result per body
  {"op": "cancel", "order_id": O}                       -> cancel_ack | error
Channels: trades, book, ticker, snapshot, candles, ticker_24h, orders. Subscribing to `book` sends the full book read
from PostgreSQL as `book_snapshot` with the seq it reflects, after the subscription is live.
A client mistake is answered with {"event": "error", "code": ...}; the socket stays open.

Keys (orders.auth): an API key in the opening handshake (Authorization: Bearer, or X-API-Key)
or in an `auth` message. Without one, the market channels only (their subscriptions spend the
address's read budget). The `orders` channel and order entry act for the key's client (an admin
key names the client); each order of an `orders` message spends one of the key's order budget.
A socket whose key is revoked is told so (api_key_revoked) and closed (4401).

Events reach the socket through this connection's bounded outbox (marketdata.fanout): a client
that falls behind gets `resync_required` instead of silently missing events.
Connect with `?batch=1` to receive frames that are JSON arrays of events (everything queued
for the socket at once), which costs the server and the client far less per event.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import orjson
import psycopg
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from matching.aggregates import INTERVALS
from matching.contract import GOING_AWAY, Code, PlaceOrder, Transport
from orders import auth, db, instruments, limits, metrics
from orders.callers import client_ip
from orders.errors import ApiError, database_unavailable
from orders.listener import hub
from orders.logs import request_id
from orders.selectors import orderbook
from orders.services import Result, order_command, orders_place
from orders.validation import (
    BAD_TEXT_DETAIL,
    InvalidJson,
    bad_text_path,
    instrument_symbol,
    loads_exact,
    place_request,
)

from .fanout import CHANNELS, Outbox, candle_topic, ensure_listening, fanout

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 512 * 1024  # daphne itself closes the socket beyond 1 MiB
MAX_ORDERS_PER_MESSAGE = 1000
# Instruments one socket may follow at once: what a socket holds in the fan-out stays bounded.
MAX_INSTRUMENTS_PER_SOCKET = 50
MAX_INFLIGHT_ORDERS = 20_000  # per connection: placed but not yet acknowledged
PLACE_BATCH = 500  # queued orders (singles and lists) go to orders_place together, up to this many
# Per connection: orders_place calls in flight at once, enough that when the worker answers one
# send, the orders of the next are already waiting (the direct path keeps two sends of up to
# 1,000 orders in flight).
PLACE_CONCURRENCY = 8
CANCEL_CONCURRENCY = 4  # per connection: cancels in flight at once (more wait their turn)
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001
CLOSE_KEY_REVOKED = 4401
# This process's open sockets, for the close frames of a graceful stop (close_all).
OPEN_SOCKETS: set[StreamConsumer] = set()


async def close_all(timeout_s: float = 2.0) -> int:
    """Send every open socket its close frame (1001); the number closed."""
    sockets = list(OPEN_SOCKETS)
    if sockets:
        await asyncio.wait([asyncio.ensure_future(s.going_away()) for s in sockets], timeout=timeout_s)
        log.info("the exchange is stopping: closed %d WebSocket(s) with 1001", len(sockets))
    return len(sockets)


_closing: set[asyncio.Task[int]] = set()


def _on_control(message: str) -> None:
    if message == GOING_AWAY:
        task = asyncio.get_running_loop().create_task(close_all())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


def _hear_going_away() -> None:
    """Have the LISTEN hub tell this process when the exchange stops (runexchange NOTIFYs it
    before it stops the server), whether or not any socket subscribed to market data."""
    hub.add_control_subscriber(_on_control)
    if not hub.is_listening:
        task = asyncio.get_running_loop().create_task(_start_hub())
        _closing.add(task)  # type: ignore[arg-type]
        task.add_done_callback(_closing.discard)  # type: ignore[arg-type]


async def _start_hub() -> None:
    try:
        await hub.ensure_started()
    except (TimeoutError, psycopg.Error, OSError):
        pass  # the hub keeps trying; the feeds say so to whoever subscribes


_connections = itertools.count(1)
KERNEL_SEND_BUFFER_BYTES = 128 * 1024  # per socket (Linux doubles it for bookkeeping)


_service_slots: dict[int, asyncio.Semaphore] = {}


def service_slots() -> asyncio.Semaphore:
    """Order-path calls in flight from all of this process's sockets together.

    Each call takes pooled connections for its insert and reads (not while it waits for the
    worker); without a bound, one pipelining client could crowd REST out of the pool. Half the
    pool's size in calls are allowed at once.
    """
    loop_id = id(asyncio.get_running_loop())
    found = _service_slots.get(loop_id)
    if found is None:
        found = _service_slots[loop_id] = asyncio.Semaphore(max(1, settings.DB_POOL_MAX // 2))
    return found


class BadMessage(Exception):
    def __init__(self, code: Code, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


def parse_message(text: str) -> Any:
    """JSON with exact decimals: a number with a fraction becomes Decimal, never float."""
    try:
        return loads_exact(text)
    except InvalidJson as exc:
        raise BadMessage(Code.INVALID_JSON, f"The message is not valid JSON: {exc}") from None


def _dumps_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def transport_backlog(send: Any) -> Callable[[], int] | None:
    """Unsent bytes in the server's socket buffer, when the server is daphne.

    Daphne's ASGI `send` never waits: it hands every frame to Twisted, which buffers without
    limit while a client does not read. Reading the transport's buffer lets the outbox stop
    writing and bound its own queue instead. Other servers (uvicorn) make `send` wait.
    The kernel's send buffer is fixed too: left to autotuning it grows to megabytes per socket
    (tcp_wmem), all of it stale data that a slow client would still have to read.
    """
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    transport = getattr(protocol, "transport", None)
    if transport is None or not all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen")):
        return None
    handle = transport.getHandle() if hasattr(transport, "getHandle") else None
    if isinstance(handle, socket.socket):
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)

    def backlog() -> int:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    return backlog


class StreamConsumer(AsyncWebsocketConsumer):
    box: Outbox
    caller: auth.Caller
    _pending: list[tuple[PlaceOrder, Callable[[Result | ApiError], None]]]
    _inflight: int
    _placers: int
    _tasks: set[asyncio.Task[Any]]
    _cancel_slots: asyncio.Semaphore

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' default closes stale Django DB connections in a thread before every
        # message; this consumer never uses the ORM, and that hop would cap order entry.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        batch = query.get("batch", ["0"])[-1].lower() in {"1", "true", "yes"}
        self._pending = []
        self._inflight = 0
        self._placers = 0
        self._tasks = set()
        self._cancel_slots = asyncio.Semaphore(CANCEL_CONCURRENCY)
        self.box = Outbox(send=self._send_text, batch=batch, backlog=transport_backlog(self.base_send),
                          on_stalled=self._close_slow)
        self._name = f"ws-{next(_connections)}"
        self._messages = 0
        self._arrived = 0.0
        auth.start_background()
        self.caller = await auth.authenticate(None, client_ip(self.scope))  # anonymous, or keys off
        headers = dict(self.scope.get("headers", ()))
        key = auth.key_from_headers(headers.get(b"authorization"), headers.get(b"x-api-key"))
        await self.accept()
        metrics.websocket_opened()
        self.box.start()
        OPEN_SOCKETS.add(self)
        _hear_going_away()
        if key is not None:
            await self._authenticate(key, None)

    async def disconnect(self, code: int) -> None:
        OPEN_SOCKETS.discard(self)
        box = getattr(self, "box", None)
        if box is not None:
            fanout.drop(box)
            box.stop()
            metrics.websocket_closed()
        caller = getattr(self, "caller", None)
        if caller is not None and caller.key_id is not None:
            auth.unwatch(caller.key_id, self._key_changed)

    async def going_away(self) -> None:
        """The server is stopping: say so with a close frame (1001), so that the client
        reconnects at once instead of waiting to notice a dead connection."""
        OPEN_SOCKETS.discard(self)
        fanout.drop(self.box)
        self.box.stop()
        await self.close(code=CLOSE_GOING_AWAY, reason="server shutting down: reconnect")

    # -- who is asking --------------------------------------------------------------------
    async def _authenticate(self, key: str, request: dict[str, Any] | None) -> None:
        try:
            caller = await auth.authenticate(key, self.caller.ip)
        except ApiError as exc:
            self.reply(self._error_body(exc.status_code, exc.body(), None, request or {"op": "auth"}))
            return
        except (*db.FAILURES, db.DatabaseDown):
            self.error(Code.DATABASE_UNAVAILABLE, database_unavailable().detail, request)
            return
        self.caller = caller
        if caller.key_id is not None:
            auth.watch(caller.key_id, self._key_changed)
        if request is not None:
            reply: dict[str, Any] = {"event": "authenticated", "client_id": caller.client_id, "role": caller.role}
            if "id" in request:
                reply["id"] = request["id"]
            self.reply(reply)

    async def op_auth(self, request: dict[str, Any]) -> None:
        key = request.get("key")
        if not isinstance(key, str):
            raise BadMessage(Code.INVALID_MESSAGE, "\"key\" must be the API key.")
        if self.caller.key_id is not None:
            raise BadMessage(Code.INVALID_MESSAGE, "This socket is authenticated already; another key needs "
                             "another socket.")
        await self._authenticate(key, request)

    def _key_changed(self) -> None:
        self._spawn(self._recheck())

    async def _recheck(self) -> None:
        """The key changed somewhere (or the LISTEN hub reconnected): is it still good? If not,
        the socket is told, loses every subscription at once, answers api_key_revoked to
        whatever needs the key, and is closed (4401). (granian completes a close the app sends
        while it waits for the client's next frame only when that frame arrives: a message or
        a keep-alive ping.)"""
        try:
            self.caller = await auth.recheck(self.caller)
        except ApiError as exc:
            self.reply(self._error_body(exc.status_code, exc.body(), None, {"op": "auth"}))
            fanout.drop(self.box)
            for _ in range(100):  # the error goes out before the close
                if not self.box.items:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            await self.close(code=CLOSE_KEY_REVOKED, reason="API key revoked")
        except (*db.FAILURES, db.DatabaseDown):
            pass  # asked again at the next message that needs the key

    async def _may(self, need: str, request: dict[str, Any]) -> auth.Caller | None:
        """The caller as its key stands now if it may do ``need``; else the error is replied."""
        try:
            self.caller = caller = await auth.recheck(self.caller)
            auth.require(caller, need)
        except ApiError as exc:
            self.reply(self._error_body(exc.status_code, exc.body(), request.get("idempotency_key"), request))
            return None
        except (*db.FAILURES, db.DatabaseDown):
            self.error(Code.DATABASE_UNAVAILABLE, database_unavailable().detail, request)
            return None
        return caller

    async def _spend(self, caller: auth.Caller, action: limits.Action, n: int = 1) -> limits.Usage | None:
        try:
            return await limits.take(caller, action, n)
        except (*db.FAILURES, db.DatabaseDown):
            raise BadMessage(Code.DATABASE_UNAVAILABLE, database_unavailable().detail) from None

    async def _send_text(self, text: str) -> None:
        # Straight to the server's ASGI send: the consumer's send() wrappers cost more than the
        # send itself when one batch goes out to hundreds of sockets.
        await self.base_send({"type": "websocket.send", "text": text})

    def _close_slow(self) -> None:
        fanout.drop(self.box)
        self._spawn(self.close(code=CLOSE_SLOW_CONSUMER, reason="slow consumer: resubscribe to resync"))

    def _spawn(self, coro: Any) -> None:
        # A fresh context: a task serves many messages, so none of their request ids is its own.
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- replies --------------------------------------------------------------------------
    def reply(self, message: dict[str, Any]) -> None:
        self.box.reply_text(orjson.dumps(message, default=_dumps_default).decode())

    def error(self, code: Code, detail: str, request: dict[str, Any] | None = None, **extra: Any) -> None:
        message: dict[str, Any] = {"event": "error", "code": code, "detail": detail}
        if request is not None:
            for name in ("op", "id"):
                if name in request and bad_text_path(request[name]) is None:
                    message[name] = request[name]
        message.update(extra)
        self.reply(message)

    # -- receive --------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self._arrived = time.perf_counter()
        self._messages += 1
        request_id.set(f"{self._name}-{self._messages}")
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_MESSAGE_BYTES:
            self.error(Code.MESSAGE_TOO_LARGE, f"Messages are limited to {MAX_MESSAGE_BYTES} bytes.")
            return
        if text_data is None:
            try:
                text_data = (bytes_data or b"").decode()
            except UnicodeDecodeError:
                self.error(Code.INVALID_JSON, "Binary messages must be UTF-8 JSON.")
                return
        request: Any = None
        try:
            request = parse_message(text_data)
            if not isinstance(request, dict):
                raise BadMessage(Code.INVALID_MESSAGE, "A message must be a JSON object with an \"op\".")
            # A NUL or lone surrogate anywhere but inside the bodies of an `orders` list (each of
            # those is refused on its own, beside the good ones) refuses the whole message.
            envelope = {k: v for k, v in request.items() if k != "orders"} if "orders" in request else request
            where = bad_text_path(envelope)
            if where is not None:
                raise BadMessage(Code.INVALID_STRING, f"{where}: {BAD_TEXT_DETAIL}")
            op = request.get("op")
            handler = self.OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadMessage(Code.UNKNOWN_OP, f"Unknown op {op!r}; use one of {', '.join(sorted(self.OPS))}.")
            await handler(self, request)
        except BadMessage as exc:
            self.error(exc.code, exc.detail, request if isinstance(request, dict) else None, **exc.extra)

    async def op_ping(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"event": "pong"}
        if "id" in request:
            reply["id"] = request["id"]
        self.reply(reply)

    # -- subscriptions --------------------------------------------------------------------
    async def _target(self, request: dict[str, Any], default_all: bool) -> tuple[str, list[str]]:
        symbol = request.get("instrument")
        if not isinstance(symbol, str) or not 0 < len(symbol) <= 32:
            raise BadMessage(Code.INVALID_MESSAGE, "\"instrument\" must be an instrument symbol.")
        channels = request.get("channels")
        if channels is None and default_all:
            channels = list(CHANNELS)
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            raise BadMessage(Code.INVALID_MESSAGE, "\"channels\" must be a non-empty list of channel names.")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise BadMessage(Code.UNKNOWN_CHANNEL, f"Unknown channel(s) {', '.join(map(repr, unknown))}; "
                             f"use {', '.join(CHANNELS)}.", channels=unknown)
        try:
            found = await instruments.by_symbol(symbol)
        except (*db.FAILURES, db.DatabaseDown):
            raise BadMessage(Code.DATABASE_UNAVAILABLE, database_unavailable().detail) from None
        if found is None:
            raise BadMessage(Code.UNKNOWN_INSTRUMENT, f"No instrument {symbol!r}.", instrument=symbol)
        return symbol, list(dict.fromkeys(channels))

    @staticmethod
    def _intervals(request: dict[str, Any], required: bool) -> list[str]:
        """The candle intervals a (un)subscribe names: "interval" is one or a list."""
        raw = request.get("interval", request.get("intervals"))
        if raw is None and not required:
            return list(INTERVALS)
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in INTERVALS for n in names):
            raise BadMessage(Code.INVALID_MESSAGE, f"The candles channel needs \"interval\": one of "
                             f"{', '.join(INTERVALS)}, or a list of them.")
        return list(dict.fromkeys(names))

    @staticmethod
    def _topics(channels: list[str], intervals: list[str]) -> list[str]:
        """The fan-out's topics: a candle subscription is one topic per interval."""
        out: list[str] = []
        for channel in channels:
            out.extend([candle_topic(i) for i in intervals] if channel == "candles" else [channel])
        return out

    async def op_subscribe(self, request: dict[str, Any]) -> None:
        usage = await self._spend(self.caller, limits.Action.READS)
        if usage is not None and usage.limited:
            raise BadMessage(Code.RATE_LIMITED, limits.limited(usage, "subscriptions").detail,
                             retry_after=usage.reset_s)
        symbol, channels = await self._target(request, default_all=False)
        intervals = self._intervals(request, required=True) if "candles" in channels else []
        followed = set(self.box.market) | set(self.box.orders)
        if symbol not in followed and len(followed) >= MAX_INSTRUMENTS_PER_SOCKET:
            raise BadMessage(Code.TOO_MANY_SUBSCRIPTIONS,
                             f"A socket follows at most {MAX_INSTRUMENTS_PER_SOCKET} instruments; unsubscribe first.")
        client_id = request.get("client_id")
        if "orders" in channels:
            caller = await self._may(auth.READ, request)
            if caller is None:
                return
            bound = caller.limited_to
            if bound is not None and client_id is None:
                client_id = bound
            elif bound is not None and client_id != bound:
                err = auth.client_mismatch(bound)
                self.reply(self._error_body(err.status_code, err.body(), None, request))
                return
        if "orders" in channels and (not isinstance(client_id, str) or not 0 < len(client_id) <= 64):
            raise BadMessage(Code.CLIENT_ID_REQUIRED, "The orders channel needs \"client_id\": whose orders.")
        try:
            await ensure_listening()
        except (TimeoutError, psycopg.Error, OSError):
            raise BadMessage(Code.FEED_UNAVAILABLE, "The market data feed is reconnecting; try again shortly.") \
                from None
        # Live first (events start queuing behind this reply), then read the book: a delta that
        # committed before the read carries seq <= the snapshot's and the client drops it.
        fanout.subscribe(self.box, symbol, self._topics(channels, intervals),
                         client_id if "orders" in channels else None)
        reply: dict[str, Any] = {"event": "subscribed", "instrument": symbol, "channels": channels}
        if "orders" in channels:
            reply["client_id"] = client_id
        if intervals:
            reply["intervals"] = intervals
        if "id" in request:
            reply["id"] = request["id"]
        self.reply(reply)
        if "book" in channels:
            await self._send_book(symbol, request)

    async def _send_book(self, symbol: str, request: dict[str, Any]) -> None:
        instrument = await instruments.by_symbol(symbol)
        assert instrument is not None
        try:
            async with db.connection() as conn:
                book = await orderbook(conn, instrument)
        except (*db.FAILURES, db.DatabaseDown):
            self.error(Code.DATABASE_UNAVAILABLE, "Could not read the book; subscribe to book again.", request,
                       instrument=symbol)
            return
        self.reply({"event": "book_snapshot", "instrument": symbol, "seq": book["seq"],
                    "bids": [[lv["price"], lv["quantity"]] for lv in book["bids"]],
                    "asks": [[lv["price"], lv["quantity"]] for lv in book["asks"]]})

    async def op_unsubscribe(self, request: dict[str, Any]) -> None:
        symbol, channels = await self._target(request, default_all=True)
        intervals = self._intervals(request, required=False) if "candles" in channels else []
        client_id = request.get("client_id")
        fanout.unsubscribe(self.box, symbol, self._topics(channels, intervals),
                           client_id if isinstance(client_id, str) else None)
        reply: dict[str, Any] = {"event": "unsubscribed", "instrument": symbol, "channels": channels}
        if "id" in request:
            reply["id"] = request["id"]
        self.reply(reply)

    # -- order entry ----------------------------------------------------------------------
    async def _validate(self, body: Any) -> PlaceOrder:
        symbol = instrument_symbol(body)
        try:
            found = await instruments.by_symbol(symbol) if symbol is not None else None
        except (*db.FAILURES, db.DatabaseDown):
            raise database_unavailable() from None
        return place_request(body, found, Transport.WS)

    async def op_order(self, request: dict[str, Any]) -> None:
        body = {k: v for k, v in request.items() if k not in ("op", "id")}
        key = body.get("idempotency_key")
        if self._inflight >= MAX_INFLIGHT_ORDERS:
            self.error(Code.TOO_MANY_INFLIGHT, f"At most {MAX_INFLIGHT_ORDERS} orders may await their ack.",
                       request, idempotency_key=key)
            return
        caller = await self._may(auth.TRADE, request)
        if caller is None:
            return
        try:
            usage = await self._spend(caller, limits.Action.ORDERS)
            if usage is not None and usage.limited:
                raise limits.limited(usage, "orders")
            place = await self._validate(auth.bind_client(caller, body))
        except ApiError as exc:
            self.reply(self._error_body(exc.status_code, exc.body(), key, request))
            return
        req_id = request.get("id")
        arrived = self._arrived
        budget = usage.as_dict() if usage is not None else None

        def deliver(result: Result | ApiError) -> None:
            self.reply(self._ack(result, place.idempotency_key, req_id, budget))
            metrics.ws_answered(arrived)

        self._submit([(place, deliver)])

    def _submit(self, items: list[tuple[PlaceOrder, Callable[[Result | ApiError], None]]]) -> None:
        """Queue validated orders; each callback gets its order's result."""
        self._inflight += len(items)
        self._pending.extend(items)
        if self._placers < PLACE_CONCURRENCY:
            self._placers += 1
            self._spawn(self._placer())

    async def _placer(self) -> None:
        """Submit queued orders in batches: whatever arrived (single orders and lists alike)
        while the previous batch was out, so a pipelining client costs one INSERT per batch."""
        try:
            while self._pending:
                batch = self._pending[:PLACE_BATCH]
                del self._pending[:PLACE_BATCH]
                try:
                    results = await self._place([p for p, _ in batch])
                finally:
                    self._inflight -= len(batch)
                for (_, deliver), result in zip(batch, results):
                    deliver(result)
        finally:
            self._placers -= 1

    async def _place(self, requests: list[PlaceOrder]) -> list[Result | ApiError]:
        try:
            async with service_slots():
                return list(await orders_place(requests))
        except ApiError as exc:
            return [exc] * len(requests)

    def _ack(self, result: Result | ApiError, key: str | None, req_id: Any,
             budget: dict[str, int] | None = None) -> dict[str, Any]:
        request = {"op": "order"} if req_id is None else {"op": "order", "id": req_id}
        if isinstance(result, ApiError):
            return self._error_body(result.status_code, result.body(), key, request)
        if result.status >= 400:
            return self._error_body(result.status, result.body, key, request)
        ack: dict[str, Any] = {"event": "order_ack", "status": result.status, "idempotency_key": key,
                               "order": result.body}
        if req_id is not None:
            ack["id"] = req_id
        if budget is not None:
            ack["rate_limit"] = budget
        return ack

    @staticmethod
    def _error_body(status: int, body: dict[str, Any], key: Any, request: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"event": "error", "status": status, **body, "op": request.get("op", "order")}
        if key is not None and bad_text_path(key) is None:
            message["idempotency_key"] = key
        if "id" in request:
            message["id"] = request["id"]
        return message

    async def op_orders(self, request: dict[str, Any]) -> None:
        bodies = request.get("orders")
        if not isinstance(bodies, list) or not bodies:
            raise BadMessage(Code.INVALID_MESSAGE, "\"orders\" must be a non-empty list of order bodies.")
        if len(bodies) > MAX_ORDERS_PER_MESSAGE:
            raise BadMessage(Code.TOO_MANY_ORDERS, f"At most {MAX_ORDERS_PER_MESSAGE} orders per message.")
        if self._inflight + len(bodies) > MAX_INFLIGHT_ORDERS:
            raise BadMessage(Code.TOO_MANY_INFLIGHT, f"At most {MAX_INFLIGHT_ORDERS} orders may await their ack.")
        caller = await self._may(auth.TRADE, request)
        if caller is None:
            return
        # Each order spends one of the budget; those past it are refused, the first ones go on.
        usage = await self._spend(caller, limits.Action.ORDERS, len(bodies))
        allowed = len(bodies) if usage is None else usage.allowed(len(bodies))
        acks: list[dict[str, Any] | None] = [None] * len(bodies)
        places: list[tuple[int, PlaceOrder]] = []
        for n, body in enumerate(bodies):
            key = body.get("idempotency_key") if isinstance(body, dict) else None
            try:
                if n >= allowed:
                    assert usage is not None
                    raise limits.limited(usage, "orders")
                places.append((n, await self._validate(auth.bind_client(caller, body))))
            except ApiError as exc:
                acks[n] = self._error_body(exc.status_code, exc.body(), key, {"op": "order"})
        req_id = request.get("id")
        waiting = len(places)
        arrived = self._arrived

        def finish() -> None:
            reply: dict[str, Any] = {"event": "orders_ack", "acks": acks}
            if req_id is not None:
                reply["id"] = req_id
            if usage is not None:
                reply["rate_limit"] = usage.as_dict()
            self.reply(reply)
            metrics.ws_answered(arrived, len(places))

        def deliver_to(n: int, key: str) -> Callable[[Result | ApiError], None]:
            def deliver(result: Result | ApiError) -> None:
                nonlocal waiting
                acks[n] = self._ack(result, key, None)
                waiting -= 1
                if waiting == 0:
                    finish()
            return deliver

        if not places:
            finish()
            return
        self._submit([(place, deliver_to(n, place.idempotency_key)) for n, place in places])

    async def op_cancel(self, request: dict[str, Any]) -> None:
        order_id = request.get("order_id")
        if not isinstance(order_id, str):
            raise BadMessage(Code.INVALID_MESSAGE, "\"order_id\" must be the order's id.")
        if self._inflight >= MAX_INFLIGHT_ORDERS:
            raise BadMessage(Code.TOO_MANY_INFLIGHT, f"At most {MAX_INFLIGHT_ORDERS} commands may await their ack.",
                             order_id=order_id)
        caller = await self._may(auth.TRADE, request)
        if caller is None:
            return
        usage = await self._spend(caller, limits.Action.COMMANDS)
        if usage is not None and usage.limited:
            err = limits.limited(usage, "cancels")
            self.reply(self._error_body(err.status_code, err.body(), None, request) | {"order_id": order_id})
            return
        self._inflight += 1
        self._spawn(self._cancel(order_id, request, caller, usage))

    async def _cancel(self, order_id: str, request: dict[str, Any], caller: auth.Caller,
                      usage: limits.Usage | None) -> None:
        try:
            async with self._cancel_slots, service_slots():
                result = await order_command(order_id, "cancel", client_id=caller.limited_to)
        except ApiError as exc:
            self.reply(self._error_body(exc.status_code, exc.body(), None, request) | {"order_id": order_id})
            return
        finally:
            self._inflight -= 1
        ack: dict[str, Any] = {"event": "cancel_ack", "status": result.status, "order_id": order_id,
                               "order": result.body}
        if "id" in request:
            ack["id"] = request["id"]
        if usage is not None:
            ack["rate_limit"] = usage.as_dict()
        self.reply(ack)

    OPS = {"ping": op_ping, "auth": op_auth, "subscribe": op_subscribe, "unsubscribe": op_unsubscribe,
           "order": op_order, "orders": op_orders, "cancel": op_cancel}
