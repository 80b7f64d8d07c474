"""matching/worker/batch.py without a database: a batch's commands become exactly the rows it
writes, the answers it gives and the market events it publishes."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson

from marketdata.analytics import InstrumentAnalytics
from marketdata.feed import FeedBuilder
from matching.contract import (
    CancelOrder,
    Code,
    CommandOutcome,
    ModifyOrder,
    OrderStatus,
    PlaceOrder,
    PlaceOutcome,
    Role,
    decode_outcomes,
)
from matching.engine.engine import Engine
from matching.engine.types import STP, InstrumentSpec, OrderType, Side, TimeInForce
from matching.loglines import as_dict
from matching.worker import batch
from matching.worker.books import Book, book_of

TS = 1_764_676_800_000_000_000  # 2025-12-02T12:00:00Z
SPEC = InstrumentSpec("TST-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                      Decimal("1000000"))


def book() -> Book:
    instrument = {"id": 7, "symbol": "TST-USD", "tick_size": SPEC.tick_size, "lot_size": SPEC.lot_size,
                  "min_qty": SPEC.min_qty, "max_qty": SPEC.max_qty, "max_price": SPEC.max_price, "min_notional": None}
    return book_of(instrument, Engine(SPEC), FeedBuilder, InstrumentAnalytics)


def order(oid: str, side: Side, price: str | None, qty: str, client: str = "alice", **extra: Any) -> PlaceOrder:
    return PlaceOrder(order_id=oid, client_id=client, idempotency_key=f"k-{oid}", request_hash="h" * 64,
                      instrument_id=7, side=side, type=OrderType.LIMIT if price else OrderType.MARKET,
                      time_in_force=extra.pop("tif", TimeInForce.GTC), post_only=False, stp=STP.CANCEL_TAKER,
                      price=price, quantity=qty, **extra)


def test_a_direct_order_that_rests_is_one_new_row_one_event_and_its_answer() -> None:
    b = book()
    # given an empty book, when a direct limit order arrives
    run = batch.new_batch(TS)
    batch.place(run, b, order("00000000-0000-7000-8000-000000000001", Side.BUY, "100.50", "0.25"))
    # then it is one new order row with its final state, and one OrderEvent, and no trade
    params = batch.statement_params(run)
    (row,) = orjson.loads(params["new_orders"])
    assert (row["status"], row["price"], row["quantity"], row["filled_quantity"], row["priority"]) == \
        ("open", "100.50", "0.2500", "0.0000", 1)
    assert [e["status"] for e in orjson.loads(params["events"])] == ["open"]
    assert orjson.loads(params["trades"]) == [] and orjson.loads(params["orders"]) == []
    assert params["direct_count"] == 1 and params["when"] == dt.datetime(2025, 12, 2, 12, tzinfo=dt.UTC)
    # and its answer is the order as it will stand once the batch commits
    (state,) = batch.placed_states(run, direct=True)
    assert (state.status, state.remaining_quantity, state.created_at, state.fills) == \
        (OrderStatus.OPEN, "0.2500", "2025-12-02T12:00:00Z", [])
    # and the feed gets its book delta and a ticker
    assert [e["event"] for e in run.market[7]] == ["order_update", "book_delta", "ticker"]
    assert orjson.loads(params["instruments"]) == [{"id": 7, "last_seq": 1, "last_trade_id": 0,
                                                   "last_command_seq": 1, "halted": False}]


def test_a_crossing_order_answers_with_its_fills_and_updates_the_maker_it_filled() -> None:
    b = book()
    first = batch.new_batch(TS)
    maker = order("00000000-0000-7000-8000-00000000000a", Side.SELL, "100.00", "1", client="bob")
    batch.place(first, b, maker, created_at=dt.datetime(2025, 12, 2, 11, 59, tzinfo=dt.UTC))  # from the inbox
    # when a later batch crosses it
    second = batch.new_batch(TS + 1_000)
    batch.place(second, b, order("00000000-0000-7000-8000-00000000000b", Side.BUY, "101.00", "0.4"))
    params = batch.statement_params(second)
    # then the taker is answered filled at the maker's price, with its fill as taker
    (taker,) = batch.placed_states(second, direct=True)
    assert taker.status is OrderStatus.FILLED and len(taker.fills) == 1
    fill = taker.fills[0]
    assert (fill.price, fill.quantity, fill.role, fill.trade_id, fill.seq) == ("100.00", "0.4000", Role.TAKER, 1, 2)
    # the maker, a stored order, is UPDATEd to partially filled, and the trade is one row
    (update,) = orjson.loads(params["orders"])
    assert (update["order_id"], update["status"], update["filled_quantity"]) == (maker.order_id,
                                                                                  "partially_filled", "0.4000")
    (trade,) = orjson.loads(params["trades"])
    assert (trade["maker_order_id"], trade["aggressor_side"], trade["price"]) == (maker.order_id, "buy", "100.00")
    # and each OrderEvent that a trade caused names it
    assert {e["order_id"]: e["trade_id"] for e in orjson.loads(params["events"])} == \
        {maker.order_id: 1, taker.order_id: 1}
    # the first batch's inbox order is answered by NOTIFY, with its own creation time
    (outcome,) = decode_outcomes(orjson.loads(batch.statement_params(first)["outcomes"])[0])
    assert isinstance(outcome, PlaceOutcome) and outcome.order is not None
    assert outcome.order.created_at == "2025-12-02T11:59:00Z" and outcome.order.status is OrderStatus.OPEN


def test_cancels_and_modifies_give_their_result_and_an_inbox_command_its_outcome() -> None:
    b = book()
    run = batch.new_batch(TS)
    resting = order("00000000-0000-7000-8000-0000000000c1", Side.BUY, "99.00", "2")
    batch.place(run, b, resting)
    # when it is modified below its filled quantity (nothing filled: 0 is at or below), then
    # to a smaller size, then cancelled twice
    refused = batch.command(run, b, ModifyOrder(order_id=resting.order_id, quantity="0.0000"))
    smaller = batch.command(run, b, ModifyOrder(order_id=resting.order_id, quantity="1"))
    done = batch.command(run, b, CancelOrder(order_id=resting.order_id))
    again = batch.command(run, b, CancelOrder(order_id=resting.order_id))
    assert (refused, smaller, done, again) == (Code.INVALID_QUANTITY, Code.OK, Code.OK, Code.UNKNOWN_ORDER)
    run.commands.append((41, again))
    params = batch.statement_params(run)
    # then the direct order's row holds its final state, cancelled with what was left
    (row,) = orjson.loads(params["new_orders"])
    assert (row["status"], row["quantity"], row["reason"]) == ("cancelled", "1.0000", "cancelled_by_user")
    assert orjson.loads(params["commands"]) == [{"id": 41, "result": "unknown_order"}]
    outcomes = decode_outcomes(orjson.loads(params["outcomes"])[0])
    assert outcomes == [CommandOutcome(command_id=41, code=Code.UNKNOWN_ORDER)]


def test_an_order_off_a_changed_grid_is_rejected_not_matched() -> None:
    b = book()
    run = batch.new_batch(TS)
    # when an order validated on an older, finer grid arrives
    batch.place(run, b, order("00000000-0000-7000-8000-0000000000d1", Side.SELL, "100.005", "1"))
    (state,) = batch.placed_states(run, direct=True)
    # then it is stored and answered rejected with the engine's reason, and the book is untouched
    assert (state.status, state.reason, state.price) == (OrderStatus.REJECTED, "price_too_many_decimals", "100.005")
    (row,) = orjson.loads(batch.statement_params(run)["new_orders"])
    assert (row["status"], row["reason"], row["priority"]) == ("rejected", "price_too_many_decimals", None)
    assert b.engine.open_order_count == 0


def test_taken_lists_every_place_of_the_batch() -> None:
    b = book()
    run = batch.new_batch(TS)
    for n in range(3):
        batch.place(run, b, order(f"00000000-0000-7000-8000-00000000000{n}", Side.BUY, "1.00", "1", client=f"c{n}"))
    assert list(batch.taken(run)) == [(f"00000000-0000-7000-8000-00000000000{n}", f"c{n}",
                                       f"k-00000000-0000-7000-8000-00000000000{n}") for n in range(3)]


# -- operations: the journal, halts, cancel-all, what metrics and log lines are made of -------


def test_every_event_of_a_command_carries_its_journal_number_and_refusals_take_none() -> None:
    b = book()
    run = batch.new_batch(TS)
    maker = order("00000000-0000-7000-8000-0000000000e1", Side.SELL, "100.00", "1", client="bob")
    batch.place(run, b, maker)
    batch.place(run, b, order("00000000-0000-7000-8000-0000000000e2", Side.BUY, "100.00", "0.25"))
    # a refused modify changes nothing, so it takes no number
    assert batch.command(run, b, ModifyOrder(order_id=maker.order_id, quantity="0")) is Code.INVALID_QUANTITY
    batch.command(run, b, CancelOrder(order_id=maker.order_id))
    events = orjson.loads(batch.statement_params(run)["events"])
    assert [(e["order_id"][-2:], e["status"], e["command_seq"]) for e in events] == [
        ("e1", "open", 1), ("e1", "partially_filled", 2), ("e2", "filled", 2), ("e1", "cancelled", 3)]
    assert b.command_seq == 3
    # and the first trade of each order counts it as matched once
    assert dict(run.first_matches) == {7: 2} and run.traded == {7: [1, 2500]}


def test_a_halted_book_rejects_stored_orders_refuses_modifies_and_still_cancels() -> None:
    b = book()
    run = batch.new_batch(TS)
    resting = order("00000000-0000-7000-8000-0000000000f1", Side.BUY, "99.00", "1")
    batch.place(run, b, resting)
    # when the instrument is halted (a journal command of its own), twice
    assert batch.set_halted(run, b, True).changed and not batch.set_halted(run, b, True).changed
    assert b.command_seq == 2
    # then an inbox order is stored rejected, a modify is refused, a cancel works
    inbox = order("00000000-0000-7000-8000-0000000000f2", Side.BUY, "98.00", "1")
    batch.place(run, b, inbox, created_at=dt.datetime(2025, 12, 2, 11, 59, tzinfo=dt.UTC))
    assert batch.command(run, b, ModifyOrder(order_id=resting.order_id, price="97.00")) is Code.INSTRUMENT_HALTED
    assert batch.command(run, b, CancelOrder(order_id=resting.order_id)) is Code.OK
    params = batch.statement_params(run)
    (rejected,) = [u for u in orjson.loads(params["orders"]) if u["order_id"] == inbox.order_id]
    assert (rejected["status"], rejected["reason"]) == ("rejected", "instrument_halted")
    assert orjson.loads(params["instruments"])[0]["halted"] is True
    assert [(kind, code) for kind, _, _, _, code in run.changes] == [("modify", Code.INSTRUMENT_HALTED),
                                                                     ("cancel", Code.OK)]


def test_cancel_all_cancels_each_open_order_of_the_client_as_an_ordinary_cancel() -> None:
    b = book()
    run = batch.new_batch(TS)
    for n, client in enumerate(["alice", "bob", "alice"]):
        batch.place(run, b, order(f"00000000-0000-7000-8000-0000000001a{n}", Side.BUY, f"9{n}.00", "1", client=client))
    answer = batch.cancel_all(run, [b], "alice")
    assert (answer.cancelled, answer.by_instrument) == (2, {"TST-USD": 2})
    assert b.engine.open_order_count == 1
    cancels = [e for e in orjson.loads(batch.statement_params(run)["events"]) if e["status"] == "cancelled"]
    assert [(e["reason"], e["command_seq"]) for e in cancels] == [("cancelled_by_user", 4), ("cancelled_by_user", 5)]


def test_order_lines_tell_each_order_event_of_the_batch() -> None:
    b = book()
    run = batch.new_batch(TS)
    maker = order("00000000-0000-7000-8000-0000000002a1", Side.SELL, "100.00", "1", client="bob")
    batch.place(run, b, maker)
    batch.place(run, b, order("00000000-0000-7000-8000-0000000002a2", Side.BUY, None, "0.5"))
    batch.command(run, b, CancelOrder(order_id=maker.order_id))
    lines = [line if type(line) is dict else as_dict(line) for line in batch.order_lines(run)]
    assert [(line["event"], line["order_id"][-2:]) for line in lines] == [
        ("order accepted", "a1"), ("order accepted", "a2"), ("order matched", "a2"), ("order cancelled", "a1")]
    matched = lines[2]
    assert (matched["maker_order_id"], matched["price"], matched["quantity"], matched["client_id"]) == \
        (maker.order_id, "100.00", "0.5000", "alice")
    assert all(line["instrument"] == "TST-USD" for line in lines)
