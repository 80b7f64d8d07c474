"""Exact decimal strings for integer ticks and lots, in integer arithmetic (pure).

The worker and the feeds render thousands of prices and quantities per batch; building a
Decimal for each (InstrumentSpec.ticks_to_price) and then str() is far costlier than integer
formatting. This gives the same digits, always in fixed-point notation ("0.00000005", never
"5E-8"), which is also what the REST API renders.
"""
from __future__ import annotations

from .types import InstrumentSpec, limits_of

_CACHE_MAX = 100_000


class GridFormat:
    __slots__ = ("_p_units", "_p_scale", "_p_fmt", "_q_units", "_q_scale", "_q_fmt", "_prices", "_qtys")

    def __init__(self, spec: InstrumentSpec) -> None:
        lim = limits_of(spec)
        p_digits, q_digits = -lim.tick.exp, -lim.lot.exp
        self._p_units, self._p_scale = lim.tick.units, 10**p_digits
        self._q_units, self._q_scale = lim.lot.units, 10**q_digits
        # "%d.%04d" % divmod(units, 10**4): whole part, then the fraction zero-padded.
        self._p_fmt = f"%d.%0{p_digits}d" if p_digits else "%d%.0s"
        self._q_fmt = f"%d.%0{q_digits}d" if q_digits else "%d%.0s"
        # Memoised: a book's prices and sizes repeat (a dict hit is several times cheaper than
        # formatting), bounded by starting over.
        self._prices: dict[int, str] = {}
        self._qtys: dict[int, str] = {}

    def price(self, ticks: int) -> str:
        found = self._prices.get(ticks)
        if found is None:
            if len(self._prices) >= _CACHE_MAX:
                self._prices.clear()
            found = self._prices[ticks] = self._p_fmt % divmod(ticks * self._p_units, self._p_scale)
        return found

    def qty(self, lots: int) -> str:
        found = self._qtys.get(lots)
        if found is None:
            if len(self._qtys) >= _CACHE_MAX:
                self._qtys.clear()
            found = self._qtys[lots] = self._q_fmt % divmod(lots * self._q_units, self._q_scale)
        return found
