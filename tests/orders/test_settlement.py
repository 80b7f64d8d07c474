"""manage.py settle: refuses a day that has not ended, writes a day without trades as a report
with no rows, never writes a second row for a (day, instrument, client), and refuses (writing
nothing) when the stored settlement disagrees with the day's trades. GET /settlements errors."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from exchange_project.processes import ROOT
from tests.http import call

from .helpers import count_rows, place


def settle(exchange: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "settle", *args], cwd=ROOT, env=exchange.env,
                          capture_output=True, text=True, timeout=60)


def test_a_day_that_has_not_ended_is_refused_and_nothing_is_written(exchange: Any, tmp_path: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="10.00", quantity="1", client_id="st-a")
    place(exchange, sym, side="buy", price="10.00", quantity="1", client_id="st-b")
    today = dt.datetime.now(dt.UTC).date()
    for day in (today, today + dt.timedelta(days=1)):
        done = settle(exchange, "--date", day.isoformat(), "--instrument", sym, "--report-dir", str(tmp_path))
        assert done.returncode == 1 and "has not ended" in done.stderr
    assert count_rows(exchange, "orders_settlement",
                      "instrument_id = (SELECT id FROM orders_instrument WHERE symbol = %s)", (sym,)) == 0
    assert list(tmp_path.iterdir()) == []
    done = settle(exchange, "--date", "2026-13-01")
    assert done.returncode == 1 and "YYYY-MM-DD" in done.stderr
    done = settle(exchange, "--date", "2020-01-01", "--instrument", "NOPE-USD")
    assert done.returncode == 1 and "no instrument" in done.stderr


def test_a_past_day_without_trades_settles_to_an_empty_report_twice(exchange: Any, tmp_path: Any) -> None:
    sym = exchange.make_instrument()
    for _ in range(2):
        done = settle(exchange, "--date", "2020-01-01", "--instrument", sym, "--report-dir", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert f"2020-01-01 {sym}: 0 client(s), already settled, unchanged" in done.stdout
    report = tmp_path / f"settlement-2020-01-01-{sym}.csv"
    assert report.read_text().splitlines() == [
        "date,instrument,client_id,bought_quantity,sold_quantity,net_quantity,bought_quote,sold_quote,net_quote,"
        "buy_vwap,sell_vwap,trade_count"]


def test_a_stored_settlement_that_disagrees_with_the_trades_is_refused(exchange: Any, django_db_blocker: Any,
                                                                      tmp_path: Any) -> None:
    from orders.instruments import read_sync
    from orders.settlement import SettlementRefused, settlement_run

    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="10.00", quantity="1", client_id="sd-a")
    place(exchange, sym, side="buy", price="10.00", quantity="1", client_id="sd-b")
    day = dt.datetime.now(dt.UTC).date()
    later = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=2)
    with django_db_blocker.unblock():
        (instrument,) = read_sync(sym)
        first = settlement_run(day=day, instruments=[instrument], now=later, grace_s=60, report_dir=None)
        assert first.instruments[0].created == 2
        # when a stored row is changed, then a later run refuses, and writes nothing
        with exchange.connect() as conn:
            conn.execute("UPDATE orders_settlement SET trade_count = 7 WHERE client_id = 'sd-a'")
            conn.execute("DELETE FROM orders_settlement WHERE client_id = 'sd-b'")
        with pytest.raises(SettlementRefused, match="differs"):
            settlement_run(day=day, instruments=[instrument], now=later, grace_s=60, report_dir=None)
    assert count_rows(exchange, "orders_settlement", "client_id IN ('sd-a', 'sd-b')") == 1
    # and the database itself refuses a second row for the same day, instrument and client
    with exchange.connect() as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO orders_settlement (date, instrument_id, client_id, bought_quantity, sold_quantity, "
                     "net_quantity, bought_quote, sold_quote, net_quote, trade_count, created_at) "
                     "SELECT date, instrument_id, client_id, 0, 0, 0, 0, 0, 0, 1, now() FROM orders_settlement "
                     "WHERE client_id = 'sd-a'")


def test_settlements_query_errors_have_the_one_error_body(exchange: Any) -> None:
    for query, field, code in (("date=yesterday", "date", "invalid_time"), ("limit=0", "limit", "out_of_range"),
                               ("instrument=NOPE-USD", "instrument", "unknown_instrument")):
        status, body = call(exchange.http, "GET", f"/settlements?{query}")
        assert status == 400 and body["code"] == code and field in body["fields"], (query, body)


def test_positions_and_settlements_are_in_the_admin() -> None:
    from django.contrib import admin

    from orders.models import Position, Settlement

    assert admin.site.is_registered(Position) and admin.site.is_registered(Settlement)
