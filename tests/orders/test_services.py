"""The order path's promises to a client (orders/services.py), over real HTTP: an answer that says
an order failed is true, whatever fails around it."""
from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.http import call

from .helpers import count_rows, order_body, place, postgres_pids, wait_status


@pytest.fixture
def worker_restored(exchange: Any) -> Any:
    yield
    exchange.kill_worker()
    exchange.start_worker()


def test_an_order_whose_answer_is_lost_is_never_told_failed(exchange: Any, worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="50.00")  # the web process is connected to the worker
    body = order_body(sym, side="buy", price="10.00")
    dbname = exchange.conninfo["dbname"]
    worker = exchange.procs["worker"]
    # given a matching worker that has stopped (SIGSTOP) with the order in its socket
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as threads:
            answer = threads.submit(call, exchange.http, "POST", "/orders", body)
            time.sleep(0.5)
            # and a database that refuses the web process while it waits for the answer
            with exchange.connect(dbname="postgres") as conn:
                conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND application_name LIKE 'pgbourse-web%%'", (dbname,))
            status, reply = answer.result(timeout=30)
    finally:
        with exchange.connect(dbname="postgres") as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        os.kill(worker.pid, signal.SIGCONT)
    # when the worker resumes, it executes the order it had been sent
    deadline = time.monotonic() + 10
    while count_rows(exchange, "orders_order", "idempotency_key = %s", (body["idempotency_key"],)) == 0:
        assert time.monotonic() < deadline, "the worker never executed the order"
        time.sleep(0.1)
    # then the client was not told that it failed: it was told that its outcome is unknown
    assert status == 504 and reply["code"] == "outcome_unknown", reply
    assert reply["idempotency_key"] == body["idempotency_key"]
    uuid.UUID(reply["order_id"])
    # and asking again with the same key answers the one order that exists (once the web
    # process's pool has replaced the connections the outage broke)
    deadline = time.monotonic() + 10
    again_status, again = call(exchange.http, "POST", "/orders", body)
    while again_status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        again_status, again = call(exchange.http, "POST", "/orders", body)
    assert again_status == 200 and again["order_id"] == reply["order_id"] and again["status"] == "open", again


def _orders_over(exchange: Any, sym: str, count: int = 12, every_s: float = 0.1) -> list[tuple[int, Any, float]]:
    """``count`` orders, one every ``every_s`` from threads of their own: each one's status, body
    and time to its answer."""
    def one(n: int) -> tuple[int, Any, float]:
        time.sleep(n * every_s)
        started = time.monotonic()
        status, body = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="10.00"))
        return status, body, time.monotonic() - started

    with ThreadPoolExecutor(count) as threads:
        return list(threads.map(one, range(count)))


# ORDER_ACK_TIMEOUT_S of the suite's exchange (tests/conftest.py), and what answering takes
ACK_BOUND_S = 2.0
MARGIN_S = 0.5


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="needs the embedded PostgreSQL's processes")
def test_every_order_is_answered_within_the_ack_bound_while_the_worker_or_the_database_hangs(
        exchange: Any, worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    maker = place(exchange, sym, side="sell", price="50.00")  # the web process is connected to the worker
    worker = exchange.procs["worker"]
    # when the worker stops answering while orders keep coming (more groups of them than the
    # direct path keeps in flight, so later ones queue behind a group that will get no answer)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        stalled = _orders_over(exchange, sym)
        started = time.monotonic()
        cancel_status, cancel = call(exchange.http, "DELETE", f"/orders/{maker['order_id']}")
        cancel_s = time.monotonic() - started
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    # then each is stored as pending and answered 202 within the ack bound of its own arrival
    assert [s for s, _, _ in stalled] == [202] * len(stalled), stalled
    assert max(t for _, _, t in stalled) < ACK_BOUND_S + MARGIN_S, stalled
    for _, body, _ in stalled:
        assert count_rows(exchange, "orders_order", "order_id = %s", (uuid.UUID(body["order_id"]),)) == 1
    # and a cancel is queued in the inbox and answered 202 with its command, without waiting for
    # the worker a second time; the worker carries it out once it runs again
    assert cancel_status == 202 and cancel["command_status"] == "pending", cancel
    assert cancel_s < ACK_BOUND_S + MARGIN_S, cancel_s
    assert wait_status(exchange, maker["order_id"], {"cancelled"})["status"] == "cancelled"

    # when the database hangs (every PostgreSQL process SIGSTOPped), which stalls the worker too
    place(exchange, sym, side="sell", price="50.00")
    pids = postgres_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        hung = _orders_over(exchange, sym)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # then each is still answered within the ack bound: 504 when the worker had it (its
    # outcome is unknown), 503 when nothing was sent; never a hang on the settling statement
    assert {s for s, _, _ in hung} <= {503, 504}, hung
    assert max(t for _, _, t in hung) < ACK_BOUND_S + MARGIN_S, hung
    # and the service is back by itself
    deadline = time.monotonic() + 10
    status, _ = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="1.00"))
    while status != 201 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, _ = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="1.00"))
    assert status == 201
