"""WebSocket order entry: pipelined orders, batches, REST idempotency, cancels, errors."""
from __future__ import annotations

import asyncio
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
