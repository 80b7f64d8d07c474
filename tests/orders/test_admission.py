"""orders/admission.py: past its bound a web process refuses at once (503 overloaded with
Retry-After) rather than queueing, the orders it admits are answered as usual, and it is
normal again as soon as the load drops."""
from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from exchange_project.processes import child_env, server_command, stop_process_group
from tests.conftest import free_port
from tests.http import acall, call, gather_limited

from .helpers import count_rows, order_body


def test_a_burst_past_the_bound_is_refused_at_once_and_what_is_admitted_is_placed(exchange: Any) -> None:
    sym = exchange.make_instrument()
    port = free_port()
    # given a web process that admits at most 20 orders in flight
    env = child_env({**exchange.env, "ORDERS_IN_FLIGHT_MAX": "20"})
    server = subprocess.Popen(server_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if call(base, "GET", "/instruments", timeout=5)[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        bodies = [order_body(sym, side="buy", price=f"{90 + n % 5}.00", client_id=f"burst{n % 9}") for n in range(400)]

        async def burst() -> list[tuple[int, Any, float]]:
            async def one(b: dict[str, Any]) -> tuple[int, Any, float]:
                started = time.monotonic()
                status, body = await acall(base, "POST", "/orders", b)
                return status, body, time.monotonic() - started
            return await gather_limited([one(b) for b in bodies], limit=200)

        # when 400 orders arrive at once
        answers = asyncio.run(burst())
        statuses = [s for s, _, _ in answers]
        refused = [(b, t) for s, b, t in answers if s == 503]
        # then some are refused, each at once and in the error shape, and the rest are placed
        assert refused and statuses.count(201) > 0 and set(statuses) <= {201, 503}, set(statuses)
        assert all(b["code"] == "overloaded" for b, _ in refused)
        assert max(t for _, t in refused) < 1.0
        placed = {b["idempotency_key"] for s, b, _ in answers if s == 201}
        assert count_rows(exchange, "orders_order o JOIN orders_instrument i ON i.id = o.instrument_id",
                          "i.symbol = %s", (sym,)) == len(placed)
        # and once the burst is over it takes orders as usual
        status, _ = call(base, "POST", "/orders", order_body(sym, price="91.00"))
        assert status == 201
    finally:
        stop_process_group(server)


def test_retry_after_comes_with_every_503(exchange: Any) -> None:
    import http.client

    port = free_port()
    env = child_env({**exchange.env, "ORDERS_IN_FLIGHT_MAX": "1", "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    server = subprocess.Popen(server_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/orders", body=b'{"idempotency_key":"k","client_id":"c","instrument":"BTC-USD",'
                             b'"side":"buy","price":"1.00","quantity":"1"}', headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        resp.read()
        # (a database that cannot be reached: 503 database_unavailable, and when to retry)
        assert resp.status == 503 and resp.getheader("Retry-After") == "1"
    finally:
        stop_process_group(server)
