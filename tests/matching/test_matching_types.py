"""InstrumentSpec: exact Decimal <-> ticks/lots, and order checks (given / when / then)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from matching.engine.types import InstrumentSpec, InvalidNumber, OrderType, Reason, TimeInForce

BTC = InstrumentSpec(
    symbol="BTC-USD",
    tick_size=D("0.01"),
    lot_size=D("0.0001"),
    min_qty=D("0.0001"),
    max_qty=D("100"),
    max_price=D("1000000.00"),
    min_notional=D("10"),
)
COARSE = InstrumentSpec("X-USD", D("0.05"), D("0.5"), D("1"), D("10"), D("100"))


def reason_of(fn, value) -> Reason:
    with pytest.raises(InvalidNumber) as info:
        fn(value)
    return info.value.reason


@pytest.mark.parametrize(
    "text, ticks",
    [("30000.00", 3_000_000), ("30000", 3_000_000), ("30000.000000", 3_000_000), ("0.01", 1), ("1000000", 100_000_000)],
)
def test_price_on_the_grid_converts_exactly(text: str, ticks: int) -> None:
    # given a price on the tick grid (trailing zeros are not extra decimals)
    # when converted / then exact ticks, and back to the same value
    assert BTC.price_to_ticks(D(text)) == ticks
    assert BTC.ticks_to_price(ticks) == D(text)


@pytest.mark.parametrize(
    "value, reason",
    [
        (D("0"), Reason.INVALID_PRICE),
        (D("-0"), Reason.INVALID_PRICE),
        (D("-1.00"), Reason.INVALID_PRICE),
        (D("NaN"), Reason.INVALID_PRICE),
        (D("sNaN"), Reason.INVALID_PRICE),
        (D("Infinity"), Reason.INVALID_PRICE),
        (1.5, Reason.INVALID_PRICE),  # floats are refused, never converted
        ("1.00", Reason.INVALID_PRICE),
        (True, Reason.INVALID_PRICE),
        (D("0.001"), Reason.PRICE_TOO_MANY_DECIMALS),
        (D("30000.005"), Reason.PRICE_TOO_MANY_DECIMALS),
        (D("1000000.01"), Reason.PRICE_TOO_HIGH),
        (D("1E+400"), Reason.PRICE_TOO_HIGH),
        # 29 significant digits: the default decimal context (28) would round
        # this to a valid-looking value; exact conversion must not.
        (D("1.0000000000000000000000000001"), Reason.PRICE_TOO_MANY_DECIMALS),
    ],
)
def test_bad_prices_are_rejected_with_a_reason_never_rounded(value: object, reason: Reason) -> None:
    assert reason_of(BTC.price_to_ticks, value) is reason


def test_off_tick_is_distinct_from_too_many_decimals() -> None:
    # given tick 0.05
    # then 0.03 has an allowed number of decimals but is off the tick,
    # while 0.031 has more decimals than the tick allows
    assert reason_of(COARSE.price_to_ticks, D("0.03")) is Reason.PRICE_OFF_TICK
    assert reason_of(COARSE.price_to_ticks, D("0.031")) is Reason.PRICE_TOO_MANY_DECIMALS
    assert COARSE.price_to_ticks(D("0.15")) == 3
    assert COARSE.price_to_ticks(D("7")) == 140


@pytest.mark.parametrize(
    "value, reason",
    [
        (D("0"), Reason.INVALID_QUANTITY),
        (D("-0.5"), Reason.INVALID_QUANTITY),
        (D("NaN"), Reason.INVALID_QUANTITY),
        (D("0.00001"), Reason.QUANTITY_TOO_MANY_DECIMALS),
        (D("100.0001"), Reason.QUANTITY_TOO_LARGE),
    ],
)
def test_bad_quantities_are_rejected(value: D, reason: Reason) -> None:
    assert reason_of(BTC.qty_to_lots, value) is reason


def test_quantity_lot_grid_and_minimum() -> None:
    # given lot 0.5 and min qty 1
    assert COARSE.qty_to_lots(D("1.5")) == 3
    assert reason_of(COARSE.qty_to_lots, D("1.2")) is Reason.QUANTITY_OFF_LOT
    assert reason_of(COARSE.qty_to_lots, D("1.25")) is Reason.QUANTITY_TOO_MANY_DECIMALS
    assert reason_of(COARSE.qty_to_lots, D("0.5")) is Reason.QUANTITY_TOO_SMALL
    assert reason_of(COARSE.qty_to_lots, D("10.5")) is Reason.QUANTITY_TOO_LARGE


def test_back_conversion_is_quantized_to_the_step_exponent() -> None:
    assert str(BTC.ticks_to_price(3_000_000)) == "30000.00"
    assert str(BTC.lots_to_qty(1)) == "0.0001"
    assert str(BTC.lots_to_qty(12_345)) == "1.2345"
    assert str(COARSE.ticks_to_price(3)) == "0.15"
    big = InstrumentSpec("BIG", D("1E+1"), D("1"), D("1"), D("5"), D("1000"))
    assert str(big.ticks_to_price(7)) == "70"  # no exponent notation


def test_check_order_reasons() -> None:
    ok = BTC.check_order(OrderType.LIMIT, 3_000_000, 10)
    assert ok is None
    assert BTC.check_order(OrderType.LIMIT, None, 10) is Reason.PRICE_REQUIRED
    assert BTC.check_order(OrderType.MARKET, 3_000_000, 10) is Reason.PRICE_NOT_ALLOWED
    assert BTC.check_order(OrderType.MARKET, None, 10) is None  # no notional check without a price
    assert BTC.check_order(OrderType.LIMIT, 0, 10) is Reason.INVALID_PRICE
    assert BTC.check_order(OrderType.LIMIT, 100_000_001, 10) is Reason.PRICE_TOO_HIGH
    assert BTC.check_order(OrderType.LIMIT, 3_000_000, 0) is Reason.INVALID_QUANTITY
    assert BTC.check_order(OrderType.LIMIT, 3_000_000, 1_000_001) is Reason.QUANTITY_TOO_LARGE
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        assert BTC.check_order(OrderType.LIMIT, 3_000_000, 10, tif, True) is Reason.POST_ONLY_NOT_ALLOWED
    assert BTC.check_order(OrderType.MARKET, None, 10, TimeInForce.GTC, True) is Reason.POST_ONLY_NOT_ALLOWED
    assert BTC.check_order(OrderType.LIMIT, 3_000_000, 10, TimeInForce.GTC, True) is None


def test_min_notional_boundary_is_exact() -> None:
    # given min notional 10: 1000.00 * 0.0100 = 10 exactly passes, one lot less fails
    assert BTC.check_order(OrderType.LIMIT, 100_000, 100) is None
    assert BTC.check_order(OrderType.LIMIT, 100_000, 99) is Reason.NOTIONAL_TOO_SMALL
    assert BTC.check_order(OrderType.LIMIT, 99_999, 100) is Reason.NOTIONAL_TOO_SMALL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tick_size": D("0")},
        {"lot_size": D("-1")},
        {"max_price": D("100.001")},  # off the tick grid
        {"min_qty": D("0.00005")},  # off the lot grid
        {"min_qty": D("200")},  # above max_qty
        {"tick_size": 0.01},  # a float
    ],
)
def test_a_bad_spec_fails_fast(kwargs: dict) -> None:
    base = dict(symbol="S", tick_size=D("0.01"), lot_size=D("0.0001"), min_qty=D("0.0001"), max_qty=D("100"), max_price=D("100"))
    base.update(kwargs)
    with pytest.raises(ValueError):
        InstrumentSpec(**base)


@pytest.mark.parametrize(
    "value,reason",
    [
        (D("1." + "0" * 5000 + "1"), Reason.PRICE_TOO_MANY_DECIMALS),
        (D("1" + "0" * 5000), Reason.PRICE_TOO_HIGH),
        (D("0." + "0" * 5000 + "1"), Reason.PRICE_TOO_MANY_DECIMALS),
    ],
)
def test_numbers_of_thousands_of_digits_are_refused_without_building_them(value: D, reason: Reason) -> None:
    # Python refuses to turn more than 4,300 digits into an int: the conversion must never try.
    with pytest.raises(InvalidNumber) as exc:
        BTC.price_to_ticks(value)
    assert exc.value.reason is reason


def test_trailing_zeros_by_the_thousand_are_still_not_decimals() -> None:
    assert BTC.price_to_ticks(D("30000." + "0" * 5000)) == 3_000_000
