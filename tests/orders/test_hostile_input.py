"""Hostile input over REST, beyond what a schema fuzzer finds: every case answered with the one
error shape, nothing stored, the server and the worker healthy afterwards."""
from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.http import call

from .helpers import count_rows, order_body, place

NUL, SURROGATE = "\x00", "\ud800"
STRING_FIELDS = ["idempotency_key", "client_id", "instrument", "side", "type", "time_in_force", "stp", "order_id",
                 "price", "quantity"]


def refused(exchange: Any, raw: bytes, code: str, status: int = 400, path: str = "/orders") -> dict[str, Any]:
    before = count_rows(exchange, "orders_order")
    got, body = call(exchange.http, "POST", path, raw=raw)
    assert isinstance(body, dict) and set(body) >= {"code", "detail", "fields"}, body
    assert (got, body["code"]) == (status, code), body
    assert count_rows(exchange, "orders_order") == before
    return body


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["NUL", "surrogate"])
def test_nul_and_lone_surrogates_in_every_string_field(exchange: Any, field: str, bad: str) -> None:
    sym = exchange.make_instrument()
    body = order_body(sym)
    body[field] = f"x{bad}y"
    answer = refused(exchange, json.dumps(body).encode(), "invalid_string")
    assert field in answer["fields"]


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["NUL", "surrogate"])
def test_nul_and_lone_surrogates_in_names_paths_and_queries(exchange: Any, bad: str) -> None:
    sym = exchange.make_instrument()
    refused(exchange, json.dumps({**order_body(sym), f"f{bad}": 1}).encode(), "invalid_string")
    encoded = quote(f"x{bad}", safe="", errors="surrogatepass")
    for path in [f"/orders?client_id={encoded}", f"/orders?instrument={encoded}", f"/orders?status={encoded}",
                 f"/orders?cursor={encoded}", f"/orderbook?instrument={encoded}", f"/trades?instrument={encoded}",
                 f"/orders/{encoded}"]:
        got, answer = call(exchange.http, "GET", path)
        if bad == SURROGATE and got == 200:
            continue  # not UTF-8 in a URL: read as U+FFFD, a harmless character
        assert 400 <= got < 500 and set(answer) >= {"code", "detail", "fields"}, (path, got, answer)
    for method, path in [("DELETE", f"/orders/{encoded}"), ("POST", f"/orders/{encoded}/cancel")]:
        got, answer = call(exchange.http, method, path)
        assert 400 <= got < 500 and set(answer) >= {"code", "detail", "fields"}, (path, got, answer)


def test_a_member_named_twice_is_refused(exchange: Any) -> None:
    sym = exchange.make_instrument()
    good = json.dumps(order_body(sym))
    # "quantity" once as 1 and once as 1000: which one would count depends on the parser
    raw = (good[:-1] + ', "quantity": "1000"}').encode()
    answer = refused(exchange, raw, "invalid_json")
    assert "twice" in answer["detail"]


@pytest.mark.parametrize("raw,code", [
    (b'{"price": NaN}', "invalid_json"),
    (b'{"price": Infinity}', "invalid_json"),
    (b'{"price": -Infinity}', "invalid_json"),
])
def test_json_constants_that_are_no_numbers(exchange: Any, raw: bytes, code: str) -> None:
    refused(exchange, raw, code)


@pytest.mark.parametrize("field,json_text,code", [
    ("price", '"1234567890123456789012345678901234567890"', "price_too_high"),
    ("price", "1234567890123456789012345678901234567890", "price_too_high"),
    ("quantity", '"0.0000000000000000000000000000000000000001"', "quantity_too_many_decimals"),
    ("quantity", '"1e400"', "quantity_too_large"),
    ("price", "1e400", "price_too_high"),
])
def test_numbers_far_out_of_range(exchange: Any, field: str, json_text: str, code: str) -> None:
    sym = exchange.make_instrument()
    body = order_body(sym)
    body[field] = "__HERE__"
    refused(exchange, json.dumps(body).replace('"__HERE__"', json_text).encode(), code)


def test_a_huge_body_is_413(exchange: Any) -> None:
    sym = exchange.make_instrument()
    raw = json.dumps({**order_body(sym), "idempotency_key": "k" * 200_000}).encode()
    refused(exchange, raw, "body_too_large", status=413)


@pytest.mark.parametrize("path", ["/orders/not-a-uuid", "/orders/123", f"/orders/{uuid.uuid4().hex}x"])
def test_ids_that_are_no_uuids_name_no_order(exchange: Any, path: str) -> None:
    for method in ("GET", "DELETE", "PATCH"):
        got, answer = call(exchange.http, method, path, body={"price": "1.00"} if method == "PATCH" else None)
        assert (got, answer["code"]) == (404, "order_not_found"), (method, path, answer)


def test_after_all_of_it_the_exchange_is_well(exchange: Any) -> None:
    sym = exchange.make_instrument()
    assert place(exchange, sym)["status"] == "open"
    assert exchange.procs["worker"].poll() is None
