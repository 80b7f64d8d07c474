"""WS /stream: the candles channel (per interval) and ticker_24h, against the REST answers of the
same committed state; subscription errors; a candle announced closed when its interval ends."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.http import call
from tests.marketdata.streams import body, session


def _without(event: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("event", "instrument", "time", *names)}


def test_candles_and_the_24h_ticker_follow_each_batch_that_traded(exchange: Any) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws, session(exchange.ws) as trader:
            ok = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["candles", "ticker_24h"],
                                   "interval": ["1m", "1h"]})
            assert ok["event"] == "subscribed" and ok["intervals"] == ["1m", "1h"]
            # when a resting order is placed (no trade), nothing is published on these channels
            await trader.request({"op": "order", **body(sym, "sell", "100.00", "1", client_id="s")})
            # when two batches trade
            await trader.request({"op": "order", **body(sym, "buy", "100.00", "0.25", client_id="b")})
            first = [await ws.next() for _ in range(3)]
            await trader.request({"op": "order", **body(sym, "buy", "100.00", "0.5", client_id="b")})
            second = [await ws.next() for _ in range(3)]
            # then each batch brings the current candle of each interval asked for, then ticker_24h
            for events, seq, volume in ((first, 2, "0.2500"), (second, 4, "0.7500")):
                assert [(e["event"], e.get("interval")) for e in events] == \
                    [("candle", "1m"), ("candle", "1h"), ("ticker_24h", None)]
                assert all(e["seq"] == seq and e["instrument"] == sym for e in events)
                assert events[0]["volume"] == volume and events[0]["closed"] is False
            # and the last of them are what REST answers for the same committed state
            for interval, event in (("1m", second[0]), ("1h", second[1])):
                _, klines = call(exchange.http, "GET", f"/klines?instrument={sym}&interval={interval}")
                assert [_without(event, "interval", "closed")] == klines
            _, ticker = call(exchange.http, "GET", f"/ticker/24h?instrument={sym}")
            # (the window's bounds are those of the minute each was computed in)
            assert _without(second[2], "open_time", "close_time") == \
                _without(ticker, "best_bid", "best_bid_size", "best_ask", "best_ask_size", "open_time", "close_time")
            # when the 1m interval is unsubscribed, the 1h candles keep coming alone
            await ws.request({"op": "unsubscribe", "instrument": sym, "channels": ["candles"], "interval": "1m"})
            await trader.request({"op": "order", **body(sym, "buy", "100.00", "0.1", client_id="b")})
            third = [await ws.next() for _ in range(2)]
            assert [(e["event"], e.get("interval")) for e in third] == [("candle", "1h"), ("ticker_24h", None)]
            assert (await ws.request({"op": "ping"}))["event"] == "pong" and ws.pending == []

    asyncio.run(scenario())


@pytest.mark.parametrize("request_fields, detail", [
    ({"channels": ["candles"]}, "interval"),
    ({"channels": ["candles"], "interval": "2m"}, "interval"),
    ({"channels": ["candles"], "interval": []}, "interval"),
    ({"channels": ["candles"], "interval": ["1m", 5]}, "interval"),
])
def test_a_candles_subscription_needs_known_intervals(exchange: Any, request_fields: dict[str, Any],
                                                       detail: str) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws:
            reply = await ws.request({"op": "subscribe", "instrument": sym, **request_fields})
            assert reply["event"] == "error" and reply["code"] == "invalid_message" and detail in reply["detail"]
            # the socket stays open and subscribed to nothing
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_candle_is_announced_closed_when_its_interval_ends(exchange: Any) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws, session(exchange.ws) as trader:
            await ws.request({"op": "subscribe", "instrument": sym, "channels": ["candles"], "interval": "1m"})
            await trader.request({"op": "order", **body(sym, "sell", "50.00", "1", client_id="s")})
            await trader.request({"op": "order", **body(sym, "buy", "50.00", "0.3", client_id="b")})
            current = await ws.until(lambda e: e["event"] == "candle")
            assert current["closed"] is False
            # when the minute ends without another trade, the same candle comes again, closed,
            # within about a second of its close time (the worker's timer)
            closed = await ws.until(lambda e: e["event"] == "candle", timeout=65)
            received_ms = time.time() * 1000
            assert closed["closed"] is True and _without(closed, "closed") == _without(current, "closed")
            assert closed["close_time"] < received_ms < closed["close_time"] + 3_000
            # and only once
            await trader.request({"op": "order", **body(sym, "sell", "60.00", "1", client_id="s")})
            assert (await ws.request({"op": "ping"}, timeout=3))["event"] == "pong" and ws.pending == []

    asyncio.run(scenario())
