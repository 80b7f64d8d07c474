"""Log lines as structured data: the JSON and text formatters (exchange_project/logs.py), the
request id (orders/logs.py), and the request id a client gets back over real HTTP."""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from exchange_project.logs import JsonFormatter, TextFormatter
from orders.logs import RequestIdFilter, new_request_id, request_id
from tests.keys import auth_headers

from .helpers import order_body


def record(msg: str, **extra: Any) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "pgbourse.orders", "levelno": logging.INFO, "levelname": "INFO",
                                 "msg": msg, "created": 1764676800.25})
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_json_line_carries_the_event_and_every_field_given() -> None:
    line = json.loads(JsonFormatter().format(record("order rejected", order_id="o1", client_id="alice",
                                                    instrument="BTC-USD", reason="price_off_tick")))
    assert line == {"ts": "2025-12-02T12:00:00.250Z", "level": "info", "logger": "pgbourse.orders",
                    "event": "order rejected", "order_id": "o1", "client_id": "alice", "instrument": "BTC-USD",
                    "reason": "price_off_tick"}


def test_a_record_of_many_lines_is_one_line_per_event_in_both_formats() -> None:
    rec = record("orders", lines=[{"event": "order accepted", "order_id": "a"},
                                  {"event": "order matched", "order_id": "b", "trade_id": 7}], request_id="r-1")
    lines = [json.loads(text) for text in JsonFormatter().format(rec).split("\n")]
    assert [(x["event"], x["order_id"], x["request_id"]) for x in lines] == [("order accepted", "a", "r-1"),
                                                                            ("order matched", "b", "r-1")]
    assert lines[1]["trade_id"] == 7
    text = TextFormatter().format(rec).split("\n")
    assert text == ["2025-12-02T12:00:00.250Z INFO pgbourse.orders: order accepted request_id=r-1 order_id=a",
                    "2025-12-02T12:00:00.250Z INFO pgbourse.orders: order matched request_id=r-1 order_id=b trade_id=7"]


def test_a_client_value_cannot_break_a_text_line_or_fake_a_field() -> None:
    text = TextFormatter().format(record("order rejected", client_id="x\nfake=1 level=ERROR"))
    assert "\n" not in text and text.endswith('client_id="x\\nfake=1 level=ERROR"')
    # nor in a line of a many-line record, where a value left None is left out, and the lines
    # given are rendered as they are, not changed
    given = [{"event": "order accepted", "order_id": "a", "client_id": "x\nfake=1", "reason": None, "seq": 3},
             {"event": "order matched", "order_id": "b", "client_id": "", "price": "1.00"}]
    copies = [dict(line) for line in given]
    text = TextFormatter().format(record("orders", lines=given)).split("\n")
    assert text == ['2025-12-02T12:00:00.250Z INFO pgbourse.orders: order accepted order_id=a client_id="x\\nfake=1" '
                    'seq=3',
                    '2025-12-02T12:00:00.250Z INFO pgbourse.orders: order matched order_id=b client_id="" price=1.00']
    assert given == copies


def test_the_request_id_is_the_clients_when_plausible_and_goes_on_every_record() -> None:
    assert new_request_id(b"abc-123") == "abc-123"
    drawn = new_request_id(b"not ok\n")
    assert drawn != "not ok\n" and new_request_id() != drawn
    token = request_id.set("req-9")
    try:
        rec = record("anything")
        RequestIdFilter().filter(rec)
        assert rec.request_id == "req-9"  # type: ignore[attr-defined]
    finally:
        request_id.reset(token)


def test_an_order_answer_carries_its_request_id(exchange: Any) -> None:
    sym = exchange.make_instrument()
    parts = urlsplit(exchange.http)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", "/orders", body=json.dumps(order_body(sym)),
                     headers={"Content-Type": "application/json", "X-Request-ID": "trace-42",
                              **auth_headers(exchange.keys.admin())})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 201 and resp.getheader("x-request-id") == "trace-42"


def test_order_received_lines_are_gathered_and_written_once_the_orders_are_on_their_way() -> None:
    # (orders.logs.orders_received, called where an order enters orders.services)
    from matching.contract import PlaceOrder
    from matching.engine.types import STP, OrderType, Side, TimeInForce
    from orders import logs as web_logs

    def order(oid: str) -> PlaceOrder:
        return PlaceOrder(order_id=oid, client_id="alice", idempotency_key="k" + oid, request_hash="h",
                          instrument_id=1, side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                          post_only=False, stp=STP.CANCEL_TAKER, price="1.00", quantity="1")

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            seen.append(rec)

    log = logging.getLogger("pgbourse.orders")
    handler, level = Keep(), log.level
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def received(rid: str, oid: str) -> None:
        request_id.set(rid)
        web_logs.orders_received([order(oid)], lambda _: "BTC-USD")

    async def scenario() -> list[int]:
        await asyncio.gather(received("r-1", "o1"), received("r-2", "o2"))
        turns = [len(seen)]
        for _ in range(2):
            await asyncio.sleep(0)
            turns.append(len(seen))
        await asyncio.sleep(web_logs.RECEIVED_GATHER_S + 0.05)
        turns.append(len(seen))
        return turns

    async def then_ends() -> None:
        await received("r-3", "o3")  # its loop ends before the lines are due

    try:
        turns = asyncio.run(scenario())
        asyncio.run(then_ends())
        asyncio.run(received("r-4", "o4"))
        gathered_elsewhere = len(seen)
        web_logs.write_received()  # what is left at exit
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    # not in the turn of the event loop that received the orders, nor in the next ones (while
    # they go on to the worker), but within RECEIVED_GATHER_S: both requests' in one record,
    # each line with its request's id, the record with none
    assert turns == [0, 0, 0, 1]
    assert getattr(seen[0], "request_id", None) is None
    text = [line.split(": ", 1)[1] for line in TextFormatter().format(seen[0]).split("\n")]
    assert text == [f"order received request_id=r-{n} order_id=o{n} client_id=alice instrument=BTC-USD side=buy "
                    f"type=limit price=1.00 quantity=1 transport=http" for n in (1, 2)]
    # orders gathered under a loop that has ended are written when the next loop receives one,
    # and what is left at exit then
    assert gathered_elsewhere == 2 and len(seen) == 3
    assert [[json.loads(x)["request_id"] for x in JsonFormatter().format(rec).split("\n")] for rec in seen[1:]] == [
        ["r-3"], ["r-4"]]
