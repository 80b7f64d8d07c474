"""/metrics over real HTTP: the metrics of record from the worker and the web process in one
scrape, each moved by exactly what happened; and the helpers that count them."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from orders.metrics import observe_many
from tests.http import call
from tests.marketdata.streams import body, session

from .helpers import order_body, place


def scrape(ex: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = call(ex.http, "GET", "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_each_metric_of_record_moves_by_exactly_what_happened(exchange: Any) -> None:
    sym = exchange.make_instrument()
    before = scrape(exchange)
    # given a resting sell of 2 and a resting buy, over HTTP
    maker = place(exchange, sym, side="sell", price="100.00", quantity="2", client_id="m")
    bid = place(exchange, sym, side="buy", price="90.00", quantity="1", client_id="m")
    # when a WebSocket buy of 1.5 crosses the sell (one trade, two orders matched for the first time)
    async def over_ws() -> dict[str, Any]:
        async with session(exchange.ws) as ws:
            await ws.send({"op": "order", **body(sym, "buy", "100.00", "1.5", client_id="t")})
            return await ws.next(timeout=10)

    ack = asyncio.run(over_ws())
    assert ack["event"] == "order_ack" and ack["order"]["status"] == "filled"
    # and a second taker fills the sell's rest (the sell was matched already: not counted again)
    place(exchange, sym, side="buy", price="100.00", quantity="0.5", client_id="t")
    # and an order refused at the edge, one refused by the engine, and a cancel
    status, _ = call(exchange.http, "POST", "/orders", order_body(sym, price="100.005"))
    assert status == 400
    refused = place(exchange, sym, side="sell", price="90.00", quantity="1", client_id="p", post_only=True)
    assert refused["status"] == "rejected"
    assert call(exchange.http, "DELETE", f"/orders/{bid['order_id']}")[0] == 200
    assert maker["status"] == "open"
    # then one scrape shows each counter moved by exactly that
    after = scrape(exchange)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("orders_received_total", instrument=sym, type="limit", side="sell", transport="http") == 2
    assert moved("orders_received_total", instrument=sym, type="limit", side="buy", transport="http") == 2
    assert moved("orders_received_total", instrument=sym, type="limit", side="buy", transport="ws") == 1
    assert moved("orders_matched_total", instrument=sym) == 3
    assert moved("trades_total", instrument=sym) == 2
    assert moved("traded_quantity_total", instrument=sym) == 2.0
    assert moved("orders_rejected_total", instrument=sym, reason="price_too_many_decimals") == 1
    assert moved("orders_rejected_total", instrument=sym, reason="post_only_would_take") == 1
    assert moved("order_commands_total", instrument=sym, kind="cancel", result="ok") == 1
    assert moved("order_latency_seconds_count", transport="http") == 6
    assert moved("order_latency_seconds_count", transport="ws") == 1
    assert moved("order_requests_total", operation="place", status="201") == 4
    assert moved("order_requests_total", operation="place", status="400") == 1
    assert moved("matching_batch_commands_count", source="direct") >= 6
    # the depth gauges follow the book (sampled every second by the worker): nothing rests now
    deadline = time.monotonic() + 5
    while value(scrape(exchange), "current_orderbook_levels", instrument=sym, side="buy") != 0 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    place(exchange, sym, side="buy", price="80.00", quantity="1.25", client_id="m")
    place(exchange, sym, side="buy", price="79.00", quantity="1", client_id="m")
    deadline = time.monotonic() + 5
    while True:
        now = scrape(exchange)
        if value(now, "current_orderbook_orders", instrument=sym, side="buy") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value(now, "current_orderbook_depth", instrument=sym, side="buy") == 2.25
    assert value(now, "current_orderbook_levels", instrument=sym, side="buy") == 2
    assert value(now, "current_orderbook_orders", instrument=sym, side="sell") == 0
    # and the readiness figures are gauges of the same scrape
    assert value(now, "database_up") == 1 and value(now, "matching_worker_holds_lock") == 1


def test_open_websockets_are_counted_while_they_are_open(exchange: Any) -> None:
    base = value(scrape(exchange), "websocket_connections")

    async def two_open() -> float:
        async with session(exchange.ws), session(exchange.ws):
            return value(scrape(exchange), "websocket_connections")

    assert asyncio.run(two_open()) == base + 2
    deadline = time.monotonic() + 5
    while value(scrape(exchange), "websocket_connections") != base and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(exchange), "websocket_connections") == base


def test_many_observations_at_once_are_those_observations_one_by_one() -> None:
    registry = CollectorRegistry()
    one = Histogram("one_seconds", "", buckets=(0.01, 0.1, 1), registry=registry)
    many = Histogram("many_seconds", "", buckets=(0.01, 0.1, 1), registry=registry)
    for amount, count in ((0.005, 3), (0.1, 2), (0.5, 4), (7.0, 1)):
        for _ in range(count):
            one.observe(amount)
        observe_many(many, amount, count)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        (family,) = [f for f in registry.collect() if f.name == name]
        return [(s.name.replace(name, ""), s.labels, s.value) for s in family.samples if not s.name.endswith("_created")]

    assert samples("many_seconds") == samples("one_seconds")
