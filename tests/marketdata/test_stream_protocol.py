"""WS /stream protocol: replies to every op, errors with codes, and the socket stays open."""
from __future__ import annotations

import asyncio
from typing import Any

from tests.marketdata.streams import session


def test_ping_subscribe_unsubscribe_and_errors_keep_the_socket_open(exchange: Any) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws:
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

            err = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["trades", "quotes"]})
            assert (err["event"], err["code"], err["channels"]) == ("error", "unknown_channel", ["quotes"])

            err = await ws.request({"op": "subscribe", "instrument": "NOPE-USD", "channels": ["trades"]})
            assert (err["event"], err["code"]) == ("error", "unknown_instrument")

            err = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["orders"]})
            assert err["code"] == "client_id_required"

            err = await ws.request({"op": "dance"})
            assert err["code"] == "unknown_op"

            await ws.send("{not json")
            assert (await ws.next())["code"] == "invalid_json"

            await ws.send('["a list"]')
            assert (await ws.next())["code"] == "invalid_message"

            await ws.send('{"op": "ping", "pad": "' + "x" * (600 * 1024) + '"}')
            assert (await ws.next())["code"] == "message_too_large"

            ok = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["trades", "ticker"]})
            assert (ok["event"], ok["instrument"], ok["channels"]) == ("subscribed", sym, ["trades", "ticker"])

            ok = await ws.request({"op": "unsubscribe", "instrument": sym, "channels": ["ticker"]})
            assert (ok["event"], ok["channels"]) == ("unsubscribed", ["ticker"])

            # Still the same socket, still answering.
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())


def test_subscribing_to_book_sends_the_committed_book_with_its_seq(exchange: Any) -> None:
    from tests.orders.helpers import place

    sym = exchange.make_instrument()
    place(exchange, sym, side="buy", price="99.00", quantity="2")
    place(exchange, sym, side="sell", price="101.50", quantity="1.5")

    async def scenario() -> None:
        async with session(exchange.ws, batch=True) as ws:
            await ws.send({"op": "subscribe", "instrument": sym, "channels": ["book"]})
            assert (await ws.next())["event"] == "subscribed"
            snap = await ws.until(lambda e: e["event"] == "book_snapshot")
            assert snap["seq"] == 2
            assert snap["bids"] == [["99.00", "2.0000"]]
            assert snap["asks"] == [["101.50", "1.5000"]]

    asyncio.run(scenario())
