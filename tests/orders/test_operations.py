"""The operations endpoints and the admin, over real HTTP against the live exchange: snapshots
of the live book, halt and resume, cancel-all, the worker's state, the audit trail, the inbox
when no worker runs, an instrument added in the admin."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest

from tests.http import call
from tests.marketdata.streams import body, session

from .helpers import count_rows, place, staff_session, wait_status


@pytest.fixture
def worker_restored(exchange: Any) -> Any:
    """Whatever a test does to the worker, the next test gets a running one."""
    yield
    exchange.kill_worker()
    exchange.start_worker()


def audit(ex: Any, action: str, target: str) -> list[tuple[Any, ...]]:
    with ex.connect() as conn:
        return conn.execute("SELECT actor, detail FROM orders_auditentry WHERE action = %s AND target = %s ORDER BY id",
                            (action, target)).fetchall()


def test_the_operations_endpoints_answer_only_operators(exchange: Any) -> None:
    sym = exchange.make_instrument()
    before = count_rows(exchange, "orders_auditentry")
    trader = exchange.keys.create()
    # given no key and no session (401), or a trader's key (403), every operations endpoint
    # refuses, with the one error shape, and does nothing
    for method, path, payload in [("POST", "/admin/snapshot", {"instrument": sym}), ("GET", "/admin/snapshots", None),
                                  ("POST", f"/admin/instruments/{sym}/halt", None),
                                  ("POST", "/admin/cancel-all", {"instrument": sym}), ("GET", "/admin/worker", None)]:
        status, answer = call(exchange.http, method, path, payload, key=None)
        assert status == 401 and answer["code"] == "authentication_required" and set(answer) >= {"detail", "fields"}
        status, answer = call(exchange.http, method, path, payload, key=trader)
        assert status == 403 and answer["code"] == "forbidden" and set(answer) >= {"detail", "fields"}
    assert count_rows(exchange, "orders_auditentry") == before
    assert count_rows(exchange, "orders_instrument", "symbol = %s AND halted", (sym,)) == 0


def test_a_snapshot_on_demand_is_the_live_book_at_its_committed_sequence(exchange: Any) -> None:
    sym = exchange.make_instrument()
    for n in range(3):
        place(exchange, sym, side="buy", price=f"9{n}.00", quantity="1")
    place(exchange, sym, side="sell", price="101.00", quantity="2")
    place(exchange, sym, side="sell", price="101.00", quantity="1")
    op = staff_session(exchange)
    # when an operator asks for a snapshot of the instrument
    status, snap, _ = op.request("POST", "/admin/snapshot", {"instrument": sym})
    # then it is stored, at the sequence and journal position the book had committed
    assert status == 201, snap
    assert (snap["instrument"], snap["bid_levels"], snap["ask_levels"], snap["orders"]) == (sym, 3, 1, 5)
    with exchange.connect() as conn:
        last_seq, last_command = conn.execute("SELECT last_seq, last_command_seq FROM orders_instrument "
                                              "WHERE symbol = %s", (sym,)).fetchone()
        source, stored = conn.execute("SELECT source, engine_snapshot FROM marketdata_booksnapshot WHERE id = %s",
                                      (snap["id"],)).fetchone()
    assert (snap["seq"], snap["command_seq"], source) == (last_seq, last_command, "admin") == (5, 5, "admin")
    assert [o["qty_lots"] for o in stored["orders"]] == [10000] * 3 + [20000, 10000]
    # and it is listed first, and the audit trail says who took it
    status, listed, _ = op.request("GET", f"/admin/snapshots?instrument={sym}")
    assert status == 200 and listed["snapshots"][0]["id"] == snap["id"] and listed["snapshots"][0]["orders"] == 5
    ((actor, detail),) = audit(exchange, "snapshot", sym)
    assert actor == f"user:{op.username}" and detail["snapshots"][0]["id"] == snap["id"]  # type: ignore[attr-defined]
    # without an instrument, every live book is stored
    status, everything, _ = op.request("POST", "/admin/snapshot", {})
    assert status == 201 and sym in {s["instrument"] for s in everything["snapshots"]}
    # and an unknown instrument is a 400 that stores nothing
    status, answer, _ = op.request("POST", "/admin/snapshot", {"instrument": "NOPE-USD"})
    assert status == 400 and answer["code"] == "unknown_instrument"


def test_a_halt_refuses_orders_and_modifies_keeps_cancels_and_survives_a_restart(exchange: Any,
                                                                                  worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    resting = place(exchange, sym, side="buy", price="99.00", quantity="1")
    op = staff_session(exchange)
    # when the instrument is halted
    status, answer, _ = op.request("POST", f"/admin/instruments/{sym}/halt")
    assert (status, answer) == (200, {"instrument": sym, "halted": True, "changed": True})
    assert next(i for i in call(exchange.http, "GET", "/instruments")[1] if i["symbol"] == sym)["halted"] is True
    # then a new order is refused over REST and the WebSocket alike, and nothing is stored
    orders_before = count_rows(exchange, "orders_order o JOIN orders_instrument i ON i.id = o.instrument_id",
                               "i.symbol = %s", (sym,))
    status, refused = call(exchange.http, "POST", "/orders", body(sym, "sell", "100.00", "1"))
    assert status == 409 and refused["code"] == "instrument_halted"

    async def over_ws() -> dict[str, Any]:
        async with session(exchange.ws) as ws:
            await ws.send({"op": "order", **body(sym, "sell", "100.00", "1")})
            return await ws.next(timeout=10)

    event = asyncio.run(over_ws())
    assert (event["event"], event["code"]) == ("error", "instrument_halted")
    assert count_rows(exchange, "orders_order o JOIN orders_instrument i ON i.id = o.instrument_id",
                      "i.symbol = %s", (sym,)) == orders_before
    # a modify is refused too, and the order is unchanged
    status, refused = call(exchange.http, "PATCH", f"/orders/{resting['order_id']}", {"price": "98.00"})
    assert status == 409 and refused["code"] == "instrument_halted" and refused["order"]["price"] == "99.00"
    # the halt survives a restart of the worker
    exchange.kill_worker()
    exchange.start_worker()
    status, refused = call(exchange.http, "POST", "/orders", body(sym, "sell", "100.00", "1"))
    assert status == 409 and refused["code"] == "instrument_halted"
    # a cancel still works
    status, cancelled = call(exchange.http, "POST", f"/orders/{resting['order_id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    # and once resumed, orders trade again
    status, answer, _ = op.request("POST", f"/admin/instruments/{sym}/resume")
    assert (status, answer["halted"], answer["changed"]) == (200, False, True)
    place(exchange, sym, side="sell", price="100.00", quantity="1")
    assert [a for a, _ in audit(exchange, "halt", sym)] == [a for a, _ in audit(exchange, "resume", sym)] == \
        [f"user:{op.username}"]  # type: ignore[attr-defined]


def test_cancel_all_cancels_each_open_order_of_a_client_or_an_instrument(exchange: Any) -> None:
    a, b = exchange.make_instrument(), exchange.make_instrument()
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    bob = f"bob-{uuid.uuid4().hex[:6]}"
    ids = {(sym, client): [place(exchange, sym, side="buy", price=f"9{n}.00", quantity="1", client_id=client)["order_id"]
                           for n in range(3)] for sym in (a, b) for client in (alice, bob)}
    op = staff_session(exchange)
    # when every order of one client is cancelled
    status, answer, _ = op.request("POST", "/admin/cancel-all", {"client_id": alice})
    assert status == 200 and answer == {"cancelled": 6, "by_instrument": {a: 3, b: 3}}
    # then each of them is cancelled, with exactly one cancel event each; the others stand
    for sym in (a, b):
        for oid in ids[(sym, alice)]:
            assert wait_status(exchange, oid, {"cancelled"})["reason"] == "cancelled_by_user"
            assert count_rows(exchange, "orders_orderevent", "order_id = %s AND status = 'cancelled'",
                              (uuid.UUID(oid),)) == 1
    # and cancelling a whole instrument takes the rest of its book only
    status, answer, _ = op.request("POST", "/admin/cancel-all", {"instrument": a})
    assert status == 200 and answer == {"cancelled": 3, "by_instrument": {a: 3}}
    assert {call(exchange.http, "GET", f"/orders/{oid}")[1]["status"] for oid in ids[(b, bob)]} == {"open"}
    assert {call(exchange.http, "GET", f"/orders/{oid}")[1]["status"] for oid in ids[(a, bob)]} == {"cancelled"}
    assert len(audit(exchange, "cancel_all", f"client:{alice}")) == 1
    # a request naming nothing is refused
    status, answer, _ = op.request("POST", "/admin/cancel-all", {})
    assert status == 400 and answer["code"] == "required"


def test_admin_commands_wait_in_the_inbox_while_no_worker_runs(exchange: Any, worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    op = staff_session(exchange)
    exchange.kill_worker()
    # when an operator halts the instrument with no worker running
    started = time.monotonic()
    status, answer, _ = op.request("POST", f"/admin/instruments/{sym}/halt")
    # then the command is stored and answered pending within the ack bound
    assert status == 202 and answer["status"] == "pending", answer
    assert time.monotonic() - started < 5
    status, row, _ = op.request("GET", f"/admin/commands/{answer['command_id']}")
    assert status == 200 and (row["kind"], row["processed"]) == ("set_halted", False)
    # and the next worker carries it out
    exchange.start_worker()
    deadline = time.monotonic() + 15
    while not row["processed"] and time.monotonic() < deadline:
        time.sleep(0.1)
        row = op.request("GET", f"/admin/commands/{answer['command_id']}")[1]
    assert row["processed"] and row["result"]["halted"] is True
    status, refused = call(exchange.http, "POST", "/orders", body(sym, "buy", "10.00", "1"))
    assert status == 409 and refused["code"] == "instrument_halted"


def test_an_instrument_added_in_the_admin_trades_at_once_and_its_page_shows_the_worker(exchange: Any) -> None:
    op = staff_session(exchange)
    sym = f"A{uuid.uuid4().hex[:6].upper()}-USD"
    status, page, _ = op.request("GET", "/admin/orders/instrument/add/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert status == 200 and token is not None
    # when an operator adds an instrument in the admin
    status, _, headers = op.request("POST", "/admin/orders/instrument/add/", form={
        "symbol": sym, "tick_size": "0.5", "lot_size": "1", "min_qty": "1", "max_qty": "100", "max_price": "1000",
        "min_notional": "", "is_active": "on", "csrfmiddlewaretoken": token.group(1), "_save": "Save"})
    assert status == 302, headers
    # then it takes orders at once, with nothing restarted
    place(exchange, sym, side="sell", price="10.5", quantity="2")
    taker = place(exchange, sym, side="buy", price="11.0", quantity="1", client_id="bob")
    assert taker["status"] == "filled" and taker["fills"][0]["price"] == "10.5"
    # and its admin page shows what the worker holds of it (from the heartbeat)
    with exchange.connect() as conn:
        (iid,) = conn.execute("SELECT id FROM orders_instrument WHERE symbol = %s", (sym,)).fetchone()
    deadline = time.monotonic() + 10
    while True:
        status, page, _ = op.request("GET", f"/admin/orders/instrument/{iid}/change/")
        if "1 open orders (0 bids on 0 levels, 1 asks on 1 levels)" in page or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200 and "1 open orders (0 bids on 0 levels, 1 asks on 1 levels)" in page
    assert "Matching worker" in page and "0 pending orders" in page
    # and the worker's own account lists it
    status, state, _ = op.request("GET", "/admin/worker")
    book = next(b for b in state["books"] if b["instrument"] == sym)
    assert status == 200 and (book["open_orders"], book["ask_levels"], book["halted"]) == (1, 1, False)
