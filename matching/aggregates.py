"""Trade aggregates, exact and pure (no Django, no I/O, no clock): candles, rolling 24 h
statistics, VWAP, average-cost positions, end-of-day settlement figures.

Everything here is integers on the instrument's grids: prices in ticks, quantities in lots, and
quote amounts (price x quantity) in ``tick x lot`` units, so a sum of notionals is exact and a
decimal appears only when a value is formatted (fixed-point strings, never an exponent).

Two rules of rounding, stated once (docs/analytics.md):
- an average price (VWAP, average entry price) is ``quote / quantity`` rounded half-even to
  the instrument's tick; a change in percent is rounded half-even to 3 decimals;
- average-cost positions: a trade that reduces a position removes from its cost basis the
  closed share, ``cost x closed / |net|``, rounded half-even to the quote unit; a trade that
  closes the whole position removes the whole remaining cost. So ``realized - cost`` always
  equals the quote cash flow exactly, and a flat position's realized PnL is its cash flow.

Who uses what: the matching worker folds every trade of a batch through these (its per-book
state is marketdata.analytics.InstrumentAnalytics, given to it by exchange_project.asgi); the
REST views, ``manage.py analytics_check``, ``manage.py settle`` and the tests use the same folds
(``Candle``, ``Position``) on rows read back from PostgreSQL. Beside matching.records, below
both apps: orders and marketdata read it, it reads neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final

from matching.engine.grid import GridFormat
from matching.engine.types import InstrumentSpec, limits_of
from matching.records import EPOCH, iso_from_ns

# Candle intervals: name -> length in milliseconds. Aligned to the Unix epoch (so 1d candles
# open at 00:00 UTC); each divides the next, so a range splits into whole candles of them.
INTERVALS: Final = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "1d": 86_400_000}
MINUTE_MS: Final = INTERVALS["1m"]
DAY_MS: Final = INTERVALS["1d"]
# The rolling 24 h window is made of whole 1-minute candles: the current one and the 1,439
# before it (so it spans 23 h 59 min to 24 h of trades, depending on the second).
WINDOW_MINUTES: Final = DAY_MS // MINUTE_MS


def _pow10(n: int) -> int:
    assert n >= 0
    return int(10**n)


def div_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-even, in integers (denominator > 0)."""
    assert denominator > 0
    q, r = divmod(numerator, denominator)  # floor: 0 <= r < denominator
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def bucket_of(ms: int, interval_ms: int) -> int:
    """The open time (ms) of the candle holding the instant ``ms``."""
    return ms - ms % interval_ms


def ms_of_ns(ts_ns: int) -> int:
    return ts_ns // 1_000_000


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


class Scale:
    """An instrument's grids as integers, both ways: ticks, lots and quote units (tick x lot)
    to fixed-point strings (signed), and decimals back to them exactly (ValueError off-grid)."""

    __slots__ = ("_grid", "_steps", "symbol")

    def __init__(self, spec: InstrumentSpec) -> None:
        lim = limits_of(spec)
        self.symbol = spec.symbol
        # The engine's memoised formatting for what is never negative (prices, most quantities):
        # the same digits, several times cheaper per value in the worker's batches.
        self._grid = GridFormat(spec)
        # (units of 10**exp per step, exp) for price, quantity and quote
        self._steps = ((lim.tick.units, lim.tick.exp), (lim.lot.units, lim.lot.exp),
                       (lim.tick.units * lim.lot.units, lim.tick.exp + lim.lot.exp))

    @staticmethod
    def _fmt(steps: int, units: int, exp: int) -> str:
        value = steps * units
        sign = "-" if value < 0 else ""
        value = abs(value)
        if exp == 0:
            return f"{sign}{value}"
        whole, frac = divmod(value, _pow10(-exp))
        return f"{sign}{whole}.{frac:0{-exp}d}"

    @staticmethod
    def _exact(value: Decimal, units: int, exp: int) -> int:
        sign, digits, dexp = value.as_tuple()
        if not isinstance(dexp, int):
            raise ValueError(f"{value} is not a finite number")
        coefficient = int("".join(map(str, digits)) or "0")
        if dexp >= exp:
            count = coefficient * _pow10(dexp - exp)
        else:
            scale = _pow10(exp - dexp)
            if coefficient % scale:
                raise ValueError(f"{value} is off the grid")
            count = coefficient // scale
        if count % units:
            raise ValueError(f"{value} is off the grid")
        return -(count // units) if sign else count // units

    def decimals(self) -> tuple[int, int, int]:
        """The decimals shown of a price, a quantity and a quote amount."""
        (_, p), (_, q), (_, u) = self._steps
        return -p, -q, -u

    def steps(self) -> tuple[Decimal, Decimal, Decimal]:
        """The tick, the lot and the quote unit (tick x lot) as exact decimals."""
        p, q, u = (Decimal((0, tuple(int(d) for d in str(units)), exp)) for units, exp in self._steps)
        return p, q, u

    def price(self, ticks: int) -> str:
        return self._grid.price(ticks) if ticks >= 0 else self._fmt(ticks, *self._steps[0])

    def qty(self, lots: int) -> str:
        return self._grid.qty(lots) if lots >= 0 else self._fmt(lots, *self._steps[1])

    def quote(self, units: int) -> str:
        return self._fmt(units, *self._steps[2])

    def ticks(self, value: Decimal) -> int:
        return self._exact(value, *self._steps[0])

    def lots(self, value: Decimal) -> int:
        return self._exact(value, *self._steps[1])

    def units(self, value: Decimal) -> int:
        return self._exact(value, *self._steps[2])

    def average(self, quote_units: int, lots: int) -> str | None:
        """quote / quantity as a price, rounded half-even to the tick; None for no quantity."""
        if lots == 0:
            return None
        return self.price(div_half_even(quote_units, lots))


def percent(change: int, base: int) -> str | None:
    """change / base in percent, rounded half-even to 3 decimals (base > 0)."""
    if base <= 0:
        return None
    milli = div_half_even(change * 100_000, base)
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    return f"{sign}{whole}.{frac:03d}"


# --------------------------------------------------------------------------------------------
# Candles
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Candle:
    """The trades of one interval (or of any set of trades): open and close are the prices of
    the trades with the lowest and highest seq, whatever order they are folded in."""

    open_ms: int
    first_seq: int
    last_seq: int
    open: int
    high: int
    low: int
    close: int
    volume: int  # lots
    quote: int  # tick x lot units
    taker_buy_volume: int
    taker_buy_quote: int
    trades: int

    @classmethod
    def of_trade(cls, open_ms: int, seq: int, price: int, qty: int, taker_buys: bool) -> Candle:
        notional = price * qty
        return cls(open_ms, seq, seq, price, price, price, price, qty, notional,
                   qty if taker_buys else 0, notional if taker_buys else 0, 1)

    def add(self, seq: int, price: int, qty: int, taker_buys: bool) -> None:
        """Fold one trade in."""
        if seq < self.first_seq:
            self.first_seq, self.open = seq, price
        if seq > self.last_seq:
            self.last_seq, self.close = seq, price
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        notional = price * qty
        self.volume += qty
        self.quote += notional
        if taker_buys:
            self.taker_buy_volume += qty
            self.taker_buy_quote += notional
        self.trades += 1

    def merge(self, other: Candle) -> None:
        """Fold another candle's trades in (they are not this one's)."""
        if other.first_seq < self.first_seq:
            self.first_seq, self.open = other.first_seq, other.open
        if other.last_seq > self.last_seq:
            self.last_seq, self.close = other.last_seq, other.close
        if other.high > self.high:
            self.high = other.high
        if other.low < self.low:
            self.low = other.low
        self.volume += other.volume
        self.quote += other.quote
        self.taker_buy_volume += other.taker_buy_volume
        self.taker_buy_quote += other.taker_buy_quote
        self.trades += other.trades

    def copy(self, open_ms: int | None = None) -> Candle:
        return replace(self) if open_ms is None else replace(self, open_ms=open_ms)

    # -- the record (marketdata_candle) ---------------------------------------------------
    def row(self, scale: Scale, interval: str) -> dict[str, Any]:
        """This candle as a row of marketdata_candle (as the worker writes it: a delta that the
        upsert adds to what is stored)."""
        return {"interval": interval, "open_time": iso_from_ns(self.open_ms * 1_000_000),
                "open": scale.price(self.open), "high": scale.price(self.high), "low": scale.price(self.low),
                "close": scale.price(self.close), "volume": scale.qty(self.volume),
                "quote_volume": scale.quote(self.quote), "taker_buy_volume": scale.qty(self.taker_buy_volume),
                "taker_buy_quote_volume": scale.quote(self.taker_buy_quote), "trade_count": self.trades,
                "first_seq": self.first_seq, "last_seq": self.last_seq}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], scale: Scale, open_ms: int) -> Candle:
        """A stored candle (decimals, as marketdata_candle holds them) back to integers."""
        return cls(open_ms, int(row["first_seq"]), int(row["last_seq"]), scale.ticks(row["open"]),
                   scale.ticks(row["high"]), scale.ticks(row["low"]), scale.ticks(row["close"]),
                   scale.lots(row["volume"]), scale.units(row["quote_volume"]),
                   scale.lots(row["taker_buy_volume"]), scale.units(row["taker_buy_quote_volume"]),
                   int(row["trade_count"]))

    # -- the wire --------------------------------------------------------------------------
    def fields(self, scale: Scale, interval_ms: int) -> dict[str, Any]:
        """A kline (REST) and the body of a candle event (WebSocket), Binance's fields in
        Binance's order, with our names; ``seq`` is the last trade it holds."""
        return {"open_time": self.open_ms, "open": scale.price(self.open), "high": scale.price(self.high),
                "low": scale.price(self.low), "close": scale.price(self.close), "volume": scale.qty(self.volume),
                "close_time": self.open_ms + interval_ms - 1, "quote_volume": scale.quote(self.quote),
                "trade_count": self.trades, "taker_buy_volume": scale.qty(self.taker_buy_volume),
                "taker_buy_quote_volume": scale.quote(self.taker_buy_quote),
                "vwap": scale.average(self.quote, self.volume), "seq": self.last_seq}


def combine(candles: Iterable[Candle], open_ms: int = 0) -> Candle | None:
    """All the trades of several candles as one (None when there are none)."""
    out: Candle | None = None
    for candle in candles:
        if candle.trades == 0:
            continue
        if out is None:
            out = candle.copy(open_ms)
        else:
            out.merge(candle)
    return out


def fold_trades(rows: Iterable[tuple[int, Decimal, Decimal, str]], scale: Scale, open_ms: int = 0) -> Candle | None:
    """Raw trades (seq, price, quantity, aggressor_side) as one candle: the recomputation that
    the aggregates are checked against."""
    out: Candle | None = None
    for seq, price, qty, aggressor in rows:
        p, q, buys = scale.ticks(price), scale.lots(qty), aggressor == "buy"
        if out is None:
            out = Candle.of_trade(open_ms, seq, p, q, buys)
        else:
            out.add(seq, p, q, buys)
    return out


def fill_gaps(klines: list[dict[str, Any]], interval_ms: int, first_ms: int, last_ms: int,
              previous: dict[str, Any] | None, scale: Scale) -> list[dict[str, Any]]:
    """Klines (``Candle.fields``, ascending, open times within [first_ms, last_ms]) with every
    interval of that range present: an interval without trades carries the previous close, with
    zero volume, zero trades, no VWAP and the previous candle's seq. Intervals before the
    instrument's first trade (no previous close) stay omitted."""
    held = {k["open_time"]: k for k in klines}
    zero_qty, zero_quote = scale.qty(0), scale.quote(0)
    out: list[dict[str, Any]] = []
    last = previous
    at = first_ms
    while at <= last_ms:
        found = held.get(at)
        if found is not None:
            out.append(found)
            last = found
        elif last is not None:
            close = last["close"]
            out.append({"open_time": at, "open": close, "high": close, "low": close, "close": close,
                        "volume": zero_qty, "close_time": at + interval_ms - 1, "quote_volume": zero_quote,
                        "trade_count": 0, "taker_buy_volume": zero_qty, "taker_buy_quote_volume": zero_quote,
                        "vwap": None, "seq": last["seq"]})
        at += interval_ms
    return out


def segments(start_ms: int, end_ms: int) -> list[tuple[str, int, int]]:
    """A minute-aligned range [start_ms, end_ms) as runs of whole candles, the coarsest that fit:
    (interval, first open time, end) with end exclusive. A day and a half is one 1d candle, 12
    1h candles...: a range of any length is read from a few dozen rows."""
    assert start_ms % MINUTE_MS == 0 and end_ms % MINUTE_MS == 0
    out: list[tuple[str, int, int]] = []
    names = sorted(INTERVALS, key=INTERVALS.__getitem__, reverse=True)

    def split(lo: int, hi: int, level: int) -> None:
        if lo >= hi:
            return
        name = names[level]
        size = INTERVALS[name]
        a = -(-lo // size) * size
        b = hi - hi % size
        if a >= b:
            split(lo, hi, level + 1)
            return
        split(lo, a, level + 1)
        out.append((name, a, b))
        split(b, hi, level + 1)

    split(start_ms, end_ms, 0)
    return out


def window_bounds(now_ms: int) -> tuple[int, int]:
    """The rolling 24 h window at ``now_ms``: [first minute's open, end of the current minute)."""
    current = bucket_of(now_ms, MINUTE_MS)
    return current - (WINDOW_MINUTES - 1) * MINUTE_MS, current + MINUTE_MS


def ticker_fields(stats: Candle | None, scale: Scale, open_ms: int, close_ms: int) -> dict[str, Any]:
    """The 24 h statistics of a window (``stats``: all its trades as one candle), as the REST
    ticker and the ``ticker_24h`` event show them."""
    base: dict[str, Any] = {"open_time": open_ms, "close_time": close_ms - 1}
    if stats is None:
        return base | {"open": None, "high": None, "low": None, "last": None, "change": None,
                       "change_percent": None, "volume": scale.qty(0), "quote_volume": scale.quote(0),
                       "vwap": None, "trade_count": 0, "seq": None}
    return base | {"open": scale.price(stats.open), "high": scale.price(stats.high), "low": scale.price(stats.low),
                   "last": scale.price(stats.close), "change": scale.price(stats.close - stats.open),
                   "change_percent": percent(stats.close - stats.open, stats.open),
                   "volume": scale.qty(stats.volume), "quote_volume": scale.quote(stats.quote),
                   "vwap": scale.average(stats.quote, stats.volume), "trade_count": stats.trades,
                   "seq": stats.last_seq}


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Position:
    """One client's position in one instrument, by average cost (see the module's rules).
    ``cost`` is signed like ``net``: what the open lots cost (long) or brought in (short)."""

    net: int = 0  # lots, signed
    cost: int = 0  # quote units, signed
    bought: int = 0  # lots
    sold: int = 0
    bought_quote: int = 0  # quote units
    sold_quote: int = 0
    realized: int = 0  # quote units, signed
    trades: int = 0
    last_seq: int = 0

    def apply(self, buys: bool, price: int, qty: int, seq: int) -> None:
        """Fold one fill of this client (``buys``: it bought)."""
        notional = price * qty
        if buys:
            self.bought += qty
            self.bought_quote += notional
        else:
            self.sold += qty
            self.sold_quote += notional
        self.trades += 1
        self.last_seq = seq
        net = self.net
        if net == 0 or (net > 0) is buys:
            # Opening or adding: the cost grows by what was paid (received, short).
            self.net = net + qty if buys else net - qty
            self.cost += notional if buys else -notional
            return
        held = net if net > 0 else -net
        closed = qty if qty < held else held
        removed = self.cost if closed == held else div_half_even(self.cost * closed, held)
        # long reduced by a sale: proceeds - cost removed; short reduced by a purchase:
        # what the short brought in (-removed) - what buying back cost.
        self.realized += closed * price - removed if net > 0 else -removed - closed * price
        self.cost -= removed
        self.net = net + closed if buys else net - closed
        rest = qty - closed
        if rest:
            # Through zero: the rest opens a position the other way at this price.
            self.net += rest if buys else -rest
            self.cost += rest * price if buys else -rest * price

    def cash_flow(self) -> int:
        """Quote received minus quote paid."""
        return self.sold_quote - self.bought_quote

    def unrealized(self, last_price: int) -> int:
        return self.net * last_price - self.cost

    def row(self, scale: Scale, client_id: str) -> dict[str, Any]:
        """This position as a row of orders_position (the worker writes the whole state)."""
        return {"client_id": client_id, "net_quantity": scale.qty(self.net), "cost_basis": scale.quote(self.cost),
                "bought_quantity": scale.qty(self.bought), "sold_quantity": scale.qty(self.sold),
                "bought_quote": scale.quote(self.bought_quote), "sold_quote": scale.quote(self.sold_quote),
                "realized_pnl": scale.quote(self.realized), "trade_count": self.trades, "last_seq": self.last_seq}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], scale: Scale) -> Position:
        return cls(scale.lots(row["net_quantity"]), scale.units(row["cost_basis"]), scale.lots(row["bought_quantity"]),
                   scale.lots(row["sold_quantity"]), scale.units(row["bought_quote"]),
                   scale.units(row["sold_quote"]), scale.units(row["realized_pnl"]), int(row["trade_count"]),
                   int(row["last_seq"]))

    def fields(self, scale: Scale, last_price: int | None) -> dict[str, Any]:
        """The REST body of the position (GET /positions/{client_id})."""
        held = abs(self.net)
        return {"net_quantity": scale.qty(self.net), "quote_cash_flow": scale.quote(self.cash_flow()),
                "average_entry_price": scale.average(abs(self.cost), held),
                "cost_basis": scale.quote(self.cost), "realized_pnl": scale.quote(self.realized),
                "unrealized_pnl": None if last_price is None else scale.quote(self.unrealized(last_price)),
                "last_price": None if last_price is None else scale.price(last_price),
                "bought_quantity": scale.qty(self.bought), "sold_quantity": scale.qty(self.sold),
                "bought_quote": scale.quote(self.bought_quote), "sold_quote": scale.quote(self.sold_quote),
                "trade_count": self.trades, "seq": self.last_seq}


def fold_positions(fills: Iterable[tuple[int, str, str, Decimal, Decimal]], scale: Scale) -> dict[str, Position]:
    """Positions recomputed from raw trades in seq order: (seq, buyer, seller, price, quantity)."""
    out: dict[str, Position] = {}
    for seq, buyer, seller, price, qty in fills:
        p, q = scale.ticks(price), scale.lots(qty)
        for client, buys in ((buyer, True), (seller, False)):
            pos = out.get(client)
            if pos is None:
                pos = out[client] = Position()
            pos.apply(buys, p, q, seq)
    return out


# --------------------------------------------------------------------------------------------
# Settlement
# --------------------------------------------------------------------------------------------


def settlement_fields(scale: Scale, *, bought: int, sold: int, bought_quote: int, sold_quote: int,
                      trades: int) -> dict[str, Any]:
    """One client's day in one instrument, netted: the settlement row's values."""
    return {"bought_quantity": scale.qty(bought), "sold_quantity": scale.qty(sold),
            "net_quantity": scale.qty(bought - sold), "bought_quote": scale.quote(bought_quote),
            "sold_quote": scale.quote(sold_quote), "net_quote": scale.quote(sold_quote - bought_quote),
            "buy_vwap": scale.average(bought_quote, bought), "sell_vwap": scale.average(sold_quote, sold),
            "trade_count": trades}


# --------------------------------------------------------------------------------------------
# The worker's side: one instrument's aggregates, folded as trades are matched


def ms_of(value: dt.datetime | int) -> int:
    """A stored timestamp (datetime) as integer milliseconds since the epoch (no float)."""
    if isinstance(value, int):
        return value
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
