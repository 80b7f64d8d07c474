"""Snapshot -> restore -> continue is indistinguishable from never having snapshotted;
snapshot + book deltas == later book (what a feed client relies on); the codec is canonical."""

from __future__ import annotations

import json
from decimal import Decimal as D
from random import Random

import pytest

from matching.engine.codec import event_to_dict, snapshot_dumps, snapshot_loads
from matching.engine.engine import Engine
from matching.engine.types import (
    STP,
    BookDelta,
    InstrumentSpec,
    OrderType,
    Place,
    Reason,
    Side,
    TimeInForce,
    Trade,
)
from tests.matching.reference import Reference, make_stream

SPEC = InstrumentSpec("TEST-USD", D("1"), D("1"), D("1"), D("1000"), D("10000"))


def encode(events: list) -> bytes:
    return json.dumps([event_to_dict(e) for e in events], sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("seed", range(200))
def test_restore_then_continue_yields_exactly_the_events_of_never_snapshotting(seed: int) -> None:
    # given a seeded stream, split at a random point
    spec, gen, counters = make_stream(seed)
    ref = Reference(spec, **counters)  # steers the generator towards live ids
    cmds = []
    for _ in range(160):
        cmd = gen.next([o.order_id for o in ref.book])
        ref.apply(cmd)
        cmds.append(cmd)
    split = Random(seed).randrange(len(cmds))
    straight = Engine(spec, **counters)
    for cmd in cmds[:split]:
        straight.apply(cmd)

    # when the book is snapshotted, serialized, its order rows shuffled (the
    # worker reads them from PostgreSQL in no particular order) and restored
    snap = snapshot_loads(snapshot_dumps(straight.snapshot()))
    Random(seed).shuffle(snap["orders"])
    restored = Engine.restore(spec, snap)
    restored.check_invariants()
    assert snapshot_dumps(restored.snapshot()) == snapshot_dumps(straight.snapshot())

    # then both engines emit byte-identical events for the rest of the stream
    for i, cmd in enumerate(cmds[split:]):
        assert encode(restored.apply(cmd)) == encode(straight.apply(cmd)), f"seed={seed} op={split + i}"
    assert snapshot_dumps(restored.snapshot()) == snapshot_dumps(straight.snapshot())


@pytest.mark.parametrize("seed", range(60))
def test_snapshot_plus_book_deltas_equals_the_later_book(seed: int) -> None:
    # given a feed client that took the depth at some seq
    spec, gen, counters = make_stream(seed)
    engine = Engine(spec, **counters)
    ref = Reference(spec, **counters)
    warmup = Random(seed).randrange(60)
    for _ in range(warmup):
        cmd = gen.next([o.order_id for o in ref.book])
        ref.apply(cmd)
        engine.apply(cmd)
    depth = engine.depth(10_000)
    client = {("buy", lvl.price_ticks): lvl.qty_lots for lvl in depth.bids}
    client.update({("sell", lvl.price_ticks): lvl.qty_lots for lvl in depth.asks})
    last_seq = engine.seq
    # when it applies every BookDelta in seq order, checking for gaps
    for _ in range(150):
        cmd = gen.next([o.order_id for o in ref.book])
        ref.apply(cmd)
        for ev in engine.apply(cmd):
            if type(ev) in (Trade, BookDelta):
                assert ev.seq == last_seq + 1, "gap in the feed"
                last_seq = ev.seq
            if type(ev) is BookDelta:
                if ev.qty_lots:
                    client[(ev.side.value, ev.price_ticks)] = ev.qty_lots
                else:
                    client.pop((ev.side.value, ev.price_ticks), None)
        # then its book equals the engine's after every command
        depth = engine.depth(10_000)
        now = {("buy", lvl.price_ticks): lvl.qty_lots for lvl in depth.bids}
        now.update({("sell", lvl.price_ticks): lvl.qty_lots for lvl in depth.asks})
        assert client == now


def test_snapshot_format_and_order() -> None:
    engine = Engine(SPEC, seq=5, next_trade_id=3, next_priority=10)
    for oid, side, price in [("b1", "buy", 99), ("a1", "sell", 102), ("b2", "buy", 100), ("a2", "sell", 101), ("b3", "buy", 99)]:
        engine.place(Place(oid, "c", Side(side), OrderType.LIMIT, price, 2, stp=STP.CANCEL_MAKER, post_only=oid == "b3"))
    snap = engine.snapshot()
    assert {k: v for k, v in snap.items() if k != "orders"} == {
        "version": 1, "symbol": "TEST-USD", "seq": 10, "next_trade_id": 3, "next_priority": 15,
    }
    assert [o["order_id"] for o in snap["orders"]] == ["b2", "b1", "b3", "a2", "a1"]
    assert snap["orders"][2] == {
        "order_id": "b3", "client_id": "c", "side": "buy", "price_ticks": 99, "qty_lots": 2,
        "filled_lots": 0, "priority": 14, "stp": "cancel_maker", "post_only": True,
    }
    assert snapshot_dumps(snap) == json.dumps(snap, sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in snapshot_dumps(snap)


def valid_snapshot() -> dict:
    return {
        "version": 1, "symbol": "TEST-USD", "seq": 3, "next_trade_id": 1, "next_priority": 5,
        "orders": [
            {"order_id": "a", "client_id": "c", "side": "sell", "price_ticks": 101, "qty_lots": 3,
             "filled_lots": 1, "priority": 4, "stp": "none", "post_only": False},
            {"order_id": "b", "client_id": "c", "side": "sell", "price_ticks": 101, "qty_lots": 3,
             "filled_lots": 0, "priority": 2, "stp": "cancel_taker", "post_only": False},
            {"order_id": "c", "client_id": "d", "side": "buy", "price_ticks": 100, "qty_lots": 1,
             "filled_lots": 0, "priority": 1, "stp": "cancel_both", "post_only": True},
        ],
    }


def test_restore_rebuilds_fifo_from_priority_not_from_row_order() -> None:
    engine = Engine.restore(SPEC, valid_snapshot())
    engine.check_invariants()
    assert [o["order_id"] for o in engine.snapshot()["orders"]] == ["c", "b", "a"]
    assert engine.best_ask() == (101, 5) and engine.get_order("a").remaining_lots == 2
    # the restored counters continue where the snapshot left off
    events = engine.place(Place("t", "z", Side.BUY, OrderType.LIMIT, 101, 5))
    trades = [e for e in events if type(e) is Trade]
    assert [t.maker_order_id for t in trades] == ["b", "a"] and trades[0].seq == 4 and trades[0].trade_id == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(version=2),
        lambda s: s.update(symbol="OTHER"),
        lambda s: s["orders"][0].update(order_id="b"),  # duplicate id
        lambda s: s["orders"][0].update(priority=2),  # duplicate priority
        lambda s: s["orders"][0].update(priority=5),  # not below next_priority
        lambda s: s["orders"][0].update(filled_lots=3),  # nothing left
        lambda s: s["orders"][0].update(qty_lots="3"),  # not an int
        lambda s: s["orders"][2].update(price_ticks=101),  # crossed book
        lambda s: s["orders"][2].update(side="up"),
        lambda s: s["orders"][2].update(stp="sometimes"),
    ],
)
def test_restore_refuses_a_malformed_snapshot(mutate) -> None:
    snap = valid_snapshot()
    mutate(snap)
    with pytest.raises(ValueError):
        Engine.restore(SPEC, snap)


def test_event_to_dict_is_json_ready_with_enum_values() -> None:
    engine = Engine(SPEC)
    engine.place(Place("s", "c1", Side.SELL, OrderType.LIMIT, 100, 2))
    events = engine.place(Place("b", "c2", Side.BUY, OrderType.LIMIT, 100, 3, TimeInForce.IOC))
    dicts = [event_to_dict(e) for e in events]
    assert dicts[1] == {
        "type": "Trade", "seq": 2, "trade_id": 1, "price_ticks": 100, "qty_lots": 2, "aggressor": "buy",
        "maker_order_id": "s", "taker_order_id": "b", "buy_order_id": "b", "sell_order_id": "s", "ts_ns": 0,
    }
    assert dicts[-1]["type"] == "OrderUpdate" and dicts[-1]["status"] == "cancelled"
    assert dicts[-1]["reason"] == Reason.IOC_REMAINDER.value == "ioc_remainder"
    assert json.loads(json.dumps(dicts)) == dicts
