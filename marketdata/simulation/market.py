"""A small market model: what `manage.py simulate` does next, drawn from one seeded RNG. Pure:
standard library only, no I/O, no clock (the caller passes the time), integer ticks and lots.

* The mid price follows geometric Brownian motion: over dt seconds its log changes by
  (drift - volatility**2 / 2) * dt + volatility * sqrt(dt) * Z, Z standard normal.
* Events arrive as a Poisson process (exponential gaps at the rate asked for); each is one of:
  - quote: a market maker puts a limit order a few levels from the mid (a maker at its cap of
    resting quotes cancels its stalest one instead: cancel/replace);
  - cancel: a maker pulls the quote furthest from the mid;
  - modify: a maker moves a quote back near the mid (new price, same side);
  - take: a taker sends a market order, or an IOC limit order a little through the mid.
  Any subset of a Poisson process picked at random is a Poisson process too, so takers arrive
  as one at (rate x their share).
Sizes are Pareto (heavy-tailed). The model learns what rests from the caller (`rested`,
`moved`, `gone`): a quote is known only once the exchange has answered that it rests.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SIZE_PARETO_ALPHA = 1.5
QUOTE_LEVEL_MEAN = 2.0  # quotes sit on level 0, 1, 2, ... from the touch, exponentially fewer further out
TAKE_MARKET_SHARE = 0.7  # the rest of the takers send IOC limit orders


@dataclass(frozen=True, slots=True)
class MarketParams:
    mid_ticks: int
    volatility: float  # of the log price, per square root of a second
    drift: float = 0.0  # of the log price, per second
    makers: int = 4
    max_quotes: int = 12  # resting quotes per maker
    half_spread_ticks: int = 1
    level_ticks: int = 1  # distance between a maker's levels
    quote_lots: int = 1  # Pareto scale of a quote's size
    take_lots: int = 1  # Pareto scale of a taker's size
    min_lots: int = 1
    max_lots: int = 10**9
    max_price_ticks: int = 10**12
    shares: tuple[tuple[str, float], ...] = (("quote", 0.45), ("cancel", 0.2), ("modify", 0.1), ("take", 0.25))

    def __post_init__(self) -> None:
        if self.mid_ticks <= 0 or self.volatility < 0 or self.makers < 1 or self.max_quotes < 1:
            raise ValueError("mid must be positive, volatility non-negative, at least one maker and one quote")
        if min(self.half_spread_ticks, self.level_ticks, self.quote_lots, self.take_lots, self.min_lots) < 1:
            raise ValueError("spread, level distance and sizes are at least one tick / lot")


@dataclass(frozen=True, slots=True)
class Place:
    client_id: str
    side: str
    price_ticks: int | None  # None: a market order
    lots: int
    time_in_force: str
    role: str  # "quote" or "take"
    maker: int | None = None  # which market maker quotes


@dataclass(frozen=True, slots=True)
class Cancel:
    order_id: str
    why: str  # "cancel" or "replace"


@dataclass(frozen=True, slots=True)
class Modify:
    order_id: str
    price_ticks: int


Action = Place | Cancel | Modify


@dataclass(slots=True)
class Quote:
    maker: int
    side: str
    price_ticks: int


@dataclass
class Market:
    params: MarketParams
    seed: int
    can_modify: bool = True
    mid_ticks: int = 0
    time_s: float = 0.0
    quotes: dict[str, Quote] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mid_ticks = self.params.mid_ticks
        shares = [(k, w) for k, w in self.params.shares if self.can_modify or k != "modify"]
        total = sum(w for _, w in shares)
        self._kinds = [k for k, _ in shares]
        self._weights = [w / total for _, w in shares]

    # -- the two processes ------------------------------------------------------------------
    def gap_s(self, rate: float) -> float:
        """Seconds to the next event of a Poisson process at `rate` events a second."""
        return self.rng.expovariate(rate)

    def advance(self, to_s: float) -> int:
        """Move the mid along its GBM path to time `to_s`; returns it in ticks."""
        dt = to_s - self.time_s
        if dt > 0:
            p = self.params
            step = (p.drift - p.volatility ** 2 / 2) * dt + p.volatility * math.sqrt(dt) * self.rng.gauss(0.0, 1.0)
            self.mid_ticks = min(max(1, round(self.mid_ticks * math.exp(step))), p.max_price_ticks)
            self.time_s = to_s
        return self.mid_ticks

    def step(self, at_s: float) -> Action:
        """The event at time `at_s` (seconds from the start)."""
        self.advance(at_s)
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind == "take":
            return self._take()
        if kind in ("cancel", "modify") and self.quotes:
            return self._pull() if kind == "cancel" else self._move()
        return self._quote()

    # -- what the exchange said -------------------------------------------------------------
    def rested(self, order_id: str, action: Place) -> None:
        if action.role == "quote" and action.price_ticks is not None:
            assert action.maker is not None
            self.quotes[order_id] = Quote(action.maker, action.side, action.price_ticks)

    def moved(self, order_id: str, price_ticks: int) -> None:
        if order_id in self.quotes:
            self.quotes[order_id].price_ticks = price_ticks

    def gone(self, order_id: str) -> None:
        self.quotes.pop(order_id, None)

    # -- draws ------------------------------------------------------------------------------
    def lots(self, scale: int) -> int:
        p = self.params
        return min(max(int(scale * self.rng.paretovariate(SIZE_PARETO_ALPHA)), p.min_lots), p.max_lots)

    def side(self) -> str:
        return "buy" if self.rng.random() < 0.5 else "sell"

    def quote_price(self, side: str) -> int:
        p = self.params
        level = min(int(self.rng.expovariate(1 / QUOTE_LEVEL_MEAN)), 19)
        offset = p.half_spread_ticks + level * p.level_ticks + self.rng.randrange(p.level_ticks)
        price = self.mid_ticks - offset if side == "buy" else self.mid_ticks + offset
        return min(max(price, 1), self.params.max_price_ticks)

    def maker_id(self, maker: int) -> str:
        return f"sim-mm-{maker}"

    def _quote(self) -> Action:
        maker = self.rng.randrange(self.params.makers)
        own = [(oid, q) for oid, q in self.quotes.items() if q.maker == maker]
        if len(own) >= self.params.max_quotes:
            return Cancel(self._furthest(own), "replace")
        side = self.side()
        return Place(self.maker_id(maker), side, self.quote_price(side), self.lots(self.params.quote_lots), "GTC",
                     "quote", maker)

    def _furthest(self, quotes: list[tuple[str, Quote]]) -> str:
        return max(quotes, key=lambda item: (abs(item[1].price_ticks - self.mid_ticks), item[0]))[0]

    def _pull(self) -> Action:
        return Cancel(self._furthest(list(self.quotes.items())), "cancel")

    def _move(self) -> Action:
        order_id = self.rng.choice(sorted(self.quotes))
        return Modify(order_id, self.quote_price(self.quotes[order_id].side))

    def _take(self) -> Action:
        side = self.side()
        client = f"sim-taker-{self.rng.randrange(20)}"
        if self.rng.random() < TAKE_MARKET_SHARE:
            return Place(client, side, None, self.lots(self.params.take_lots), "GTC", "take")
        through = self.params.half_spread_ticks + self.rng.randrange(3 * self.params.level_ticks)
        price = self.mid_ticks + through if side == "buy" else max(1, self.mid_ticks - through)
        return Place(client, side, price, self.lots(self.params.take_lots), "IOC", "take")
