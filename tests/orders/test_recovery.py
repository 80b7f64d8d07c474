"""Faults: the worker killed mid-stream, the worker down (202 pending), a serialization failure
in the batch transaction, a second worker, PostgreSQL unreachable."""
from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid

import pytest

from exchange_project.processes import child_env, server_command, stop_process_group, worker_command
from matching.engine.engine import Engine
from matching.engine.types import STP, OrderType, Place, Side, TimeInForce
from matching.worker import periodic
from orders.models import Instrument
from tests.conflicts import match_pending_with_one_conflict
from tests.conftest import free_port
from tests.http import acall, call

from .helpers import count_rows, order_body, wait_status


@pytest.fixture
def worker_restored(exchange):
    """Whatever a test does to the worker, the next test gets a running one."""
    yield
    exchange.kill_worker()
    exchange.start_worker()


def test_worker_down_means_202_pending_then_the_outcome(exchange, worker_restored):
    sym = exchange.make_instrument()
    exchange.kill_worker()
    # when an order arrives while no worker runs
    started = time.monotonic()
    status, body = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="10.00"))
    elapsed = time.monotonic() - started
    # then it is answered 202 pending after the ~2 s bound, and it is durably stored
    assert status == 202 and body["status"] == "pending", body
    assert 1.5 < elapsed < 5
    assert count_rows(exchange, "orders_order", "order_id = %s", (uuid.UUID(body["order_id"]),)) == 1
    assert call(exchange.http, "GET", f"/orders/{body['order_id']}")[1]["status"] == "pending"
    # and once a worker runs, GET /orders/{id} tells the outcome
    exchange.start_worker()
    assert wait_status(exchange, body["order_id"], {"open"})["status"] == "open"


def _replay(spec, orders: list[tuple]) -> Engine:
    engine = Engine(spec)
    for oid, client, side, otype, price, qty, tif in orders:
        engine.place(Place(order_id=str(oid), client_id=client, side=Side(side), order_type=OrderType(otype),
                           price_ticks=None if price is None else spec.price_to_ticks(price),
                           qty_lots=spec.qty_to_lots(qty), tif=TimeInForce(tif), stp=STP.CANCEL_TAKER))
    return engine


def test_kill_9_mid_stream_loses_nothing_and_rebuilds_the_same_book(exchange, worker_restored):
    sym = exchange.make_instrument()
    rng = random.Random(7)
    bodies = []
    for n in range(600):
        side = rng.choice(["buy", "sell"])
        kind = rng.random()
        if kind < 0.15:
            bodies.append(order_body(sym, side=side, price=None, quantity=str(rng.randint(1, 30) / 10),
                                     client_id=f"c{n % 37}"))
        else:
            mid = 1000
            offset = rng.randint(-20, 20) * (1 if side == "sell" else -1)
            bodies.append(order_body(sym, side=side, price=f"{mid + offset}.00",
                                     quantity=str(rng.randint(1, 30) / 10), client_id=f"c{n % 37}",
                                     time_in_force="IOC" if kind > 0.9 else "GTC"))
    acked: dict[str, int] = {}

    async def stream():
        sem = asyncio.Semaphore(40)

        async def one(body):
            async with sem:
                status, resp = await acall(exchange.http, "POST", "/orders", body)
                if status in (200, 201, 202):
                    acked[resp["order_id"]] = status

        tasks = [asyncio.ensure_future(one(b)) for b in bodies]
        while len(acked) < 200:
            await asyncio.sleep(0.01)
        exchange.kill_worker()  # SIGKILL, mid-stream
        await asyncio.sleep(0.3)
        exchange.start_worker(wait=False)
        await asyncio.gather(*tasks)

    asyncio.run(stream())
    assert len(acked) == 600
    assert 202 in acked.values() or exchange.starts["worker"] >= 2
    deadline = time.monotonic() + 30
    while count_rows(exchange, "orders_order o JOIN orders_instrument i ON i.id = o.instrument_id",
                     "i.symbol = %s AND o.status = 'pending'", (sym,)) and time.monotonic() < deadline:
        time.sleep(0.1)
    with exchange.connect() as conn:
        rows = conn.execute(
            "SELECT o.order_id, o.client_id, o.side, o.type, o.price, o.quantity, o.time_in_force, o.status "
            "FROM orders_order o JOIN orders_instrument i ON i.id = o.instrument_id WHERE i.symbol = %s", (sym,)
        ).fetchall()
        # the worker's processing order: each order's first event after 'pending', in commit order
        processed = conn.execute(
            "SELECT e.order_id FROM orders_orderevent e JOIN orders_instrument i ON i.id = e.instrument_id "
            "WHERE i.symbol = %s AND e.status <> 'pending' GROUP BY e.order_id ORDER BY min(e.id)", (sym,)
        ).fetchall()
        trades = conn.execute("SELECT seq, quantity FROM orders_trade t JOIN orders_instrument i "
                              "ON i.id = t.instrument_id WHERE i.symbol = %s ORDER BY seq", (sym,)).fetchall()
    # every acknowledged order is present, none pending, none duplicated
    assert {str(r[0]) for r in rows} == set(acked)
    assert not [r for r in rows if r[7] == "pending"]
    # the book equals a replay of the acknowledged history in processing order
    by_id = {str(r[0]): r for r in rows}
    spec = Instrument.spec(_instrument(exchange, sym))
    engine = _replay(spec, [by_id[str(p[0])][:7] for p in processed])
    engine.check_invariants()
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=1000")
    depth = engine.depth(1000)
    assert [(lv["price"], lv["quantity"], lv["order_count"]) for lv in book["bids"]] == [
        (str(spec.ticks_to_price(lv.price_ticks)), str(spec.lots_to_qty(lv.qty_lots)), lv.order_count)
        for lv in depth.bids]
    assert [(lv["price"], lv["quantity"], lv["order_count"]) for lv in book["asks"]] == [
        (str(spec.ticks_to_price(lv.price_ticks)), str(spec.lots_to_qty(lv.qty_lots)), lv.order_count)
        for lv in depth.asks]
    assert book["seq"] == engine.seq
    # trades: gap-free sequence numbers, quantities as replayed
    seqs = [t[0] for t in trades]
    assert len(seqs) == len(set(seqs)) and engine.next_trade_id - 1 == len(trades)


def _instrument(exchange, sym: str) -> Instrument:
    with exchange.connect() as conn:
        row = conn.execute("SELECT symbol, tick_size, lot_size, min_qty, max_qty, max_price, min_notional "
                           "FROM orders_instrument WHERE symbol = %s", (sym,)).fetchone()
    return Instrument(symbol=row[0], tick_size=row[1], lot_size=row[2], min_qty=row[3], max_qty=row[4],
                      max_price=row[5], min_notional=row[6])


def test_serialization_failure_is_retried_without_matching_twice(exchange, worker_restored, monkeypatch):
    sym = exchange.make_instrument()
    exchange.kill_worker()
    # given a pending order and a worker about to commit its batch
    status, body = call(exchange.http, "POST", "/orders", order_body(sym, side="sell", price="10.00"))
    assert status == 202

    worker = match_pending_with_one_conflict(exchange, sym, monkeypatch)
    # then the batch hit 40001 once, was retried, and the order was matched exactly once
    assert worker.retries == 1
    assert count_rows(exchange, "orders_orderevent", "order_id = %s AND status = 'open'",
                      (uuid.UUID(body["order_id"]),)) == 1
    with exchange.connect() as conn:
        assert conn.execute("SELECT last_seq FROM orders_instrument WHERE symbol = %s", (sym,)).fetchone()[0] == 1
    exchange.start_worker()
    assert wait_status(exchange, body["order_id"], {"open"})["status"] == "open"


def test_a_second_worker_waits_for_the_lock(exchange):
    sym = exchange.make_instrument()
    log = exchange.log_dir / "second-worker.log"
    with open(log, "wb") as out:
        second = subprocess.Popen(worker_command(), env=exchange.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "another matching worker owns the books" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "another matching worker owns the books" in log.read_text()
        status, body = call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="5.00"))
        assert status == 201 and body["status"] == "open"
        assert second.poll() is None  # still waiting, not matching
        assert "matching worker ready" not in log.read_text()
    finally:
        second.kill()
        second.wait()


def test_postgres_unreachable_is_503_quickly(exchange):
    port = free_port()
    env = child_env({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    server = subprocess.Popen(server_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                call(base, "GET", "/instruments", timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        for method, path, body in [("POST", "/orders", order_body("BTC-USD")),
                                   ("GET", f"/orders/{uuid.uuid4()}", None),
                                   ("GET", "/orderbook?instrument=BTC-USD", None),
                                   ("POST", f"/orders/{uuid.uuid4()}/cancel", None)]:
            started = time.monotonic()
            status, err = call(base, method, path, body, timeout=10)
            assert status == 503 and err["code"] == "database_unavailable", (path, status, err)
            assert time.monotonic() - started < 3.5
    finally:
        stop_process_group(server)




def test_worker_analyzes_a_table_that_outgrew_its_statistics(exchange):
    # Plans are cached from the statistics of the moment; a table that has changed by more than
    # it held at its last ANALYZE is analyzed again (matching/worker/periodic.py, HOT_TABLES).
    with exchange.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS stats_probe")
        conn.execute("CREATE TABLE stats_probe (id bigint PRIMARY KEY)")
        conn.execute("ANALYZE stats_probe")
        conn.execute("INSERT INTO stats_probe SELECT generate_series(1, 40)")
        deadline = time.monotonic() + 10
        while conn.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                           "WHERE relname = 'stats_probe'").fetchone()[0] < 40:  # stats flush ~1 s
            assert time.monotonic() < deadline, "statistics counters never caught up"
            time.sleep(0.2)
    try:
        refresh = periodic.refresh_statistics
        assert asyncio.run(refresh(exchange.conninfo, ("stats_probe",), min_changes=10)) == ["stats_probe"]
        with exchange.connect() as conn:
            assert conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'stats_probe'").fetchone()[0] == 40
        # Fresh statistics: nothing to do until it changes by more than it holds again.
        assert asyncio.run(refresh(exchange.conninfo, ("stats_probe",), min_changes=10)) == []
    finally:
        with exchange.connect() as conn:
            conn.execute("DROP TABLE stats_probe")
