"""/healthz and /readyz over real HTTP: liveness without I/O, readiness with every check and its
figure, failing by name when the worker is gone, and bounded when PostgreSQL hangs."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.http import call

from .helpers import order_body, postgres_pids


@pytest.fixture
def worker_restored(exchange: Any) -> Any:
    yield
    exchange.kill_worker()
    exchange.start_worker()


def wait_ready(ex: Any, ready: bool, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, answer = call(ex.http, "GET", "/readyz")
        if (status == 200) is ready or time.monotonic() > deadline:
            assert (status == 200) is ready, answer
            return answer
        time.sleep(0.2)


def wait_drained(ex: Any, timeout: float = 15) -> dict[str, Any]:
    """Readiness once the inbox is empty (an earlier test's pending orders are being matched)."""
    deadline = time.monotonic() + timeout
    answer = wait_ready(ex, True)
    while answer["checks"]["inbox"]["pending_orders"] and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = call(ex.http, "GET", "/readyz")[1]
    return answer


def test_readiness_names_each_check_with_its_figure(exchange: Any) -> None:
    assert call(exchange.http, "GET", "/healthz") == (200, {"status": "ok"})
    answer = wait_drained(exchange)
    checks = answer["checks"]
    assert answer["status"] == "ok" and set(checks) == {"database", "matching_worker", "listen_hub", "inbox",
                                                        "last_batch"}
    assert checks["database"]["round_trip_ms"] > 0
    worker = checks["matching_worker"]
    assert worker["holds_lock"] is True and 0 <= worker["heartbeat_age_s"] < 5 and worker["owner"]
    assert checks["listen_hub"]["ok"] is True
    assert checks["inbox"]["pending_orders"] == 0 and checks["inbox"]["oldest_pending_age_s"] is None
    # /healthz?full=1 is the same answer
    status, full = call(exchange.http, "GET", "/healthz?full=1")
    assert status == 200 and set(full["checks"]) == set(checks)
    # and a write to them is refused with the one error shape
    status, refused = call(exchange.http, "POST", "/readyz", {})
    assert status == 405 and refused["code"] == "method_not_allowed"


def test_without_a_worker_readiness_fails_naming_it_and_shows_the_backlog(exchange: Any,
                                                                          worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    wait_ready(exchange, True)
    # when the worker dies (its session, and the ownership lock with it)
    exchange.kill_worker()
    answer = wait_ready(exchange, False, timeout=10)
    assert "matching_worker" in answer["failing"] and answer["code"] == "not_ready"
    assert answer["checks"]["matching_worker"]["holds_lock"] is False
    # liveness is not readiness: the web process still serves
    assert call(exchange.http, "GET", "/healthz") == (200, {"status": "ok"})
    # an order stored meanwhile shows as the inbox's backlog
    status, _ = call(exchange.http, "POST", "/orders", order_body(sym, price="10.00"))
    assert status == 202
    inbox = call(exchange.http, "GET", "/readyz")[1]["checks"]["inbox"]
    assert inbox["pending_orders"] >= 1 and inbox["oldest_pending_age_s"] >= 0
    # and once a worker runs again, the exchange is ready, and the backlog drains
    exchange.start_worker()
    assert wait_drained(exchange)["checks"]["inbox"]["pending_orders"] == 0


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="needs the embedded PostgreSQL's processes")
def test_readiness_answers_in_time_while_postgresql_hangs(exchange: Any) -> None:
    wait_ready(exchange, True)
    pids = postgres_pids()
    try:
        # when every PostgreSQL process stops (SIGSTOP: connections stay open, nothing answers)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for _ in range(3):
            started = time.monotonic()
            status, answer = call(exchange.http, "GET", "/readyz", timeout=5)
            elapsed = time.monotonic() - started
            # then readiness says so within its bound, naming the database, every time
            assert status == 503 and "database" in answer["failing"], answer
            assert elapsed < 1.5, elapsed
        started = time.monotonic()
        assert call(exchange.http, "GET", "/healthz", timeout=5) == (200, {"status": "ok"})
        assert time.monotonic() - started < 0.5
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # and it is ready again once PostgreSQL is back
    wait_ready(exchange, True)
