"""Reads. An order is read as the contract's OrderState (matching.records), the very message the
matching worker answers with, so a GET and an acknowledgement render the same."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import sql

from matching.aggregates import Position, Scale
from matching.contract import OrderState
from matching.records import FILLS_SQL, ORDER_COLUMNS, ORDERS_BY_ID_SQL, fmt_decimal, fmt_time, order_states

from .db import connection
from .instruments import CachedInstrument, by_id
from .representation import trade_json


async def orders_by_id(conn: Any, order_ids: list[uuid.UUID | str]) -> dict[str, OrderState]:
    """order_id -> the order with all its fills (async, psycopg)."""
    if not order_ids:
        return {}
    ids = {"ids": [uuid.UUID(str(o)) for o in order_ids]}
    cur = await conn.execute(ORDERS_BY_ID_SQL, ids)
    rows = await cur.fetchall()
    if not rows:
        return {}
    instruments = await _instrument_names({r[ORDER_COLUMNS.index("instrument_id")] for r in rows})
    cur = await conn.execute(FILLS_SQL, ids)
    return order_states(rows, await cur.fetchall(), instruments)


async def _instrument_names(instrument_ids: set[int]) -> dict[int, tuple[str, Any]]:
    out: dict[int, tuple[str, Any]] = {}
    for instrument_id in instrument_ids:
        found = await by_id(instrument_id)
        assert found is not None
        out[instrument_id] = (found.symbol, found.spec)
    return out


@dataclass(frozen=True, slots=True)
class OrdersPage:
    """A page of orders, newest first; the cursors of the pages before and after it."""

    orders: list[OrderState]
    older: int | None  # the id to read older orders from, if there are any
    newer: int | None  # the id to read newer orders from, if this is not the newest page


async def orders_page(*, client_id: str | None, status: str | None, instrument_id: int | None, limit: int,
                      older_than: int | None = None, newer_than: int | None = None) -> OrdersPage:
    """Orders matching the filters, newest first, ``limit`` of them from a cursor (the record's
    row id: orders are listed by insertion, the newest first)."""
    where = [sql.SQL("true")]
    params: list[Any] = []
    for column, value in (("client_id", client_id), ("status", status), ("instrument_id", instrument_id)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if older_than is not None:
        where.append(sql.SQL("id < %s"))
        params.append(older_than)
    if newer_than is not None:
        where.append(sql.SQL("id > %s"))
        params.append(newer_than)
    direction = sql.SQL("ASC" if newer_than is not None else "DESC")
    query = sql.SQL("SELECT id, {} FROM orders_order WHERE {} ORDER BY id {} LIMIT %s").format(
        sql.SQL(", ").join(map(sql.Identifier, ORDER_COLUMNS)), sql.SQL(" AND ").join(where), direction)
    async with connection() as conn:
        cur = await conn.execute(query, [*params, limit + 1])
        rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        if newer_than is not None:
            rows.reverse()
        ids = {"ids": [r[1] for r in rows]}
        instruments = await _instrument_names({r[1 + ORDER_COLUMNS.index("instrument_id")] for r in rows})
        cur = await conn.execute(FILLS_SQL, ids)
        states = order_states([r[1:] for r in rows], await cur.fetchall(), instruments)
    orders = [states[str(r[1])] for r in rows]
    if not rows:
        # Past the oldest: the page before is what is newer than the cursor's own row.
        return OrdersPage(orders, None, None if older_than is None else older_than - 1)
    first, last = rows[0][0], rows[-1][0]
    older = last if (more or newer_than is not None) else None
    newer = first if (older_than is not None or (newer_than is not None and more)) else None
    return OrdersPage(orders, older, newer)


TRADE_COLUMNS = ("trade_id", "seq", "price", "quantity", "aggressor_side", "buy_order_id", "sell_order_id",
                 "maker_order_id", "taker_order_id", "executed_at")
TRADES_SQL = (f"SELECT {', '.join(TRADE_COLUMNS)} FROM orders_trade WHERE instrument_id = %s "
              "ORDER BY seq DESC LIMIT %s")


async def recent_trades(instrument: CachedInstrument, limit: int) -> list[dict[str, Any]]:
    """An instrument's last ``limit`` trades, newest first, as the wire shows them."""
    async with connection() as conn:
        cur = await conn.execute(TRADES_SQL, (instrument.id, limit))
        rows = [dict(zip(TRADE_COLUMNS, r)) for r in await cur.fetchall()]
    tick, lot = instrument.spec.tick_size, instrument.spec.lot_size
    return [trade_json(trade_id=t["trade_id"], instrument=instrument.symbol, price=fmt_decimal(t["price"], tick),
                       quantity=fmt_decimal(t["quantity"], lot), aggressor_side=t["aggressor_side"],
                       buy_order_id=str(t["buy_order_id"]), sell_order_id=str(t["sell_order_id"]),
                       maker_order_id=str(t["maker_order_id"]), taker_order_id=str(t["taker_order_id"]),
                       seq=t["seq"], executed_at=fmt_time(t["executed_at"])) for t in rows]


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


async def read_orderbook(instrument: CachedInstrument, levels: int | None = None) -> dict[str, Any]:
    async with connection() as conn:
        return await orderbook(conn, instrument, levels)


SNAPSHOTS_SQL = """
SELECT s.id, i.symbol, s.seq, s.command_seq, s.source, s.taken_at, jsonb_array_length(s.bids),
       jsonb_array_length(s.asks), s.order_count
  FROM marketdata_booksnapshot s JOIN orders_instrument i ON i.id = s.instrument_id
 WHERE %(instrument_id)s::bigint IS NULL OR s.instrument_id = %(instrument_id)s
 ORDER BY s.id DESC LIMIT %(limit)s
"""


async def snapshots_list(instrument_id: int | None, limit: int) -> list[dict[str, Any]]:
    """The stored book snapshots, newest first, without their (large) contents."""
    async with connection() as conn:
        cur = await conn.execute(SNAPSHOTS_SQL, {"instrument_id": instrument_id, "limit": limit})
        rows = await cur.fetchall()
    return [{"id": sid, "instrument": symbol, "seq": seq, "command_seq": command_seq, "source": source,
             "taken_at": fmt_time(taken_at), "bid_levels": bids, "ask_levels": asks, "orders": orders}
            for sid, symbol, seq, command_seq, source, taken_at, bids, asks, orders in rows]


AUDIT_SQL = sql.SQL(
    "SELECT at, actor, action, target, detail FROM orders_auditentry "
    "WHERE (%(action)s::text IS NULL OR action = %(action)s) ORDER BY at DESC, id DESC LIMIT %(limit)s")


async def audit_entries(action: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest entries of the audit trail (of one ``action``, or all)."""
    async with connection() as conn:
        cur = await conn.execute(AUDIT_SQL, {"action": action, "limit": limit})
        rows = await cur.fetchall()
    return [{"time": fmt_time(at), "actor": actor, "action": act, "target": target, "detail": detail}
            for at, actor, act, target, detail in rows]
# --------------------------------------------------------------------------------------------
# Positions and settlements
# --------------------------------------------------------------------------------------------

POSITION_COLUMNS = ("instrument_id", "net_quantity", "cost_basis", "bought_quantity", "sold_quantity", "bought_quote",
                    "sold_quote", "realized_pnl", "trade_count", "last_seq", "updated_at")
POSITIONS_SQL = f"SELECT {', '.join(POSITION_COLUMNS)} FROM orders_position WHERE client_id = %s"
LAST_PRICE_SQL = "SELECT price FROM orders_trade WHERE instrument_id = %s ORDER BY seq DESC LIMIT 1"


async def positions_of(client_id: str, instrument: CachedInstrument | None = None) -> list[dict[str, Any]]:
    """A client's positions, one per instrument it traded (by symbol), each with its unrealized
    PnL at the instrument's last trade price."""
    sql, args = POSITIONS_SQL, [client_id]
    if instrument is not None:
        sql += " AND instrument_id = %s"
        args.append(instrument.id)
    out: list[dict[str, Any]] = []
    async with connection() as conn:
        cur = await conn.execute(sql, args)
        rows = [dict(zip(POSITION_COLUMNS, r)) for r in await cur.fetchall()]
        for row in rows:
            found = await by_id(row["instrument_id"])
            assert found is not None
            scale = Scale(found.spec)
            cur = await conn.execute(LAST_PRICE_SQL, [found.id])
            last = await cur.fetchone()
            position = Position.from_row(row, scale)
            out.append({"instrument": found.symbol,
                        **position.fields(scale, None if last is None else scale.ticks(last[0])),
                        "updated_at": fmt_time(row["updated_at"])})
    out.sort(key=lambda p: p["instrument"])
    return out


SETTLEMENT_COLUMNS = ("date", "instrument_id", "client_id", "bought_quantity", "sold_quantity", "net_quantity",
                      "bought_quote", "sold_quote", "net_quote", "buy_vwap", "sell_vwap", "trade_count", "created_at")


def settlement_body(row: dict[str, Any], instrument: CachedInstrument) -> dict[str, Any]:
    """A settlement row (SETTLEMENT_COLUMNS) as the API and the CSV report show it."""
    scale = Scale(instrument.spec)
    qty, quote = lambda v: scale.qty(scale.lots(v)), lambda v: scale.quote(scale.units(v))
    price = lambda v: None if v is None else scale.price(scale.ticks(v))
    return {"date": row["date"].isoformat(), "instrument": instrument.symbol, "client_id": row["client_id"],
            "bought_quantity": qty(row["bought_quantity"]), "sold_quantity": qty(row["sold_quantity"]),
            "net_quantity": qty(row["net_quantity"]), "bought_quote": quote(row["bought_quote"]),
            "sold_quote": quote(row["sold_quote"]), "net_quote": quote(row["net_quote"]),
            "buy_vwap": price(row["buy_vwap"]), "sell_vwap": price(row["sell_vwap"]),
            "trade_count": row["trade_count"]}


async def settlements(*, day: Any = None, client_id: str | None = None, instrument: CachedInstrument | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    """Settlement rows, newest day first, then by instrument and client."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("date", day), ("client_id", client_id),
                          ("instrument_id", None if instrument is None else instrument.id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    query = f"SELECT {', '.join(SETTLEMENT_COLUMNS)} FROM orders_settlement"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY date DESC, instrument_id, client_id LIMIT %s"
    async with connection() as conn:
        cur = await conn.execute(query, [*args, limit])
        rows = [dict(zip(SETTLEMENT_COLUMNS, r)) for r in await cur.fetchall()]
    out = []
    for row in rows:
        found = await by_id(row["instrument_id"])
        assert found is not None
        out.append(settlement_body(row, found))
    return out
