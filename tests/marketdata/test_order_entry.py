"""WebSocket order entry: pipelined orders, batches, REST idempotency, cancels, errors."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.http import call
from tests.marketdata.streams import body, session


def test_pipelined_orders_with_duplicates_are_acked_by_key_like_rest(exchange: Any) -> None:
    sym = exchange.make_instrument()
    bodies = [body(sym, "sell", f"{100 + n % 10}.00", "0.5", client_id="pipe") for n in range(300)]
    dup_same = dict(bodies[0])                            # same key, same body: 200, same order
    dup_changed = dict(bodies[1], quantity="0.7")          # same key, other body: 409
    invalid = body(sym, "sell", "100.005", "0.5", client_id="pipe")  # finer than the tick

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        async with session(exchange.ws) as ws:
            # Everything goes out before the first ack is read.
            for b in [*bodies, dup_same, dup_changed, invalid]:
                await ws.send({"op": "order", **b})
            batch = [body(sym, "buy", "90.00", "1", client_id="pipe") for _ in range(50)]
            await ws.send({"op": "orders", "orders": [*batch, {"side": "buy"}], "id": "b1"})
            by_key: dict[str, list[dict[str, Any]]] = {}
            batch_reply = None
            while sum(len(v) for v in by_key.values()) < 303 or batch_reply is None:
                event = await ws.next(timeout=30)
                if event["event"] == "orders_ack":
                    batch_reply = event
                    continue
                by_key.setdefault(event["idempotency_key"], []).append(event)
            assert batch_reply["id"] == "b1" and len(batch_reply["acks"]) == 51
            assert [a["status"] for a in batch_reply["acks"][:50]] == [201] * 50
            assert batch_reply["acks"][50]["event"] == "error" and batch_reply["acks"][50]["status"] == 400
            return by_key

    by_key = asyncio.run(scenario())
    first, again = by_key[bodies[0]["idempotency_key"]]
    assert (first["event"], again["event"]) == ("order_ack", "order_ack")
    assert {first["status"], again["status"]} == {201, 200}
    assert first["order"]["order_id"] == again["order"]["order_id"]
    statuses = sorted(str(e["status"]) if e["event"] == "order_ack" else e["code"]
                      for e in by_key[bodies[1]["idempotency_key"]])
    assert statuses == ["201", "idempotency_key_reused"]
    (bad,) = by_key[invalid["idempotency_key"]]
    assert (bad["event"], bad["status"], bad["code"]) == ("error", 400, "price_too_many_decimals")
    assert "price" in bad["fields"]
    placed = [e for k, events in by_key.items() for e in events if e["event"] == "order_ack" and e["status"] == 201]
    assert len(placed) == 300 and all(e["order"]["status"] == "open" for e in placed)

    # The exchange holds each order once: 300 x 0.5 on the asks.
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert status == 200 and book["ask_total_quantity"] == "150.0000"
    assert book["bid_total_quantity"] == "50.0000"


def test_cancel_answers_with_the_final_state_or_an_error(exchange: Any) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws:
            ack = await ws.request({"op": "order", **body(sym, "buy", "95.00", "2", client_id="c")})
            oid = ack["order"]["order_id"]
            done = await ws.request({"op": "cancel", "order_id": oid})
            assert (done["event"], done["status"], done["order"]["status"]) == ("cancel_ack", 200, "cancelled")
            assert done["order"]["remaining_quantity"] == "2.0000"
            again = await ws.request({"op": "cancel", "order_id": oid})
            assert (again["event"], again["status"], again["code"]) == ("error", 409, "order_not_open")
            missing = await ws.request({"op": "cancel", "order_id": "00000000-0000-0000-0000-000000000000"})
            assert (missing["code"], missing["status"]) == ("order_not_found", 404)
            assert (await ws.request({"op": "cancel"}))["code"] == "invalid_message"

    asyncio.run(scenario())


def test_hostile_strings_and_numbers_get_an_error_and_never_touch_other_orders(exchange: Any) -> None:
    sym = exchange.make_instrument()
    goods = [body(sym, "sell", f"{100 + n % 5}.00", "0.5", client_id="ws-good") for n in range(100)]
    hostile = [
        # NUL and lone surrogates, escaped as a client's JSON library sends them
        json.dumps({"op": "order", **body(sym, "buy", "90.00", "1", client_id="a\x00")}),
        json.dumps({"op": "order", **body(sym, "buy", "90.00", "1"), "idempotency_key": "s\ud800"}),
        # a 5,000-digit quantity
        json.dumps({"op": "order", **body(sym, "buy", "90.00", "1")}).replace('"1"', "1." + "0" * 5000 + "1"),
    ]

    async def scenario() -> None:
        async with session(exchange.ws) as ws:
            # a surrogate anywhere in a message, even in a ping's id, is answered, not a closed socket
            await ws.send(json.dumps({"op": "ping", "id": "p\udc00"}))
            assert (await ws.next())["code"] == "invalid_string"
            await ws.send({"op": "orders", "orders": goods[:50], "id": "first"})
            for text in hostile:
                await ws.send(text)
            # an orders list with one hostile body keeps its good orders
            await ws.send(json.dumps({"op": "orders", "id": "mixed", "orders": [
                *goods[50:], {**body(sym, "buy", "90.00", "1"), "client_id": "x\x00"}]}))
            replies = [await ws.next(timeout=30) for _ in range(5)]
            by_id = {r.get("id"): r for r in replies if r["event"] == "orders_ack"}
            errors = [r for r in replies if r["event"] == "error"]
            assert sorted(e["code"] for e in errors) == ["invalid_number", "invalid_string", "invalid_string"]
            assert [a["status"] for a in by_id["first"]["acks"]] == [201] * 50
            mixed = by_id["mixed"]["acks"]
            assert [a["status"] for a in mixed[:50]] == [201] * 50
            assert (mixed[50]["status"], mixed[50]["code"]) == (400, "invalid_string")
            assert (await ws.request({"op": "ping"}))["event"] == "pong"

    asyncio.run(scenario())
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert status == 200 and book["ask_total_quantity"] == "50.0000" and book["bid_level_count"] == 0
    assert exchange.procs["worker"].poll() is None
