"""matching/journal.py without a database: a history made by the worker's own batch functions,
stored as the worker's statements would store it, replays to exactly the same record; a changed
row, a lost command or a missing halt shows as a difference."""
from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import orjson

from marketdata.feed import FeedBuilder
from matching import journal
from matching.contract import CancelOrder, ModifyOrder, PlaceOrder
from matching.engine.engine import Engine
from matching.engine.types import STP, InstrumentSpec, OrderType, Side, TimeInForce
from matching.worker import batch
from matching.worker.books import NoAggregates, book_of

SPEC = InstrumentSpec("TST-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                      Decimal("1000000"))
INSTRUMENT = {"id": 7, "symbol": "TST-USD", "tick_size": SPEC.tick_size, "lot_size": SPEC.lot_size,
              "min_qty": SPEC.min_qty, "max_qty": SPEC.max_qty, "max_price": SPEC.max_price, "min_notional": None}
TS = 1_764_676_800_000_000_000


class Record:
    """What PostgreSQL would hold after the worker's statements (matching.worker.store)."""

    def __init__(self) -> None:
        self.events: list[list[Any]] = []
        self.orders: dict[str, list[Any]] = {}
        self.trades: list[list[Any]] = []
        self.halts: list[list[Any]] = []

    def commit(self, run: batch.Batch) -> None:
        params = batch.statement_params(run)
        for cmd, _, _ in run.places:
            self.orders[cmd.order_id] = [uuid.UUID(cmd.order_id), cmd.client_id, cmd.side.value, cmd.type.value,
                                         cmd.time_in_force.value, cmd.post_only, cmd.stp.value]
        for e in orjson.loads(params["events"]):
            self.events.append([uuid.UUID(e["order_id"]), e["status"], _d(e["price"]), _d(e["quantity"]),
                                _d(e["filled_quantity"]), e["reason"], e["trade_id"], run.when, e["command_seq"]])
            row = self.orders[e["order_id"]]
            row[7:] = [e["status"], _d(e["price"]), _d(e["quantity"]), _d(e["filled_quantity"]), e["reason"], run.when]
        for t in orjson.loads(params["trades"]):
            self.trades.append([t["trade_id"], t["seq"], _d(t["price"]), _d(t["quantity"]), t["aggressor_side"],
                                *(uuid.UUID(t[k]) for k in ("buy_order_id", "sell_order_id", "maker_order_id",
                                                             "taker_order_id")), run.when])

    def rows(self) -> dict[str, Any]:
        return {"events": sorted(self.events, key=lambda e: e[8]), "orders": list(self.orders.values()),
                "trades": self.trades, "halts": self.halts}


def _d(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def history(seed: int = 3, commands: int = 400) -> Record:
    """Random places (limit, market, IOC, FOK, post-only, STP), cancels, modifies and a halt."""
    rng = random.Random(seed)
    book = book_of(INSTRUMENT, Engine(SPEC), FeedBuilder, NoAggregates)
    record = Record()
    resting: list[str] = []
    ts = TS
    for n in range(0, commands, 10):
        ts += 1_000_000
        run = batch.new_batch(ts)
        for _ in range(10):
            roll = rng.random()
            if n == 200 and not book.halted:
                batch.set_halted(run, book, True)
                record.halts.append([book.command_seq, True])
            elif n == 250 and book.halted:
                batch.set_halted(run, book, False)
                record.halts.append([book.command_seq, False])
            elif roll < 0.6 or not resting:
                oid = str(uuid.UUID(int=rng.getrandbits(128)))
                side = rng.choice([Side.BUY, Side.SELL])
                market = rng.random() < 0.1
                price = None if market else f"{100 + rng.randint(-5, 5) * (1 if side is Side.SELL else -1)}.00"
                tif = rng.choice([TimeInForce.GTC] * 6 + [TimeInForce.IOC, TimeInForce.FOK])
                batch.place(run, book, PlaceOrder(
                    order_id=oid, client_id=f"c{rng.randint(0, 4)}", idempotency_key=oid, request_hash="h",
                    instrument_id=7, side=side, type=OrderType.MARKET if market else OrderType.LIMIT,
                    time_in_force=tif, post_only=not market and tif is TimeInForce.GTC and rng.random() < 0.1,
                    stp=rng.choice(list(STP)), price=price, quantity=f"{rng.randint(1, 30) / 10}"),
                    created_at=run.when if rng.random() < 0.2 else None)
                resting.append(oid)
            elif roll < 0.8:
                batch.command(run, book, CancelOrder(order_id=resting.pop(rng.randrange(len(resting)))))
            else:
                oid = rng.choice(resting)
                batch.command(run, book, ModifyOrder(order_id=oid, price=f"{100 + rng.randint(-6, 6)}.00",
                                                     quantity=rng.choice([None, f"{rng.randint(1, 40) / 10}"])))
        record.commit(run)
    record.last = book  # type: ignore[attr-defined]
    return record


def test_a_stored_history_replays_to_exactly_the_same_events_trades_and_order_states() -> None:
    record = history()
    result = journal.replay(SPEC, INSTRUMENT, **record.rows())
    assert result.differences == []
    assert result.trades == len(record.trades) > 20
    assert result.command_seq == record.last.command_seq  # type: ignore[attr-defined]
    assert journal.compare_books(result.book.engine, record.last.engine, "replay", "live") == []  # type: ignore[attr-defined]


def test_a_changed_trade_a_changed_order_and_a_lost_command_are_differences() -> None:
    record = history()
    rows = record.rows()
    rows["trades"][5][2] += Decimal("0.01")
    assert any(d.startswith(f"trade {rows['trades'][5][0]}:") for d in journal.replay(SPEC, INSTRUMENT, **rows).differences)
    record = history()
    order = next(r for r in record.orders.values() if r[7] == "open")
    order[10] = Decimal("0.0001")  # filled, without a trade
    assert any(d.startswith(f"order {order[0]}") for d in journal.replay(SPEC, INSTRUMENT, **record.rows()).differences)
    record = history()
    rows = record.rows()
    lost = rows["events"][40][8]
    rows["events"] = [e for e in rows["events"] if e[8] != lost]
    assert f"command {lost}: missing from the journal (no event carries it)" in \
        journal.replay(SPEC, INSTRUMENT, **rows).differences


def test_without_its_halt_the_orders_refused_meanwhile_do_not_replay() -> None:
    record = history()
    rows = record.rows()
    assert any(e[5] == "instrument_halted" for e in rows["events"])
    rows["halts"] = []
    assert journal.replay(SPEC, INSTRUMENT, **rows).differences


def test_a_replay_from_a_snapshot_reaches_the_same_book_and_stops_where_asked() -> None:
    full = history()
    # given the book restored from a snapshot taken after command 120 ...
    partial = journal.replay(SPEC, INSTRUMENT, **full.rows(), to_seq=120, compare_final=False)
    assert partial.differences == [] and partial.command_seq == 120
    snapshot = partial.book.engine.snapshot()
    start = journal.Start(engine=Engine.restore(SPEC, snapshot), command_seq=120, halted=partial.book.halted)
    rows = full.rows()
    rows["events"] = [e for e in rows["events"] if e[8] > 120]
    rows["trades"] = [t for t in rows["trades"] if t[0] >= snapshot["next_trade_id"]]
    # ... the journal after it gives the book the live worker holds
    resumed = journal.replay(SPEC, INSTRUMENT, **rows, start=start)
    assert resumed.differences == []
    assert journal.compare_books(resumed.book.engine, full.last.engine, "snapshot+journal", "live") == []  # type: ignore[attr-defined]
