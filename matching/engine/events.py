"""Events (out) of the matching engine. ``matching.engine.types`` re-exports them.

Pure: stdlib only, no I/O. Kept apart from ``matching.engine.types`` because this module is
compiled with the engine (see ``matching/_native.py``): there the classes are native,
and building one is a single C call; ``types`` (commands, spec, validation) stays plain
Python in both builds, so commands accept and reject exactly the same input.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Self, cast, final

from matching.engine.enums import Reason, Side, Status

try:
    # A compile-time hint for mypyc (installed with mypy); a no-op at run time.
    from mypy_extensions import mypyc_attr
except ImportError:  # the engine needs nothing outside the standard library

    def mypyc_attr(*_args: object, **_hints: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls


# Compile-time hints for mypyc (no-ops interpreted). acyclic: an event only holds
# strs, ints, None and enum members, so it can never be part of a reference
# cycle; compiled, it then stays out of the cyclic GC (no tracking, no
# traversal). free_list_len=1: a freed event's memory is kept for the next one
# of its class (events are short-lived: built, handed over, dropped).
@mypyc_attr(acyclic=True)
class _Event:
    """Base of the engine's events: immutable values.

    Each event exposes its fields as read-only properties (``_fields`` lists
    them, in order), compares equal to an event of the same class with equal
    fields, hashes accordingly, and has ``_asdict``/``_replace`` like a
    NamedTuple. Plain slotted classes rather than tuples because the compiled
    engine (matching/_native.py) builds them natively, several times faster
    than any tuple subclass; interpreted, they cost about the same.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Event)
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Event)
        return self._values() != other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self._values()))
        return f"{type(self).__name__}({fields})"

    def _asdict(self) -> dict[str, object]:
        return dict(zip(self._fields, self._values()))

    def _replace(self, **changes: object) -> Self:
        values = self._asdict()
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        values.update(changes)
        new: Self = cast(Any, type(self))(**values)
        return new


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class Accepted(_Event):
    __slots__ = ("_order_id", "_ts_ns")
    _fields: ClassVar[tuple[str, ...]] = ("order_id", "ts_ns")

    def __init__(self, order_id: str, ts_ns: int) -> None:
        self._order_id: Final = order_id
        self._ts_ns: Final = ts_ns

    @property
    def order_id(self) -> str:
        return self._order_id

    @property
    def ts_ns(self) -> int:
        return self._ts_ns


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class Rejected(_Event):
    """Place: the order never entered the book. Cancel/modify: order unchanged."""

    __slots__ = ("_order_id", "_reason", "_ts_ns")
    _fields: ClassVar[tuple[str, ...]] = ("order_id", "reason", "ts_ns")

    def __init__(self, order_id: str, reason: Reason, ts_ns: int) -> None:
        self._order_id: Final = order_id
        self._reason: Final = reason
        self._ts_ns: Final = ts_ns

    @property
    def order_id(self) -> str:
        return self._order_id

    @property
    def reason(self) -> Reason:
        return self._reason

    @property
    def ts_ns(self) -> int:
        return self._ts_ns


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class Trade(_Event):
    __slots__ = (
        "_seq", "_trade_id", "_price_ticks", "_qty_lots", "_aggressor", "_maker_order_id",
        "_taker_order_id", "_buy_order_id", "_sell_order_id", "_ts_ns",
    )
    _fields: ClassVar[tuple[str, ...]] = (
        "seq", "trade_id", "price_ticks", "qty_lots", "aggressor", "maker_order_id",
        "taker_order_id", "buy_order_id", "sell_order_id", "ts_ns",
    )

    def __init__(
        self,
        seq: int, trade_id: int, price_ticks: int, qty_lots: int, aggressor: Side,
        maker_order_id: str, taker_order_id: str, buy_order_id: str, sell_order_id: str, ts_ns: int,
    ) -> None:
        self._seq: Final = seq
        self._trade_id: Final = trade_id
        self._price_ticks: Final = price_ticks
        self._qty_lots: Final = qty_lots
        self._aggressor: Final = aggressor
        self._maker_order_id: Final = maker_order_id
        self._taker_order_id: Final = taker_order_id
        self._buy_order_id: Final = buy_order_id
        self._sell_order_id: Final = sell_order_id
        self._ts_ns: Final = ts_ns

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def trade_id(self) -> int:
        return self._trade_id

    @property
    def price_ticks(self) -> int:
        """Always the maker's price."""
        return self._price_ticks

    @property
    def qty_lots(self) -> int:
        return self._qty_lots

    @property
    def aggressor(self) -> Side:
        return self._aggressor

    @property
    def maker_order_id(self) -> str:
        return self._maker_order_id

    @property
    def taker_order_id(self) -> str:
        return self._taker_order_id

    @property
    def buy_order_id(self) -> str:
        return self._buy_order_id

    @property
    def sell_order_id(self) -> str:
        return self._sell_order_id

    @property
    def ts_ns(self) -> int:
        return self._ts_ns


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class OrderUpdate(_Event):
    """Full current state of one order after a change."""

    __slots__ = (
        "_order_id", "_client_id", "_side", "_status", "_price_ticks", "_qty_lots", "_filled_lots",
        "_remaining_lots", "_priority", "_reason", "_ts_ns",
    )
    _fields: ClassVar[tuple[str, ...]] = (
        "order_id", "client_id", "side", "status", "price_ticks", "qty_lots", "filled_lots",
        "remaining_lots", "priority", "reason", "ts_ns",
    )

    def __init__(
        self,
        order_id: str, client_id: str, side: Side, status: Status, price_ticks: int | None,
        qty_lots: int, filled_lots: int, remaining_lots: int, priority: int | None,
        reason: Reason | None, ts_ns: int,
    ) -> None:
        self._order_id: Final = order_id
        self._client_id: Final = client_id
        self._side: Final = side
        self._status: Final = status
        self._price_ticks: Final = price_ticks
        self._qty_lots: Final = qty_lots
        self._filled_lots: Final = filled_lots
        self._remaining_lots: Final = remaining_lots
        self._priority: Final = priority
        self._reason: Final = reason
        self._ts_ns: Final = ts_ns

    @property
    def order_id(self) -> str:
        return self._order_id

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def side(self) -> Side:
        return self._side

    @property
    def status(self) -> Status:
        return self._status

    @property
    def price_ticks(self) -> int | None:
        return self._price_ticks

    @property
    def qty_lots(self) -> int:
        """Total quantity (changes on modify)."""
        return self._qty_lots

    @property
    def filled_lots(self) -> int:
        return self._filled_lots

    @property
    def remaining_lots(self) -> int:
        """qty - filled; for a cancelled order, what was cancelled."""
        return self._remaining_lots

    @property
    def priority(self) -> int | None:
        """Arrival sequence while resting, else None."""
        return self._priority

    @property
    def reason(self) -> Reason | None:
        return self._reason

    @property
    def ts_ns(self) -> int:
        return self._ts_ns


@final
@mypyc_attr(acyclic=True, free_list_len=1)
class BookDelta(_Event):
    __slots__ = ("_seq", "_side", "_price_ticks", "_qty_lots", "_ts_ns")
    _fields: ClassVar[tuple[str, ...]] = ("seq", "side", "price_ticks", "qty_lots", "ts_ns")

    def __init__(self, seq: int, side: Side, price_ticks: int, qty_lots: int, ts_ns: int) -> None:
        self._seq: Final = seq
        self._side: Final = side
        self._price_ticks: Final = price_ticks
        self._qty_lots: Final = qty_lots
        self._ts_ns: Final = ts_ns

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def side(self) -> Side:
        return self._side

    @property
    def price_ticks(self) -> int:
        return self._price_ticks

    @property
    def qty_lots(self) -> int:
        """NEW total at this price; 0 removes the level."""
        return self._qty_lots

    @property
    def ts_ns(self) -> int:
        return self._ts_ns


Event = Accepted | Rejected | Trade | OrderUpdate | BookDelta
