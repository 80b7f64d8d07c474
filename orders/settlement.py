"""End-of-day settlement: every client's trades of one UTC day, netted per instrument.

``settlement_run`` (``manage.py settle``) writes one ``Settlement`` row per client and instrument
that traded that day: bought, sold, net quantity, net quote, the VWAP of each side (half-even to
the tick, matching.aggregates). The sums are exact (PostgreSQL numeric); the day's trades are
found by the seq range of the instrument's 1d candle, so the trades table is read by its
(instrument, seq) index, never scanned.

Idempotent: the rows of a (day, instrument) are written once, in one transaction, under the
unique constraint (date, instrument, client). A later run recomputes them and compares: equal,
nothing changes; different (the trades of a settled day can no longer change, so this would be a
fault), nothing is written and the run fails. A day is settled only once it has ended and
``SETTLEMENT_GRACE_S`` has passed, so that no batch matched before midnight is still committing.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from django.db import connection, transaction

from matching.aggregates import Scale, settlement_fields

from .instruments import CachedInstrument
from .selectors import SETTLEMENT_COLUMNS, settlement_body

DAY_SEQ_SQL = ("SELECT first_seq, last_seq FROM marketdata_candle "
               "WHERE instrument_id = %s AND interval = '1d' AND open_time = %s")
# Each trade twice, once for each side's client; sums per client (a self-trade counts on both
# sides, and once in the trade count).
NETTING_SQL = """
WITH t AS (SELECT trade_id, price, quantity, buy_order_id, sell_order_id FROM orders_trade
            WHERE instrument_id = %(instrument)s AND seq BETWEEN %(first)s AND %(last)s
              AND executed_at >= %(start)s AND executed_at < %(end)s),
     f AS (SELECT o.client_id, t.trade_id, t.quantity AS bought, 0 AS sold, t.price * t.quantity AS bought_quote,
                  0 AS sold_quote
             FROM t JOIN orders_order o ON o.order_id = t.buy_order_id
           UNION ALL
           SELECT o.client_id, t.trade_id, 0, t.quantity, 0, t.price * t.quantity
             FROM t JOIN orders_order o ON o.order_id = t.sell_order_id)
SELECT client_id, sum(bought), sum(sold), sum(bought_quote), sum(sold_quote), count(DISTINCT trade_id)
  FROM f GROUP BY client_id ORDER BY client_id"""
INSERT_SQL = f"""
INSERT INTO orders_settlement ({', '.join(SETTLEMENT_COLUMNS)})
SELECT s.date, s.instrument_id, s.client_id, s.bought_quantity, s.sold_quantity, s.net_quantity, s.bought_quote,
       s.sold_quote, s.net_quote, s.buy_vwap, s.sell_vwap, s.trade_count, now()
  FROM json_populate_recordset(NULL::orders_settlement, %s::json) AS s
ON CONFLICT (date, instrument_id, client_id) DO NOTHING"""
STORED_SQL = (f"SELECT {', '.join(SETTLEMENT_COLUMNS)} FROM orders_settlement "
              "WHERE date = %s AND instrument_id = %s ORDER BY client_id")
COMPARED = ("client_id", "bought_quantity", "sold_quantity", "net_quantity", "bought_quote", "sold_quote",
            "net_quote", "buy_vwap", "sell_vwap", "trade_count")


class SettlementRefused(Exception):
    """The day cannot be settled (yet), or its stored settlement disagrees with its trades."""


@dataclass
class InstrumentSettlement:
    instrument: str
    rows: list[dict[str, Any]]  # as the API shows them
    created: int  # rows written by this run (0: the day was already settled, unchanged)


@dataclass
class SettlementReport:
    day: dt.date
    instruments: list[InstrumentSettlement] = field(default_factory=list)
    report: Path | None = None


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def netted(instrument: CachedInstrument, day: dt.date) -> list[dict[str, Any]]:
    """The day's settlement rows of an instrument, computed from its trades (not stored)."""
    start, end = day_bounds(day)
    scale = Scale(instrument.spec)
    with connection.cursor() as cur:
        cur.execute(DAY_SEQ_SQL, [instrument.id, start])
        found = cur.fetchone()
        if found is None:
            return []
        cur.execute(NETTING_SQL, {"instrument": instrument.id, "first": found[0], "last": found[1],
                                  "start": start, "end": end})
        sums = cur.fetchall()
    rows = []
    for client_id, bought, sold, bought_quote, sold_quote, trades in sums:
        rows.append({"date": day.isoformat(), "instrument_id": instrument.id, "instrument": instrument.symbol,
                     "client_id": client_id,
                     **settlement_fields(scale, bought=scale.lots(bought), sold=scale.lots(sold),
                                         bought_quote=scale.units(bought_quote), sold_quote=scale.units(sold_quote),
                                         trades=trades)})
    # Every trade has a buyer and a seller: what the clients bought, together, they sold.
    if sum(scale.lots(b) - scale.lots(s) for _, b, s, _, _, _ in sums) != 0:
        raise SettlementRefused(f"{instrument.symbol} {day}: the clients' net quantities do not sum to zero")
    return rows


def _comparable(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in COMPARED)


def settle_instrument(instrument: CachedInstrument, day: dt.date) -> InstrumentSettlement:
    """Settle one instrument's day (or find it settled, unchanged); SettlementRefused if the
    stored rows differ from the trades."""
    rows = netted(instrument, day)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(INSERT_SQL, [orjson.dumps(rows).decode()])
        created = cur.rowcount
        cur.execute(STORED_SQL, [day, instrument.id])
        stored = sorted((settlement_body(dict(zip(SETTLEMENT_COLUMNS, r)), instrument) for r in cur.fetchall()),
                        key=lambda r: r["client_id"])
        if [_comparable(r) for r in stored] != [_comparable(r) for r in sorted(rows, key=lambda r: r["client_id"])]:
            # Raised inside the transaction: the rows this run inserted are rolled back.
            raise SettlementRefused(f"{instrument.symbol} {day}: the stored settlement differs from the day's "
                                    "trades; nothing was written")
    return InstrumentSettlement(instrument.symbol, stored, created)


def settlement_run(*, day: dt.date, instruments: list[CachedInstrument], now: dt.datetime, grace_s: float,
                   report_dir: Path | None) -> SettlementReport:
    """Settle ``day`` for each instrument and write the CSV report (to ``report_dir``)."""
    _, end = day_bounds(day)
    ready = end + dt.timedelta(seconds=grace_s)
    if now < ready:
        raise SettlementRefused(f"{day} has not ended (settle from {ready.isoformat().replace('+00:00', 'Z')}, "
                                f"{grace_s:g} s after midnight UTC)")
    report = SettlementReport(day)
    for instrument in instruments:
        report.instruments.append(settle_instrument(instrument, day))
    if report_dir is not None:
        report.report = write_report(report, report_dir,
                                     instruments[0].symbol if len(instruments) == 1 else None)
    return report


REPORT_FIELDS = ("date", "instrument", "client_id", "bought_quantity", "sold_quantity", "net_quantity",
                 "bought_quote", "sold_quote", "net_quote", "buy_vwap", "sell_vwap", "trade_count")


def write_report(report: SettlementReport, report_dir: Path, instrument: str | None) -> Path:
    """The day's settlement as CSV (written whole, then renamed into place)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    name = f"settlement-{report.day.isoformat()}{'-' + instrument if instrument else ''}.csv"
    path = report_dir / name
    partial = path.with_suffix(".csv.partial")
    with open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        for settled in report.instruments:
            for row in settled.rows:
                writer.writerow({k: "" if row[k] is None else row[k] for k in REPORT_FIELDS})
    os.replace(partial, path)
    return path

