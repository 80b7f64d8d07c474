"""Many clients at once, over real HTTP: exact quantities, FIFO, nothing filled twice, and one
order per idempotency key however the duplicates race."""
from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal

from tests.http import acall, call, gather_limited

from .helpers import count_rows, order_body


def test_thousand_clients_at_one_price_then_markets_fill_fifo_exactly(exchange):
    sym = exchange.make_instrument()
    # given 1,000 clients each posting a sell at the same price, concurrently
    qty = {n: Decimal(n % 7 + 1) / 10 for n in range(1000)}

    async def post_all():
        return await gather_limited([
            acall(exchange.http, "POST", "/orders",
                  order_body(sym, side="sell", price="250.00", quantity=str(qty[n]), client_id=f"maker-{n}"))
            for n in range(1000)], limit=200)

    results = asyncio.run(post_all())
    assert [s for s, _ in results].count(201) == 1000, {s for s, _ in results}
    makers = {b["order_id"]: b for _, b in results}
    assert all(b["status"] == "open" for b in makers.values())
    total = sum(qty.values())
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert book["asks"] == [{"price": "250.00", "quantity": f"{total:.4f}", "order_count": 1000,
                             "cumulative_quantity": f"{total:.4f}"}]

    # when market buys take part of the level, concurrently
    take = [Decimal("3.7"), Decimal("11.1"), Decimal("0.05"), Decimal("20"), Decimal("5.15")]

    async def take_all():
        return await asyncio.gather(*(acall(exchange.http, "POST", "/orders",
                                            order_body(sym, side="buy", price=None, quantity=str(q),
                                                       client_id=f"taker-{i}"))
                                      for i, q in enumerate(take)))

    takers = asyncio.run(take_all())
    assert all(s == 201 and b["status"] == "filled" for s, b in takers), takers
    taken = sum(take)

    # then every quantity is exact, fills follow the makers' time priority, nothing twice
    with exchange.connect() as conn:
        trades = conn.execute("SELECT sell_order_id, buy_order_id, quantity, price FROM orders_trade t "
                              "JOIN orders_instrument i ON i.id = t.instrument_id WHERE i.symbol = %s "
                              "ORDER BY seq", (sym,)).fetchall()
        rows = conn.execute("SELECT order_id, quantity, filled_quantity, priority, status FROM orders_order o "
                            "JOIN orders_instrument i ON i.id = o.instrument_id WHERE i.symbol = %s "
                            "AND o.side = 'sell'", (sym,)).fetchall()
    assert sum(t[2] for t in trades) == taken
    assert {t[3] for t in trades} == {Decimal("250")}
    filled_by_trades: dict[str, Decimal] = defaultdict(Decimal)
    for sell_id, _, q, _ in trades:
        filled_by_trades[str(sell_id)] += q
    by_priority = sorted(rows, key=lambda r: r[3])
    # FIFO: the makers that traded form a prefix of the priority order, all full but the last
    touched = [r for r in by_priority if r[2] > 0]
    assert by_priority[:len(touched)] == touched
    assert all(r[2] == r[1] and r[4] == "filled" for r in touched[:-1])
    for oid, quantity, filled, _, _ in rows:
        assert filled == filled_by_trades.get(str(oid), Decimal(0)) <= quantity
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert Decimal(book["asks"][0]["quantity"]) == total - taken


def test_fifty_concurrent_duplicates_make_exactly_one_order(exchange):
    sym = exchange.make_instrument()
    call(exchange.http, "POST", "/orders", order_body(sym, side="sell", price="10.00", quantity="100", client_id="m"))
    body = order_body(sym, side="buy", price="10.00", quantity="1", client_id="dup-client")

    async def race():
        return await asyncio.gather(*(acall(exchange.http, "POST", "/orders", body) for _ in range(50)))

    results = asyncio.run(race())
    statuses = [s for s, _ in results]
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    assert len({b["order_id"] for _, b in results}) == 1
    assert count_rows(exchange, "orders_order", "client_id = %s AND idempotency_key = %s",
                      ("dup-client", body["idempotency_key"])) == 1
    status, trades = call(exchange.http, "GET", f"/trades?instrument={sym}")
    assert len(trades) == 1 and trades[0]["quantity"] == "1.0000"


def test_concurrent_cancels_of_one_order_cancel_once(exchange):
    sym = exchange.make_instrument()
    status, order = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="10.00", quantity="1"))

    async def race():
        return await asyncio.gather(*(acall(exchange.http, "POST", f"/orders/{order['order_id']}/cancel")
                                      for _ in range(10)))

    results = asyncio.run(race())
    assert [s for s, _ in results].count(200) == 1 and [s for s, _ in results].count(409) == 9
    assert count_rows(exchange, "orders_orderevent", "order_id = %s AND status = 'cancelled'",
                      (uuid.UUID(order["order_id"]),)) == 1


def test_concurrent_orders_with_one_client_order_id_make_one_order(exchange):
    # Different idempotency keys, the same client-supplied order_id, sent at once (so several
    # land in one group-committed INSERT): one order, every other request told why.
    sym = exchange.make_instrument()
    oid = str(uuid.uuid4())

    async def race():
        return await asyncio.gather(*(acall(exchange.http, "POST", "/orders",
                                            order_body(sym, side="buy", price="10.00", order_id=oid,
                                                       client_id=f"c{n}"))
                                      for n in range(20)))

    results = asyncio.run(race())
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] + [409] * 19, statuses
    assert {b["code"] for s, b in results if s == 409} == {"duplicate_order_id"}
    assert count_rows(exchange, "orders_order", "order_id = %s", (uuid.UUID(oid),)) == 1


def test_concurrent_cancels_and_modifies_of_many_orders_all_answer_with_final_state(exchange):
    # Cancel and modify wait for the matching worker: they must wait on the event loop, side by
    # side, not one after another on a thread (which once capped them near 150/s).
    sym = exchange.make_instrument()

    async def scenario():
        placed = await gather_limited([acall(exchange.http, "POST", "/orders",
                                             order_body(sym, side="buy", price=f"{10 + n % 50}.00", quantity="1",
                                                        client_id=f"c{n}"))
                                       for n in range(300)])
        ids = [body["order_id"] for status, body in placed]
        assert {status for status, _ in placed} == {201}
        commands = [acall(exchange.http, "DELETE", f"/orders/{oid}") for oid in ids[:200]]
        commands += [acall(exchange.http, "PATCH", f"/orders/{oid}", {"quantity": "0.5"}) for oid in ids[200:]]
        return ids, await gather_limited(commands, limit=300)

    ids, results = asyncio.run(scenario())
    assert [s for s, _ in results] == [200] * 300, {s for s, _ in results}
    assert all(b["status"] == "cancelled" and b["remaining_quantity"] == "1.0000" for _, b in results[:200])
    assert all(b["status"] == "open" and b["quantity"] == "0.5000" for _, b in results[200:])
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=100")
    assert sum(Decimal(level["quantity"]) for level in book["bids"]) == Decimal("50")


def _requests_counted(exchange, operation: str, status: int) -> float:
    _, text = call(exchange.http, "GET", "/metrics", headers={"Accept": "text/plain"})
    prefix = f'order_requests_total{{operation="{operation}",status="{status}"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def test_json_cancel_and_modify_take_the_lean_path_and_html_forms_stay_with_drf(exchange):
    sym = exchange.make_instrument()
    before = (_requests_counted(exchange, "cancel", 200), _requests_counted(exchange, "modify", 200))
    a = call(exchange.http, "POST", "/orders", order_body(sym, price="10.00"))[1]
    b = call(exchange.http, "POST", "/orders", order_body(sym, price="10.00"))[1]
    assert call(exchange.http, "PATCH", f"/orders/{a['order_id']}", {"price": "9.00"})[0] == 200
    assert call(exchange.http, "POST", f"/orders/{a['order_id']}/cancel")[0] == 200
    assert call(exchange.http, "DELETE", f"/orders/{b['order_id']}")[0] == 200
    after = (_requests_counted(exchange, "cancel", 200), _requests_counted(exchange, "modify", 200))
    assert after == (before[0] + 2, before[1] + 1)
    # The browsable API's form (asking for HTML back) is DRF's, with the same outcome.
    c = call(exchange.http, "POST", "/orders", order_body(sym, price="10.00"))[1]
    status, page = call(exchange.http, "POST", f"/orders/{c['order_id']}/cancel", raw=b"",
                        headers={"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "cancelled" in page
    assert _requests_counted(exchange, "cancel", 200) == after[0]
