"""A naive reference model of the matching engine, written to be obviously right.

The book is one flat list of resting orders. Every decision is a scan or a
sort of that list; every level total is a fresh sum; validation goes through
``Decimal`` arithmetic on the spec (not the engine's precomputed integer
bounds). FOK feasibility is a dry run of the real matching loop on a deep copy
of the book, which checks the engine's shortcut ("sum liquidity, stop/skip at
same-client makers") against the plain definition "would it fill completely".

It emits the same event types in the order documented in matching/engine.py,
so tests compare the two op by op, event by event.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from random import Random
from typing import Any

from matching.engine.types import (
    STP,
    Accepted,
    BookDelta,
    Cancel,
    InstrumentSpec,
    Level,
    Modify,
    OrderType,
    OrderUpdate,
    Place,
    Reason,
    Rejected,
    Side,
    Status,
    TimeInForce,
    Trade,
)


@dataclass
class RefOrder:
    order_id: str
    client_id: str
    side: Side
    price_ticks: int
    qty_lots: int
    filled_lots: int
    priority: int
    stp: STP
    post_only: bool

    @property
    def remaining(self) -> int:
        return self.qty_lots - self.filled_lots


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Reference:
    def __init__(self, spec: Any, *, seq: int = 0, next_trade_id: int = 1, next_priority: int = 1) -> None:
        self.spec = spec
        self.book: list[RefOrder] = []
        self.seq = seq
        self.next_trade_id = next_trade_id
        self.next_priority = next_priority

    # -- helpers -------------------------------------------------------------

    def find(self, order_id: str) -> RefOrder | None:
        for o in self.book:
            if o.order_id == order_id:
                return o
        return None

    def level_total(self, side: Side, price: int) -> int:
        return sum(o.remaining for o in self.book if o.side == side and o.price_ticks == price)

    def crossing_makers(self, taker_side: Side, limit: int | None) -> list[RefOrder]:
        """Opposite orders the taker may trade with, best first."""
        if taker_side == Side.BUY:
            makers = [o for o in self.book if o.side == Side.SELL and (limit is None or o.price_ticks <= limit)]
            makers.sort(key=lambda o: (o.price_ticks, o.priority))
        else:
            makers = [o for o in self.book if o.side == Side.BUY and (limit is None or o.price_ticks >= limit)]
            makers.sort(key=lambda o: (-o.price_ticks, o.priority))
        return makers

    def delta(self, side: Side, price: int, ts: int) -> BookDelta:
        self.seq += 1
        return BookDelta(self.seq, side, price, self.level_total(side, price), ts)

    @staticmethod
    def state(o: RefOrder, status: Status, resting: bool, reason: Reason | None, ts: int) -> OrderUpdate:
        return OrderUpdate(
            o.order_id, o.client_id, o.side, status, o.price_ticks, o.qty_lots, o.filled_lots,
            o.remaining, o.priority if resting else None, reason, ts,
        )

    def price_reason(self, price: object) -> Reason | None:
        if not _is_int(price) or price <= 0:  # type: ignore[operator]
            return Reason.INVALID_PRICE
        if price * self.spec.tick_size > self.spec.max_price:  # type: ignore[operator]
            return Reason.PRICE_TOO_HIGH
        return None

    def qty_reason(self, qty: object) -> Reason | None:
        if not _is_int(qty) or qty <= 0:  # type: ignore[operator]
            return Reason.INVALID_QUANTITY
        if qty * self.spec.lot_size < self.spec.min_qty:  # type: ignore[operator]
            return Reason.QUANTITY_TOO_SMALL
        if qty * self.spec.lot_size > self.spec.max_qty:  # type: ignore[operator]
            return Reason.QUANTITY_TOO_LARGE
        return None

    def notional_reason(self, price: int, qty: int) -> Reason | None:
        mn = self.spec.min_notional
        if mn is not None and (price * self.spec.tick_size) * (qty * self.spec.lot_size) < mn:
            return Reason.NOTIONAL_TOO_SMALL
        return None

    def crosses(self, side: Side, price: int | None) -> bool:
        return bool(self.crossing_makers(side, price))

    # -- matching --------------------------------------------------------------

    def match(
        self, taker_id: str, cid: str, side: Side, limit: int | None, want: int, stp: STP, ts: int,
        out: list[Any],
    ) -> tuple[int, Reason | None]:
        filled = 0
        while filled < want:
            makers = self.crossing_makers(side, limit)
            if not makers:
                break
            m = makers[0]
            if stp != STP.NONE and m.client_id == cid:
                if stp == STP.CANCEL_TAKER:
                    return filled, Reason.STP_CANCEL_TAKER
                why = Reason.STP_CANCEL_MAKER if stp == STP.CANCEL_MAKER else Reason.STP_CANCEL_BOTH
                self.book.remove(m)
                out.append(self.state(m, Status.CANCELLED, False, why, ts))
                out.append(self.delta(m.side, m.price_ticks, ts))
                if stp == STP.CANCEL_BOTH:
                    return filled, why
                continue
            q = min(want - filled, m.remaining)
            self.seq += 1
            buy_id, sell_id = (taker_id, m.order_id) if side == Side.BUY else (m.order_id, taker_id)
            out.append(Trade(self.seq, self.next_trade_id, m.price_ticks, q, side, m.order_id, taker_id, buy_id, sell_id, ts))
            self.next_trade_id += 1
            m.filled_lots += q
            filled += q
            if m.remaining == 0:
                self.book.remove(m)
                out.append(self.state(m, Status.FILLED, False, None, ts))
            else:
                out.append(self.state(m, Status.PARTIALLY_FILLED, True, None, ts))
            out.append(self.delta(m.side, m.price_ticks, ts))
        return filled, None

    def would_fill_completely(self, cid: str, side: Side, limit: int | None, want: int, stp: STP) -> bool:
        dry = copy.copy(self)
        dry.book = [copy.copy(o) for o in self.book]  # orders are flat: this is a deep copy
        filled, _ = dry.match("dry-run", cid, side, limit, want, stp, 0, [])
        return filled == want

    # -- commands --------------------------------------------------------------

    def apply(self, cmd: Any) -> list[Any]:
        if isinstance(cmd, Place):
            return self.place(cmd)
        if isinstance(cmd, Cancel):
            return self.cancel(cmd)
        if isinstance(cmd, Modify):
            return self.modify(cmd)
        raise TypeError(cmd)

    def place(self, c: Place) -> list[Any]:
        ts = c.ts_ns
        is_market = c.order_type == OrderType.MARKET
        if is_market and c.price_ticks is not None:
            return [Rejected(c.order_id, Reason.PRICE_NOT_ALLOWED, ts)]
        if not is_market:
            if c.price_ticks is None:
                return [Rejected(c.order_id, Reason.PRICE_REQUIRED, ts)]
            r = self.price_reason(c.price_ticks)
            if r:
                return [Rejected(c.order_id, r, ts)]
        r = self.qty_reason(c.qty_lots)
        if r:
            return [Rejected(c.order_id, r, ts)]
        if c.post_only and (is_market or c.tif != TimeInForce.GTC):
            return [Rejected(c.order_id, Reason.POST_ONLY_NOT_ALLOWED, ts)]
        if not is_market:
            r = self.notional_reason(c.price_ticks, c.qty_lots)  # type: ignore[arg-type]
            if r:
                return [Rejected(c.order_id, r, ts)]
        if self.find(c.order_id) is not None:
            return [Rejected(c.order_id, Reason.DUPLICATE_ORDER_ID, ts)]
        if c.post_only and self.crosses(c.side, c.price_ticks):
            return [Rejected(c.order_id, Reason.POST_ONLY_WOULD_TAKE, ts)]

        priority = self.next_priority
        self.next_priority += 1
        out: list[Any] = [Accepted(c.order_id, ts)]
        taker = RefOrder(c.order_id, c.client_id, c.side, c.price_ticks, c.qty_lots, 0, priority, c.stp, c.post_only)  # type: ignore[arg-type]
        if c.tif == TimeInForce.FOK and not self.would_fill_completely(c.client_id, c.side, c.price_ticks, c.qty_lots, c.stp):
            out.append(self.state(taker, Status.CANCELLED, False, Reason.FOK_NOT_FILLABLE, ts))
            return out
        taker.filled_lots, stop = self.match(c.order_id, c.client_id, c.side, c.price_ticks, c.qty_lots, c.stp, ts, out)
        if taker.remaining == 0:
            out.append(self.state(taker, Status.FILLED, False, None, ts))
        elif stop is not None:
            out.append(self.state(taker, Status.CANCELLED, False, stop, ts))
        elif is_market:
            out.append(self.state(taker, Status.CANCELLED, False, Reason.MARKET_NO_LIQUIDITY, ts))
        elif c.tif == TimeInForce.IOC:
            out.append(self.state(taker, Status.CANCELLED, False, Reason.IOC_REMAINDER, ts))
        else:
            self.book.append(taker)
            status = Status.PARTIALLY_FILLED if taker.filled_lots else Status.OPEN
            out.append(self.state(taker, status, True, None, ts))
            out.append(self.delta(taker.side, taker.price_ticks, ts))
        return out

    def cancel(self, c: Cancel) -> list[Any]:
        o = self.find(c.order_id)
        if o is None:
            return [Rejected(c.order_id, Reason.UNKNOWN_ORDER, c.ts_ns)]
        self.book.remove(o)
        return [
            Accepted(c.order_id, c.ts_ns),
            self.state(o, Status.CANCELLED, False, Reason.CANCELLED_BY_USER, c.ts_ns),
            self.delta(o.side, o.price_ticks, c.ts_ns),
        ]

    def modify(self, c: Modify) -> list[Any]:
        ts = c.ts_ns
        o = self.find(c.order_id)
        if o is None:
            return [Rejected(c.order_id, Reason.UNKNOWN_ORDER, ts)]
        if c.price_ticks is None and c.qty_lots is None:
            return [Rejected(c.order_id, Reason.MODIFY_NOTHING, ts)]
        if c.price_ticks is not None:
            r = self.price_reason(c.price_ticks)
            if r:
                return [Rejected(c.order_id, r, ts)]
        if c.qty_lots is not None:
            r = self.qty_reason(c.qty_lots)
            if r:
                return [Rejected(c.order_id, r, ts)]
            if c.qty_lots <= o.filled_lots:
                return [Rejected(c.order_id, Reason.MODIFY_QUANTITY_AT_OR_BELOW_FILLED, ts)]
        price = o.price_ticks if c.price_ticks is None else c.price_ticks
        qty = o.qty_lots if c.qty_lots is None else c.qty_lots
        r = self.notional_reason(price, qty)
        if r:
            return [Rejected(c.order_id, r, ts)]
        if o.post_only and self.crosses(o.side, price):
            return [Rejected(c.order_id, Reason.POST_ONLY_WOULD_TAKE, ts)]

        out: list[Any] = [Accepted(c.order_id, ts)]
        status_now = Status.PARTIALLY_FILLED if o.filled_lots else Status.OPEN
        if price == o.price_ticks:
            changed = qty != o.qty_lots
            if qty > o.qty_lots:
                o.priority = self.next_priority
                self.next_priority += 1
            o.qty_lots = qty
            out.append(self.state(o, status_now, True, None, ts))
            if changed:
                out.append(self.delta(o.side, price, ts))
            return out
        old_price = o.price_ticks
        self.book.remove(o)
        out.append(self.delta(o.side, old_price, ts))
        o.price_ticks = price
        o.qty_lots = qty
        o.priority = self.next_priority
        self.next_priority += 1
        got, stop = self.match(o.order_id, o.client_id, o.side, price, qty - o.filled_lots, o.stp, ts, out)
        o.filled_lots += got
        if o.remaining == 0:
            out.append(self.state(o, Status.FILLED, False, None, ts))
        elif stop is not None:
            out.append(self.state(o, Status.CANCELLED, False, stop, ts))
        else:
            self.book.append(o)
            status = Status.PARTIALLY_FILLED if o.filled_lots else Status.OPEN
            out.append(self.state(o, status, True, None, ts))
            out.append(self.delta(o.side, price, ts))
        return out

    # -- queries -----------------------------------------------------------------

    def levels(self, side: Side) -> list[Level]:
        prices = sorted({o.price_ticks for o in self.book if o.side == side}, reverse=side == Side.BUY)
        out = []
        cum = 0
        for p in prices:
            orders = [o for o in self.book if o.side == side and o.price_ticks == p]
            qty = sum(o.remaining for o in orders)
            cum += qty
            out.append(Level(p, qty, len(orders), cum))
        return out

    def snapshot(self) -> dict[str, Any]:
        bids = sorted((o for o in self.book if o.side == Side.BUY), key=lambda o: (-o.price_ticks, o.priority))
        asks = sorted((o for o in self.book if o.side == Side.SELL), key=lambda o: (o.price_ticks, o.priority))
        return {
            "version": 1,
            "symbol": self.spec.symbol,
            "seq": self.seq,
            "next_trade_id": self.next_trade_id,
            "next_priority": self.next_priority,
            "orders": [
                {
                    "order_id": o.order_id, "client_id": o.client_id, "side": o.side.value,
                    "price_ticks": o.price_ticks, "qty_lots": o.qty_lots, "filled_lots": o.filled_lots,
                    "priority": o.priority, "stp": o.stp.value, "post_only": o.post_only,
                }
                for o in bids + asks
            ],
        }


# ---------------------------------------------------------------------------
# Seeded random command streams (shared by the stream, stateful and snapshot tests)
# ---------------------------------------------------------------------------

#: (name, spec, mid price in ticks). Integer lots, fractional lots, a coarse
#: tick, and a min-notional instrument whose boundary random orders straddle.
STREAM_SPECS: list[tuple[str, InstrumentSpec, int]] = [
    ("int-lots", InstrumentSpec("INT-USD", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("50"), Decimal("1000")), 100),
    ("frac-lots", InstrumentSpec("BTC-USD", Decimal("0.01"), Decimal("0.001"), Decimal("0.002"), Decimal("0.040"), Decimal("500.00")), 10_000),
    ("coarse-tick", InstrumentSpec("ETH-USD", Decimal("0.05"), Decimal("0.5"), Decimal("0.5"), Decimal("20"), Decimal("100.00")), 1000),
    (
        "min-notional",
        InstrumentSpec("SOL-USD", Decimal("0.5"), Decimal("0.01"), Decimal("0.01"), Decimal("0.5"), Decimal("1000"), Decimal("2")),
        100,
    ),
]


class StreamGen:
    """Commands mixing every feature, steered by the reference's current book.

    ``band`` is the half-width of the price band in ticks: narrow bands make
    deep queues and lots of crossing, wide bands make many thin levels.
    """

    def __init__(
        self, rng: Random, spec: InstrumentSpec, mid: int, band: int, clients: int = 3, target_depth: int = 20
    ) -> None:
        self.rng = rng
        self.target_depth = target_depth
        self.spec = spec
        self.mid = mid
        self.band = band
        self.clients = [f"c{i}" for i in range(1, clients + 1)]
        self.issued: list[str] = []
        self.ts_ns = 1_000
        self.max_lots = int(spec.max_qty / spec.lot_size)
        self.min_lots = int(spec.min_qty / spec.lot_size)

    def _qty(self) -> int:
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice([0, -1, self.min_lots - 1, self.max_lots + 1])
        # Fractional instruments: go through the Decimal edge on purpose.
        lots = self.rng.randint(self.min_lots, min(self.max_lots, self.min_lots * 12))
        qty = Decimal(lots) * self.spec.lot_size
        return self.spec.qty_to_lots(qty)

    def _price(self, side: Side | None = None) -> int:
        rng = self.rng
        if rng.random() < 0.01:
            return rng.choice([0, -5, int(self.spec.max_price / self.spec.tick_size) + 1])
        if side is None or rng.random() < 0.3:
            return max(1, self.mid + rng.randint(-self.band, self.band))
        # Mostly passive: bids at or below mid+1, asks at or above mid-1, so the
        # book builds depth instead of every order crossing.
        offset = rng.randint(-1, self.band)
        return max(1, self.mid - offset if side is Side.BUY else self.mid + offset)

    def next(self, live: list[str]) -> Any:
        rng = self.rng
        self.ts_ns += rng.randint(0, 3)
        r = rng.random()
        # Cancel less while the book is below its target depth, so books of
        # very different depths (and long FIFO queues) actually occur.
        cancel_p = 0.22 if len(live) > self.target_depth else 0.06
        if r < cancel_p and live:
            target = rng.choice(live)
            return Cancel(target, self.ts_ns)
        if r < cancel_p + 0.03:
            target = rng.choice(self.issued) if self.issued and rng.random() < 0.7 else "ghost"
            return rng.choice([Cancel(target, self.ts_ns), Modify(target, self._price(), None, self.ts_ns)])
        if r < cancel_p + 0.15 and live:
            target = rng.choice(live)
            k = rng.random()
            price = self._price() if k < 0.5 else None
            qty = self._qty() if k > 0.3 else None
            if k > 0.97:
                price = qty = None
            return Modify(target, price, qty, self.ts_ns)
        # a place
        if rng.random() < 0.02 and live:
            oid = rng.choice(live)  # duplicate id
        else:
            oid = f"o{len(self.issued) + 1}"
            self.issued.append(oid)
        side = rng.choice((Side.BUY, Side.SELL))
        kind = rng.random()
        tif = TimeInForce.GTC
        post_only = False
        order_type = OrderType.LIMIT
        price: int | None = self._price(side)
        if kind < 0.10:
            order_type, price = OrderType.MARKET, None
            tif = rng.choice((TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK))
        elif kind < 0.20:
            tif = TimeInForce.IOC
        elif kind < 0.30:
            tif = TimeInForce.FOK
        elif kind < 0.40:
            post_only = True
        if rng.random() < 0.01:
            post_only = True  # sometimes with IOC/FOK/market: must be refused
        if rng.random() < 0.005:
            price = None if price is not None else self.mid  # wrong price presence
        stp = rng.choice((STP.CANCEL_TAKER, STP.CANCEL_TAKER, STP.NONE, STP.CANCEL_MAKER, STP.CANCEL_BOTH))
        return Place(oid, rng.choice(self.clients), side, order_type, price, self._qty(), tif, post_only, stp, self.ts_ns)


def make_stream(seed: int) -> tuple[InstrumentSpec, StreamGen, dict[str, int]]:
    """Spec, generator and starting counters for one seeded stream."""
    rng = Random(seed)
    _, spec, mid = STREAM_SPECS[seed % len(STREAM_SPECS)]
    band = rng.choice((2, 3, 5, 10, 40))
    counters = {"seq": rng.choice((0, 0, 41)), "next_trade_id": rng.choice((1, 1, 900)), "next_priority": rng.choice((1, 1, 77))}
    gen = StreamGen(rng, spec, mid, band, clients=rng.choice((1, 2, 3, 5)), target_depth=rng.choice((5, 20, 60)))
    return spec, gen, counters
