"""The request id on every log line written while a request is served (HTTP: the client's
``X-Request-ID`` or one drawn here, echoed in the answer; WebSocket: the connection's and the
message's number), and the per-order log lines of the web processes.

Per-order lines go to the ``pgbourse.orders`` logger at INFO (``LOG_ORDER_LEVEL`` sets it
apart from ``LOG_LEVEL``); the matching worker writes the lines of what it matched there too.
"""
from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import re
from collections.abc import Callable
from contextvars import Context, ContextVar
from functools import partial
from typing import Any

from matching.contract import PlaceOrder
from matching.loglines import Line, Shape, plain

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
orders_log = logging.getLogger("pgbourse.orders")

_counter = itertools.count(1)
_PREFIX = f"{os.getpid():x}"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id(supplied: bytes | None = None) -> str:
    """The client's id when it is a plausible one, else process id and a counter (unique per
    process start, and costs nothing to draw)."""
    if supplied:
        text = supplied.decode("latin-1")
        if _CLIENT_ID.fullmatch(text):
            return text
    return f"{_PREFIX}-{next(_counter):x}"


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            rid = request_id.get()
            if rid is not None:
                record.request_id = rid
        return True


def orders_received(orders: list[PlaceOrder], symbol_of: Callable[[int], str | None]) -> None:
    """One "order received" line per order, each with its request's id, written within
    RECEIVED_GATHER_S: the orders of all the requests received meanwhile go in one record, so
    that an HTTP order, alone in its request, does not pay for a record and a wake of the writer
    thread of its own; the lines are made where the record is written, long after the orders
    have gone on to the worker (they cost CPU, not latency)."""
    if not orders_log.isEnabledFor(logging.INFO):
        return
    loop = asyncio.get_running_loop()
    if _received.orders and _received.loop is not loop:
        write_received()  # gathered under another event loop (one that has ended, perhaps)
    if not _received.orders:
        _received.loop = loop
        loop.call_later(RECEIVED_GATHER_S, write_received, context=_NO_REQUEST)
    _received.orders.append((request_id.get(), list(orders), symbol_of))
    if len(_received.orders) >= RECEIVED_GATHER_MAX:
        loop.call_soon(write_received, context=_NO_REQUEST)


RECEIVED_GATHER_S = 0.05
RECEIVED_GATHER_MAX = 1000  # requests


class _Received:
    """The requests' orders not yet logged, and the event loop whose timer will log them."""

    def __init__(self) -> None:
        self.orders: list[tuple[str | None, list[PlaceOrder], Callable[[int], str | None]]] = []
        self.loop: asyncio.AbstractEventLoop | None = None


_received = _Received()
# The record of many requests' lines belongs to none of them: each line has its request's id.
_NO_REQUEST = Context()


def write_received() -> None:
    """Logs the gathered orders' lines in one record (also at exit, what is left)."""
    if _received.orders:
        gathered, _received.orders, _received.loop = _received.orders, [], None
        orders_log.info("orders received", extra={"lines": partial(received_lines, gathered)})


RECEIVED = Shape("request_id", "order_id", "client_id", "instrument", "side", "type", "price", "quantity", "transport")
RECEIVED_NO_REQUEST = Shape(*RECEIVED.keys[1:])


def received_lines(gathered: list[tuple[str | None, list[PlaceOrder], Callable[[int], str | None]]]
                   ) -> list[dict[str, Any] | Line]:
    """A shaped line (matching.loglines) for each order whose values are all plain (a market
    order has no price), a dict for any other."""
    lines: list[dict[str, Any] | Line] = []
    for rid, orders, symbol_of in gathered:
        head = {"event": "order received", "request_id": rid} if rid is not None else {"event": "order received"}
        # A request id is the client's, perhaps: plain only if it is.
        first: tuple[str, ...] | None = ("order received",) if rid is None else (
            ("order received", rid) if plain(rid, remember=False) else None)
        shape = RECEIVED_NO_REQUEST if rid is None else RECEIVED
        for o in orders:
            symbol = symbol_of(o.instrument_id)
            if (first is not None and o.price is not None and symbol is not None and plain(o.client_id)
                    and plain(symbol)):
                # (an enum's ``_value_``: what its ``value`` property reads, without the property)
                lines.append((shape, (*first, o.order_id, o.client_id, symbol, o.side._value_, o.type._value_,
                                      o.price, o.quantity, o.transport._value_)))
            else:
                lines.append({**head, "order_id": o.order_id, "client_id": o.client_id, "instrument": symbol,
                              "side": o.side.value, "type": o.type.value, "price": o.price, "quantity": o.quantity,
                              "transport": o.transport.value})
    return lines


atexit.register(write_received)  # runs before logging's shutdown (registered earlier, run later)


def order_refused(instrument: str | None, client_id: Any, code: str, transport: str | None = None) -> None:
    """An order refused at the edge (validation)."""
    if orders_log.isEnabledFor(logging.INFO):
        orders_log.info("order rejected", extra={
            "instrument": instrument, "client_id": client_id if isinstance(client_id, str) else None,
            "reason": code, "transport": transport})
