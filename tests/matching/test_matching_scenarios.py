"""Every matching rule as a readable scenario: given a book, when a command, then these events."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from matching.engine.engine import Engine
from matching.engine.types import (
    STP,
    Accepted,
    BookDelta,
    Cancel,
    Depth,
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

SPEC = InstrumentSpec("TEST-USD", D("1"), D("1"), D("1"), D("1000"), D("10000"))
BUY, SELL = Side.BUY, Side.SELL
OPEN, PARTIAL, FILLED, CANCELLED = Status.OPEN, Status.PARTIALLY_FILLED, Status.FILLED, Status.CANCELLED
TS = 7


def limit(oid: str, side: Side, price: int, qty: int, client: str = "alice", **kw) -> Place:
    return Place(oid, client, side, OrderType.LIMIT, price, qty, ts_ns=TS, **kw)


def market(oid: str, side: Side, qty: int, client: str = "bob", **kw) -> Place:
    return Place(oid, client, side, OrderType.MARKET, None, qty, ts_ns=TS, **kw)


def book(*cmds: Place, seq: int = 0) -> Engine:
    """Given: an engine with these orders placed (and checked) in this order."""
    engine = Engine(SPEC, seq=seq)
    for cmd in cmds:
        events = engine.place(cmd)
        assert type(events[0]) is Accepted, events
        engine.check_invariants()
    return engine


def when(engine: Engine, cmd) -> list:
    events = engine.apply(cmd)
    engine.check_invariants()
    return events


def of(events: list, kind: type) -> list:
    return [e for e in events if type(e) is kind]


def upd(oid, side, status, price, qty, filled, priority=None, reason=None, client="alice") -> OrderUpdate:
    return OrderUpdate(oid, client, side, status, price, qty, filled, qty - filled, priority, reason, TS)


# ---------------------------------------------------------------------------
# placing and resting
# ---------------------------------------------------------------------------


def test_a_limit_that_does_not_cross_rests_and_reports_its_level() -> None:
    engine = book()
    events = when(engine, limit("a", BUY, 100, 5))
    assert events == [
        Accepted("a", TS),
        upd("a", BUY, OPEN, 100, 5, 0, priority=1),
        BookDelta(1, BUY, 100, 5, TS),
    ]
    assert engine.best_bid() == (100, 5) and engine.best_ask() is None
    assert engine.get_order("a") == upd("a", BUY, OPEN, 100, 5, 0, priority=1)._replace(ts_ns=0)


def test_price_time_priority_better_price_first_then_fifo() -> None:
    # given two asks at 101 (s1 earlier than s2) and a better ask at 100 placed last
    engine = book(limit("s1", SELL, 101, 1), limit("s2", SELL, 101, 1), limit("s3", SELL, 100, 1))
    # when a buyer takes three lots
    events = when(engine, limit("b", BUY, 101, 3, client="bob"))
    # then 100 first, then 101 in arrival order
    assert [t.maker_order_id for t in of(events, Trade)] == ["s3", "s1", "s2"]


def test_bids_high_to_low_asks_low_to_high_and_depth_is_cumulative() -> None:
    engine = book(
        limit("b1", BUY, 98, 1), limit("b2", BUY, 99, 2), limit("b3", BUY, 99, 3),
        limit("a1", SELL, 102, 4), limit("a2", SELL, 101, 5),
    )
    assert engine.depth(5) == Depth(
        bids=[Level(99, 5, 2, 5), Level(98, 1, 1, 6)],
        asks=[Level(101, 5, 1, 5), Level(102, 4, 1, 9)],
    )
    assert engine.depth(1) == Depth([Level(99, 5, 2, 5)], [Level(101, 5, 1, 5)])
    assert engine.open_order_count == 5


def test_trade_prints_at_the_maker_price_and_partial_fills_on_both_sides() -> None:
    # given an ask of 5 at 100
    engine = book(limit("s", SELL, 100, 5))
    # when a buy of 3 at 105 arrives
    events = when(engine, limit("b", BUY, 105, 3, client="bob"))
    # then it trades 3 at 100 (maker's price), the maker is partially filled, the taker filled
    assert events == [
        Accepted("b", TS),
        Trade(2, 1, 100, 3, BUY, "s", "b", "b", "s", TS),
        upd("s", SELL, PARTIAL, 100, 5, 3, priority=1),
        BookDelta(3, SELL, 100, 2, TS),
        upd("b", BUY, FILLED, 105, 3, 3, client="bob"),
    ]
    # and when a sell of 10 at 100 arrives against a bid of 4: the taker rests partially filled
    engine = book(limit("b", BUY, 100, 4))
    events = when(engine, limit("s", SELL, 100, 10, client="bob"))
    assert events[-2:] == [upd("s", SELL, PARTIAL, 100, 10, 4, priority=2, client="bob"), BookDelta(4, SELL, 100, 6, TS)]
    assert of(events, Trade)[0].aggressor is SELL and of(events, Trade)[0].buy_order_id == "b"


def test_a_level_that_reaches_zero_disappears() -> None:
    engine = book(limit("s", SELL, 100, 2), limit("s2", SELL, 101, 2))
    events = when(engine, limit("b", BUY, 100, 2, client="bob"))
    assert BookDelta(4, SELL, 100, 0, TS) in events
    assert engine.best_ask() == (101, 2)
    assert [lvl.price_ticks for lvl in engine.depth(10).asks] == [101]


def test_market_order_sweeps_levels_and_cancels_the_rest() -> None:
    engine = book(limit("s1", SELL, 100, 2), limit("s2", SELL, 101, 3))
    events = when(engine, market("m", BUY, 10))
    assert [(t.price_ticks, t.qty_lots) for t in of(events, Trade)] == [(100, 2), (101, 3)]
    assert events[-1] == upd("m", BUY, CANCELLED, None, 10, 5, reason=Reason.MARKET_NO_LIQUIDITY, client="bob")
    assert engine.best_ask() is None and engine.open_order_count == 0


def test_market_order_on_an_empty_side_is_cancelled_with_nothing_filled() -> None:
    engine = book(limit("b", BUY, 100, 2))  # only bids: a market buy finds nothing
    events = when(engine, market("m", BUY, 3))
    assert events == [Accepted("m", TS), upd("m", BUY, CANCELLED, None, 3, 0, reason=Reason.MARKET_NO_LIQUIDITY, client="bob")]


def test_ioc_never_rests() -> None:
    engine = book(limit("s", SELL, 100, 2))
    events = when(engine, limit("b", BUY, 100, 5, client="bob", tif=TimeInForce.IOC))
    assert events[-1] == upd("b", BUY, CANCELLED, 100, 5, 2, reason=Reason.IOC_REMAINDER, client="bob")
    assert engine.best_bid() is None
    # and an IOC that crosses nothing is cancelled whole
    events = when(engine, limit("b2", BUY, 100, 5, client="bob", tif=TimeInForce.IOC))
    assert events == [Accepted("b2", TS), upd("b2", BUY, CANCELLED, 100, 5, 0, reason=Reason.IOC_REMAINDER, client="bob")]


def test_fok_fills_completely_at_once() -> None:
    engine = book(limit("s1", SELL, 100, 2), limit("s2", SELL, 101, 3))
    events = when(engine, limit("f", BUY, 101, 5, client="bob", tif=TimeInForce.FOK))
    assert sum(t.qty_lots for t in of(events, Trade)) == 5
    assert events[-1].status is FILLED


@pytest.mark.parametrize("price, qty", [(100, 3), (101, 6)])
def test_fok_that_cannot_fill_does_nothing_at_all(price: int, qty: int) -> None:
    # given 2 at 100 and 3 at 101
    engine = book(limit("s1", SELL, 100, 2), limit("s2", SELL, 101, 3))
    before = engine.snapshot()
    # when a FOK wants more than is available within its price
    events = when(engine, limit("f", BUY, price, qty, client="bob", tif=TimeInForce.FOK))
    # then: accepted, cancelled, and not a single other event or change
    assert events == [Accepted("f", TS), upd("f", BUY, CANCELLED, price, qty, 0, reason=Reason.FOK_NOT_FILLABLE, client="bob")]
    after = engine.snapshot()
    assert after["orders"] == before["orders"] and after["seq"] == before["seq"]


def test_market_fok_is_all_or_nothing_too() -> None:
    engine = book(limit("s1", SELL, 100, 2))
    events = when(engine, market("m", BUY, 3, tif=TimeInForce.FOK))
    assert events[-1].reason is Reason.FOK_NOT_FILLABLE and not of(events, Trade)


def test_post_only_rests_or_is_rejected_if_it_would_take() -> None:
    engine = book(limit("s", SELL, 100, 2))
    assert when(engine, limit("p", BUY, 100, 1, post_only=True)) == [Rejected("p", Reason.POST_ONLY_WOULD_TAKE, TS)]
    events = when(engine, limit("p2", BUY, 99, 1, post_only=True))
    assert events[1].status is OPEN
    # post-only makes no sense for orders that never rest
    for cmd in (
        limit("p3", BUY, 99, 1, post_only=True, tif=TimeInForce.IOC),
        limit("p4", BUY, 99, 1, post_only=True, tif=TimeInForce.FOK),
        market("p5", BUY, 1, post_only=True),
    ):
        assert when(engine, cmd) == [Rejected(cmd.order_id, Reason.POST_ONLY_NOT_ALLOWED, TS)]


def test_post_only_crossing_only_own_orders_is_still_rejected() -> None:
    engine = book(limit("s", SELL, 100, 2, client="alice"))
    assert when(engine, limit("p", BUY, 100, 1, client="alice", post_only=True))[0].reason is Reason.POST_ONLY_WOULD_TAKE


# ---------------------------------------------------------------------------
# self-trade prevention (the taker's mode decides)
# ---------------------------------------------------------------------------


def stp_book() -> Engine:
    # given alice's own ask at the touch, and bob's ask behind it at the same price
    return book(limit("own", SELL, 100, 2, client="alice"), limit("other", SELL, 100, 2, client="bob"))


def test_stp_none_lets_a_client_trade_with_itself() -> None:
    engine = stp_book()
    events = when(engine, limit("t", BUY, 100, 2, client="alice", stp=STP.NONE))
    assert [t.maker_order_id for t in of(events, Trade)] == ["own"]


def test_stp_cancel_taker_is_the_default_and_leaves_the_maker() -> None:
    engine = stp_book()
    events = when(engine, limit("t", BUY, 100, 3, client="alice"))
    assert events == [Accepted("t", TS), upd("t", BUY, CANCELLED, 100, 3, 0, reason=Reason.STP_CANCEL_TAKER)]
    assert engine.get_order("own") is not None and engine.best_ask() == (100, 4)


def test_stp_cancel_taker_after_partial_fill_keeps_the_fills() -> None:
    engine = book(limit("other", SELL, 99, 1, client="bob"), limit("own", SELL, 100, 2, client="alice"))
    events = when(engine, limit("t", BUY, 100, 3, client="alice"))
    assert [t.maker_order_id for t in of(events, Trade)] == ["other"]
    assert events[-1] == upd("t", BUY, CANCELLED, 100, 3, 1, reason=Reason.STP_CANCEL_TAKER)


def test_stp_cancel_maker_cancels_own_makers_and_keeps_matching() -> None:
    engine = stp_book()
    events = when(engine, limit("t", BUY, 100, 2, client="alice", stp=STP.CANCEL_MAKER))
    assert events == [
        Accepted("t", TS),
        upd("own", SELL, CANCELLED, 100, 2, 0, reason=Reason.STP_CANCEL_MAKER),
        BookDelta(3, SELL, 100, 2, TS),
        Trade(4, 1, 100, 2, BUY, "other", "t", "t", "other", TS),
        upd("other", SELL, FILLED, 100, 2, 2, client="bob"),
        BookDelta(5, SELL, 100, 0, TS),
        upd("t", BUY, FILLED, 100, 2, 2),
    ]


def test_stp_cancel_both_cancels_the_maker_and_the_taker() -> None:
    engine = stp_book()
    events = when(engine, limit("t", BUY, 100, 2, client="alice", stp=STP.CANCEL_BOTH))
    assert events == [
        Accepted("t", TS),
        upd("own", SELL, CANCELLED, 100, 2, 0, reason=Reason.STP_CANCEL_BOTH),
        BookDelta(3, SELL, 100, 2, TS),
        upd("t", BUY, CANCELLED, 100, 2, 0, reason=Reason.STP_CANCEL_BOTH),
    ]
    assert engine.get_order("other") is not None


def test_fok_feasibility_counts_same_client_makers_like_matching_does() -> None:
    # given alice's 2 at the touch and bob's 2 behind
    # cancel_taker: the walk stops at alice's order -> 0 available -> not fillable
    engine = stp_book()
    events = when(engine, limit("f", BUY, 100, 2, client="alice", tif=TimeInForce.FOK))
    assert events[-1].reason is Reason.FOK_NOT_FILLABLE and engine.get_order("own") is not None
    # cancel_maker: alice's order is skipped, bob's 2 count -> fills, and alice's maker is cancelled
    events = when(engine, limit("f2", BUY, 100, 2, client="alice", tif=TimeInForce.FOK, stp=STP.CANCEL_MAKER))
    assert events[-1].status is FILLED and engine.get_order("own") is None
    # cancel_maker, but needing more than the others have -> nothing happens, own maker survives
    engine = stp_book()
    events = when(engine, limit("f3", BUY, 100, 3, client="alice", tif=TimeInForce.FOK, stp=STP.CANCEL_MAKER))
    assert len(events) == 2 and engine.get_order("own") is not None


# ---------------------------------------------------------------------------
# cancel
# ---------------------------------------------------------------------------


def test_cancel_removes_the_remaining_quantity() -> None:
    engine = book(limit("s", SELL, 100, 5), limit("b", BUY, 100, 2, client="bob"))  # s is 2/5 filled
    events = when(engine, Cancel("s", TS))
    assert events == [
        Accepted("s", TS),
        upd("s", SELL, CANCELLED, 100, 5, 2, reason=Reason.CANCELLED_BY_USER),
        BookDelta(4, SELL, 100, 0, TS),
    ]
    assert events[1].remaining_lots == 3


def test_cancel_of_unknown_or_finished_orders_is_a_reject_code() -> None:
    engine = book(limit("s", SELL, 100, 1), limit("b", BUY, 100, 1, client="bob"))  # both filled
    assert when(engine, Cancel("nope", TS)) == [Rejected("nope", Reason.UNKNOWN_ORDER, TS)]
    assert when(engine, Cancel("s", TS)) == [Rejected("s", Reason.UNKNOWN_ORDER, TS)]
    engine = book(limit("x", SELL, 100, 1))
    when(engine, Cancel("x", TS))
    assert when(engine, Cancel("x", TS)) == [Rejected("x", Reason.UNKNOWN_ORDER, TS)]


# ---------------------------------------------------------------------------
# modify
# ---------------------------------------------------------------------------


def queue_at_100(engine: Engine) -> list[str]:
    return [o["order_id"] for o in engine.snapshot()["orders"] if o["price_ticks"] == 100]


def test_modify_quantity_down_keeps_time_priority() -> None:
    engine = book(limit("a", SELL, 100, 5), limit("b", SELL, 100, 5))
    events = when(engine, Modify("a", qty_lots=3, ts_ns=TS))
    assert events == [Accepted("a", TS), upd("a", SELL, OPEN, 100, 3, 0, priority=1), BookDelta(3, SELL, 100, 8, TS)]
    assert queue_at_100(engine) == ["a", "b"]


def test_modify_quantity_up_loses_time_priority() -> None:
    engine = book(limit("a", SELL, 100, 5), limit("b", SELL, 100, 5))
    events = when(engine, Modify("a", qty_lots=6, ts_ns=TS))
    assert events == [Accepted("a", TS), upd("a", SELL, OPEN, 100, 6, 0, priority=3), BookDelta(3, SELL, 100, 11, TS)]
    assert queue_at_100(engine) == ["b", "a"]


def test_modify_price_loses_time_priority() -> None:
    engine = book(limit("a", SELL, 101, 5), limit("b", SELL, 100, 5))
    events = when(engine, Modify("a", price_ticks=100, ts_ns=TS))
    assert events == [
        Accepted("a", TS),
        BookDelta(3, SELL, 101, 0, TS),
        upd("a", SELL, OPEN, 100, 5, 0, priority=3),
        BookDelta(4, SELL, 100, 10, TS),
    ]
    assert queue_at_100(engine) == ["b", "a"]


def test_modify_total_at_or_below_filled_is_rejected() -> None:
    engine = book(limit("s", SELL, 100, 5), limit("b", BUY, 100, 2, client="bob"))  # s filled 2
    for qty in (2, 1):
        assert when(engine, Modify("s", qty_lots=qty, ts_ns=TS)) == [
            Rejected("s", Reason.MODIFY_QUANTITY_AT_OR_BELOW_FILLED, TS)
        ]
    # a total of 3 leaves 1 remaining, still partially filled, priority kept
    events = when(engine, Modify("s", qty_lots=3, ts_ns=TS))
    assert events[1] == upd("s", SELL, PARTIAL, 100, 3, 2, priority=1)


def test_modify_refusals_leave_the_order_unchanged() -> None:
    engine = book(limit("s", SELL, 100, 5), limit("b", BUY, 90, 5, client="bob", post_only=True))
    before = engine.snapshot()
    assert when(engine, Modify("s", ts_ns=TS)) == [Rejected("s", Reason.MODIFY_NOTHING, TS)]
    assert when(engine, Modify("zz", 5, None, TS)) == [Rejected("zz", Reason.UNKNOWN_ORDER, TS)]
    assert when(engine, Modify("s", 0, None, TS))[0].reason is Reason.INVALID_PRICE
    assert when(engine, Modify("s", 10_001, None, TS))[0].reason is Reason.PRICE_TOO_HIGH
    assert when(engine, Modify("s", None, 0, TS))[0].reason is Reason.INVALID_QUANTITY
    assert when(engine, Modify("s", None, 1001, TS))[0].reason is Reason.QUANTITY_TOO_LARGE
    # a post-only order may not be moved to a crossing price
    assert when(engine, Modify("b", 100, None, TS)) == [Rejected("b", Reason.POST_ONLY_WOULD_TAKE, TS)]
    assert engine.snapshot() == before


def test_modify_to_a_crossing_price_matches_at_once() -> None:
    # given a bid of 5 at 98 and an ask of 2 at 100
    engine = book(limit("b", BUY, 98, 5), limit("s", SELL, 100, 2, client="bob"))
    # when the bid is moved up to 100
    events = when(engine, Modify("b", 100, None, TS))
    # then it leaves 98, trades 2 at 100 as the aggressor, and rests the rest at 100
    assert events == [
        Accepted("b", TS),
        BookDelta(3, BUY, 98, 0, TS),
        Trade(4, 1, 100, 2, BUY, "s", "b", "b", "s", TS),
        upd("s", SELL, FILLED, 100, 2, 2, client="bob"),
        BookDelta(5, SELL, 100, 0, TS),
        upd("b", BUY, PARTIAL, 100, 5, 2, priority=3),
        BookDelta(6, BUY, 100, 3, TS),
    ]


def test_modify_that_fills_completely_removes_the_order() -> None:
    engine = book(limit("b", BUY, 98, 2), limit("s", SELL, 100, 5, client="bob"))
    events = when(engine, Modify("b", 100, None, TS))
    assert events[-1] == upd("b", BUY, FILLED, 100, 2, 2)
    assert engine.get_order("b") is None and engine.best_ask() == (100, 3)


# ---------------------------------------------------------------------------
# rejections on place, sequencing, determinism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd, reason",
    [
        (Place("x", "c", BUY, OrderType.LIMIT, None, 1), Reason.PRICE_REQUIRED),
        (Place("x", "c", BUY, OrderType.MARKET, 100, 1), Reason.PRICE_NOT_ALLOWED),
        (Place("x", "c", BUY, OrderType.LIMIT, 0, 1), Reason.INVALID_PRICE),
        (Place("x", "c", BUY, OrderType.LIMIT, 10_001, 1), Reason.PRICE_TOO_HIGH),
        (Place("x", "c", BUY, OrderType.LIMIT, 100, 0), Reason.INVALID_QUANTITY),
        (Place("x", "c", BUY, OrderType.LIMIT, 100, 1001), Reason.QUANTITY_TOO_LARGE),
        (Place("x", "c", BUY, OrderType.LIMIT, 100, True), Reason.INVALID_QUANTITY),
        (Place("x", "c", BUY, OrderType.LIMIT, D("100"), 1), Reason.INVALID_PRICE),  # ticks must be int
    ],
)
def test_engine_rechecks_input_on_place(cmd: Place, reason: Reason) -> None:
    engine = book()
    assert when(engine, cmd) == [Rejected("x", reason, 0)]
    assert engine.next_priority == 1 and engine.seq == 0


def test_duplicate_order_id_of_a_resting_order_is_rejected() -> None:
    engine = book(limit("a", BUY, 100, 1))
    assert when(engine, limit("a", BUY, 99, 1)) == [Rejected("a", Reason.DUPLICATE_ORDER_ID, TS)]


def test_plain_strings_are_accepted_for_enum_fields_and_garbage_is_loud() -> None:
    engine = book()
    events = when(engine, Place("a", "c", "buy", "limit", 100, 1, "IOC", False, "none", TS))  # type: ignore[arg-type]
    assert events[-1].reason is Reason.IOC_REMAINDER and events[-1].side is BUY
    with pytest.raises(ValueError):
        engine.place(Place("b", "c", "sideways", "limit", 100, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.apply("not a command")  # type: ignore[arg-type]


def test_seq_is_gap_free_across_trades_and_deltas_from_the_constructor_value() -> None:
    engine = Engine(SPEC, seq=41, next_trade_id=900, next_priority=77)
    events = []
    for cmd in (
        limit("s1", SELL, 100, 1), limit("s2", SELL, 101, 1), limit("s3", SELL, 102, 1),
        market("m", BUY, 2), Cancel("s3", TS), limit("b", BUY, 90, 3), Modify("b", 95, 2, TS),
    ):
        events += when(engine, cmd)
    seqs = [e.seq for e in events if type(e) in (Trade, BookDelta)]
    assert seqs == list(range(42, 42 + len(seqs)))
    assert [t.trade_id for t in of(events, Trade)] == [900, 901]
    assert engine.seq == seqs[-1] and engine.next_trade_id == 902
    assert engine.get_order("b").priority == 77 + 5  # 5 accepted places drew 77..81, the modify drew 82


def test_same_commands_give_byte_identical_events() -> None:
    import json

    from matching.engine.codec import event_to_dict

    cmds = [
        limit("s1", SELL, 100, 3), limit("s2", SELL, 100, 2, client="carol"), limit("b1", BUY, 99, 4, client="bob"),
        market("m", BUY, 4), Modify("b1", 101, 6, TS), Cancel("s2", TS), limit("f", SELL, 99, 9, tif=TimeInForce.FOK),
    ]

    def run() -> bytes:
        engine = Engine(SPEC)
        return json.dumps([event_to_dict(e) for c in cmds for e in engine.apply(c)], sort_keys=True).encode()

    assert run() == run()


def test_check_invariants_catches_a_corrupted_book() -> None:
    engine = book(limit("a", BUY, 100, 5), limit("b", BUY, 100, 5), limit("c", SELL, 101, 1))
    engine._bids.levels[100].qty_lots += 1  # level total no longer the sum of its orders
    with pytest.raises(AssertionError, match="sum of orders"):
        engine.check_invariants()
    engine = book(limit("a", BUY, 100, 5), limit("b", BUY, 100, 5))
    del engine._orders["b"]  # id index out of step with the book
    with pytest.raises(AssertionError):
        engine.check_invariants()


def test_check_invariants_catches_levels_out_of_step_with_their_keys() -> None:
    engine = book(limit("a", BUY, 100, 5), limit("b", BUY, 99, 5), limit("c", SELL, 101, 1))
    ordered = engine._bids.ordered
    ordered[0], ordered[1] = ordered[1], ordered[0]  # the walk from the touch would skip a price
    with pytest.raises(AssertionError, match="ordered levels"):
        engine.check_invariants()


def test_engine_place_checks_agree_with_spec_check_order_on_a_grid_of_inputs() -> None:
    # given a spec with a min notional, and every combination of edge values
    spec = InstrumentSpec("N-USD", D("0.5"), D("0.01"), D("0.02"), D("5"), D("100"), D("2"))
    prices = [None, -1, 0, 1, 7, 8, 200, 201, True, D("3")]
    qtys = [-1, 0, 1, 2, 3, 29, 500, 501, False]
    n = 0
    for order_type in OrderType:
        for tif in TimeInForce:
            for post_only in (False, True):
                for price in prices:
                    for qty in qtys:
                        engine = Engine(spec)
                        expected = spec.check_order(order_type, price, qty, tif, post_only)
                        events = engine.place(Place(f"o{n}", "c", BUY, order_type, price, qty, tif, post_only))
                        n += 1
                        # then the engine rejects exactly when the edge would, with the same code
                        if expected is None:
                            assert type(events[0]) is Accepted, (order_type, tif, post_only, price, qty)
                        else:
                            assert events == [Rejected(f"o{n - 1}", expected, 0)], (order_type, tif, post_only, price, qty)
    assert n == 2 * 3 * 2 * len(prices) * len(qtys)
