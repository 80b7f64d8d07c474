"""Hostile messages on WS /stream: every one answered with an error event, the socket kept open
(or, past what a server may take in one frame, closed with a reason), nothing stored, no other
client affected."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.http import call
from tests.marketdata.streams import body, session

NUL, SURROGATE = "\x00", "\ud800"


def test_bad_text_in_every_field_of_every_op_is_an_error_event(exchange: Any) -> None:
    sym = exchange.make_instrument()
    messages: list[dict[str, Any]] = []
    for bad in (NUL, SURROGATE):
        messages += [
            {"op": f"ping{bad}"}, {"op": "ping", "id": f"i{bad}"},
            {"op": "subscribe", "instrument": f"{sym}{bad}", "channels": ["trades"]},
            {"op": "subscribe", "instrument": sym, "channels": [f"trades{bad}"]},
            {"op": "subscribe", "instrument": sym, "channels": ["orders"], "client_id": f"c{bad}"},
            {"op": "unsubscribe", "instrument": f"{sym}{bad}"},
            {"op": "cancel", "order_id": f"o{bad}"},
        ]
        for field in ("idempotency_key", "client_id", "instrument", "side", "type", "price", "quantity", "order_id"):
            messages.append({"op": "order", **body(sym, "buy", "10.00", "1"), field: f"x{bad}"})
            messages.append({"op": "orders", "orders": [{**body(sym, "buy", "10.00", "1"), field: f"x{bad}"}]})

    async def scenario() -> list[dict[str, Any]]:
        async with session(exchange.ws) as ws:
            replies = []
            for message in messages:
                await ws.send(json.dumps(message))
                replies.append(await ws.next(timeout=10))
            replies.append(await ws.request({"op": "ping"}))
            return replies

    replies = asyncio.run(scenario())
    for message, reply in zip(messages, replies):
        if reply["event"] == "orders_ack":
            reply = reply["acks"][0]
        assert reply["event"] == "error" and reply["code"] == "invalid_string", (message, reply)
    assert replies[-1]["event"] == "pong"
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert book["bid_level_count"] == 0


def test_non_json_and_oversized_frames(exchange: Any) -> None:
    async def scenario() -> None:
        async with session(exchange.ws) as ws:
            for frame in ["not json", "{", "[]", "42", '{"op": 1}', b"\xff\xfe binary"]:
                await ws.send(frame)
                reply = await ws.next()
                assert reply["event"] == "error" and reply["code"] in {"invalid_json", "invalid_message", "unknown_op"}
            # a frame over the message bound (but one a server takes): an error, the socket stays
            await ws.send(json.dumps({"op": "ping", "pad": "x" * 600_000}))
            assert (await ws.next())["code"] == "message_too_large"
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())

    async def ten_megabytes() -> Any:
        async with websockets.connect(exchange.ws, max_size=2**24) as ws:
            await ws.send(json.dumps({"op": "ping", "pad": "x" * 10_000_000}))
            try:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                return reply
            except websockets.ConnectionClosed as closed:
                return closed.rcvd

    answer = asyncio.run(ten_megabytes())
    # a 10 MB frame is refused: with the error event, or by closing the socket with 1009 (too big)
    assert (isinstance(answer, dict) and answer["code"] == "message_too_large") or \
        (answer is not None and answer.code == 1009), answer
    assert call(exchange.http, "GET", "/instruments")[0] == 200


def test_a_thousand_subscribes_on_one_socket_stay_bounded(exchange: Any) -> None:
    syms = [exchange.make_instrument() for _ in range(3)]

    async def scenario() -> list[dict[str, Any]]:
        async with session(exchange.ws) as ws:
            replies = []
            for n in range(1000):
                await ws.send(json.dumps({"op": "subscribe", "instrument": syms[n % 3],
                                          "channels": ["trades", "ticker"], "id": n}))
            while len(replies) < 1000:
                replies.append(await ws.next(timeout=20))
            replies.append(await ws.request({"op": "ping"}))
            return replies

    replies = asyncio.run(scenario())
    assert all(r["event"] == "subscribed" for r in replies[:1000]), {r["event"] for r in replies[:1000]}
    assert replies[-1]["event"] == "pong"


def test_subscriptions_to_more_instruments_than_allowed_are_refused(exchange: Any) -> None:
    from marketdata.consumers import MAX_INSTRUMENTS_PER_SOCKET

    syms = [exchange.make_instrument() for _ in range(MAX_INSTRUMENTS_PER_SOCKET + 1)]

    async def scenario() -> list[dict[str, Any]]:
        async with session(exchange.ws) as ws:
            return [await ws.request({"op": "subscribe", "instrument": s, "channels": ["trades"]}) for s in syms]

    replies = asyncio.run(scenario())
    assert all(r["event"] == "subscribed" for r in replies[:-1])
    assert (replies[-1]["event"], replies[-1]["code"]) == ("error", "too_many_subscriptions")
