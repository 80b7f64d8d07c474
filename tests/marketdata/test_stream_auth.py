"""WS /stream with keys (marketdata/consumers.py, orders/auth.py): the market channels are
public, the orders channel and order entry act for the key's client only, each order of an
`orders` message spends the budget, and a revoked key's socket is told and closed."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import websockets

from orders.auth import new_key
from tests.keys import fresh_window, key_id, wait_for_web_processes
from tests.marketdata.streams import body, session


@pytest.fixture
def sym(exchange: Any) -> str:
    return exchange.make_instrument()


def test_without_a_key_the_market_channels_only(exchange: Any, sym: str) -> None:
    async def scenario() -> None:
        async with session(exchange.ws, key=None) as ws:
            ok = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["trades", "book"]})
            assert ok["event"] == "subscribed"
            for message in ({"op": "subscribe", "instrument": sym, "channels": ["orders"], "client_id": "alice"},
                            {"op": "order", **body(sym, "buy", "10.00", "1")},
                            {"op": "orders", "orders": [body(sym, "buy", "10.00", "1")]},
                            {"op": "cancel", "order_id": str(uuid.uuid4())}):
                err = await ws.request(message)
                assert (err["event"], err["status"], err["code"]) == ("error", 401, "authentication_required"), err
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())


def test_a_trader_key_in_the_handshake_acts_for_its_client_only(exchange: Any, sym: str) -> None:
    mine, theirs = f"ws-{uuid.uuid4().hex[:8]}", f"ws-{uuid.uuid4().hex[:8]}"
    key, other = exchange.keys.trader(mine), exchange.keys.trader(theirs)

    async def scenario() -> None:
        async with session(exchange.ws, key=key) as ws, session(exchange.ws, key=key) as watch, \
                session(exchange.ws, key=other) as them:
            # the orders channel: its own client's, named or not; another's is refused
            ok = await watch.request({"op": "subscribe", "instrument": sym, "channels": ["orders"]})
            assert (ok["event"], ok["client_id"]) == ("subscribed", mine)
            err = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["orders"], "client_id": theirs})
            assert (err["status"], err["code"]) == (403, "client_mismatch")
            assert (await them.request({"op": "subscribe", "instrument": sym, "channels": ["orders"],
                                        "client_id": mine}))["code"] == "client_mismatch"
            # order entry: the key's client, filled in; another's refused, in a batch too
            ack = await ws.request({"op": "order", **{k: v for k, v in body(sym, "buy", "10.00", "1").items()
                                                      if k != "client_id"}})
            assert ack["event"] == "order_ack" and ack["order"]["client_id"] == mine and "rate_limit" in ack
            err = await ws.request({"op": "order", **body(sym, "buy", "10.00", "1", client_id=theirs)})
            assert (err["status"], err["code"]) == (403, "client_mismatch")
            batch = await ws.request({"op": "orders", "orders": [body(sym, "buy", "11.00", "1", client_id=mine),
                                                                 body(sym, "buy", "11.00", "1", client_id=theirs)]})
            assert [a.get("code") or a["status"] for a in batch["acks"]] == [201, "client_mismatch"]
            their_ack = await them.request({"op": "order", **body(sym, "sell", "50.00", "1", client_id=theirs)})
            # another client's order cannot be cancelled, nor told apart from none
            err = await ws.request({"op": "cancel", "order_id": their_ack["order"]["order_id"]})
            assert (err["status"], err["code"]) == (404, "order_not_found")
            # the updates of its own two orders, and nothing of the other client's
            seen = [await watch.next() for _ in range(2)]
            await watch.send({"op": "ping"})
            while (event := await watch.next())["event"] != "pong":
                seen.append(event)
            assert {e["event"] for e in seen} == {"order_update"} and {e["client_id"] for e in seen} == {mine}
        state = await asyncio.to_thread(lambda: __import__("tests.http", fromlist=["call"]).call(
            exchange.http, "GET", f"/orders/{their_ack['order']['order_id']}"))
        assert state[1]["status"] == "open"

    asyncio.run(scenario())


def test_the_auth_message_and_its_errors(exchange: Any, sym: str) -> None:
    key = exchange.keys.create()

    async def scenario() -> None:
        async with session(exchange.ws, key=None) as ws:
            err = await ws.request({"op": "auth", "key": new_key()[0]})
            assert (err["event"], err["status"], err["code"]) == ("error", 401, "invalid_api_key")
            err = await ws.request({"op": "auth"})
            assert err["code"] == "invalid_message"
            ok = await ws.request({"op": "auth", "key": key})
            assert (ok["event"], ok["role"]) == ("authenticated", "trader") and key not in str(ok)
            assert (await ws.request({"op": "order", **body(sym, "buy", "10.00", "1", client_id=ok["client_id"])})
                    )["status"] == 201
            again = await ws.request({"op": "auth", "key": key})
            assert again["code"] == "invalid_message"
        async with session(exchange.ws, key=new_key()[0]) as ws:  # a bad key in the handshake: told, still open
            assert (await ws.next())["code"] == "invalid_api_key"
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())


def test_a_read_only_key_streams_its_orders_and_places_none(exchange: Any, sym: str) -> None:
    reader = exchange.keys.create(role="read_only")

    async def scenario() -> None:
        async with session(exchange.ws, key=reader) as ws:
            ok = await ws.request({"op": "subscribe", "instrument": sym, "channels": ["orders"]})
            assert ok["event"] == "subscribed"
            for message in ({"op": "order", **body(sym, "buy", "10.00", "1", client_id=ok["client_id"])},
                            {"op": "cancel", "order_id": str(uuid.uuid4())}):
                err = await ws.request(message)
                assert (err["status"], err["code"]) == (403, "forbidden")

    asyncio.run(scenario())


def test_each_order_of_an_orders_message_spends_the_budget(exchange: Any, sym: str) -> None:
    wait_for_web_processes([exchange.http], 1)
    key = exchange.keys.create(orders_rate="10/60s")
    fresh_window(f"key:{key_id(exchange.keys, key)}", 60, 10)

    async def scenario() -> None:
        async with session(exchange.ws, key=key) as ws:
            ack = await ws.request({"op": "orders", "orders": [{k: v for k, v in body(sym, "buy", "10.00", "1").items()
                                                                if k != "client_id"} for _ in range(15)]}, timeout=30)
            assert [a["status"] for a in ack["acks"]] == [201] * 10 + [429] * 5
            assert {a["code"] for a in ack["acks"][10:]} == {"rate_limited"}
            assert ack["rate_limit"]["limit"] == 10 and ack["rate_limit"]["remaining"] == 0
            err = await ws.request({"op": "order", **body(sym, "buy", "10.00", "1")})
            assert (err["status"], err["code"]) == (429, "rate_limited")

    asyncio.run(scenario())


def test_a_revoked_keys_socket_is_told_within_a_second_does_nothing_more_and_is_closed(exchange: Any,
                                                                                     sym: str) -> None:
    key = exchange.keys.create()
    order = body(sym, "buy", "10.00", "1")
    order.pop("client_id")

    async def scenario() -> float:
        async with session(exchange.ws, key=key) as ws:
            assert (await ws.request({"op": "subscribe", "instrument": sym, "channels": ["orders"]}))["event"] == \
                "subscribed"
            with exchange.connect() as conn:
                conn.execute("UPDATE orders_apikey SET revoked_at = now() WHERE id = %s",
                             (key_id(exchange.keys, key),))
            revoked = time.monotonic()
            told = await ws.next(timeout=5)
            took = time.monotonic() - revoked
            assert (told["event"], told["status"], told["code"]) == ("error", 401, "api_key_revoked")
            # whatever it sends now is refused, and the socket is closed with 4401 (under granian
            # the close goes out with the client's next frame: it keeps sending)
            deadline = time.monotonic() + 5
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while time.monotonic() < deadline:
                    await ws.send({"op": "order", **order})
                    try:
                        event = await ws.next(timeout=0.3)
                    except TimeoutError:
                        continue
                    assert event["event"] == "error" and event["code"] == "api_key_revoked", event
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            return took

    assert asyncio.run(scenario()) < 1.0
    with exchange.connect() as conn:
        assert conn.execute("SELECT count(*) FROM orders_order WHERE idempotency_key = %s",
                            (order["idempotency_key"],)).fetchone() == (0,)


def test_anonymous_subscriptions_spend_the_addresss_read_budget(exchange: Any, sym: str) -> None:
    base = exchange.start_extra_server("server-ws-reads", {"PGBOURSE_RATE_ANONYMOUS_READS": "6/30s"})
    ws_url = base.replace("http://", "ws://") + "/stream"
    try:
        wait_for_web_processes([base], 2)  # it and the exchange's: 3 each
        fresh_window("ip:127.0.0.61", 30, 8)

        async def scenario() -> list[str]:
            async with session(ws_url, key=None, local_addr=("127.0.0.61", 0)) as ws:
                return [(await ws.request({"op": "subscribe", "instrument": sym, "channels": ["trades"]}))["event"]
                        for _ in range(4)]

        events = asyncio.run(scenario())
        assert events == ["subscribed"] * 3 + ["error"]
    finally:
        exchange.stop_extra_server("server-ws-reads")
