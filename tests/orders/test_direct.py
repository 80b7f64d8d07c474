"""The direct order path (matching/worker/direct.py, orders/direct.py): orders sent straight to the
worker are written once with their outcome; a lost answer never makes two orders; a batch that
collides with a stored order does not commit."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import psycopg
import pytest

from marketdata.analytics import InstrumentAnalytics
from marketdata.feed import FeedBuilder
from matching.contract import CancelOrder, Code, CommandResult, Placed, PlaceOrder
from matching.engine.types import STP, OrderType, Side, TimeInForce
from matching.worker.dedupe import Recent
from matching.worker.service import MatchingWorker
from matching.worker.store import Store
from orders.representation import order_body as rendered
from tests.http import call

from .helpers import count_rows, order_body, place, wait_status


@pytest.fixture
def worker_restored(exchange):
    yield
    exchange.kill_worker()
    exchange.start_worker()


def test_recent_orders_are_remembered_for_at_least_their_bound_and_at_most_twice_it():
    # The worker's memory of orders whose batch may still be committing (matching.worker.Recent)
    recent = Recent(size=100)
    for n in range(1000):
        recent.add(n)
        # every one of the last 100 added is still known
        assert all(k in recent for k in range(max(0, n - 99), n + 1))
    # and no more than 200 are kept: the oldest are forgotten
    assert 799 not in recent and 0 not in recent
    assert len(recent.newer) + len(recent.older) <= 200


def test_a_direct_order_is_written_once_with_its_outcome(exchange):
    sym = exchange.make_instrument()
    # when an order is placed with the worker reachable
    body = place(exchange, sym, side="buy", price="10.00")
    # then it was never stored as pending: its first and only event is its outcome
    with exchange.connect() as conn:
        events = conn.execute("SELECT status FROM orders_orderevent WHERE order_id = %s ORDER BY id",
                              (uuid.UUID(body["order_id"]),)).fetchall()
    assert events == [("open",)]
    assert "direct order path to the matching worker" in exchange.log_text("server")
    # and a cancel through the same path answers with the whole order, fills included
    status, cancelled = call(exchange.http, "DELETE", f"/orders/{body['order_id']}")
    assert status == 200 and cancelled["status"] == "cancelled" and cancelled["fills"] == []
    assert cancelled == call(exchange.http, "GET", f"/orders/{body['order_id']}")[1]


def test_a_command_for_an_order_no_book_holds_is_answered_from_the_workers_read(exchange, worker_restored):
    sym = exchange.make_instrument()
    iid = _instrument_id(exchange, sym)
    maker = place(exchange, sym, side="sell", price="10.00", quantity="1")
    place(exchange, sym, side="buy", price="10.00", quantity="1", client_id="bob")  # fills the maker
    exchange.kill_worker()

    def store_pending(instrument_id: int) -> str:
        """An order still waiting in the inbox."""
        oid = str(uuid.uuid4())
        with exchange.connect() as conn:
            conn.execute("INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id,"
                         " side, type, time_in_force, post_only, stp, price, quantity, filled_quantity, status,"
                         " created_at, updated_at) VALUES (%s, 'direct', %s, %s, %s, 'buy', 'limit', 'GTC', false,"
                         " 'cancel_taker', 5, 1, 0, 'pending', now(), now())",
                         (uuid.UUID(oid), uuid.uuid4().hex, "0" * 64, instrument_id))
        return oid

    pending = store_pending(iid)

    async def scenario() -> list:
        worker = MatchingWorker(exchange.conninfo, FeedBuilder, analytics_factory=InstrumentAnalytics)
        await worker.start(wait_for_lock=False)
        # (and one of an instrument added after the worker started: it has no book for it yet)
        pending_new = store_pending(_instrument_id(exchange, exchange.make_instrument()))
        try:
            return await worker.handle_direct([CancelOrder(order_id=maker["order_id"]),
                                               CancelOrder(order_id=str(uuid.uuid4())),
                                               CancelOrder(order_id=pending), CancelOrder(order_id=pending_new)])
        finally:
            await worker.close()

    filled, unknown, waiting, waiting_new = asyncio.run(scenario())
    # then a finished order is refused with the order as stored, an unknown one is not found,
    # and a pending one is left to the inbox, which orders the cancel after its place
    assert isinstance(filled, CommandResult) and filled.code is Code.ORDER_NOT_OPEN, filled
    assert filled.order is not None and filled.order.status == "filled"
    assert rendered(filled.order) == call(exchange.http, "GET", f"/orders/{maker['order_id']}")[1]
    assert unknown == CommandResult(code=Code.ORDER_NOT_FOUND)
    assert waiting == waiting_new == CommandResult(code=Code.DEFERRED)


def test_an_answer_lost_to_a_stalled_worker_still_makes_exactly_one_order(exchange, worker_restored):
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="20.00", quantity="1")  # the direct connection is up
    worker = exchange.procs["worker"]
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        # when the worker does not answer within the bound
        started = time.monotonic()
        status, body = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="20.00",
                                                                            quantity="0.4", client_id="bob"))
        # then the order is stored as pending under the id it was sent with, and answered 202
        assert status == 202 and body["status"] == "pending", body
        assert 1.5 < time.monotonic() - started < 5
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    # and once the worker runs again, both its copies (the frame it received and the pending
    # row) end as ONE order, matched once
    final = wait_status(exchange, body["order_id"], {"filled"})
    assert final["status"] == "filled" and len(final["fills"]) == 1
    oid = uuid.UUID(body["order_id"])
    assert count_rows(exchange, "orders_order", "order_id = %s", (oid,)) == 1
    assert count_rows(exchange, "orders_orderevent", "order_id = %s AND status = 'filled'", (oid,)) == 1
    assert count_rows(exchange, "orders_trade", "buy_order_id = %s", (oid,)) == 1


def _direct_item(instrument_id: int, order_id: str, key: str, client: str = "direct") -> PlaceOrder:
    return PlaceOrder(order_id=order_id, client_id=client, idempotency_key=key, request_hash="0" * 64,
                      instrument_id=instrument_id, side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                      post_only=False, stp=STP.CANCEL_TAKER, price="10.00", quantity="1")


def _instrument_id(exchange, sym: str) -> int:
    with exchange.connect() as conn:
        return conn.execute("SELECT id FROM orders_instrument WHERE symbol = %s", (sym,)).fetchone()[0]


def _run_with_concurrent_row(exchange, monkeypatch, sym: str,
                             pending_row: dict) -> tuple[MatchingWorker, list | Exception]:
    """A worker matches one direct order; between its duplicate check and its write another
    session stores `pending_row` (as a web process that gave up waiting would)."""
    iid = _instrument_id(exchange, sym)
    order_id, key = str(uuid.uuid4()), uuid.uuid4().hex

    async def scenario() -> tuple[MatchingWorker, list | Exception]:
        worker = MatchingWorker(exchange.conninfo, FeedBuilder, analytics_factory=InstrumentAnalytics)
        await worker.start(wait_for_lock=False)
        begin = Store._begin

        def store_concurrently(store: Store, conn: psycopg.Connection, attempt: int) -> None:
            begin(store, conn, attempt)
            if attempt == 1:
                row = {"order_id": order_id, "key": key, "status": "pending"} | pending_row
                with exchange.connect() as other:
                    other.execute(
                        "INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id,"
                        " side, type, time_in_force, post_only, stp, price, quantity, filled_quantity, status,"
                        " created_at, updated_at) VALUES (%s, 'direct', %s, %s, %s, 'buy', 'limit', 'GTC', false,"
                        " 'cancel_taker', 10, 1, 0, %s, now(), now())",
                        (uuid.UUID(row["order_id"]), row["key"], "0" * 64, iid, row["status"]))

        monkeypatch.setattr(Store, "_begin", store_concurrently)
        try:
            return worker, await worker.handle_direct([_direct_item(iid, order_id, key)])
        except psycopg.Error as exc:
            return worker, exc
        finally:
            await worker.close()

    return asyncio.run(scenario())


def test_a_pending_copy_stored_meanwhile_is_taken_over(exchange, worker_restored, monkeypatch):
    sym = exchange.make_instrument()
    exchange.kill_worker()
    worker, answers = _run_with_concurrent_row(exchange, monkeypatch, sym, {})
    # then the batch committed, answering the order; the pending row became that order
    assert isinstance(answers, list) and isinstance(answers[0], Placed) and answers[0].order.status == "open", answers
    oid = uuid.UUID(answers[0].order.order_id)
    with exchange.connect() as conn:
        assert conn.execute("SELECT status FROM orders_order WHERE order_id = %s", (oid,)).fetchall() == [("open",)]


@pytest.mark.parametrize("collision", [
    pytest.param({"key": "another-key", "status": "cancelled"}, id="same order_id, another order"),
    pytest.param({"order_id": None}, id="same key, another order_id"),
])
def test_a_batch_that_collides_with_a_stored_order_does_not_commit(exchange, worker_restored, monkeypatch, collision):
    sym = exchange.make_instrument()
    exchange.kill_worker()
    if collision.get("order_id", "") is None:
        collision = {"order_id": str(uuid.uuid4())}
    worker, answer = _run_with_concurrent_row(exchange, monkeypatch, sym, collision)
    # then the write failed (the worker process would exit and rebuild) and nothing of the
    # batch was stored: no event, no sequence number, only the other session's row
    assert isinstance(answer, psycopg.Error), answer
    assert count_rows(exchange, "orders_orderevent e JOIN orders_instrument i ON i.id = e.instrument_id",
                      "i.symbol = %s", (sym,)) == 0
    with exchange.connect() as conn:
        assert conn.execute("SELECT last_seq FROM orders_instrument WHERE symbol = %s", (sym,)).fetchone()[0] == 0
    assert count_rows(exchange, "orders_order o JOIN orders_instrument i ON i.id = o.instrument_id",
                      "i.symbol = %s", (sym,)) == 1


def test_the_workers_answers_go_out_before_its_log_lines_are_rendered(exchange, worker_restored, monkeypatch):
    from matching.worker import service

    iid = _instrument_id(exchange, exchange.make_instrument())
    exchange.kill_worker()  # this test's worker is the only one
    events: list[str] = []
    monkeypatch.setattr(service.logs, "batch_committed", lambda *args: events.append("lines rendered"))

    async def scenario() -> None:
        worker = MatchingWorker(exchange.conninfo, FeedBuilder, analytics_factory=InstrumentAnalytics)
        await worker.start(wait_for_lock=False)
        try:
            answers = await worker.handle_direct([_direct_item(iid, str(uuid.uuid4()), uuid.uuid4().hex)])
            events.append("answered")
            assert isinstance(answers[0], Placed), answers
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            await worker.close()

    # when a batch commits, its answers reach whoever waits for them first, and only then does
    # the worker render the batch's log lines (they cost CPU, not the answers' latency)
    asyncio.run(scenario())
    assert events == ["answered", "lines rendered"]
