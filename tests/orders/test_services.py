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

from .helpers import count_rows, order_body, place


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
