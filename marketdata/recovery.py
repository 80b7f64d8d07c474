"""Book snapshots rebuilt from PostgreSQL (the record of truth), for the admin and
`manage.py book_snapshot`: the same engine snapshot the worker persists, rebuilt from the open
orders, so an operator can take, compare and restore one without the worker."""
from __future__ import annotations

import orjson
from django.db import connection, transaction
from django.utils import timezone

from matching.engine.engine import Engine
from matching.engine.grid import GridFormat
from matching.records import MAX_PRIORITY_SQL, OPEN_ORDERS_SQL, engine_from_rows
from orders.models import Instrument

from .models import BookSnapshot


def engine_from_database(instrument: Instrument) -> Engine:
    """Rebuild the instrument's book exactly as the worker does on start (matching.records)."""
    with connection.cursor() as cur:
        cur.execute(OPEN_ORDERS_SQL, [instrument.id])
        rows = cur.fetchall()
        cur.execute(MAX_PRIORITY_SQL, [instrument.id])
        (max_priority,) = cur.fetchone() or (0,)
    return engine_from_rows(instrument.spec(), rows, last_seq=instrument.last_seq,
                            last_trade_id=instrument.last_trade_id, max_priority=max_priority)


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
            instrument=instrument, seq=engine.seq, command_seq=instrument.last_command_seq,
            order_count=engine.open_order_count, taken_at=timezone.now(), source=source,
            bids=levels(depth.bids), asks=levels(depth.asks),
            engine_snapshot=orjson.loads(orjson.dumps(engine.snapshot())))
