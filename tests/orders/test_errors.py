"""orders/errors.py: every answer that is not a success has the one error shape
{"code", "detail", "fields"} in JSON, never an HTML page and never a 500, whatever the path,
the method or the content type."""
from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.http import call

from .helpers import count_rows, order_body

JSON = {"Content-Type": "application/json"}


def shape(status: int, body: Any) -> None:
    assert isinstance(body, dict), body
    assert set(body) >= {"code", "detail", "fields"}, body
    assert status < 500 or body["code"] in {"database_unavailable", "outcome_unknown", "overloaded"}


@pytest.mark.parametrize("method,path,code,status", [
    ("GET", "/nope", "not_found", 404),
    ("POST", "/nope", "not_found", 404),
    ("GET", "/orders/", "not_found", 404),
    ("DELETE", "/instruments", "method_not_allowed", 405),
    ("PUT", "/trades", "method_not_allowed", 405),
])
def test_unknown_paths_and_methods_answer_the_error_shape(exchange: Any, method: str, path: str, code: str,
                                                          status: int) -> None:
    got, body = call(exchange.http, method, path, headers={"Accept": "*/*"})
    shape(got, body)
    assert (got, body["code"]) == (status, code)


def test_options_of_an_order_describes_it_instead_of_failing(exchange: Any) -> None:
    got, body = call(exchange.http, "OPTIONS", f"/orders/{uuid.uuid4()}")
    assert got == 200 and isinstance(body, dict) and body["name"], body


@pytest.mark.parametrize("content_type", [None, "application/jsonp", "text/plain", "application/xml"])
def test_a_body_without_the_json_content_type_is_415(exchange: Any, content_type: str | None) -> None:
    sym = exchange.make_instrument()
    before = count_rows(exchange, "orders_order")
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    got, body = call(exchange.http, "POST", "/orders", raw=json.dumps(order_body(sym)).encode(), headers=headers)
    shape(got, body)
    assert (got, body["code"]) == (415, "unsupported_media_type"), body
    assert count_rows(exchange, "orders_order") == before


def test_json_sent_as_a_form_is_told_so(exchange: Any) -> None:
    sym = exchange.make_instrument()
    got, body = call(exchange.http, "POST", "/orders", raw=json.dumps(order_body(sym)).encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    shape(got, body)
    assert (got, body["code"]) == (415, "unsupported_media_type") and "application/json" in body["detail"]


def test_json_with_a_charset_is_json(exchange: Any) -> None:
    sym = exchange.make_instrument()
    got, body = call(exchange.http, "POST", "/orders", raw=json.dumps(order_body(sym)).encode(),
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert got == 201, body


def test_a_csrf_refusal_is_json(exchange: Any) -> None:
    # a session-authenticated form post without its CSRF token: refused, in the error shape
    got, body = call(exchange.http, "POST", "/admin/login/", raw=b"username=x&password=y",
                     headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    assert got == 403
    shape(got, body)
    assert body["code"] == "csrf_failed"


def test_instrument_limits_are_fixed_point_strings(exchange: Any) -> None:
    exchange.make_instrument(max_qty="1000", max_price="10000000")
    got, body = call(exchange.http, "GET", "/instruments")
    assert got == 200
    for instrument in body:
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "max_price"):
            assert "E" not in instrument[name] and "e" not in instrument[name], instrument


def test_a_trickled_body_is_cut_off(exchange: Any) -> None:
    parts = urlsplit(exchange.http)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{")
        started = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if time.monotonic() - started > 25:
                break
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"code":"request_timeout"' in data or b"request_timeout" in data
    assert elapsed < 15
