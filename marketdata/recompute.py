"""The trade aggregates recomputed from the raw trades, compared with what is stored, and rebuilt.

``manage.py analytics_check`` (and the tests) fold every trade of an instrument, in seq order,
through the pure folds of matching.aggregates, one trade at a time (the worker folds whole
batches and PostgreSQL adds the batches' candles): the 1-minute candle of each trade, every
longer interval from its minutes, and each client's position from its fills, the clients read
from the orders of each trade. Reads stream through a server-side cursor, so a history of
millions of trades is checked in constant memory (apart from the candles and positions).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from django.db import connection, transaction

from matching.aggregates import INTERVALS, MINUTE_MS, Candle, Position, Scale, fold_positions, ms_of
from matching.worker.store import LOCK_KEY
from orders.instruments import CachedInstrument

CandleKey = tuple[str, int]  # (interval, open time in ms)

TRADES_SQL = ("SELECT seq, price, quantity, aggressor_side, executed_at FROM orders_trade "
              "WHERE instrument_id = %s ORDER BY seq")
FILLS_SQL = ("SELECT t.seq, b.client_id, s.client_id, t.price, t.quantity FROM orders_trade t "
             "JOIN orders_order b ON b.order_id = t.buy_order_id JOIN orders_order s ON s.order_id = t.sell_order_id "
             "WHERE t.instrument_id = %s ORDER BY t.seq")
STORED_CANDLES_SQL = ("SELECT interval, open_time, open, high, low, close, volume, quote_volume, taker_buy_volume, "
                      "taker_buy_quote_volume, trade_count, first_seq, last_seq FROM marketdata_candle "
                      "WHERE instrument_id = %s")
STORED_POSITIONS_SQL = ("SELECT client_id, net_quantity, cost_basis, bought_quantity, sold_quantity, bought_quote, "
                        "sold_quote, realized_pnl, trade_count, last_seq FROM orders_position WHERE instrument_id = %s")
WORKER_RUNNING_SQL = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s "
                      "AND objsubid = 1 AND granted "
                      "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
TRADE_COUNT_SQL = "SELECT count(*) FROM orders_trade WHERE instrument_id = %s"


def _stream(sql: str, args: list[Any]) -> Iterator[tuple[Any, ...]]:
    with transaction.atomic():
        cur = connection.chunked_cursor()
        try:
            cur.execute(sql, args)
            while rows := cur.fetchmany(5000):
                yield from rows
        finally:
            cur.close()


def recomputed_candles(instrument: CachedInstrument) -> dict[CandleKey, Candle]:
    """Every candle of every interval, from the trades."""
    scale = Scale(instrument.spec)
    minutes: dict[int, Candle] = {}
    for seq, price, qty, aggressor, executed_at in _stream(TRADES_SQL, [instrument.id]):
        ms = ms_of(executed_at)
        minute = ms - ms % MINUTE_MS
        p, q, buys = scale.ticks(price), scale.lots(qty), aggressor == "buy"
        found = minutes.get(minute)
        if found is None:
            minutes[minute] = Candle.of_trade(minute, seq, p, q, buys)
        else:
            found.add(seq, p, q, buys)
    out: dict[CandleKey, Candle] = {}
    for minute in sorted(minutes):
        for interval, size in INTERVALS.items():
            key = (interval, minute - minute % size)
            held = out.get(key)
            if held is None:
                out[key] = minutes[minute].copy(key[1])
            else:
                held.merge(minutes[minute])
    return out


def stored_candles(instrument: CachedInstrument) -> dict[CandleKey, Candle]:
    scale = Scale(instrument.spec)
    columns = ("interval", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume",
               "taker_buy_quote_volume", "trade_count", "first_seq", "last_seq")
    out: dict[CandleKey, Candle] = {}
    for values in _stream(STORED_CANDLES_SQL, [instrument.id]):
        row = dict(zip(columns, values))
        open_ms = ms_of(row["open_time"])
        out[(row["interval"], open_ms)] = Candle.from_row(row, scale, open_ms)
    return out


def recomputed_positions(instrument: CachedInstrument) -> dict[str, Position]:
    """Every client's position, from its fills in seq order."""
    return fold_positions(_stream(FILLS_SQL, [instrument.id]), Scale(instrument.spec))


def stored_positions(instrument: CachedInstrument) -> dict[str, Position]:
    scale = Scale(instrument.spec)
    columns = ("client_id", "net_quantity", "cost_basis", "bought_quantity", "sold_quantity", "bought_quote",
               "sold_quote", "realized_pnl", "trade_count", "last_seq")
    return {values[0]: Position.from_row(dict(zip(columns, values)), scale)
            for values in _stream(STORED_POSITIONS_SQL, [instrument.id])}


def differences(instrument: CachedInstrument, limit: int = 20) -> tuple[int, list[str]]:
    """(trades checked, what differs between the stored aggregates and the recomputed ones:
    at most ``limit`` lines, then a count)."""
    lines: list[str] = []
    with connection.cursor() as cur:
        cur.execute(TRADE_COUNT_SQL, [instrument.id])
        trades = int(cur.fetchone()[0])
    for name, stored, recomputed in (("candle", stored_candles(instrument), recomputed_candles(instrument)),
                                     ("position", stored_positions(instrument), recomputed_positions(instrument))):
        for key in sorted(set(stored) | set(recomputed), key=str):
            have, want = stored.get(key), recomputed.get(key)
            if have != want:
                lines.append(f"{instrument.symbol} {name} {key}: stored {have}, recomputed {want}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return trades, lines


def worker_running() -> bool:
    with connection.cursor() as cur:
        cur.execute(WORKER_RUNNING_SQL, [LOCK_KEY])
        return bool(cur.fetchone()[0])


def rebuild(instrument: CachedInstrument) -> tuple[int, int]:
    """Replace an instrument's stored candles and positions by the recomputed ones; (candles,
    positions) written. The matching worker must not run (it holds positions in memory)."""
    scale = Scale(instrument.spec)
    candles = [{**c.row(scale, interval), "instrument_id": instrument.id}
               for (interval, _), c in sorted(recomputed_candles(instrument).items())]
    positions = [{**p.row(scale, client), "instrument_id": instrument.id}
                 for client, p in sorted(recomputed_positions(instrument).items())]
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM marketdata_candle WHERE instrument_id = %s", [instrument.id])
        cur.execute("DELETE FROM orders_position WHERE instrument_id = %s", [instrument.id])
        cur.execute(
            "INSERT INTO marketdata_candle (instrument_id, interval, open_time, open, high, low, close, volume, "
            "quote_volume, taker_buy_volume, taker_buy_quote_volume, trade_count, first_seq, last_seq) "
            "SELECT instrument_id, interval, open_time, open, high, low, close, volume, quote_volume, "
            "taker_buy_volume, taker_buy_quote_volume, trade_count, first_seq, last_seq "
            "FROM json_populate_recordset(NULL::marketdata_candle, %s::json)", [orjson.dumps(candles).decode()])
        cur.execute(
            "INSERT INTO orders_position (client_id, instrument_id, net_quantity, cost_basis, bought_quantity, "
            "sold_quantity, bought_quote, sold_quote, realized_pnl, trade_count, last_seq, updated_at) "
            "SELECT client_id, instrument_id, net_quantity, cost_basis, bought_quantity, sold_quantity, "
            "bought_quote, sold_quote, realized_pnl, trade_count, last_seq, now() "
            "FROM json_populate_recordset(NULL::orders_position, %s::json)", [orjson.dumps(positions).decode()])
    return len(candles), len(positions)
