"""One batch of commands, from the engine's events to what gets written and answered (pure).

The worker matches a batch's commands through the books' engines; this module turns each
command's events into the rows the batch's transaction writes (orders, OrderEvents, trades,
the trade aggregates: candles and positions, processed commands, the instruments' counters),
the answers (an ``OrderState`` for every new
order, the result of every cancel and modify) and the market events the feeds publish. No
database, no clock: the batch's time comes in with it. The statements that write these rows
are the store's (matching.worker.store).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from matching.contract import (
    AdminAnswer,
    AdminCommand,
    AdminOutcome,
    AllCancelled,
    CancelOrder,
    Code,
    CommandOutcome,
    Fill,
    HaltSet,
    ModifyOrder,
    OrderState,
    OrderStatus,
    Outcome,
    PlaceOrder,
    PlaceOutcome,
    Role,
    code_of,
    market_payloads,
    outcome_payloads,
    to_builtins,
)
from matching.engine.types import Cancel, InvalidNumber, Modify, OrderUpdate, Place, Reason, Rejected, Trade
from matching.loglines import Line, Shape, as_dict, plain
from matching.records import datetime_from_ns, fmt_decimal, fmt_time

from .books import Book


@dataclass(frozen=True, slots=True)
class Pending:
    """A command read from the inbox: an order stored as pending (``created_at`` is its row's),
    or a cancel/modify row (``command_id``), of an order of ``instrument_id``."""

    command: PlaceOrder | CancelOrder | ModifyOrder | AdminCommand
    instrument_id: int
    command_id: int | None = None
    created_at: dt.datetime | None = None


@dataclass(slots=True)
class Batch:
    """Everything one batch of commands changes, ready to be written and answered."""

    ts_ns: int
    when: dt.datetime
    when_iso: str
    # The final state of every order the batch touched.
    final: dict[str, tuple[Book, OrderUpdate | Rejected]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    # Inbox cancels/modifies: (command row id, result).
    commands: list[tuple[int, Code]] = field(default_factory=list)
    # Every place, in order, with the created_at of its pending row (None: it came directly).
    places: list[tuple[PlaceOrder, Book, dt.datetime | None]] = field(default_factory=list)
    fills: dict[str, list[Fill]] = field(default_factory=lambda: defaultdict(list))
    market: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    books: dict[int, Book] = field(default_factory=dict)
    # Orders that came directly (not as pending rows): INSERTed with their final state instead
    # of UPDATEd, and answered to the sender instead of by NOTIFY.
    direct: set[str] = field(default_factory=set)
    # -- operations: what the batch's commands did, for metrics and log lines after the commit,
    # and its admin commands --
    # Every cancel/modify the books were asked for: (kind, book, order id, client id, result).
    changes: list[tuple[str, Book, str, str | None, Code]] = field(default_factory=list)
    # Per book: orders that traded for the first time in this batch; (trades, lots traded).
    first_matches: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    traded: dict[int, list[int]] = field(default_factory=dict)
    # Orders the worker refused without storing them: (instrument symbol, why, order id, client).
    refused: list[tuple[str, Code, str, str]] = field(default_factory=list)
    # Inbox admin commands answered: {"id", "result", "command_seq"}; admin commands that came
    # directly and changed something, recorded as processed AdminCommand rows.
    admin_done: list[dict[str, Any]] = field(default_factory=list)
    admin_log: list[dict[str, Any]] = field(default_factory=list)
    admin_outcomes: list[AdminOutcome] = field(default_factory=list)


def new_batch(ts_ns: int) -> Batch:
    when = datetime_from_ns(ts_ns)
    return Batch(ts_ns=ts_ns, when=when, when_iso=fmt_time(when))


# --------------------------------------------------------------------------------------------
# Matching a command
# --------------------------------------------------------------------------------------------


def place(batch: Batch, book: Book, cmd: PlaceOrder, created_at: dt.datetime | None = None) -> None:
    """Match a new order (from the inbox when ``created_at`` is its pending row's)."""
    ts = batch.ts_ns
    events: list[Any]
    if book.halted:
        # Only a stored (inbox) order gets here: a direct one is refused before (not stored).
        events = [Rejected(cmd.order_id, Reason.INSTRUMENT_HALTED, ts)]
    else:
        try:
            events = book.engine.place(Place(
                order_id=cmd.order_id, client_id=cmd.client_id, side=cmd.side, order_type=cmd.type,
                price_ticks=None if cmd.price is None else book.ticks(cmd.price), qty_lots=book.lots(cmd.quantity),
                tif=cmd.time_in_force, post_only=cmd.post_only, stp=cmd.stp, ts_ns=ts))
        except InvalidNumber as exc:
            # The instrument's grid changed (admin) after the order was validated.
            events = [Rejected(cmd.order_id, exc.reason, ts)]
    batch.books[book.id] = book
    if created_at is None:
        batch.direct.add(cmd.order_id)
    batch.places.append((cmd, book, created_at))
    _collect(batch, book, events, placed=cmd)
    batch.market[book.id].extend(book.feed.events(events, {cmd.order_id: cmd.client_id}))


def command(batch: Batch, book: Book, cmd: CancelOrder | ModifyOrder) -> Code:
    """Cancel or modify an order the book holds open; the result (``ok`` or the refusal). A
    halted book refuses modifies (cancels still work)."""
    ts = batch.ts_ns
    kind = "cancel" if isinstance(cmd, CancelOrder) else "modify"
    if book.halted and kind == "modify":
        resting = book.engine.get_order(cmd.order_id)
        batch.changes.append((kind, book, cmd.order_id, None if resting is None else resting.client_id,
                              Code.INSTRUMENT_HALTED))
        return Code.INSTRUMENT_HALTED
    try:
        if isinstance(cmd, CancelOrder):
            events: list[Any] = book.engine.cancel(Cancel(order_id=cmd.order_id, ts_ns=ts))
        else:
            events = book.engine.modify(Modify(
                order_id=cmd.order_id, ts_ns=ts,
                price_ticks=None if cmd.price is None else book.ticks(cmd.price),
                qty_lots=None if cmd.quantity is None else book.lots(cmd.quantity)))
    except InvalidNumber as exc:
        events = [Rejected(cmd.order_id, exc.reason, ts)]
    batch.books[book.id] = book
    refused = _collect(batch, book, events, placed=None)
    batch.market[book.id].extend(book.feed.events(events))
    result = Code.OK if refused is None else refused
    client = next((ev.client_id for ev in events if type(ev) is OrderUpdate and ev.order_id == cmd.order_id), None)
    batch.changes.append((kind, book, cmd.order_id, client, result))
    return result


def _collect(batch: Batch, book: Book, events: list[Any], placed: PlaceOrder | None) -> Code | None:
    """One command's events as rows to write and fills to answer with; the refusal, if any.
    Prices and quantities become exact strings here (GridFormat); PostgreSQL parses them.

    The journal: every event row of a command that changed the record carries the command's
    number (the book's next ``command_seq``), and the command's own order's row is its last."""
    g, iid = book.grid, book.id
    last_trade: dict[str, int] = {}
    # Lots each order traded in this command: an order whose filled quantity is exactly that
    # traded for the first time.
    traded: dict[str, int] = {}
    refused: Code | None = None
    cseq = book.command_seq + 1
    written = len(batch.events)
    # The command's trades, folded into the instrument's aggregates once their clients are known.
    trades: list[Trade] = []
    client_of: dict[str, str] = {}
    for ev in events:
        kind = type(ev)
        if kind is OrderUpdate:
            if traded:
                # Both orders of a trade have an OrderUpdate after it among the command's events
                # (the maker's right after the trade, the taker's at the end): whose trade it is.
                client_of[ev.order_id] = ev.client_id
            batch.final[ev.order_id] = (book, ev)
            batch.events.append({
                "order_id": ev.order_id, "instrument_id": iid, "status": ev.status.value,
                "price": None if ev.price_ticks is None else g.price(ev.price_ticks), "quantity": g.qty(ev.qty_lots),
                "filled_quantity": g.qty(ev.filled_lots), "reason": None if ev.reason is None else ev.reason.value,
                "trade_id": last_trade.pop(ev.order_id, None), "command_seq": cseq})
            if traded and traded.get(ev.order_id) == ev.filled_lots:
                batch.first_matches[iid] += 1
        elif kind is Trade:
            price, qty = g.price(ev.price_ticks), g.qty(ev.qty_lots)
            batch.trades.append({
                "instrument_id": iid, "trade_id": ev.trade_id, "seq": ev.seq, "price": price, "quantity": qty,
                "aggressor_side": ev.aggressor.value, "buy_order_id": ev.buy_order_id,
                "sell_order_id": ev.sell_order_id, "maker_order_id": ev.maker_order_id,
                "taker_order_id": ev.taker_order_id})
            last_trade[ev.maker_order_id] = last_trade[ev.taker_order_id] = ev.trade_id
            traded[ev.maker_order_id] = traded.get(ev.maker_order_id, 0) + ev.qty_lots
            traded[ev.taker_order_id] = traded.get(ev.taker_order_id, 0) + ev.qty_lots
            tally = batch.traded.get(iid)
            if tally is None:
                tally = batch.traded[iid] = [0, 0]
            tally[0] += 1
            tally[1] += ev.qty_lots
            trades.append(ev)
            for oid in (ev.buy_order_id, ev.sell_order_id):
                # Only the batch's new orders are answered with their fills (the others are
                # read back whole).
                if placed is not None and oid == placed.order_id or oid in batch.fills:
                    batch.fills[oid].append(Fill(
                        trade_id=ev.trade_id, price=price, quantity=qty,
                        role=Role.MAKER if oid == ev.maker_order_id else Role.TAKER, seq=ev.seq,
                        executed_at=batch.when_iso))
        elif kind is Rejected:
            refused = code_of(ev.reason)
            if placed is not None:
                batch.final[ev.order_id] = (book, ev)
                batch.events.append({
                    "order_id": ev.order_id, "instrument_id": iid, "status": OrderStatus.REJECTED.value,
                    "price": placed.price, "quantity": placed.quantity, "filled_quantity": "0",
                    "reason": ev.reason.value, "trade_id": None, "command_seq": cseq})
    if placed is not None and placed.order_id not in batch.fills:
        batch.fills[placed.order_id] = []
    if len(batch.events) > written:
        book.command_seq = cseq
    if trades:
        fold = book.analytics.trade
        for ev in trades:
            fold(ev, client_of[ev.buy_order_id], client_of[ev.sell_order_id])
    return refused


# --------------------------------------------------------------------------------------------
# Operations: admin commands on the books, in their turn among the orders
# --------------------------------------------------------------------------------------------


def set_halted(batch: Batch, book: Book, halted: bool) -> HaltSet:
    """Halt or resume the book. A change is a command of the instrument's journal (replay
    must know when orders were refused) and is stored with the instrument in this batch."""
    changed = book.halted is not halted
    if changed:
        book.halted = halted
        book.command_seq += 1
        batch.books[book.id] = book
    return HaltSet(instrument=book.symbol, halted=halted, changed=changed)


def cancel_all(batch: Batch, books: list[Book], client_id: str | None) -> AllCancelled:
    """Cancel every open order of these books (of ``client_id`` only, if given), each an
    ordinary cancel: from the touch outwards, bids then asks (the snapshot's order)."""
    total = 0
    by_instrument: dict[str, int] = {}
    for book in books:
        ids = [o["order_id"] for o in book.engine.snapshot()["orders"]
               if client_id is None or o["client_id"] == client_id]
        done = sum(1 for oid in ids if command(batch, book, CancelOrder(order_id=oid)) is Code.OK)
        if done:
            by_instrument[book.symbol] = done
            total += done
    return AllCancelled(cancelled=total, by_instrument=by_instrument)


def admin_done(batch: Batch, cmd: AdminCommand, answer: AdminAnswer, *, command_id: int | None,
               instrument_id: int | None, command_seq: int | None) -> None:
    """Record an admin command the batch carried out: an inbox row is marked processed with its
    answer (and NOTIFYed); a direct one that changed something gets a processed row."""
    result = to_builtins(answer)
    if command_id is not None:
        batch.admin_done.append({"id": command_id, "result": result, "command_seq": command_seq})
        batch.admin_outcomes.append(AdminOutcome(command_id=command_id, answer=answer))
    else:
        batch.admin_log.append({"kind": cmd.__struct_config__.tag, "instrument_id": instrument_id,
                                "client_id": getattr(cmd, "client_id", None), "command": to_builtins(cmd),
                                "result": result, "command_seq": command_seq})


# --------------------------------------------------------------------------------------------
# What the batch answers
# --------------------------------------------------------------------------------------------


def taken(batch: Batch) -> Iterator[tuple[str, str, str]]:
    """(order_id, client_id, idempotency_key) of every order the batch placed."""
    for cmd, _, _ in batch.places:
        yield cmd.order_id, cmd.client_id, cmd.idempotency_key


def placed_states(batch: Batch, direct: bool) -> Iterator[OrderState]:
    """Each order the batch placed (those that came directly, or those from the inbox), as it
    will stand once the batch commits, with its fills."""
    when = batch.when_iso
    for cmd, book, created_at in batch.places:
        oid = cmd.order_id
        if (created_at is None) is not direct:
            continue
        _, ev = batch.final[oid]
        g, spec = book.grid, book.spec
        reason: str | None
        if type(ev) is Rejected:
            status, reason = OrderStatus.REJECTED, ev.reason.value
            quantity = _shown(cmd.quantity, spec.lot_size)
            price = None if cmd.price is None else _shown(cmd.price, spec.tick_size)
            filled, remaining = g.qty(0), quantity
        else:
            status, reason = OrderStatus(ev.status.value), None if ev.reason is None else ev.reason.value
            quantity, filled, remaining = g.qty(ev.qty_lots), g.qty(ev.filled_lots), g.qty(ev.remaining_lots)
            price = None if ev.price_ticks is None else g.price(ev.price_ticks)
        yield OrderState(
            order_id=oid, client_id=cmd.client_id, instrument=book.symbol, side=cmd.side, type=cmd.type,
            time_in_force=cmd.time_in_force, post_only=cmd.post_only, stp=cmd.stp, price=price, quantity=quantity,
            filled_quantity=filled, remaining_quantity=remaining, status=status, reason=reason,
            idempotency_key=cmd.idempotency_key, created_at=when if created_at is None else fmt_time(created_at),
            updated_at=when, fills=batch.fills.get(oid, []))


def _shown(text: str, step: Decimal) -> str:
    """A refused order's price or quantity as the wire shows it (as sent, if it is no number)."""
    try:
        return fmt_decimal(Decimal(text), step)
    except ArithmeticError:
        return text


# The shapes of the lines order_lines makes (matching.loglines): the most frequent kinds of line.
ACCEPTED = Shape("order_id", "client_id", "instrument", "side", "type", "price", "quantity", "status",
                 "filled_quantity", "transport")
ACCEPTED_NO_PRICE = Shape("order_id", "client_id", "instrument", "side", "type", "quantity", "status",
                          "filled_quantity", "reason", "transport")
REJECTED = Shape("order_id", "client_id", "instrument", "reason", "transport")
MATCHED = Shape("order_id", "client_id", "instrument", "trade_id", "price", "quantity", "seq", "maker_order_id",
                "taker_order_id", ints=("trade_id", "seq"))
CHANGED = Shape("order_id", "client_id", "instrument")
CHANGE_REFUSED = Shape("order_id", "client_id", "instrument", "reason")


def order_lines(batch: Batch) -> list[dict[str, Any] | Line]:
    """One log line per event worth knowing about an order in this batch, once it committed:
    accepted (its state at the end of the batch) or rejected, each trade, each cancel and
    modify (or its refusal), each order refused unstored. A line is shaped (matching.loglines)
    when its client id and instrument are plain and it has all its shape's fields, else a dict
    with its "event" first and no value None."""
    lines: list[dict[str, Any] | Line] = []
    final = batch.final
    for cmd, book, _ in batch.places:
        ev = final[cmd.order_id][1]
        symbol, client = book.symbol, cmd.client_id
        shaped = plain(client) and plain(symbol)
        if type(ev) is Rejected:
            values: tuple[Any, ...] = ("order rejected", cmd.order_id, client, symbol, ev.reason.value,
                                       cmd.transport.value)
            lines.append((REJECTED, values) if shaped else as_dict((REJECTED, values)))
            continue
        grid, price, reason = book.grid, ev.price_ticks, ev.reason
        if price is not None and reason is None:  # by far the most frequent: a limit order, resting or filled
            # An enum's ``_value_`` is what its ``value`` property reads, without the property's two calls.
            values = ("order accepted", cmd.order_id, client, symbol, cmd.side._value_, cmd.type._value_,
                      grid.price(price), grid.qty(ev.qty_lots), ev.status._value_, grid.qty(ev.filled_lots),
                      cmd.transport._value_)
            lines.append((ACCEPTED, values) if shaped else as_dict((ACCEPTED, values)))
            continue
        if price is None and reason is not None and shaped:  # a market order, and why it rests no more
            lines.append((ACCEPTED_NO_PRICE, ("order accepted", cmd.order_id, client, symbol, cmd.side._value_,
                                              cmd.type._value_, grid.qty(ev.qty_lots), ev.status._value_,
                                              grid.qty(ev.filled_lots), reason._value_, cmd.transport._value_)))
            continue
        line = {"event": "order accepted", "order_id": cmd.order_id, "client_id": client,
                "instrument": symbol, "side": cmd.side.value, "type": cmd.type.value,
                "price": None if price is None else grid.price(price),
                "quantity": grid.qty(ev.qty_lots), "status": ev.status.value,
                "filled_quantity": grid.qty(ev.filled_lots),
                "reason": None if reason is None else reason.value, "transport": cmd.transport.value}
        lines.append({k: v for k, v in line.items() if v is not None})
    for symbol, code, order_id, client_id in batch.refused:
        lines.append({"event": "order rejected", "order_id": order_id, "client_id": client_id, "instrument": symbol,
                      "reason": code.value})
    for trade in batch.trades:
        taker = final.get(trade["taker_order_id"])
        taker_client = taker[1].client_id if taker is not None and type(taker[1]) is OrderUpdate else None
        symbol = batch.books[trade["instrument_id"]].symbol
        values = ("order matched", trade["taker_order_id"], taker_client, symbol, trade["trade_id"], trade["price"],
                  trade["quantity"], trade["seq"], trade["maker_order_id"], trade["taker_order_id"])
        if taker_client is not None and plain(taker_client) and plain(symbol):
            lines.append((MATCHED, values))
        else:
            lines.append({k: v for k, v in as_dict((MATCHED, values)).items() if v is not None})
    for kind, book, order_id, owner, code in batch.changes:
        symbol = book.symbol
        # A cancel's or modify's order id is the one it was sent with: plain only if it is.
        shaped = owner is not None and plain(owner) and plain(symbol) and plain(order_id, remember=False)
        if code is Code.OK:
            values = ("order cancelled" if kind == "cancel" else "order modified", order_id, owner, symbol)
            lines.append((CHANGED, values) if shaped else as_dict((CHANGED, values)))
        else:
            values = (f"{kind} refused", order_id, owner, symbol, code.value)
            lines.append((CHANGE_REFUSED, values) if shaped else as_dict((CHANGE_REFUSED, values)))
    return lines


def outcomes(batch: Batch) -> list[Outcome]:
    """The inbox's answers: each pending order as committed, each command's result."""
    out: list[Outcome] = [PlaceOutcome(order_id=state.order_id, order=state)
                          for state in placed_states(batch, direct=False)]
    out.extend(CommandOutcome(command_id=command_id, code=code) for command_id, code in batch.commands)
    out.extend(batch.admin_outcomes)
    return out


# --------------------------------------------------------------------------------------------
# What the batch writes
# --------------------------------------------------------------------------------------------


def _order_updates(batch: Batch) -> list[dict[str, Any]]:
    """The final state of every stored order the batch touched (not its direct new ones);
    ``set_terms``: the price and quantity are set too (a modify may have changed them)."""
    rows: list[dict[str, Any]] = []
    for oid, (book, ev) in batch.final.items():
        if oid in batch.direct:
            continue
        if type(ev) is Rejected:
            rows.append({"order_id": oid, "status": OrderStatus.REJECTED.value, "filled_quantity": "0",
                         "quantity": None, "price": None, "reason": ev.reason.value, "priority": None,
                         "set_terms": False})
        else:
            g = book.grid
            rows.append({"order_id": oid, "status": ev.status.value, "filled_quantity": g.qty(ev.filled_lots),
                         "quantity": g.qty(ev.qty_lots),
                         "price": None if ev.price_ticks is None else g.price(ev.price_ticks),
                         "reason": None if ev.reason is None else ev.reason.value, "priority": ev.priority,
                         "set_terms": True})
    return rows


def _new_orders(batch: Batch) -> list[dict[str, Any]]:
    """The rows of the batch's direct orders, as they stand at its end."""
    rows: list[dict[str, Any]] = []
    for cmd, book, created_at in batch.places:
        if created_at is not None:
            continue
        _, ev = batch.final[cmd.order_id]
        row = {"order_id": cmd.order_id, "client_id": cmd.client_id, "idempotency_key": cmd.idempotency_key,
               "request_hash": cmd.request_hash, "instrument_id": book.id, "side": cmd.side.value,
               "type": cmd.type.value, "time_in_force": cmd.time_in_force.value, "post_only": cmd.post_only,
               "stp": cmd.stp.value}
        if type(ev) is Rejected:
            row.update(status=OrderStatus.REJECTED.value, price=cmd.price, quantity=cmd.quantity,
                       filled_quantity="0", reason=ev.reason.value, priority=None)
        else:
            g = book.grid
            row.update(status=ev.status.value, price=None if ev.price_ticks is None else g.price(ev.price_ticks),
                       quantity=g.qty(ev.qty_lots), filled_quantity=g.qty(ev.filled_lots),
                       reason=None if ev.reason is None else ev.reason.value, priority=ev.priority)
        rows.append(row)
    return rows


def statement_params(batch: Batch) -> dict[str, Any]:
    """The parameters of the batch's statements (matching.worker.store), built as soon as it is
    matched: the instruments' counters are read from the engines now, before the next batch
    moves them, and the commit itself is then only I/O. Each row set travels as ONE JSON text:
    PostgreSQL reads it once, where a list of Python values would be sent element by element."""
    candles: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    for iid, book in batch.books.items():
        candle_rows, position_rows, events = book.analytics.flush(batch.ts_ns)
        if events:
            batch.market[iid].extend(events)
        for row in candle_rows:
            row["instrument_id"] = iid
        for row in position_rows:
            row["instrument_id"] = iid
        candles.extend(candle_rows)
        positions.extend(position_rows)
    market: list[str] = []
    for iid, events in batch.market.items():
        market.extend(market_payloads(batch.books[iid].symbol, events))
    return {
        "when": batch.when,
        "orders": orjson.dumps(_order_updates(batch)).decode(),
        "new_orders": orjson.dumps(_new_orders(batch)).decode(),
        "direct_count": len(batch.direct),
        "events": orjson.dumps(batch.events).decode(),
        "trades": orjson.dumps(batch.trades).decode(),
        "candles": orjson.dumps(candles).decode(),
        "positions": orjson.dumps(positions).decode(),
        "commands": orjson.dumps([{"id": i, "result": code.value} for i, code in batch.commands]).decode(),
        "instruments": orjson.dumps([{"id": b.id, "last_seq": b.engine.seq, "last_trade_id": b.engine.next_trade_id - 1,
                                      "last_command_seq": b.command_seq, "halted": b.halted}
                                     for b in batch.books.values()]).decode(),
        "admin_done": orjson.dumps(batch.admin_done).decode(),
        "admin_log": orjson.dumps(batch.admin_log).decode(),
        "outcomes": orjson.dumps(outcome_payloads(outcomes(batch))).decode(),
        "market": orjson.dumps(market).decode(),
    }
