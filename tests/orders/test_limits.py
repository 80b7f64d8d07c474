"""orders/limits.py over real HTTP: 429 with Retry-After, the budget on every answer, one
counter for the lean path and the DRF views, budgets per role and per key, per address for
the public data, and budgets that hold with several web processes."""
from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from typing import Any

import pytest

from orders import limits
from orders.limits import ShareStore, Usage
from tests.http import acall, call, call_full
from tests.keys import fresh_window, key_id, wait_for_web_processes

from .helpers import order_body

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def sym(exchange: Any) -> str:
    # Budgets below are counted in one web process: the exchange's, alone.
    wait_for_web_processes([exchange.http], 1)
    return exchange.make_instrument()


def test_usage_counts_a_batch_and_lets_its_first_orders_through() -> None:
    usage = Usage(limit=10, count=13, reset_s=2)  # a batch of 5 after 8
    assert usage.limited and usage.remaining == 0 and usage.allowed(5) == 2
    assert dict(usage.headers())[b"retry-after"] == b"2"
    assert Usage(10, 10, 1).allowed(3) == 3 and not Usage(10, 10, 1).limited


def test_a_share_store_stops_each_process_at_its_share() -> None:
    store = ShareStore()
    store.peers = 4
    counts = [store.incr("k", 1, 10) for _ in range(3)]
    assert counts == [4, 8, 12]  # each request here stands for one in each of the 4 processes
    assert store.get("k") == 12 and store.get("other") == 0
    assert store.add("new", 1, 10) and not store.add("new", 1, 10)


def test_the_counters_kept_per_window_are_django_ratelimits_own_at_every_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from django_ratelimit import ALL
    from django_ratelimit.core import _get_window, _make_cache_key, _split_rate

    limits._counters.clear()
    now = [1_700_000_000.5]
    monkeypatch.setattr(limits.time, "time", lambda: now[0])
    for step in range(400):
        now[0] = 1_700_000_000.5 + step * 0.37
        for rate in ("5/s", "200/2s", "10/7s", "100/m"):
            for who in ("key:a", "ip:10.0.0.1", "user:7"):
                limit, period = _split_rate(rate)
                window = _get_window(who, period)
                assert limits._counter("orders", rate, who) == (
                    _make_cache_key("orders", window, rate, who, ALL), limit, period, window), (now, rate, who)


def test_the_lean_path_answers_429_with_retry_after_and_every_answer_carries_the_budget(exchange: Any,
                                                                                       sym: str) -> None:
    key = exchange.keys.create(orders_rate="5/30s")
    fresh_window(f"key:{key_id(exchange.keys, key)}", 30, 8)
    answers = [call_full(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=key)
               for _ in range(7)]
    assert [s for s, _, _ in answers] == [201] * 5 + [429] * 2
    assert [h["x-ratelimit-remaining"] for _, h, _ in answers] == ["4", "3", "2", "1", "0", "0", "0"]
    assert {h["x-ratelimit-limit"] for _, h, _ in answers} == {"5"}
    status, headers, err = answers[-1]
    assert err["code"] == "rate_limited" and set(err) >= {"code", "detail", "fields"}
    assert 1 <= int(headers["retry-after"]) == int(headers["x-ratelimit-reset"]) <= 30
    # a refused request changed nothing
    with exchange.connect() as conn:
        (count,) = conn.execute("SELECT count(*) FROM orders_order o JOIN orders_instrument i ON i.id = o.instrument_id"
                                " WHERE i.symbol = %s", (sym,)).fetchone()
    assert count == 5
    # cancels have a budget of their own
    status, headers, _ = call_full(exchange.http, "DELETE", f"/orders/{answers[0][2]['order_id']}", key=key)
    assert status == 200 and headers["x-ratelimit-limit"] == "1000000"


def test_the_drf_views_and_the_lean_path_spend_one_budget(exchange: Any, sym: str) -> None:
    key = exchange.keys.create(orders_rate="6/30s")
    fresh_window(f"key:{key_id(exchange.keys, key)}", 30, 8)
    remaining = []
    for n in range(7):
        body = order_body(sym, client_id=None)
        if n % 2:  # the browsable API's form: DRF, counted by django-ratelimit
            status, headers, _ = call_full(exchange.http, "POST", "/orders", headers=FORM, key=key,
                                           raw=urllib.parse.urlencode({k: v for k, v in body.items() if v}).encode())
        else:
            status, headers, _ = call_full(exchange.http, "POST", "/orders", body, key=key)
        remaining.append((status, headers["x-ratelimit-remaining"]))
    assert remaining == [(201, "5"), (201, "4"), (201, "3"), (201, "2"), (201, "1"), (201, "0"), (429, "0")]


def test_budgets_are_the_roles_unless_the_key_has_its_own(exchange: Any, sym: str) -> None:
    plain = exchange.keys.create(orders_rate="", commands_rate="", reads_rate="")
    _, placed, order = call_full(exchange.http, "POST", "/orders/test", order_body(sym, client_id=None), key=plain)
    _, read, _ = call_full(exchange.http, "GET", "/orders", key=plain)
    # the trader's defaults (exchange_project/settings.py): 200 orders and 100 reads per 2 s
    assert (placed["x-ratelimit-limit"], read["x-ratelimit-limit"]) == ("200", "100")
    own = exchange.keys.create(reads_rate="7/m")
    assert call_full(exchange.http, "GET", "/orders", key=own)[1]["x-ratelimit-limit"] == "7"


def test_public_data_is_limited_per_address(exchange: Any, sym: str) -> None:
    base = exchange.start_extra_server("server-small-reads", {"PGBOURSE_RATE_ANONYMOUS_READS": "8/30s"})
    try:
        wait_for_web_processes([base], 2)  # it and the exchange's: half the budget each
        for source in ("127.0.0.51", "127.0.0.52"):
            fresh_window(f"ip:{source}", 30, 8)
        answers = [call_full(base, "GET", f"/orderbook?instrument={sym}", key=None, source="127.0.0.51")
                   for _ in range(5)]
        assert [s for s, _, _ in answers] == [200] * 4 + [429]
        assert answers[-1][2]["code"] == "rate_limited" and "retry-after" in answers[-1][1]
        # another address has its own budget; a key has its own, not the address's
        assert call(base, "GET", "/instruments", key=None, source="127.0.0.52")[0] == 200
        assert call(base, "GET", f"/trades?instrument={sym}", source="127.0.0.51")[0] == 200
    finally:
        exchange.stop_extra_server("server-small-reads")


def test_limits_off_counts_nothing(exchange: Any, sym: str) -> None:
    base = exchange.start_extra_server("server-no-limits", {"PGBOURSE_RATE_LIMITS": "off"})
    try:
        key = exchange.keys.create(orders_rate="1/m")
        answers = [call_full(base, "POST", "/orders/test", order_body(sym, client_id=None), key=key) for _ in range(3)]
        assert [s for s, _, _ in answers] == [200] * 3 and all("x-ratelimit-limit" not in h for _, h, _ in answers)
        assert call(base, "POST", "/orders/test", order_body(sym), key=None)[0] == 401  # keys are still required
    finally:
        exchange.stop_extra_server("server-no-limits")


# -- several web processes ---------------------------------------------------------------------

async def spend(targets: list[str], sym: str, key: str, n: int) -> list[int]:
    """n places at once, spread over the servers in turn."""
    answers = await asyncio.gather(*(acall(targets[i % len(targets)], "POST", "/orders/test",
                                           order_body(sym, client_id=None), key=key) for i in range(n)))
    return [status for status, _ in answers]


def test_with_two_web_processes_sharing_budgets_no_client_gets_more_than_its_budget(exchange: Any,
                                                                                    sym: str) -> None:
    second = exchange.start_extra_server("server-second")
    try:
        wait_for_web_processes([exchange.http, second], 2)
        spread, one_sided = exchange.keys.create(orders_rate="20/30s"), exchange.keys.create(orders_rate="20/30s")
        for key in (spread, one_sided):
            fresh_window(f"key:{key_id(exchange.keys, key)}", 30, 10)
        # given 40 orders at once over both processes: each allows its half of the budget
        statuses = asyncio.run(spend([exchange.http, second], sym, spread, 40))
        assert statuses.count(200) == 20 and statuses.count(429) == 20
        # and all to one process: its share only (the price of counting without I/O)
        statuses = asyncio.run(spend([second], sym, one_sided, 40))
        assert statuses.count(200) == 10 and statuses.count(429) == 30
    finally:
        exchange.stop_extra_server("server-second")


def test_with_the_postgres_store_a_budget_is_exact_however_requests_are_spread(exchange: Any, sym: str) -> None:
    env = {"PGBOURSE_RATE_LIMIT_STORE": "postgres"}
    bases = [exchange.start_extra_server(f"server-pg-{n}", env) for n in range(2)]
    try:
        key = exchange.keys.create(orders_rate="25/30s")
        fresh_window(f"key:{key_id(exchange.keys, key)}", 30, 10)
        # 40 at once to one process, 20 to the other: 25 in all
        statuses = asyncio.run(spend([bases[0], bases[0], bases[1]], sym, key, 60))
        assert statuses.count(200) == 25 and statuses.count(429) == 35
        status, headers, _ = call_full(bases[1], "POST", "/orders/test", order_body(sym, client_id=None), key=key)
        assert status == 429 and headers["x-ratelimit-remaining"] == "0"
    finally:
        for n in range(2):
            exchange.stop_extra_server(f"server-pg-{n}")
    with exchange.connect() as conn:
        assert conn.execute("SELECT relpersistence FROM pg_class WHERE relname = 'orders_ratecounter'").fetchone() \
            == ("u",)


def test_a_placed_order_of_a_limited_key_is_never_half_counted(exchange: Any, sym: str) -> None:
    # Orders refused for the budget are answered and never stored; the others are placed whole.
    key = exchange.keys.create(orders_rate="3/30s")
    fresh_window(f"key:{key_id(exchange.keys, key)}", 30, 8)
    bodies = [order_body(sym, client_id=None, idempotency_key=f"lim-{uuid.uuid4().hex}") for _ in range(6)]
    statuses = [call(exchange.http, "POST", "/orders", b, key=key)[0] for b in bodies]
    assert statuses == [201] * 3 + [429] * 3
    with exchange.connect() as conn:
        stored = {r[0] for r in conn.execute("SELECT idempotency_key FROM orders_order WHERE idempotency_key = ANY(%s)",
                                             ([b["idempotency_key"] for b in bodies],))}
    assert stored == {b["idempotency_key"] for b in bodies[:3]}
