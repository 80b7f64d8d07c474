"""matching/records.py: the record's rows as the engine and the wire see them."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from matching.engine.types import InstrumentSpec
from matching.records import engine_from_rows, fmt_decimal, iso_from_ns, spec_from_row

SPEC = spec_from_row("X-USD", D("0.010000000000"), D("0.000100000000"), D("0.000100000000"), D("1000.000000000000"),
                     D("1000000.000000000000"), None)


def test_an_instrument_row_becomes_its_normalized_spec() -> None:
    assert InstrumentSpec("X-USD", D("0.01"), D("0.0001"), D("0.0001"), D("1000"), D("1000000")) == SPEC


def test_stored_decimals_show_the_grid_decimals_and_are_never_rounded() -> None:
    assert fmt_decimal(D("30000.120000000000"), SPEC.tick_size) == "30000.12"
    assert fmt_decimal(D("0.000000000000"), SPEC.lot_size) == "0.0000"
    assert fmt_decimal(D("100.005000000000"), SPEC.tick_size) == "100.005"  # a refused, off-grid price
    assert fmt_decimal(D("5E-8"), D("0.00000001")) == "0.00000005"
    assert iso_from_ns(1_764_676_800_123_456_789) == "2025-12-02T12:00:00.123456Z"


def rows(filled: str) -> list[tuple[object, ...]]:
    return [("o-1", "alice", "sell", D("101.000000000000"), D("1.000000000000"), D(filled), 3, "cancel_taker", False),
            ("o-2", "bob", "buy", D("99.000000000000"), D("2.000000000000"), D("0"), 1, "none", False)]


def test_open_orders_become_the_book_with_their_priorities_and_counters() -> None:
    engine = engine_from_rows(SPEC, rows("0.250000000000"), last_seq=17, last_trade_id=4, max_priority=9)
    assert engine.best_ask() == (10100, 7500) and engine.best_bid() == (9900, 20000)
    assert (engine.seq, engine.next_trade_id, engine.next_priority) == (17, 5, 10)


def test_a_filled_quantity_off_the_lot_grid_is_an_error_never_rounded() -> None:
    with pytest.raises(ValueError, match="not on the grid"):
        engine_from_rows(SPEC, rows("0.250050000000"), last_seq=0, last_trade_id=0, max_priority=3)
