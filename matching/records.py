"""The record in PostgreSQL as both sides read it: the worker (to rebuild its books and answer
commands) and the web processes (GET /orders, book_check, snapshots, replay).

One of each: the instrument spec from its row, an order row (with its fills) as an
``OrderState``, the open orders of an instrument as an ``Engine``, and the exact decimal and
time formats. Pure: SQL text and conversions, no connection, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from matching.contract import Fill, OrderState, OrderStatus, Role
from matching.engine.engine import SNAPSHOT_VERSION, Engine
from matching.engine.types import InstrumentSpec, exact_steps

# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_QUANTUM: dict[Decimal, Decimal] = {}


def fmt_decimal(value: Decimal, step: Decimal) -> str:
    """A stored decimal as the wire shows it: with the step's decimals, fixed-point always
    (str() of a small Decimal would say "5E-8"). Never rounded: a value off the grid (a refused
    order's price) keeps every digit it has."""
    quantum = _QUANTUM.get(step)
    if quantum is None:
        exponent = step.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        quantum = _QUANTUM[step] = Decimal(1).scaleb(min(exponent, 0))
    shown = value.quantize(quantum)
    return format(shown if shown == value else value.normalize(), "f")


def fmt_optional(value: Decimal | None, step: Decimal) -> str | None:
    return None if value is None else fmt_decimal(value, step)


def fmt_time(value: dt.datetime) -> str:
    """ISO-8601 in UTC with a Z, as every timestamp on the wire."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def datetime_from_ns(ts_ns: int) -> dt.datetime:
    """Integer nanoseconds since the epoch (the engine's ts_ns) as a datetime, without a float."""
    return EPOCH + dt.timedelta(microseconds=ts_ns // 1000)


def iso_from_ns(ts_ns: int) -> str:
    return fmt_time(datetime_from_ns(ts_ns))


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------

INSTRUMENT_COLUMNS: Final = ("id", "symbol", "tick_size", "lot_size", "min_qty", "max_qty", "max_price",
                             "min_notional", "is_active", "last_seq", "last_trade_id", "halted", "last_command_seq")
INSTRUMENTS_SQL: Final = f"SELECT {', '.join(INSTRUMENT_COLUMNS)} FROM orders_instrument"


def spec_from_row(symbol: str, tick_size: Decimal, lot_size: Decimal, min_qty: Decimal, max_qty: Decimal,
                  max_price: Decimal, min_notional: Decimal | None) -> InstrumentSpec:
    """The engine's spec of an instrument row (NUMERIC columns carry trailing zeros: normalized)."""
    return InstrumentSpec(symbol=symbol, tick_size=tick_size.normalize(), lot_size=lot_size.normalize(),
                          min_qty=min_qty.normalize(), max_qty=max_qty.normalize(),
                          max_price=max_price.normalize(),
                          min_notional=None if min_notional is None else min_notional.normalize())


def spec_of(row: Mapping[str, Any]) -> InstrumentSpec:
    """``spec_from_row`` of a row keyed by INSTRUMENT_COLUMNS."""
    return spec_from_row(row["symbol"], row["tick_size"], row["lot_size"], row["min_qty"], row["max_qty"],
                         row["max_price"], row["min_notional"])


# --------------------------------------------------------------------------------------------
# Orders and their fills
# --------------------------------------------------------------------------------------------

ORDER_COLUMNS: Final = ("order_id", "client_id", "instrument_id", "side", "type", "time_in_force", "post_only",
                        "stp", "price", "quantity", "filled_quantity", "status", "reason", "idempotency_key",
                        "request_hash", "created_at", "updated_at")
ORDER_SELECT: Final = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders_order"
ORDERS_BY_ID_SQL: Final = f"{ORDER_SELECT} WHERE order_id = ANY(%(ids)s)"
FILL_COLUMNS: Final = ("trade_id", "price", "quantity", "seq", "executed_at", "buy_order_id", "sell_order_id",
                       "maker_order_id")
FILLS_SQL: Final = (f"SELECT {', '.join(FILL_COLUMNS)} FROM orders_trade "
                    "WHERE buy_order_id = ANY(%(ids)s) OR sell_order_id = ANY(%(ids)s) ORDER BY seq")


def order_state(row: Mapping[str, Any], symbol: str, spec: InstrumentSpec, fills: list[Fill]) -> OrderState:
    """An order row (keyed by ORDER_COLUMNS) as the contract's OrderState."""
    tick, lot = spec.tick_size, spec.lot_size
    return OrderState(
        order_id=str(row["order_id"]), client_id=row["client_id"], instrument=symbol, side=row["side"],
        type=row["type"], time_in_force=row["time_in_force"], post_only=row["post_only"], stp=row["stp"],
        price=fmt_optional(row["price"], tick), quantity=fmt_decimal(row["quantity"], lot),
        filled_quantity=fmt_decimal(row["filled_quantity"], lot),
        remaining_quantity=fmt_decimal(row["quantity"] - row["filled_quantity"], lot),
        status=OrderStatus(row["status"]), reason=row["reason"], idempotency_key=row["idempotency_key"],
        created_at=fmt_time(row["created_at"]), updated_at=fmt_time(row["updated_at"]), fills=fills)


def fills_by_order(rows: Iterable[Sequence[Any]], specs: Mapping[str, InstrumentSpec]) -> dict[str, list[Fill]]:
    """Trade rows (FILL_COLUMNS) as each order's fills, for the orders in ``specs`` (order id ->
    its instrument's spec)."""
    fills: dict[str, list[Fill]] = defaultdict(list)
    for trade_id, price, qty, seq, executed_at, buy_id, sell_id, maker_id in rows:
        for oid in (str(buy_id), str(sell_id)):
            spec = specs.get(oid)
            if spec is None:
                continue
            fills[oid].append(Fill(trade_id=trade_id, price=fmt_decimal(price, spec.tick_size),
                                   quantity=fmt_decimal(qty, spec.lot_size),
                                   role=Role.MAKER if str(maker_id) == oid else Role.TAKER, seq=seq,
                                   executed_at=fmt_time(executed_at)))
    return fills


def order_states(order_rows: Iterable[Sequence[Any]], fill_rows: Iterable[Sequence[Any]],
                 instruments: Mapping[int, tuple[str, InstrumentSpec]]) -> dict[str, OrderState]:
    """The results of ORDERS_BY_ID_SQL and FILLS_SQL as order id -> OrderState, for the orders
    whose instrument is in ``instruments`` (id -> (symbol, spec))."""
    rows = [dict(zip(ORDER_COLUMNS, r)) for r in order_rows]
    known = {str(r["order_id"]): r for r in rows if r["instrument_id"] in instruments}
    specs = {oid: instruments[r["instrument_id"]][1] for oid, r in known.items()}
    fills = fills_by_order(fill_rows, specs)
    return {oid: order_state(r, instruments[r["instrument_id"]][0], specs[oid], fills.get(oid, []))
            for oid, r in known.items()}


# --------------------------------------------------------------------------------------------
# A book from its open orders
# --------------------------------------------------------------------------------------------

# Numbers as text: a book of a million orders has a few thousand distinct prices and a few dozen
# sizes, and each distinct text is converted once (engine_from_rows), where a Decimal per value
# would be built and converted per row.
OPEN_ORDERS_SQL: Final = (
    "SELECT order_id::text, client_id, side, price::text, quantity::text, filled_quantity::text, priority, stp, "
    "post_only FROM orders_order WHERE instrument_id = %s AND status IN ('open', 'partially_filled') "
    "ORDER BY priority")
MAX_PRIORITY_SQL: Final = "SELECT coalesce(max(priority), 0) FROM orders_order WHERE instrument_id = %s"


def engine_from_rows(spec: InstrumentSpec, open_orders: Iterable[Sequence[Any]], *, last_seq: int,
                     last_trade_id: int, max_priority: int) -> Engine:
    """The book of an instrument rebuilt from its open orders (OPEN_ORDERS_SQL), its counters
    and the highest priority ever drawn (MAX_PRIORITY_SQL): what the worker does on start, and
    what book_check, book_snapshot and recovery compare against. Raises ValueError for a row
    off the grid, AssertionError for a book that breaks an invariant."""
    ticks: dict[Any, int] = {}
    lots: dict[Any, int] = {}
    filled_lots: dict[Any, int] = {}
    orders: list[dict[str, Any]] = []
    top = max_priority
    for oid, cid, side, price, qty, filled, priority, stp, post_only in open_orders:
        price_ticks = ticks.get(price)
        if price_ticks is None:
            price_ticks = ticks[price] = spec.price_to_ticks(Decimal(price))
        qty_lots = lots.get(qty)
        if qty_lots is None:
            qty_lots = lots[qty] = spec.qty_to_lots(Decimal(qty))
        done = filled_lots.get(filled)
        if done is None:
            # filled may be below the minimum order size: only the grid applies
            done = filled_lots[filled] = exact_steps(Decimal(filled), spec.lot_size, f"order {oid}: filled quantity")
        if priority > top:
            top = priority
        orders.append({"order_id": str(oid), "client_id": cid, "side": side, "price_ticks": price_ticks,
                       "qty_lots": qty_lots, "filled_lots": done, "priority": priority, "stp": stp,
                       "post_only": post_only})
    engine = Engine.restore(spec, {"version": SNAPSHOT_VERSION, "symbol": spec.symbol, "seq": last_seq,
                                   "next_trade_id": last_trade_id + 1, "next_priority": top + 1,
                                   "orders": orders})
    engine.check_invariants()
    return engine
