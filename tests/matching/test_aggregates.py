"""matching/aggregates.py, pure: exact grids, candles folded in any order, ranges as whole
candles, the gap rule, average-cost positions (hand-written cases, then seeded streams against
a Decimal reference)."""
from __future__ import annotations

import random
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest

from matching.aggregates import (
    INTERVALS,
    MINUTE_MS,
    Candle,
    Position,
    Scale,
    combine,
    div_half_even,
    fill_gaps,
    fold_positions,
    percent,
    segments,
)
from matching.engine.types import InstrumentSpec

SPEC = InstrumentSpec("TST-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                      Decimal("10000000"))
SCALE = Scale(SPEC)
T0_MS = 1_764_676_800_000  # 2025-12-02T12:00:00Z, a day boundary + 12 h


def test_division_rounds_half_to_even_for_either_sign() -> None:
    assert [div_half_even(n, 2) for n in (1, 3, 5, -1, -3, -5)] == [0, 2, 2, 0, -2, -2]
    assert [div_half_even(n, 3) for n in (1, 2, -1, -2)] == [0, 1, 0, -1]
    assert percent(1, 3) == "33.333" and percent(-2, 3) == "-66.667" and percent(1, 0) is None


def test_scale_formats_signed_fixed_point_and_reads_back_exactly() -> None:
    assert (SCALE.price(3_000_001), SCALE.qty(-5), SCALE.quote(-1), SCALE.quote(0)) == \
        ("30000.01", "-0.0005", "-0.000001", "0.000000")
    assert SCALE.ticks(Decimal("30000.010000000000")) == 3_000_001
    assert SCALE.units(Decimal("-36002.100000000000000000000000")) == -36_002_100_000
    assert SCALE.lots(Decimal("0E-12")) == 0
    for off in ("30000.001", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            SCALE.ticks(Decimal(off))
    whole = Scale(InstrumentSpec("W", Decimal("1"), Decimal("1"), Decimal("1"), Decimal("10"), Decimal("100")))
    assert (whole.price(7), whole.quote(-12), whole.average(7, 2)) == ("7", "-12", "4")  # 3.5 -> 4 (even)


def test_a_candle_is_the_same_whatever_order_its_trades_are_folded_in() -> None:
    trades = [(seq, random.Random(seq).randint(100, 200), random.Random(-seq).randint(1, 9), seq % 3 == 0)
              for seq in range(1, 40)]
    forward = Candle.of_trade(0, *trades[0])
    for t in trades[1:]:
        forward.add(*t)
    shuffled = trades[:]
    random.Random(4).shuffle(shuffled)
    halves = [Candle.of_trade(0, *shuffled[0]), Candle.of_trade(0, *shuffled[20])]
    for t in shuffled[1:20]:
        halves[0].add(*t)
    for t in shuffled[21:]:
        halves[1].add(*t)
    merged = combine(reversed(halves))
    assert merged == forward
    assert (forward.open, forward.close) == (trades[0][1], trades[-1][1])
    assert forward.quote == sum(p * q for _, p, q, _ in trades) and forward.trades == 39


def test_a_range_is_read_as_the_coarsest_whole_candles_that_fit() -> None:
    day, hour, minute = INTERVALS["1d"], INTERVALS["1h"], MINUTE_MS
    start = 3 * day - 2 * hour - 7 * minute
    end = 5 * day + hour + 16 * minute
    parts = segments(start, end)
    # contiguous, in order, each run aligned to its interval
    assert parts[0][1] == start and parts[-1][2] == end
    assert all(a[2] == b[1] for a, b in zip(parts, parts[1:]))
    assert all(lo % INTERVALS[name] == 0 and (hi - lo) % INTERVALS[name] == 0 for name, lo, hi in parts)
    assert [name for name, _, _ in parts] == ["1m", "5m", "1h", "1d", "1h", "15m", "1m"]
    candles = sum((hi - lo) // INTERVALS[name] for name, lo, hi in parts)
    assert candles < 40
    assert segments(start, start) == []


def test_gaps_are_omitted_or_carry_the_previous_close() -> None:
    a = Candle(T0_MS, 5, 9, 10_000, 12_000, 9_000, 11_000, 3, 330, 1, 110, 4).fields(SCALE, MINUTE_MS)
    b = Candle(T0_MS + 3 * MINUTE_MS, 10, 10, 13_000, 13_000, 13_000, 13_000, 1, 130, 1, 130, 1).fields(SCALE,
                                                                                                        MINUTE_MS)
    # the stored candles are only those with trades; fill=previous adds the intervals between
    filled = fill_gaps([a, b], MINUTE_MS, T0_MS - 2 * MINUTE_MS, T0_MS + 4 * MINUTE_MS, None, SCALE)
    assert [k["open_time"] - T0_MS for k in filled] == [0, 60_000, 120_000, 180_000, 240_000]  # none before a
    assert filled[0] is a and filled[3] is b
    carried = filled[1]
    assert carried == {"open_time": T0_MS + MINUTE_MS, "open": "110.00", "high": "110.00", "low": "110.00",
                       "close": "110.00", "volume": "0.0000", "close_time": T0_MS + 2 * MINUTE_MS - 1,
                       "quote_volume": "0.000000", "trade_count": 0, "taker_buy_volume": "0.0000",
                       "taker_buy_quote_volume": "0.000000", "vwap": None, "seq": 9}
    assert (filled[4]["close"], filled[4]["volume"], filled[4]["seq"]) == ("130.00", "0.0000", 10)
    before = Candle(T0_MS - 9 * MINUTE_MS, 1, 4, 8_000, 8_000, 8_000, 8_000, 1, 80, 0, 0, 1).fields(SCALE, MINUTE_MS)
    assert [k["close"] for k in fill_gaps([a], MINUTE_MS, T0_MS - MINUTE_MS, T0_MS, before, SCALE)] == \
        ["80.00", "110.00"]


def test_average_cost_realizes_on_the_closed_share_and_flips_through_zero() -> None:
    pos = Position()
    # given buys of 1 @ 100.00 and 1 @ 110.00: average 105.00
    pos.apply(True, 10_000, 10_000, 1)
    pos.apply(True, 11_000, 10_000, 2)
    assert SCALE.average(pos.cost, pos.net) == "105.00"
    # when 1.5 is sold @ 120.00: realized 1.5 x (120 - 105) = 22.50, 0.5 left at 105
    pos.apply(False, 12_000, 15_000, 3)
    assert (SCALE.qty(pos.net), SCALE.quote(pos.realized), SCALE.quote(pos.cost)) == ("0.5000", "22.500000",
                                                                                       "52.500000")
    assert SCALE.quote(pos.unrealized(12_000)) == "7.500000"
    # when 1 is sold @ 130.00: 0.5 closes (+12.50), 0.5 opens short at 130.00
    pos.apply(False, 13_000, 10_000, 4)
    assert (SCALE.qty(pos.net), SCALE.quote(pos.realized), SCALE.quote(pos.cost)) == ("-0.5000", "35.000000",
                                                                                       "-65.000000")
    assert SCALE.average(-pos.cost, -pos.net) == "130.00"
    # when the short is bought back @ 125.00: +2.50, flat, realized = the cash flow
    pos.apply(True, 12_500, 5_000, 5)
    assert (pos.net, pos.cost, SCALE.quote(pos.realized)) == (0, 0, "37.500000")
    assert pos.realized == pos.cash_flow() and pos.trades == 5 and pos.last_seq == 5


def test_a_partial_close_removes_its_cost_rounded_half_even_to_the_quote_unit() -> None:
    pos = Position()
    pos.apply(True, 1, 3, 1)  # 3 lots at 1 tick: cost 3 units
    pos.apply(True, 2, 1, 2)  # cost 5 units for 4 lots: 1.25 per lot
    pos.apply(False, 1, 2, 3)  # closes 2 lots: 2.5 units of cost -> 2 (half to even)
    assert (pos.net, pos.cost, pos.realized) == (2, 3, 0)
    pos.apply(False, 1, 2, 4)  # the rest: the whole remaining cost
    assert (pos.net, pos.cost, pos.realized) == (0, 0, -1) and pos.realized == pos.cash_flow()


def _reference_positions(fills: list[tuple[int, str, str, Decimal, Decimal]], quote_step: Decimal
                         ) -> dict[str, dict[str, Decimal]]:
    """Average cost in Decimal with a wide context, written from the rule, not from the code."""
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with localcontext() as ctx:
        ctx.prec = 200
        for _, buyer, seller, price, qty in fills:
            for client, sign in ((buyer, 1), (seller, -1)):
                p = out[client]
                signed = sign * qty
                if p["net"] == 0 or (p["net"] > 0) == (sign > 0):
                    p["net"] += signed
                    p["cost"] += signed * price
                else:
                    closed = min(qty, abs(p["net"]))
                    if closed == abs(p["net"]):
                        removed = p["cost"]
                    else:
                        removed = (p["cost"] * closed / abs(p["net"])).quantize(quote_step, ROUND_HALF_EVEN)
                    p["realized"] += (closed * price - removed) if p["net"] > 0 else (-removed - closed * price)
                    p["cost"] -= removed
                    p["net"] += sign * closed
                    rest = qty - closed
                    p["net"] += sign * rest
                    p["cost"] += sign * rest * price
    return out


def test_seeded_fill_streams_match_the_decimal_reference_and_keep_the_invariants() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        clients = [f"c{n}" for n in range(rng.randint(2, 5))]
        fills = []
        for seq in range(1, rng.randint(2, 120)):
            buyer, seller = rng.choice(clients), rng.choice(clients)
            fills.append((seq, buyer, seller, Decimal(rng.randint(9_000, 11_000)) / 100,
                          Decimal(rng.randint(1, 30_000)) / 10_000))
        got = fold_positions(fills, SCALE)
        want = _reference_positions(fills, Decimal("0.000001"))
        assert set(got) == set(want), seed
        for client, pos in got.items():
            assert SCALE.qty(pos.net) == format(want[client]["net"].quantize(Decimal("0.0001")), "f"), seed
            assert SCALE.quote(pos.cost) == format(want[client]["cost"].quantize(Decimal("0.000001")), "f"), seed
            assert SCALE.quote(pos.realized) == format(want[client]["realized"].quantize(Decimal("0.000001")),
                                                       "f"), seed
            assert pos.net == pos.bought - pos.sold
            assert pos.realized - pos.cost == pos.cash_flow()
        assert sum(p.net for p in got.values()) == 0
