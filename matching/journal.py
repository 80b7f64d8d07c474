"""The journal: the stored commands of an instrument, in the order the worker processed them,
and their replay through a fresh engine.

Every command that changed the record has a number, the instrument's ``command_seq`` (drawn by
the worker, stored with the instrument as ``last_command_seq``): each OrderEvent a command
caused carries it, and its own order's event is its last. That, with the order rows' fixed
terms (client, side, type, time in force, post-only, STP), is the whole journal:

- the first command of an order is its place, at the price and quantity of its own event;
- a command whose own event is ``cancelled`` with ``cancelled_by_user`` is a cancel;
- any other is a modify to its own event's price and total quantity;
- a halt or resume is an AdminCommand row with its number (nothing else records it).

Replaying the commands through the worker's own batch functions (matching.worker.batch) gives
every event row, every trade and every final order state again, which are compared with the
stored ones, field by field, as the wire formats them. Priorities are not compared: they only
order the queue (the trades prove the order), and a restart draws them afresh.

Pure: SQL text and the replay; the caller reads the rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from matching.contract import CancelOrder, ModifyOrder, PlaceOrder, Transport
from matching.engine.engine import Engine
from matching.engine.types import STP, InstrumentSpec, OrderType, Side, TimeInForce
from matching.records import EPOCH, fmt_decimal, fmt_time
from matching.worker import batch as batches
from matching.worker.books import Book, NoAggregates, book_of

EVENTS_SQL: Final = (
    "SELECT order_id, status, price, quantity, filled_quantity, reason, trade_id, created_at, command_seq "
    "FROM orders_orderevent WHERE instrument_id = %(instrument_id)s AND command_seq > %(after)s "
    "AND command_seq <= %(to)s ORDER BY command_seq, id")
ORDERS_SQL: Final = (
    "SELECT order_id, client_id, side, type, time_in_force, post_only, stp, status, price, quantity, "
    "filled_quantity, reason, updated_at FROM orders_order WHERE instrument_id = %(instrument_id)s")
TRADES_SQL: Final = (
    "SELECT trade_id, seq, price, quantity, aggressor_side, buy_order_id, sell_order_id, maker_order_id, "
    "taker_order_id, executed_at FROM orders_trade WHERE instrument_id = %(instrument_id)s "
    "AND trade_id >= %(from_trade)s ORDER BY trade_id")
HALTS_SQL: Final = (
    "SELECT command_seq, (command->>'halted')::bool FROM orders_admincommand "
    "WHERE instrument_id = %(instrument_id)s AND kind = 'set_halted' AND processed AND command_seq IS NOT NULL "
    "AND command_seq <= %(to)s ORDER BY command_seq")
EVENT_FIELDS: Final = ("order_id", "status", "price", "quantity", "filled_quantity", "reason", "trade_id",
                       "command_seq")
TRADE_FIELDS: Final = ("trade_id", "seq", "price", "quantity", "aggressor_side", "buy_order_id", "sell_order_id",
                       "maker_order_id", "taker_order_id", "executed_at")
STATE_FIELDS: Final = ("status", "price", "quantity", "filled_quantity", "reason", "updated_at")


class _NoFeed:
    """Replay publishes nothing."""

    def events(self, events: Iterable[Any], client_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return []

    def snapshot(self, ts_ns: int, depth: int = 5) -> dict[str, Any]:
        return {}


def _no_feed(spec: InstrumentSpec, levels: list[tuple[str, int, int]], seq: int) -> _NoFeed:
    return _NoFeed()


@dataclass(slots=True)
class Start:
    """Where a replay starts: a fresh engine (the default), or a restored snapshot with its
    journal position and the instrument's halted state then."""

    engine: Engine | None = None
    command_seq: int = 0
    halted: bool = False


@dataclass(slots=True)
class Replayed:
    book: Book
    commands: int = 0
    trades: int = 0
    differences: list[str] = field(default_factory=list)
    states: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def command_seq(self) -> int:
        return self.book.command_seq


class _Differences:
    def __init__(self, out: list[str], limit: int) -> None:
        self.out = out
        self.limit = limit
        self.more = 0

    def add(self, text: str) -> None:
        if len(self.out) < self.limit:
            self.out.append(text)
        else:
            self.more += 1


def _shown(value: Any, step: Decimal) -> str | None:
    if value is None:
        return None
    return fmt_decimal(value if isinstance(value, Decimal) else Decimal(str(value)), step)


def _ts_ns(when: dt.datetime) -> int:
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def replay(spec: InstrumentSpec, instrument: dict[str, Any], *, events: Sequence[Sequence[Any]],
           orders: Sequence[Sequence[Any]], trades: Sequence[Sequence[Any]], halts: Sequence[Sequence[Any]],
           start: Start | None = None, to_seq: int | None = None, compare_final: bool = True,
           max_differences: int = 50) -> Replayed:
    """Replay the journal (rows of EVENTS_SQL, ORDERS_SQL, TRADES_SQL and HALTS_SQL, read in
    one snapshot of the database) and compare what it produces with what is stored.
    ``compare_final``: also compare each order's final state with its row (a full replay of
    everything stored); otherwise the events up to ``to_seq`` are the reference."""
    start = start or Start()
    engine = start.engine if start.engine is not None else Engine(spec)
    first_trade = engine.next_trade_id
    info = {**instrument, "halted": start.halted, "last_command_seq": start.command_seq}
    book = book_of(info, engine, _no_feed, NoAggregates)
    result = Replayed(book)
    diff = _Differences(result.differences, max_differences)
    tick, lot = spec.tick_size, spec.lot_size

    def event_row(order_id: Any, status: str, price: Any, quantity: Any, filled: Any, reason: Any,
                  trade_id: Any, command_seq: Any) -> tuple[Any, ...]:
        return (str(order_id), status, _shown(price, tick), _shown(quantity, lot), _shown(filled, lot), reason,
                trade_id, command_seq)

    terms = {str(r[0]): r for r in orders}
    by_command: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    when_of: dict[int, dt.datetime] = {}
    for oid, status, price, qty, filled, reason, trade_id, created_at, cseq in events:
        by_command[cseq].append(event_row(oid, status, price, qty, filled, reason, trade_id, cseq))
        when_of[cseq] = created_at
    halt_at = {int(cseq): bool(halted) for cseq, halted in halts if cseq > start.command_seq}
    last = max([*by_command, *halt_at, start.command_seq])
    if to_seq is not None:
        last = min(last, to_seq)
    seen: set[str] = set()
    if start.engine is not None:
        seen.update(o["order_id"] for o in start.engine.snapshot()["orders"])
    stored_trades = [(r[0], r[1], _shown(r[2], tick), _shown(r[3], lot), r[4], str(r[5]), str(r[6]), str(r[7]),
                      str(r[8]), fmt_time(r[9])) for r in trades]
    replayed_trades: list[tuple[Any, ...]] = []

    for cseq in range(start.command_seq + 1, last + 1):
        if cseq in halt_at:
            batches.set_halted(batches.new_batch(0), book, halt_at[cseq])
            book.command_seq = cseq
            result.commands += 1
            continue
        stored = by_command.get(cseq)
        if not stored:
            diff.add(f"command {cseq}: missing from the journal (no event carries it)")
            book.command_seq = cseq  # go on with the next; everything after may differ
            continue
        own = stored[-1]
        oid = own[0]
        term = terms.get(oid)
        if term is None:
            diff.add(f"command {cseq}: its order {oid} is not on record")
            book.command_seq = cseq
            continue
        _, client_id, side, otype, tif, post_only, stp = term[:7]
        run = batches.new_batch(_ts_ns(when_of[cseq]))
        if oid not in seen:
            seen.add(oid)
            batches.place(run, book, PlaceOrder(
                order_id=oid, client_id=client_id, idempotency_key="", request_hash="", instrument_id=book.id,
                side=Side(side), type=OrderType(otype), time_in_force=TimeInForce(tif), post_only=post_only,
                stp=STP(stp), price=own[2], quantity=own[3] or "0", transport=Transport.LOCAL))
        elif own[1] == "cancelled" and own[5] == "cancelled_by_user":
            batches.command(run, book, CancelOrder(order_id=oid))
        else:
            batches.command(run, book, ModifyOrder(order_id=oid, price=own[2], quantity=own[3]))
        result.commands += 1
        produced = [event_row(e["order_id"], e["status"], e["price"], e["quantity"], e["filled_quantity"],
                              e["reason"], e["trade_id"], e["command_seq"]) for e in run.events]
        if produced != stored:
            diff.add(f"command {cseq} ({oid}): stored events {_rows(stored)} but the replay gives {_rows(produced)}")
        if book.command_seq != cseq:
            # The replay refused a command the record says changed something (or the reverse).
            book.command_seq = cseq
        when = fmt_time(run.when)
        for t in run.trades:
            replayed_trades.append((t["trade_id"], t["seq"], _shown(t["price"], tick), _shown(t["quantity"], lot),
                                    t["aggressor_side"], t["buy_order_id"], t["sell_order_id"], t["maker_order_id"],
                                    t["taker_order_id"], when))
        for e in produced:
            result.states[e[0]] = (e[1], e[2], e[3], e[4], e[5], when)

    result.trades = len(replayed_trades)
    produced_upto = book.engine.next_trade_id
    stored_upto = [t for t in stored_trades if first_trade <= t[0] and (to_seq is None or t[0] < produced_upto)]
    for want, got in zip(stored_upto, replayed_trades):
        if want != got:
            diff.add(f"trade {want[0]}: stored {dict(zip(TRADE_FIELDS, want))} but the replay gives "
                     f"{dict(zip(TRADE_FIELDS, got))}")
    if len(stored_upto) != len(replayed_trades):
        diff.add(f"{len(stored_upto)} trades stored but the replay gives {len(replayed_trades)}")
    if compare_final:
        for oid, state in result.states.items():
            row = terms[oid]
            stored_state = (row[7], _shown(row[8], tick), _shown(row[9], lot), _shown(row[10], lot), row[11],
                            fmt_time(row[12]))
            if stored_state != state:
                diff.add(f"order {oid}: stored {dict(zip(STATE_FIELDS, stored_state))} but the replay gives "
                         f"{dict(zip(STATE_FIELDS, state))}")
        if start.engine is None:
            unjournaled = [oid for oid, row in terms.items() if oid not in seen and row[7] != "pending"]
            for oid in unjournaled[:5]:
                diff.add(f"order {oid} ({terms[oid][7]}) has no journal (stored before it was kept?)")
    if diff.more:
        result.differences.append(f"... and {diff.more} more difference(s)")
    return result


def _rows(rows: list[tuple[Any, ...]]) -> str:
    return "[" + "; ".join(", ".join(f"{k}={v}" for k, v in zip(EVENT_FIELDS, r)) for r in rows) + "]"


def book_orders(engine: Engine) -> list[tuple[Any, ...]]:
    """A book's resting orders in queue order (bids from the touch, then asks), without their
    priority numbers: what two rebuilds of the same book must agree on."""
    return [(o["order_id"], o["client_id"], o["side"], o["price_ticks"], o["qty_lots"], o["filled_lots"], o["stp"],
             o["post_only"]) for o in engine.snapshot()["orders"]]


def compare_books(a: Engine, b: Engine, a_name: str, b_name: str, limit: int = 10) -> list[str]:
    """How two books of one instrument differ: counters and resting orders in queue order."""
    out: list[str] = []
    if a.seq != b.seq:
        out.append(f"seq: {a_name} {a.seq}, {b_name} {b.seq}")
    if a.next_trade_id != b.next_trade_id:
        out.append(f"next trade id: {a_name} {a.next_trade_id}, {b_name} {b.next_trade_id}")
    left, right = book_orders(a), book_orders(b)
    if left != right:
        only_a = set(left) - set(right)
        only_b = set(right) - set(left)
        out.append(f"resting orders: {a_name} has {len(left)}, {b_name} {len(right)}; "
                   f"{len(only_a)} only in {a_name}, {len(only_b)} only in {b_name}")
        for row in sorted(only_a)[:limit]:
            out.append(f"  only in {a_name}: {row}")
        for row in sorted(only_b)[:limit]:
            out.append(f"  only in {b_name}: {row}")
        if not only_a and not only_b:
            out.append("  same orders, in a different queue order")
    return out
