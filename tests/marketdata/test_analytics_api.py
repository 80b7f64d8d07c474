"""GET /klines, /analytics/vwap, /ticker/24h: the gap rule on live candles, and every bad
parameter a 400 with the one error body (nothing else, never a 500)."""
from __future__ import annotations

import time
from typing import Any

import pytest

from tests.http import call, call_full
from tests.orders.helpers import place


def test_klines_omit_intervals_without_trades_unless_asked_to_carry_the_close(exchange: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="20.00", quantity="1", client_id="k-s")
    place(exchange, sym, side="buy", price="20.00", quantity="0.5", client_id="k-b")
    _, (kline,) = call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m")
    minute = kline["open_time"]
    start = minute - 3 * 60_000
    # without fill: only the interval that traded, whatever the range
    _, omitted = call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m&start={start}")
    assert omitted == [kline]
    # with fill=previous: nothing before the first trade (no close to carry), then every minute up
    # to the current one, each carrying the close with zero volume
    before_ms = time.time() * 1000
    _, filled = call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m&start={start}&fill=previous")
    after_ms = time.time() * 1000
    assert filled[0] == kline
    assert filled[-1]["open_time"] in {int(t) // 60_000 * 60_000 for t in (before_ms, after_ms)}
    assert [k["open_time"] for k in filled] == list(range(minute, filled[-1]["open_time"] + 1, 60_000))
    assert all((k["open"], k["close"], k["volume"], k["trade_count"], k["vwap"], k["seq"]) ==
               ("20.00", "20.00", "0.0000", 0, None, kline["seq"]) for k in filled[1:])
    # and end before the trade gives nothing, limit counts from start
    assert call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m&end={minute - 1}")[1] == []
    _, limited = call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m&start={minute}&fill=previous"
                      "&limit=1")
    assert limited == [kline]


def test_market_statistics_are_public_and_counted_against_the_address(exchange: Any) -> None:
    sym = exchange.make_instrument()
    # given no key at all (market data, as the order book and the trades)
    for path in (f"/klines?instrument={sym}&interval=1m", f"/ticker/24h?instrument={sym}",
                 f"/analytics/vwap?instrument={sym}&window=1h"):
        status, headers, _ = call_full(exchange.http, "GET", path, key=None, source="127.0.0.51")
        # then each answers, and says what is left of the address's read budget
        assert status == 200 and int(headers["x-ratelimit-remaining"]) < int(headers["x-ratelimit-limit"]), path


def test_an_instrument_without_trades_has_empty_statistics(exchange: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="buy", price="5.00", quantity="2", client_id="e-b")
    status, ticker = call(exchange.http, "GET", f"/ticker/24h?instrument={sym}")
    assert status == 200
    assert (ticker["open"], ticker["last"], ticker["volume"], ticker["trade_count"], ticker["vwap"],
            ticker["best_bid"], ticker["best_bid_size"], ticker["best_ask"]) == \
        (None, None, "0.0000", 0, None, "5.00", "2.0000", None)
    status, vwap = call(exchange.http, "GET", f"/analytics/vwap?instrument={sym}&window=24h")
    assert status == 200 and (vwap["vwap"], vwap["notional"], vwap["trade_count"]) == (None, "0.000000", 0)
    assert call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1d") == (200, [])


@pytest.mark.parametrize("path, field, code", [
    ("/klines?interval=1m", "instrument", "required"),
    ("/klines?instrument={sym}", "interval", "required"),
    ("/klines?instrument={sym}&interval=3m", "interval", "invalid_choice"),
    ("/klines?instrument={sym}&interval=1m&limit=1501", "limit", "out_of_range"),
    ("/klines?instrument={sym}&interval=1m&start=yesterday", "start", "invalid_time"),
    ("/klines?instrument={sym}&interval=1m&start=2000&end=1000", "end", "invalid_range"),
    ("/klines?instrument={sym}&interval=1m&fill=zero", "fill", "invalid_choice"),
    ("/klines?instrument={sym}&interval=1m&end=99999999999999999999", "end", "invalid_time"),
    ("/analytics/vwap?instrument={sym}", "from", "required"),
    ("/analytics/vwap?instrument={sym}&window=1w", "window", "invalid_choice"),
    ("/analytics/vwap?instrument={sym}&window=1h&from=0", "window", "invalid_range"),
    ("/analytics/vwap?instrument={sym}&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to", "invalid_range"),
    ("/analytics/vwap?instrument={sym}&from=%EF%BC%91", "from", "invalid_time"),
    ("/analytics/vwap?instrument=NOPE-USD&window=1h", "instrument", "unknown_instrument"),
    ("/ticker/24h", "instrument", "required"),
])
def test_bad_parameters_are_400_with_the_one_error_body(exchange: Any, path: str, field: str, code: str) -> None:
    sym = exchange.make_instrument()
    status, body = call(exchange.http, "GET", path.format(sym=sym))
    assert status == 400, body
    assert set(body) == {"code", "detail", "fields"} and body["code"] == code and field in body["fields"]


def test_the_endpoints_are_in_the_openapi_schema_with_examples(exchange: Any) -> None:
    status, schema = call(exchange.http, "GET", "/schema", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert status == 200, schema
    for path in ("/analytics/vwap", "/klines", "/ticker/24h", "/positions/{client_id}", "/settlements"):
        op = schema["paths"][path]["get"]
        assert op["responses"]["200"]["content"]["application/json"].get("examples"), path
