"""Reads. Orders are rendered the same way whether they come from PostgreSQL (here) or from
the matching worker's outcome notification (matching/consumer.py): orders.representation."""
from __future__ import annotations

import uuid
from decimal import Decimal
from collections import defaultdict
from typing import Any

from .instruments import CachedInstrument, by_id, by_id_sync
from .representation import fill_json, fmt, fmt_time, order_json

ORDER_COLUMNS = ("order_id", "client_id", "instrument_id", "side", "type", "time_in_force", "post_only", "stp",
                 "price", "quantity", "filled_quantity", "status", "reason", "idempotency_key", "request_hash",
                 "created_at", "updated_at")
ORDER_SELECT = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders_order"
FILLS_SQL = ("SELECT trade_id, price, quantity, seq, executed_at, buy_order_id, sell_order_id, maker_order_id "
             "FROM orders_trade WHERE buy_order_id = ANY(%(ids)s) OR sell_order_id = ANY(%(ids)s) ORDER BY seq")


def order_row_json(row: dict[str, Any], instrument: CachedInstrument, fills: list[dict[str, Any]]) -> dict[str, Any]:
    tick, lot = instrument.spec.tick_size, instrument.spec.lot_size
    remaining = row["quantity"] - row["filled_quantity"]
    return order_json(
        order_id=str(row["order_id"]), client_id=row["client_id"], instrument=instrument.symbol,
        side=row["side"], type=row["type"], time_in_force=row["time_in_force"], post_only=row["post_only"],
        stp=row["stp"], price=fmt(row["price"], tick), quantity=fmt(row["quantity"], lot) or "",
        filled_quantity=fmt(row["filled_quantity"], lot) or "", remaining_quantity=fmt(remaining, lot) or "",
        status=row["status"], reason=row["reason"], idempotency_key=row["idempotency_key"],
        created_at=fmt_time(row["created_at"]), updated_at=fmt_time(row["updated_at"]), fills=fills,
    )


def fills_by_order(rows: list[tuple], instruments: dict[str, CachedInstrument]) -> dict[str, list[dict[str, Any]]]:
    fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for trade_id, price, qty, seq, executed_at, buy_id, sell_id, maker_id in rows:
        for oid in (str(buy_id), str(sell_id)):
            inst = instruments.get(oid)
            if inst is None:
                continue
            fills[oid].append(fill_json(
                trade_id=trade_id, price=fmt(price, inst.spec.tick_size) or "",
                quantity=fmt(qty, inst.spec.lot_size) or "", role="maker" if str(maker_id) == oid else "taker",
                seq=seq, executed_at=fmt_time(executed_at)))
    return fills


async def orders_by_id(conn: Any, order_ids: list[uuid.UUID | str]) -> dict[str, dict[str, Any]]:
    """order_id -> {"json": rendered order with all its fills, "row": raw row} (async, psycopg)."""
    if not order_ids:
        return {}
    ids = [uuid.UUID(str(o)) for o in order_ids]
    cur = await conn.execute(f"{ORDER_SELECT} WHERE order_id = ANY(%(ids)s)", {"ids": ids})
    rows = [dict(zip(ORDER_COLUMNS, r)) for r in await cur.fetchall()]
    if not rows:
        return {}
    instruments = {str(r["order_id"]): await by_id(r["instrument_id"]) for r in rows}
    cur = await conn.execute(FILLS_SQL, {"ids": ids})
    fills = fills_by_order(await cur.fetchall(), instruments)  # type: ignore[arg-type]
    return {str(r["order_id"]): {"json": order_row_json(r, instruments[str(r["order_id"])],  # type: ignore[arg-type]
                                                        fills.get(str(r["order_id"]), [])),
                                 "row": r} for r in rows}


def orders_json_sync(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render ORM/cursor rows (dicts with ORDER_COLUMNS) with their fills, via Django's connection."""
    from django.db import connection

    if not rows:
        return []
    instruments = {str(r["order_id"]): by_id_sync(r["instrument_id"]) for r in rows}
    with connection.cursor() as cur:
        cur.execute(FILLS_SQL.replace("%(ids)s", "%s::uuid[]"),
                    [[r["order_id"] for r in rows], [r["order_id"] for r in rows]])
        fills = fills_by_order(cur.fetchall(), instruments)  # type: ignore[arg-type]
    return [order_row_json(r, instruments[str(r["order_id"])], fills.get(str(r["order_id"]), []))  # type: ignore[arg-type]
            for r in rows]


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
            out.append({"price": fmt(price, tick), "quantity": fmt(qty, lot), "order_count": n,
                        "cumulative_quantity": fmt(cum, lot)})
        return out, total

    bid_levels, bid_total = side(bids)
    ask_levels, ask_total = side(asks)
    return {"instrument": instrument.symbol, "seq": seq, "bids": bid_levels, "asks": ask_levels,
            "bid_total_quantity": fmt(bid_total, lot), "ask_total_quantity": fmt(ask_total, lot),
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
