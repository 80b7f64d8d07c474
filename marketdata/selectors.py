"""Reads of the trade aggregates: klines, VWAP over a range, the rolling 24 h ticker.

Served from marketdata_candle (kept by the matching worker in each batch's transaction), never by
scanning the trades of the range: a range is read as a few dozen whole candles of the coarsest
intervals that fit (matching.aggregates.segments). Only VWAP's partial first and last minutes
read trades, found by the seq range of that minute's candle (the (instrument, seq) index), so
the answer is exact to the trade. On the web process's bounded pool (orders.db.connection).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from matching.aggregates import (
    INTERVALS,
    MINUTE_MS,
    Candle,
    Scale,
    bucket_of,
    combine,
    fill_gaps,
    fold_trades,
    ms_of,
    segments,
    ticker_fields,
    window_bounds,
)
from matching.records import EPOCH, fmt_time
from orders.db import connection
from orders.instruments import CachedInstrument

CANDLE_FIELDS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume",
                 "taker_buy_quote_volume", "trade_count", "first_seq", "last_seq")
_SELECT = f"SELECT {', '.join(CANDLE_FIELDS)} FROM marketdata_candle"
# The touch of each side (price and total remaining there), in one pass over the resting orders.
TOUCH_SQL = """
SELECT DISTINCT ON (side) side, price, qty
  FROM (SELECT side, price, sum(quantity - filled_quantity) AS qty FROM orders_order
         WHERE instrument_id = %s AND status IN ('open', 'partially_filled') GROUP BY side, price) AS levels
 ORDER BY side, CASE WHEN side = 'buy' THEN -price ELSE price END"""


def datetime_of_ms(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def datetime_of_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def us_of(value: dt.datetime) -> int:
    """A datetime as integer microseconds since the epoch (no float)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _candles(rows: list[tuple[Any, ...]], scale: Scale) -> list[Candle]:
    return [Candle.from_row(dict(zip(CANDLE_FIELDS, r)), scale, ms_of(r[0])) for r in rows]


def _kline_select(scale: Scale) -> tuple[str, dict[str, Any]]:
    """The klines' columns as the wire shows them, formatted by PostgreSQL (the values are on the
    grids, so rounding to the grid's decimals changes nothing; a day of 1m klines is 1,440 rows,
    and converting each value in Python costs more than the query), with the quote and the
    volume as integers of their units for the VWAP (rounded half-even here, not by round())."""
    p, q, u = scale.decimals()
    _, lot, quote_unit = scale.steps()
    sql = ("SELECT (extract(epoch FROM open_time) * 1000)::bigint, round(open, %(p)s)::text, "
           "round(high, %(p)s)::text, round(low, %(p)s)::text, round(close, %(p)s)::text, "
           "round(volume, %(q)s)::text, round(quote_volume, %(u)s)::text, trade_count, "
           "round(taker_buy_volume, %(q)s)::text, round(taker_buy_quote_volume, %(u)s)::text, "
           "(quote_volume / %(unit)s)::numeric(1000, 0)::text, (volume / %(lot)s)::bigint, last_seq "
           "FROM marketdata_candle WHERE instrument_id = %(instrument)s AND interval = %(interval)s")
    return sql, {"p": p, "q": q, "u": u, "unit": quote_unit, "lot": lot}


def _klines(rows: list[tuple[Any, ...]], scale: Scale, size: int) -> list[dict[str, Any]]:
    return [{"open_time": open_ms, "open": o, "high": h, "low": lo, "close": c, "volume": v,
             "close_time": open_ms + size - 1, "quote_volume": qv, "trade_count": n, "taker_buy_volume": tbv,
             "taker_buy_quote_volume": tbq, "vwap": scale.average(int(units), int(lots)), "seq": seq}
            for open_ms, o, h, lo, c, v, qv, n, tbv, tbq, units, lots, seq in rows]


async def klines(instrument: CachedInstrument, *, interval: str, start_ms: int | None, end_ms: int | None, limit: int,
           fill: bool, now_ms: int) -> list[dict[str, Any]]:
    """Candles of ``interval`` whose open time is in [start, end], oldest first, at most
    ``limit``: the first ones from ``start``, else the last ones up to ``end`` (or now).
    Intervals without trades are omitted, or with ``fill`` carry the previous close."""
    scale = Scale(instrument.spec)
    size = INTERVALS[interval]
    base, args = _kline_select(scale)
    args |= {"instrument": instrument.id, "interval": interval, "limit": limit}
    async with connection() as conn:
        if not fill:
            sql = base
            if start_ms is not None:
                sql += " AND open_time >= %(start)s"
                args["start"] = datetime_of_ms(start_ms)
            if end_ms is not None:
                sql += " AND open_time <= %(end)s"
                args["end"] = datetime_of_ms(end_ms)
            sql += f" ORDER BY open_time {'ASC' if start_ms is not None else 'DESC'} LIMIT %(limit)s"
            cur = await conn.execute(sql, args)
            found = _klines(await cur.fetchall(), scale, size)
            if start_ms is None:
                found.reverse()
            return found
        last_ms = bucket_of(min(end_ms if end_ms is not None else now_ms, now_ms), size)
        if start_ms is not None:
            first_ms = -(-start_ms // size) * size
            last_ms = min(last_ms, first_ms + (limit - 1) * size)
        else:
            first_ms = last_ms - (limit - 1) * size
        if first_ms > last_ms:
            return []
        args |= {"first": datetime_of_ms(first_ms), "last": datetime_of_ms(last_ms)}
        cur = await conn.execute(base + " AND open_time >= %(first)s AND open_time <= %(last)s ORDER BY open_time",
                                 args)
        held = _klines(await cur.fetchall(), scale, size)
        cur = await conn.execute(base + " AND open_time < %(first)s ORDER BY open_time DESC LIMIT 1", args)
        before = _klines(await cur.fetchall(), scale, size)
    return fill_gaps(held, size, first_ms, last_ms, before[0] if before else None, scale)


async def _range_candles(conn: Any, instrument_id: int, scale: Scale, start_ms: int, end_ms: int) -> list[Candle]:
    """The whole candles that make up a minute-aligned range (see segments), in one statement."""
    parts = segments(start_ms, end_ms)
    if not parts:
        return []
    where = " OR ".join(["(interval = %s AND open_time >= %s AND open_time < %s)"] * len(parts))
    args: list[Any] = [instrument_id]
    for name, lo, hi in parts:
        args += [name, datetime_of_ms(lo), datetime_of_ms(hi)]
    cur = await conn.execute(f"{_SELECT} WHERE instrument_id = %s AND ({where})", args)
    return _candles(await cur.fetchall(), scale)


async def _partial_minute(conn: Any, instrument_id: int, scale: Scale, lo_us: int, hi_us: int) -> Candle | None:
    """The trades of [lo, hi), a part of one minute, found by that minute's candle's seq range."""
    minute_ms = bucket_of(lo_us // 1000, MINUTE_MS)
    cur = await conn.execute("SELECT first_seq, last_seq FROM marketdata_candle "
                             "WHERE instrument_id = %s AND interval = '1m' AND open_time = %s",
                             [instrument_id, datetime_of_ms(minute_ms)])
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute("SELECT seq, price, quantity, aggressor_side FROM orders_trade WHERE instrument_id = %s "
                             "AND seq BETWEEN %s AND %s AND executed_at >= %s AND executed_at < %s",
                             [instrument_id, row[0], row[1], datetime_of_us(lo_us), datetime_of_us(hi_us)])
    return fold_trades(await cur.fetchall(), scale)


async def vwap(instrument: CachedInstrument, *, from_us: int, to_us: int) -> dict[str, Any]:
    """VWAP, volume, notional, trade count, high, low, first and last of the trades executed in
    [from, to): whole minutes from the candles, partial minutes from their trades."""
    scale = Scale(instrument.spec)
    minute_us = MINUTE_MS * 1000
    inner_lo = -(-from_us // minute_us) * minute_us
    inner_hi = to_us - to_us % minute_us
    parts: list[Candle | None] = []
    async with connection() as conn:
        if inner_lo > inner_hi:  # within one minute
            parts.append(await _partial_minute(conn, instrument.id, scale, from_us, to_us))
        else:
            if from_us < inner_lo:
                parts.append(await _partial_minute(conn, instrument.id, scale, from_us, inner_lo))
            parts.extend(await _range_candles(conn, instrument.id, scale, inner_lo // 1000, inner_hi // 1000))
            if inner_hi < to_us:
                parts.append(await _partial_minute(conn, instrument.id, scale, inner_hi, to_us))
    total = combine(p for p in parts if p is not None)
    base: dict[str, Any] = {"instrument": instrument.symbol, "from": fmt_time(datetime_of_us(from_us)),
                            "to": fmt_time(datetime_of_us(to_us))}
    if total is None:
        return base | {"vwap": None, "volume": scale.qty(0), "notional": scale.quote(0), "trade_count": 0,
                       "high": None, "low": None, "first": None, "last": None, "first_seq": None, "last_seq": None}
    return base | {"vwap": scale.average(total.quote, total.volume), "volume": scale.qty(total.volume),
                   "notional": scale.quote(total.quote), "trade_count": total.trades,
                   "high": scale.price(total.high), "low": scale.price(total.low), "first": scale.price(total.open),
                   "last": scale.price(total.close), "first_seq": total.first_seq, "last_seq": total.last_seq}


async def ticker_24h(instrument: CachedInstrument, *, now_ms: int) -> dict[str, Any]:
    """The rolling 24 h statistics (the window of matching.aggregates.window_bounds) and the
    touch of the book."""
    scale = Scale(instrument.spec)
    open_ms, close_ms = window_bounds(now_ms)
    async with connection() as conn:
        stats = combine(await _range_candles(conn, instrument.id, scale, open_ms, close_ms))
        cur = await conn.execute(TOUCH_SQL, [instrument.id])
        touch = {side: (price, qty) for side, price, qty in await cur.fetchall()}
    bid, bid_size = touch.get("buy", (None, None))
    ask, ask_size = touch.get("sell", (None, None))
    return {"instrument": instrument.symbol, **ticker_fields(stats, scale, open_ms, close_ms),
            "best_bid": None if bid is None else scale.price(scale.ticks(bid)),
            "best_bid_size": None if bid_size is None else scale.qty(scale.lots(bid_size)),
            "best_ask": None if ask is None else scale.price(scale.ticks(ask)),
            "best_ask_size": None if ask_size is None else scale.qty(scale.lots(ask_size)),
            "time": fmt_time(datetime_of_ms(now_ms))}
