"""Book snapshots rebuilt from PostgreSQL (the record of truth), for the admin and
`manage.py book_snapshot`: the same engine snapshot the worker persists, rebuilt from the open
orders, so an operator can take, compare and restore one without the worker."""
from __future__ import annotations

import orjson
from django.db import connection, transaction
from django.utils import timezone

from matching.engine.engine import Engine
from matching.engine.grid import GridFormat
from orders.models import Instrument

from .models import BookSnapshot


def engine_from_database(instrument: Instrument) -> Engine:
    """Rebuild the instrument's book as the worker does on start (open orders by priority)."""
    spec = instrument.spec()
    with connection.cursor() as cur:
        cur.execute("SELECT order_id, client_id, side, price, quantity, filled_quantity, priority, stp, post_only "
                    "FROM orders_order WHERE instrument_id = %s AND status IN ('open', 'partially_filled') "
                    "ORDER BY priority", [instrument.id])
        rows = cur.fetchall()
        cur.execute("SELECT coalesce(max(priority), 0) FROM orders_order WHERE instrument_id = %s", [instrument.id])
        (max_priority,) = cur.fetchone() or (0,)
    orders = [{"order_id": str(oid), "client_id": cid, "side": side, "price_ticks": spec.price_to_ticks(price),
               "qty_lots": spec.qty_to_lots(qty), "filled_lots": int(filled / spec.lot_size), "priority": prio,
               "stp": stp, "post_only": post_only}
              for oid, cid, side, price, qty, filled, prio, stp, post_only in rows]
    engine = Engine.restore(spec, {"version": 1, "symbol": spec.symbol, "seq": instrument.last_seq,
                                   "next_trade_id": instrument.last_trade_id + 1,
                                   "next_priority": (max_priority or 0) + 1, "orders": orders})
    engine.check_invariants()
    return engine


def snapshot_from_database(instrument: Instrument, source: str = "admin") -> BookSnapshot:
    with transaction.atomic():
        # One consistent view: the instrument's seq and its open orders from the same snapshot.
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        instrument.refresh_from_db()
        engine = engine_from_database(instrument)
        grid = GridFormat(instrument.spec())
        depth = engine.depth(10**9)

        def levels(side):  # type: ignore[no-untyped-def]
            return [[grid.price(lv.price_ticks), grid.qty(lv.qty_lots), lv.order_count]
                    for lv in side]

        return BookSnapshot.objects.create(
            instrument=instrument, seq=engine.seq, taken_at=timezone.now(), source=source,
            bids=levels(depth.bids), asks=levels(depth.asks),
            engine_snapshot=orjson.loads(orjson.dumps(engine.snapshot())))
