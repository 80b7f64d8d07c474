"""A seeded market day through the real order path (HTTP, the worker, PostgreSQL), then every
aggregate it produced against answers computed here, independently, from its trades: klines of
every interval, VWAP over the day and over a range cut inside minutes, the 24 h ticker, every
client's position (average cost, written from the rule in Decimal), the day's settlement and
its CSV, and analytics_check. Then the same through a kill -9 of the worker and a serialization
failure in the batch transaction."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import random
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any
from urllib.parse import quote

import pytest

from exchange_project.processes import ROOT
from tests.http import acall, call, gather_limited
from tests.orders.helpers import order_body

TICK, LOT, QUOTE = Decimal("0.01"), Decimal("0.0001"), Decimal("0.000001")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "1d": 86_400_000}


def fixed(value: Decimal, step: Decimal) -> str:
    return format(value.quantize(step), "f")


def average(quote_sum: Decimal, qty: Decimal) -> str | None:
    if qty == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 200
        return format((quote_sum / qty).quantize(TICK, ROUND_HALF_EVEN), "f")


def ms(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def market_day(exchange: Any, sym: str, seed: int, orders: int = 600) -> list[str]:
    """Seeded orders of six clients around 100.00: resting and crossing limits, market and IOC
    orders, some allowed to trade with themselves, and cancels; placed 40 at a time."""
    rng = random.Random(seed)
    clients = [f"day{seed}-{n}" for n in range(6)]
    bodies: list[dict[str, Any]] = []
    for _ in range(orders):
        side = rng.choice(("buy", "sell"))
        client = rng.choice(clients)
        qty = str(Decimal(rng.randint(1, 400)) / 10_000)
        extra: dict[str, Any] = {"stp": "none"} if rng.random() < 0.1 else {}
        roll = rng.random()
        if roll < 0.12:
            bodies.append(order_body(sym, side=side, price=None, quantity=qty, client_id=client, **extra))
            continue
        offset = rng.randint(-30, 60)  # negative: crosses
        ticks = 10_000 - offset if side == "buy" else 10_000 + offset
        if roll < 0.22:
            extra["time_in_force"] = "IOC"
        bodies.append(order_body(sym, side=side, price=str(Decimal(ticks) / 100), quantity=qty, client_id=client,
                                 **extra))

    async def run() -> None:
        resting: list[str] = []
        for at in range(0, len(bodies), 40):
            results = await gather_limited([acall(exchange.http, "POST", "/orders", b) for b in bodies[at:at + 40]],
                                           limit=40)
            for status, placed in results:
                assert status == 201, (status, placed)
                if placed["status"] in ("open", "partially_filled"):
                    resting.append(placed["order_id"])
            rng.shuffle(resting)
            for order_id in resting[:3]:
                status, _ = await acall(exchange.http, "POST", f"/orders/{order_id}/cancel")
                assert status in (200, 409)
            del resting[:3]

    asyncio.run(run())
    return clients


def trades_of(exchange: Any, sym: str) -> list[dict[str, Any]]:
    with exchange.connect() as conn:
        rows = conn.execute(
            "SELECT t.seq, t.price, t.quantity, t.aggressor_side, t.executed_at, b.client_id, s.client_id "
            "FROM orders_trade t JOIN orders_instrument i ON i.id = t.instrument_id "
            "JOIN orders_order b ON b.order_id = t.buy_order_id JOIN orders_order s ON s.order_id = t.sell_order_id "
            "WHERE i.symbol = %s ORDER BY t.seq", (sym,)).fetchall()
    return [{"seq": r[0], "price": r[1], "qty": r[2], "aggressor": r[3], "at": r[4], "buyer": r[5], "seller": r[6]}
            for r in rows]


def expected_candles(trades: list[dict[str, Any]], interval: str) -> list[dict[str, Any]]:
    size = INTERVAL_MS[interval]
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in trades:
        groups[ms(t["at"]) // size * size].append(t)
    out = []
    for open_ms in sorted(groups):
        ts = sorted(groups[open_ms], key=lambda t: t["seq"])
        volume = sum((t["qty"] for t in ts), Decimal(0))
        quote_sum = sum((t["price"] * t["qty"] for t in ts), Decimal(0))
        taker = [t for t in ts if t["aggressor"] == "buy"]
        out.append({"open_time": open_ms, "open": fixed(ts[0]["price"], TICK),
                    "high": fixed(max(t["price"] for t in ts), TICK), "low": fixed(min(t["price"] for t in ts), TICK),
                    "close": fixed(ts[-1]["price"], TICK), "volume": fixed(volume, LOT),
                    "close_time": open_ms + size - 1, "quote_volume": fixed(quote_sum, QUOTE),
                    "trade_count": len(ts), "taker_buy_volume": fixed(sum((t["qty"] for t in taker), Decimal(0)), LOT),
                    "taker_buy_quote_volume": fixed(sum((t["price"] * t["qty"] for t in taker), Decimal(0)), QUOTE),
                    "vwap": average(quote_sum, volume), "seq": ts[-1]["seq"]})
    return out


def expected_stats(trades: list[dict[str, Any]]) -> dict[str, Any]:
    volume = sum((t["qty"] for t in trades), Decimal(0))
    quote_sum = sum((t["price"] * t["qty"] for t in trades), Decimal(0))
    return {"vwap": average(quote_sum, volume), "volume": fixed(volume, LOT), "notional": fixed(quote_sum, QUOTE),
            "trade_count": len(trades), "high": fixed(max(t["price"] for t in trades), TICK),
            "low": fixed(min(t["price"] for t in trades), TICK), "first": fixed(trades[0]["price"], TICK),
            "last": fixed(trades[-1]["price"], TICK), "first_seq": trades[0]["seq"], "last_seq": trades[-1]["seq"]}


def expected_positions(trades: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Average cost, from the rule: a partial close removes cost x closed / |net| (half-even to
    the quote unit), a full close removes all of it; through zero the rest opens at the price."""
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with localcontext() as ctx:
        ctx.prec = 200
        for t in trades:
            for client, sign in ((t["buyer"], 1), (t["seller"], -1)):
                p, price, qty = out[client], t["price"], t["qty"]
                p["trades"] += 1
                p["bought" if sign > 0 else "sold"] += qty
                p["bought_quote" if sign > 0 else "sold_quote"] += price * qty
                if p["net"] == 0 or (p["net"] > 0) == (sign > 0):
                    p["net"] += sign * qty
                    p["cost"] += sign * qty * price
                    continue
                closed = min(qty, abs(p["net"]))
                removed = p["cost"] if closed == abs(p["net"]) else \
                    (p["cost"] * closed / abs(p["net"])).quantize(QUOTE, ROUND_HALF_EVEN)
                p["realized"] += closed * price - removed if p["net"] > 0 else -removed - closed * price
                p["cost"] -= removed
                p["net"] += sign * qty
                p["cost"] += sign * (qty - closed) * price
    return out


def check(exchange: Any, sym: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "analytics_check", "--instrument", sym], cwd=ROOT,
                          env=exchange.env, capture_output=True, text=True, timeout=120)


def test_a_seeded_market_day_aggregates_to_what_its_trades_say(exchange: Any, django_db_blocker: Any,
                                                              tmp_path: Any) -> None:
    sym = exchange.make_instrument()
    # given a seeded market day placed through the real order path
    clients = market_day(exchange, sym, seed=15)
    trades = trades_of(exchange, sym)
    assert len(trades) > 150 and len({t["at"] for t in trades}) > 10  # many trades over many batches
    first_ms = ms(trades[0]["at"]) // 86_400_000 * 86_400_000  # the day: every interval opens at or after it

    # then the klines of every interval are the candles of its trades
    for interval in INTERVAL_MS:
        status, klines = call(exchange.http, "GET", f"/klines?instrument={sym}&interval={interval}&start={first_ms}")
        assert status == 200, klines
        assert klines == expected_candles(trades, interval), interval

    # and VWAP over the whole day, over the last hour, and over a range cut inside minutes
    day_from, day_to = trades[0]["at"], trades[-1]["at"] + dt.timedelta(microseconds=1)
    status, whole = call(exchange.http, "GET", f"/analytics/vwap?instrument={sym}"
                         f"&from={quote(day_from.isoformat())}&to={quote(day_to.isoformat())}")
    assert status == 200 and {k: whole[k] for k in expected_stats(trades)} == expected_stats(trades)
    status, hour = call(exchange.http, "GET", f"/analytics/vwap?instrument={sym}&window=1h")
    assert status == 200 and {k: hour[k] for k in expected_stats(trades)} == expected_stats(trades)
    times = sorted({t["at"] for t in trades})
    cut_from, cut_to = times[len(times) // 4], times[3 * len(times) // 4]
    inside = [t for t in trades if cut_from <= t["at"] < cut_to]
    status, part = call(exchange.http, "GET", f"/analytics/vwap?instrument={sym}"
                        f"&from={ms(cut_from) if cut_from.microsecond % 1000 == 0 else quote(cut_from.isoformat())}"
                        f"&to={quote(cut_to.isoformat())}")
    assert status == 200 and {k: part[k] for k in expected_stats(inside)} == expected_stats(inside)

    # and the 24 h ticker holds the day, with the touch of the book
    status, ticker = call(exchange.http, "GET", f"/ticker/24h?instrument={sym}")
    stats = expected_stats(trades)
    assert status == 200
    assert (ticker["open"], ticker["high"], ticker["low"], ticker["last"], ticker["volume"], ticker["quote_volume"],
            ticker["vwap"], ticker["trade_count"], ticker["seq"]) == \
        (stats["first"], stats["high"], stats["low"], stats["last"], stats["volume"], stats["notional"],
         stats["vwap"], stats["trade_count"], stats["last_seq"])
    change = Decimal(stats["last"]) - Decimal(stats["first"])
    assert ticker["change"] == fixed(change, TICK)
    assert ticker["change_percent"] == format((change * 100 / Decimal(stats["first"])).quantize(Decimal("0.001"),
                                                                                                ROUND_HALF_EVEN), "f")
    _, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=1")
    assert (ticker["best_bid"], ticker["best_ask"]) == (book["bids"][0]["price"] if book["bids"] else None,
                                                        book["asks"][0]["price"] if book["asks"] else None)
    assert (ticker["best_bid_size"], ticker["best_ask_size"]) == \
        (book["bids"][0]["quantity"] if book["bids"] else None, book["asks"][0]["quantity"] if book["asks"] else None)

    # and every client's position is its fills folded by average cost, marked at the last price
    want = expected_positions(trades)
    last = trades[-1]["price"]
    assert sum(p["net"] for p in want.values()) == 0
    for client in clients:
        status, body = call(exchange.http, "GET", f"/positions/{client}")
        assert status == 200 and body["client_id"] == client
        if client not in want:
            assert body["positions"] == []
            continue
        (pos,) = body["positions"]
        w = want[client]
        assert pos["instrument"] == sym
        assert (pos["net_quantity"], pos["cost_basis"], pos["realized_pnl"], pos["bought_quantity"],
                pos["sold_quantity"], pos["bought_quote"], pos["sold_quote"], pos["trade_count"]) == \
            (fixed(w["net"], LOT), fixed(w["cost"], QUOTE), fixed(w["realized"], QUOTE), fixed(w["bought"], LOT),
             fixed(w["sold"], LOT), fixed(w["bought_quote"], QUOTE), fixed(w["sold_quote"], QUOTE), int(w["trades"]))
        assert pos["quote_cash_flow"] == fixed(w["sold_quote"] - w["bought_quote"], QUOTE)
        assert pos["unrealized_pnl"] == fixed(w["net"] * last - w["cost"], QUOTE)
        assert pos["average_entry_price"] == average(abs(w["cost"]), abs(w["net"]))
        assert pos["last_price"] == fixed(last, TICK)

    # and analytics_check finds the stored aggregates equal to its own recomputation
    done = check(exchange, sym)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{sym}: {len(trades)} trade(s), candles and positions equal the recomputation" in done.stdout

    # when the day is settled (its end has passed), then one row per client: the day's fills netted
    from django.conf import settings

    from orders.instruments import read_sync
    from orders.settlement import settlement_run

    day = trades[0]["at"].astimezone(dt.UTC).date()
    assert trades[-1]["at"].astimezone(dt.UTC).date() == day, "the market day crossed midnight: run it again"
    tomorrow = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    with django_db_blocker.unblock():
        (instrument,) = read_sync(sym)
        first = settlement_run(day=day, instruments=[instrument], now=tomorrow + dt.timedelta(seconds=61),
                               grace_s=settings.SETTLEMENT_GRACE_S, report_dir=tmp_path)
        again = settlement_run(day=day, instruments=[instrument], now=tomorrow + dt.timedelta(days=3),
                               grace_s=settings.SETTLEMENT_GRACE_S, report_dir=tmp_path)
    settled = {r["client_id"]: r for r in first.instruments[0].rows}
    assert first.instruments[0].created == len(want) == len(settled)
    for client, w in want.items():
        row = settled[client]
        assert (row["bought_quantity"], row["sold_quantity"], row["net_quantity"], row["bought_quote"],
                row["sold_quote"], row["net_quote"]) == \
            (fixed(w["bought"], LOT), fixed(w["sold"], LOT), fixed(w["bought"] - w["sold"], LOT),
             fixed(w["bought_quote"], QUOTE), fixed(w["sold_quote"], QUOTE),
             fixed(w["sold_quote"] - w["bought_quote"], QUOTE))
        assert (row["buy_vwap"], row["sell_vwap"]) == (average(w["bought_quote"], w["bought"]),
                                                       average(w["sold_quote"], w["sold"]))
        assert row["trade_count"] == sum(1 for t in trades if client in (t["buyer"], t["seller"]))
    assert sum(Decimal(r["net_quantity"]) for r in settled.values()) == 0
    # and settling it again changes nothing
    assert again.instruments[0].created == 0 and again.instruments[0].rows == first.instruments[0].rows
    # and the settlements are at GET /settlements and in the CSV report
    status, listed = call(exchange.http, "GET", f"/settlements?date={day.isoformat()}&instrument={sym}")
    assert status == 200 and listed == sorted(first.instruments[0].rows, key=lambda r: r["client_id"])
    a_client = next(iter(want))
    status, one = call(exchange.http, "GET", f"/settlements?client_id={a_client}&instrument={sym}")
    assert status == 200 and one == [settled[a_client]]
    assert first.report == tmp_path / f"settlement-{day.isoformat()}-{sym}.csv"
    with open(first.report, newline="") as report:
        lines = list(csv.DictReader(report))
    assert {r["client_id"]: r["net_quote"] for r in lines} == {c: r["net_quote"] for c, r in settled.items()}
    assert all(r["date"] == day.isoformat() and r["instrument"] == sym for r in lines)


@pytest.fixture
def worker_restored(exchange: Any) -> Any:
    yield
    exchange.kill_worker()
    exchange.start_worker()


def test_aggregates_survive_a_kill_9_of_the_worker_and_stay_equal_to_the_trades(exchange: Any,
                                                                               worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    # given a day under way
    market_day(exchange, sym, seed=7, orders=200)
    before = len(trades_of(exchange, sym))
    # when the worker is killed and restarted (its positions rebuilt from the record), and the
    # day goes on
    exchange.kill_worker()
    exchange.start_worker()
    market_day(exchange, sym, seed=8, orders=200)
    trades = trades_of(exchange, sym)
    assert len(trades) > before > 20
    # then the aggregates are still those of every trade, before and after the restart
    done = check(exchange, sym)
    assert done.returncode == 0, done.stdout + done.stderr
    want = expected_positions(trades)
    some = next(iter(want))
    _, body = call(exchange.http, "GET", f"/positions/{some}?instrument={sym}")
    assert body["positions"][0]["realized_pnl"] == fixed(want[some]["realized"], QUOTE)


def test_a_batch_retried_after_a_serialization_failure_adds_its_trades_once(exchange: Any, worker_restored: Any,
                                                                           monkeypatch: Any) -> None:
    from tests.conflicts import match_pending_with_one_conflict

    sym = exchange.make_instrument()
    exchange.kill_worker()
    # given a resting order and a crossing one, pending in the inbox
    for side in ("sell", "buy"):
        status, _ = call(exchange.http, "POST", "/orders", order_body(sym, side=side, price="10.00",
                                                                       client_id=f"r-{side}"))
        assert status == 202

    worker = match_pending_with_one_conflict(exchange, sym, monkeypatch)
    # then the batch was retried, and its one trade is in each candle and position once
    assert worker.retries == 1
    with exchange.connect() as conn:
        counts = conn.execute(
            "SELECT c.interval, c.trade_count FROM marketdata_candle c JOIN orders_instrument i "
            "ON i.id = c.instrument_id WHERE i.symbol = %s", (sym,)).fetchall()
        positions = conn.execute(
            "SELECT p.client_id, p.net_quantity, p.trade_count FROM orders_position p JOIN orders_instrument i "
            "ON i.id = p.instrument_id WHERE i.symbol = %s ORDER BY p.client_id", (sym,)).fetchall()
    assert sorted(counts) == sorted((interval, 1) for interval in INTERVAL_MS)
    assert [(c, n, k) for c, n, k in positions] == [("r-buy", Decimal("1"), 1), ("r-sell", Decimal("-1"), 1)]
    exchange.start_worker()
    done = check(exchange, sym)
    assert done.returncode == 0, done.stdout + done.stderr


def test_analytics_check_reports_an_aggregate_that_disagrees_with_the_trades(exchange: Any) -> None:
    sym = exchange.make_instrument()
    call(exchange.http, "POST", "/orders", order_body(sym, side="sell", price="10.00", client_id="x1"))
    call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="10.00", client_id="x2"))
    assert check(exchange, sym).returncode == 0
    # when a stored candle is changed behind the worker's back
    with exchange.connect() as conn:
        conn.execute("UPDATE marketdata_candle SET volume = volume + 1 WHERE interval = '1h' AND instrument_id = "
                     "(SELECT id FROM orders_instrument WHERE symbol = %s)", (sym,))
    # then the check fails and says which
    done = check(exchange, sym)
    assert done.returncode == 1
    assert f"{sym}: 1 trade(s), aggregates DIFFER" in done.stdout and "candle ('1h'," in done.stdout



def test_rebuild_refuses_while_the_worker_runs_and_repairs_once_it_is_stopped(exchange: Any,
                                                                            worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    call(exchange.http, "POST", "/orders", order_body(sym, side="sell", price="10.00", quantity="2", client_id="y1"))
    call(exchange.http, "POST", "/orders", order_body(sym, side="buy", price="10.00", quantity="2", client_id="y2"))
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_position SET trade_count = 9 WHERE client_id = 'y1'")
    assert check(exchange, sym).returncode == 1

    def rebuild() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", "analytics_check", "--rebuild", "--instrument", sym],
                              cwd=ROOT, env=exchange.env, capture_output=True, text=True, timeout=120)

    # when the worker runs (it holds the positions in memory), --rebuild refuses
    done = rebuild()
    assert done.returncode == 1 and "matching worker is running" in done.stderr
    # when it is stopped, --rebuild replaces the aggregates by the recomputation
    exchange.kill_worker()
    done = rebuild()
    assert done.returncode == 0 and f"{sym}: rebuilt 5 candle(s), 2 position(s)" in done.stdout
    assert check(exchange, sym).returncode == 0
