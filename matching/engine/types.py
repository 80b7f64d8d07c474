"""Vocabulary of the matching core: enums, the instrument spec, commands and events.

Pure: stdlib only, no I/O, no clock, no randomness, no floats. Prices and
quantities are integers (ticks, lots) inside the engine; ``Decimal`` only at
the edge, through ``InstrumentSpec`` conversions that reject rather than round.

The enums live in ``matching/enums.py`` and the events in ``matching/events.py``
(compiled with the engine when a build exists); both are re-exported here, so
``from matching.engine.types import Trade, Side`` is the one import for users.
Commands are frozen slotted dataclasses: they are built once per request at
the edge, so readability wins there. This module stays plain Python in both
builds, so a command accepts exactly the same input either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from matching.engine.enums import STP as STP
from matching.engine.enums import OrderType as OrderType
from matching.engine.enums import Reason as Reason
from matching.engine.enums import Side as Side
from matching.engine.enums import Status as Status
from matching.engine.enums import TimeInForce as TimeInForce
from matching.engine.events import Accepted as Accepted
from matching.engine.events import BookDelta as BookDelta
from matching.engine.events import Event as Event
from matching.engine.events import OrderUpdate as OrderUpdate
from matching.engine.events import Rejected as Rejected
from matching.engine.events import Trade as Trade


class InvalidNumber(Exception):
    """A Decimal that cannot become ticks/lots exactly; ``reason`` says why."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


# --------------------------------------------------------------------------
# Exact decimal <-> integer grid arithmetic
# --------------------------------------------------------------------------


def _pow10(n: int) -> int:
    # int ** int is typed as Any (a negative exponent gives a float); n >= 0 here.
    assert n >= 0
    return int(10**n)


class _Grid(NamedTuple):
    """A step as ``units * 10**exp`` with ``exp <= 0``: all grid math is on ints."""

    units: int
    exp: int


def _grid(step: Decimal) -> _Grid:
    sign, digits, exp = step.as_tuple()
    assert isinstance(exp, int)
    units = int("".join(map(str, digits)) or "0")
    if exp > 0:
        # Steps like 1E+1 are shown without exponent: scale to exp 0.
        units *= _pow10(exp)
        exp = 0
    return _Grid(units, exp)


def _scaled(value: object, exp: int, bad: Reason, too_many: Reason, magnitude_cap: int) -> int:
    """``value`` as an exact integer number of ``10**exp`` units.

    Uses ``as_tuple`` rather than ``normalize``/``quantize``: those obey the
    decimal context and would silently round a value with more than 28 digits.
    Returns ``magnitude_cap + 1`` for absurdly large values so the caller
    reports "too high/large" without building a gigantic integer.
    """
    if type(value) is int:
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        # bool is an int subclass but never a valid number; floats are refused
        # on principle (they cannot represent most decimal prices).
        raise InvalidNumber(bad)
    sign, digits, vexp = value.as_tuple()
    assert isinstance(vexp, int)
    if sign or not any(digits):
        raise InvalidNumber(bad)
    # Trailing zeros are not "decimals": 30000.000 is fine with tick 0.01. Stripped from the
    # digits, so that the magnitude is known before any integer is built from them.
    end = len(digits)
    while vexp < 0 and digits[end - 1] == 0:
        end -= 1
        vexp += 1
    if vexp < exp:
        raise InvalidNumber(too_many)
    start = 0
    while digits[start] == 0:
        start += 1
    shift = vexp - exp
    if shift + end - start > len(str(magnitude_cap)) + 1:
        return magnitude_cap + 1
    coefficient = int("".join(map(str, digits[start:end])))
    return coefficient * _pow10(shift)


class _Limits(NamedTuple):
    """Integer bounds derived once per spec (the engine's hot path uses these)."""

    tick: _Grid
    lot: _Grid
    max_price_ticks: int
    min_qty_lots: int
    max_qty_lots: int
    min_notional_ticks_lots: int  # price_ticks * qty_lots must reach this; 0 = no minimum


_LIMITS_CACHE: dict[InstrumentSpec, _Limits] = {}


def _exact_steps(value: Decimal, grid: _Grid, what: str) -> int:
    sign, digits, vexp = value.as_tuple()
    assert isinstance(vexp, int)
    coefficient = int("".join(map(str, digits)) or "0")
    if vexp >= grid.exp:
        units = coefficient * _pow10(vexp - grid.exp)
    else:
        scale = _pow10(grid.exp - vexp)
        if coefficient % scale:
            raise ValueError(f"{what} {value} is not on the grid")
        units = coefficient // scale
    if units % grid.units:
        raise ValueError(f"{what} {value} is not on the grid")
    return units // grid.units


def exact_steps(value: Decimal, step: Decimal, what: str) -> int:
    """``value`` as a whole number of ``step``s, exactly; ValueError if it is off that grid
    (a stored quantity is never rounded onto it)."""
    return _exact_steps(value, _grid(step), what)


def limits_of(spec: InstrumentSpec) -> _Limits:
    cached = _LIMITS_CACHE.get(spec)
    if cached is not None:
        return cached
    tick = _grid(spec.tick_size)
    lot = _grid(spec.lot_size)
    min_pq = 0
    if spec.min_notional is not None and spec.min_notional > 0:
        m = _grid(spec.min_notional)
        # notional = (p*t*10^te) * (q*l*10^le) >= m*10^me  <=>  p*q >= m*10^(me-te-le) / (t*l)
        e = m.exp - tick.exp - lot.exp
        num, den = m.units, tick.units * lot.units
        if e >= 0:
            num *= _pow10(e)
        else:
            den *= _pow10(-e)
        min_pq = -(-num // den)
    limits = _Limits(
        tick=tick,
        lot=lot,
        max_price_ticks=_exact_steps(spec.max_price, tick, "max_price"),
        min_qty_lots=_exact_steps(spec.min_qty, lot, "min_qty"),
        max_qty_lots=_exact_steps(spec.max_qty, lot, "max_qty"),
        min_notional_ticks_lots=min_pq,
    )
    _LIMITS_CACHE[spec] = limits
    return limits


def _from_units(units: int, exp: int) -> Decimal:
    # Built from a tuple: exact, independent of the decimal context's precision.
    return Decimal((0, tuple(int(d) for d in str(units)), exp))


def check_order_limits(
    limits: _Limits,
    order_type: OrderType,
    price_ticks: int | None,
    qty_lots: int,
    tif: TimeInForce,
    post_only: bool,
) -> Reason | None:
    """Integer-level order checks shared by the REST edge and the engine."""
    # == rather than "is": the edge may pass the plain strings of these str enums.
    if order_type == OrderType.MARKET:
        if price_ticks is not None:
            return Reason.PRICE_NOT_ALLOWED
    else:
        if price_ticks is None:
            return Reason.PRICE_REQUIRED
        if type(price_ticks) is not int or price_ticks <= 0:
            return Reason.INVALID_PRICE
        if price_ticks > limits.max_price_ticks:
            return Reason.PRICE_TOO_HIGH
    if type(qty_lots) is not int or qty_lots <= 0:
        return Reason.INVALID_QUANTITY
    if qty_lots < limits.min_qty_lots:
        return Reason.QUANTITY_TOO_SMALL
    if qty_lots > limits.max_qty_lots:
        return Reason.QUANTITY_TOO_LARGE
    if post_only and (price_ticks is None or tif != TimeInForce.GTC):
        return Reason.POST_ONLY_NOT_ALLOWED
    if price_ticks is not None and price_ticks * qty_lots < limits.min_notional_ticks_lots:
        return Reason.NOTIONAL_TOO_SMALL
    return None


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One tradable instrument. Bounds must lie on the grid (checked at construction)."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_price: Decimal
    min_notional: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "max_price"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a positive finite Decimal, got {value!r}")
        if self.min_notional is not None:
            if not isinstance(self.min_notional, Decimal) or not self.min_notional.is_finite() or self.min_notional < 0:
                raise ValueError(f"min_notional must be a non-negative Decimal, got {self.min_notional!r}")
        if self.min_qty > self.max_qty:
            raise ValueError("min_qty must not exceed max_qty")
        limits_of(self)  # validates grid alignment of the bounds, fails fast

    def price_to_ticks(self, value: Decimal) -> int:
        lim = limits_of(self)
        units = _scaled(
            value, lim.tick.exp, Reason.INVALID_PRICE, Reason.PRICE_TOO_MANY_DECIMALS,
            lim.max_price_ticks * lim.tick.units,
        )
        if units > lim.max_price_ticks * lim.tick.units:
            raise InvalidNumber(Reason.PRICE_TOO_HIGH)
        if units % lim.tick.units:
            raise InvalidNumber(Reason.PRICE_OFF_TICK)
        return units // lim.tick.units

    def qty_to_lots(self, value: Decimal) -> int:
        lim = limits_of(self)
        units = _scaled(
            value, lim.lot.exp, Reason.INVALID_QUANTITY, Reason.QUANTITY_TOO_MANY_DECIMALS,
            lim.max_qty_lots * lim.lot.units,
        )
        if units > lim.max_qty_lots * lim.lot.units:
            raise InvalidNumber(Reason.QUANTITY_TOO_LARGE)
        if units % lim.lot.units:
            raise InvalidNumber(Reason.QUANTITY_OFF_LOT)
        lots = units // lim.lot.units
        if lots < lim.min_qty_lots:
            raise InvalidNumber(Reason.QUANTITY_TOO_SMALL)
        return lots

    def ticks_to_price(self, ticks: int) -> Decimal:
        lim = limits_of(self)
        return _from_units(ticks * lim.tick.units, lim.tick.exp)

    def lots_to_qty(self, lots: int) -> Decimal:
        lim = limits_of(self)
        return _from_units(lots * lim.lot.units, lim.lot.exp)

    def check_order(
        self,
        order_type: OrderType,
        price_ticks: int | None,
        qty_lots: int,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> Reason | None:
        """First reason this (already integer) order is unacceptable, else None.

        Order of checks: price presence, price range, quantity range,
        post-only compatibility, min notional (limit orders only: a market
        order's notional is unknown until it trades).
        """
        return check_order_limits(limits_of(self), order_type, price_ticks, qty_lots, tif, post_only)


# --------------------------------------------------------------------------
# Commands (in)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    order_id: str
    client_id: str
    side: Side
    order_type: OrderType
    price_ticks: int | None
    qty_lots: int
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: STP = STP.CANCEL_TAKER
    ts_ns: int = 0


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: str
    ts_ns: int = 0


@dataclass(frozen=True, slots=True)
class Modify:
    """``qty_lots`` is the new TOTAL quantity, including what is already filled."""

    order_id: str
    price_ticks: int | None = None
    qty_lots: int | None = None
    ts_ns: int = 0


Command = Place | Cancel | Modify


# --------------------------------------------------------------------------
# Query results
# --------------------------------------------------------------------------


class Level(NamedTuple):
    price_ticks: int
    qty_lots: int
    order_count: int
    cum_qty_lots: int  # cumulative from the touch, this level included


class Depth(NamedTuple):
    bids: list[Level]  # high -> low
    asks: list[Level]  # low -> high
