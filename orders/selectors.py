"""Reads. An order is read as the contract's OrderState (matching.records), the very message the
matching worker answers with, so a GET and an acknowledgement render the same."""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from marketdata.analytics import Position, Scale
from matching.contract import OrderState
from matching.records import FILLS_SQL, ORDER_COLUMNS, ORDERS_BY_ID_SQL, fmt_decimal, fmt_time, order_states

from .instruments import CachedInstrument, by_id, by_id_sync


async def orders_by_id(conn: Any, order_ids: list[uuid.UUID | str]) -> dict[str, OrderState]:
    """order_id -> the order with all its fills (async, psycopg)."""
    if not order_ids:
        return {}
    ids = {"ids": [uuid.UUID(str(o)) for o in order_ids]}
    cur = await conn.execute(ORDERS_BY_ID_SQL, ids)
    rows = await cur.fetchall()
    if not rows:
        return {}
    instruments: dict[int, tuple[str, Any]] = {}
    for instrument_id in {r[ORDER_COLUMNS.index("instrument_id")] for r in rows}:
        found = await by_id(instrument_id)
        assert found is not None
        instruments[instrument_id] = (found.symbol, found.spec)
    cur = await conn.execute(FILLS_SQL, ids)
    return order_states(rows, await cur.fetchall(), instruments)


def orders_sync(rows: list[dict[str, Any]]) -> list[OrderState]:
    """ORM rows (dicts with ORDER_COLUMNS) with their fills, via Django's connection, in order."""
    from django.db import connection

    if not rows:
        return []
    instruments: dict[int, tuple[str, Any]] = {}
    for instrument_id in {r["instrument_id"] for r in rows}:
        found = by_id_sync(instrument_id)
        assert found is not None
        instruments[instrument_id] = (found.symbol, found.spec)
    ids = [r["order_id"] for r in rows]
    with connection.cursor() as cur:
        cur.execute(FILLS_SQL.replace("%(ids)s", "%s::uuid[]"), [ids, ids])
        states = order_states([tuple(r[c] for c in ORDER_COLUMNS) for r in rows], cur.fetchall(), instruments)
    return [states[str(r["order_id"])] for r in rows]


ORDERBOOK_SQL = """
SELECT i.last_seq, l.side, l.price, l.qty, l.n
  FROM orders_instrument i
  LEFT JOIN LATERAL (
        SELECT side, price, sum(quantity - filled_quantity) AS qty, count(*) AS n
          FROM orders_order
         WHERE instrument_id = i.id AND status IN ('open', 'partially_filled')
         GROUP BY side, price) l ON true
 WHERE i.id = %s
"""


def orderbook_from_rows(instrument: CachedInstrument, rows: list[tuple], levels: int | None) -> dict[str, Any]:
    """One statement, one snapshot: the levels and the sequence number they reflect agree."""
    tick, lot = instrument.spec.tick_size, instrument.spec.lot_size
    seq = rows[0][0] if rows else 0
    bids = sorted(((p, q, n) for _, s, p, q, n in rows if s == "buy"), key=lambda r: r[0], reverse=True)
    asks = sorted(((p, q, n) for _, s, p, q, n in rows if s == "sell"), key=lambda r: r[0])

    def side(entries: list[tuple]) -> tuple[list[dict[str, Any]], Any]:
        out, cum = [], Decimal(0)
        total = sum((q for _, q, _ in entries), Decimal(0))
        for price, qty, n in entries[:levels] if levels is not None else entries:
            cum += qty
            out.append({"price": fmt_decimal(price, tick), "quantity": fmt_decimal(qty, lot), "order_count": n,
                        "cumulative_quantity": fmt_decimal(cum, lot)})
        return out, total

    bid_levels, bid_total = side(bids)
    ask_levels, ask_total = side(asks)
    return {"instrument": instrument.symbol, "seq": seq, "bids": bid_levels, "asks": ask_levels,
            "bid_total_quantity": fmt_decimal(bid_total, lot), "ask_total_quantity": fmt_decimal(ask_total, lot),
            "bid_level_count": len(bids), "ask_level_count": len(asks)}


async def orderbook(conn: Any, instrument: CachedInstrument, levels: int | None = None) -> dict[str, Any]:
    cur = await conn.execute(ORDERBOOK_SQL, (instrument.id,))
    rows = await cur.fetchall()
    seq = rows[0][0] if rows else 0
    return orderbook_from_rows(instrument, [r for r in rows if r[1] is not None], levels) | {"seq": seq}


def orderbook_sync(instrument: CachedInstrument, levels: int | None = None) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(ORDERBOOK_SQL, (instrument.id,))
        rows = cur.fetchall()
    seq = rows[0][0] if rows else 0
    return orderbook_from_rows(instrument, [r for r in rows if r[1] is not None], levels) | {"seq": seq}


# --------------------------------------------------------------------------------------------
# Positions and settlements (analytics, issue 15)
# --------------------------------------------------------------------------------------------

POSITION_COLUMNS = ("instrument_id", "net_quantity", "cost_basis", "bought_quantity", "sold_quantity", "bought_quote",
                    "sold_quote", "realized_pnl", "trade_count", "last_seq", "updated_at")
POSITIONS_SQL = f"SELECT {', '.join(POSITION_COLUMNS)} FROM orders_position WHERE client_id = %s"
LAST_PRICE_SQL = "SELECT price FROM orders_trade WHERE instrument_id = %s ORDER BY seq DESC LIMIT 1"


def positions_of(client_id: str, instrument: CachedInstrument | None = None) -> list[dict[str, Any]]:
    """A client's positions, one per instrument it traded (by symbol), each with its unrealized
    PnL at the instrument's last trade price."""
    from django.db import connection

    sql, args = POSITIONS_SQL, [client_id]
    if instrument is not None:
        sql += " AND instrument_id = %s"
        args.append(instrument.id)
    out: list[dict[str, Any]] = []
    with connection.cursor() as cur:
        cur.execute(sql, args)
        rows = [dict(zip(POSITION_COLUMNS, r)) for r in cur.fetchall()]
        for row in rows:
            found = by_id_sync(row["instrument_id"])
            assert found is not None
            scale = Scale(found.spec)
            cur.execute(LAST_PRICE_SQL, [found.id])
            last = cur.fetchone()
            position = Position.from_row(row, scale)
            out.append({"instrument": found.symbol,
                        **position.fields(scale, None if last is None else scale.ticks(last[0])),
                        "updated_at": fmt_time(row["updated_at"])})
    out.sort(key=lambda p: p["instrument"])
    return out


SETTLEMENT_COLUMNS = ("date", "instrument_id", "client_id", "bought_quantity", "sold_quantity", "net_quantity",
                      "bought_quote", "sold_quote", "net_quote", "buy_vwap", "sell_vwap", "trade_count", "created_at")


def settlement_body(row: dict[str, Any]) -> dict[str, Any]:
    """A settlement row as the API and the CSV report show it (decimals on the instrument's grids)."""
    found = by_id_sync(row["instrument_id"])
    assert found is not None
    scale = Scale(found.spec)
    qty, quote = lambda v: scale.qty(scale.lots(v)), lambda v: scale.quote(scale.units(v))
    price = lambda v: None if v is None else scale.price(scale.ticks(v))
    return {"date": row["date"].isoformat(), "instrument": found.symbol, "client_id": row["client_id"],
            "bought_quantity": qty(row["bought_quantity"]), "sold_quantity": qty(row["sold_quantity"]),
            "net_quantity": qty(row["net_quantity"]), "bought_quote": quote(row["bought_quote"]),
            "sold_quote": quote(row["sold_quote"]), "net_quote": quote(row["net_quote"]),
            "buy_vwap": price(row["buy_vwap"]), "sell_vwap": price(row["sell_vwap"]),
            "trade_count": row["trade_count"]}


def settlements(*, day: Any = None, client_id: str | None = None, instrument: CachedInstrument | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    """Settlement rows, newest day first, then by instrument and client."""
    from django.db import connection

    where, args = [], []
    if day is not None:
        where.append("date = %s")
        args.append(day)
    if client_id is not None:
        where.append("client_id = %s")
        args.append(client_id)
    if instrument is not None:
        where.append("instrument_id = %s")
        args.append(instrument.id)
    sql = f"SELECT {', '.join(SETTLEMENT_COLUMNS)} FROM orders_settlement"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY date DESC, instrument_id, client_id LIMIT %s"
    with connection.cursor() as cur:
        cur.execute(sql, [*args, limit])
        rows = [dict(zip(SETTLEMENT_COLUMNS, r)) for r in cur.fetchall()]
    return [settlement_body(r) for r in rows]
