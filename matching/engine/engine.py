"""The matching engine: commands in, events out, for one instrument.

Pure and deterministic: no I/O, no clock, no randomness. Ids come in with the
commands; trade ids, the feed sequence and order priorities come from counters
the engine owns (and that a snapshot carries), so the same commands produce
the same events, byte for byte.

Rules
-----
* Price-time priority: bids high to low, asks low to high, FIFO within a price
  by ``priority``, the engine's arrival sequence. A priority is drawn when a
  place is accepted (whether or not the order ends up resting) and again when
  a modify loses time priority.
* A trade prints at the resting (maker) order's price.
* Market orders (``price_ticks`` None) sweep until filled or the opposite side
  is empty; the remainder is cancelled with MARKET_NO_LIQUIDITY, whatever the
  time in force (a market FOK is still all-or-nothing).
* IOC never rests: remainder cancelled with IOC_REMAINDER.
* FOK fills completely at once or does nothing: a FOK that cannot fill emits
  Accepted then OrderUpdate(cancelled, FOK_NOT_FILLABLE) and nothing else.
* Post-only is rejected (POST_ONLY_WOULD_TAKE) if its price crosses the
  opposite touch, even when the crossing makers belong to the same client.
* Self-trade prevention follows the TAKER's mode, checked maker by maker in
  priority order against makers with the same client_id:
  - none: they trade;
  - cancel_taker: matching stops; the taker's remainder is cancelled
    (STP_CANCEL_TAKER); the maker is untouched;
  - cancel_maker: that maker is cancelled (STP_CANCEL_MAKER), matching goes on;
  - cancel_both: that maker is cancelled, then the taker's remainder
    (both STP_CANCEL_BOTH); matching stops.
  FOK feasibility walks the same way: liquidity is summed in priority order;
  a same-client maker ends the walk under cancel_taker/cancel_both and is
  skipped (not counted) under cancel_maker. So a feasible FOK always fills
  completely, and an infeasible one cancels nothing.
* Cancel and modify address resting orders only. The engine forgets finished
  orders, so unknown and finished ids are both rejected with UNKNOWN_ORDER
  (a restored engine has no memory of finished orders either, and identical
  behaviour after restore matters more than a finer code).
* Modify (new price and/or new TOTAL quantity): a decrease at the same price
  keeps time priority; a price change or an increase goes to the back with a
  new priority. A new total at or below the filled quantity is refused. A new
  price that crosses matches at once as a taker (using the order's own STP
  mode); a post-only order may not be moved to a crossing price.
* Duplicate order ids are detected against resting orders only (the database
  unique constraint is the authority for ids ever used).

Event order per command (every command starts with Accepted or Rejected; all
events carry the command's ts_ns; Trade and BookDelta carry ``seq``, one
per-instrument counter, +1 per such event, gap-free):

place   Rejected(reason) and nothing else, or
        Accepted, then for each maker reached in priority order:
            trade:        Trade, maker OrderUpdate, BookDelta(maker level)
            STP on maker: maker OrderUpdate(cancelled), BookDelta(maker level)
        then the taker's final OrderUpdate (open / partially_filled / filled /
        cancelled with its reason), then BookDelta(taker level) if it rests.
        A failed FOK: Accepted, OrderUpdate(cancelled, FOK_NOT_FILLABLE).
cancel  Rejected(UNKNOWN_ORDER), or
        Accepted, OrderUpdate(cancelled, CANCELLED_BY_USER), BookDelta.
modify  Rejected(reason), order unchanged, or
        Accepted, then
          same price, not increased: OrderUpdate, BookDelta (if qty changed);
          same price, increased:     OrderUpdate, BookDelta (back of queue);
          new price:  BookDelta(old level), [fills/STP exactly as for place],
                      OrderUpdate (final state), BookDelta(new level) if it rests.
"""

from __future__ import annotations

from typing import Any, Final

from matching.engine.book import BookSide, PriceLevel, RestingOrder
from matching.engine.types import (
    STP,
    Accepted,
    BookDelta,
    Cancel,
    Depth,
    Event,
    InstrumentSpec,
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
    check_order_limits,
    limits_of,
)

SNAPSHOT_VERSION: Final = 1

# Enum members (and the classes tested on the hot path) bound once: attribute
# lookups on Enum classes are slow, and a Final is a C static when compiled.
_SIDE_CLS: Final = Side
_TYPE_CLS: Final = OrderType
_TIF_CLS: Final = TimeInForce
_STP_CLS: Final = STP
_PLACE: Final = Place
_CANCEL: Final = Cancel
_MODIFY: Final = Modify
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_LIMIT: Final = OrderType.LIMIT
_MARKET: Final = OrderType.MARKET
_GTC: Final = TimeInForce.GTC
_IOC: Final = TimeInForce.IOC
_FOK: Final = TimeInForce.FOK
_STP_NONE: Final = STP.NONE
_STP_TAKER: Final = STP.CANCEL_TAKER
_STP_MAKER: Final = STP.CANCEL_MAKER
_STP_BOTH: Final = STP.CANCEL_BOTH
_OPEN: Final = Status.OPEN
_PARTIAL: Final = Status.PARTIALLY_FILLED
_FILLED: Final = Status.FILLED
_CANCELLED: Final = Status.CANCELLED

_R_DUPLICATE: Final = Reason.DUPLICATE_ORDER_ID
_R_POST_ONLY: Final = Reason.POST_ONLY_WOULD_TAKE
_R_UNKNOWN: Final = Reason.UNKNOWN_ORDER
_R_BY_USER: Final = Reason.CANCELLED_BY_USER
_R_IOC: Final = Reason.IOC_REMAINDER
_R_MARKET: Final = Reason.MARKET_NO_LIQUIDITY
_R_FOK: Final = Reason.FOK_NOT_FILLABLE
_R_STP_TAKER: Final = Reason.STP_CANCEL_TAKER
_R_STP_MAKER: Final = Reason.STP_CANCEL_MAKER
_R_STP_BOTH: Final = Reason.STP_CANCEL_BOTH


# A caller may pass an enum field as its plain string ("buy" for Side.BUY): the members are
# str enums. An exact str equal to a member's value is that member: compared in code (a
# literal "buy" is the interned value itself, so the first comparison is one pointer test),
# most frequent first, because a dict lookup costs more than the whole chain. Anything else
# is left to the enum's own constructor, which accepts or refuses it (ValueError) exactly
# as it decides.
_BUY_V: Final = Side.BUY.value
_SELL_V: Final = Side.SELL.value
_LIMIT_V: Final = OrderType.LIMIT.value
_MARKET_V: Final = OrderType.MARKET.value
_GTC_V: Final = TimeInForce.GTC.value
_IOC_V: Final = TimeInForce.IOC.value
_FOK_V: Final = TimeInForce.FOK.value
_STP_TAKER_V: Final = STP.CANCEL_TAKER.value
_STP_NONE_V: Final = STP.NONE.value
_STP_MAKER_V: Final = STP.CANCEL_MAKER.value
_STP_BOTH_V: Final = STP.CANCEL_BOTH.value


def _side(value: object) -> Side:
    if type(value) is str:
        if value == _BUY_V:
            return _BUY
        if value == _SELL_V:
            return _SELL
    return Side(value)


def _order_type(value: object) -> OrderType:
    if type(value) is str:
        if value == _LIMIT_V:
            return _LIMIT
        if value == _MARKET_V:
            return _MARKET
    return OrderType(value)


def _tif(value: object) -> TimeInForce:
    if type(value) is str:
        if value == _GTC_V:
            return _GTC
        if value == _IOC_V:
            return _IOC
        if value == _FOK_V:
            return _FOK
    return TimeInForce(value)


def _stp(value: object) -> STP:
    if type(value) is str:
        if value == _STP_TAKER_V:
            return _STP_TAKER
        if value == _STP_NONE_V:
            return _STP_NONE
        if value == _STP_MAKER_V:
            return _STP_MAKER
        if value == _STP_BOTH_V:
            return _STP_BOTH
    return STP(value)


def _refuse_types(order_id: object, ts_ns: object, client_id: object = "", post_only: object = False) -> None:
    """Raise TypeError for the first of these values that does not have its exact type.

    Exact: a str subclass or a bool timestamp is refused too, because compiled, a typed
    parameter would convert it (an int subclass to a plain int) or treat it as its base
    type, and the two builds would then disagree on what comes out.
    """
    for name, value, kind in (("order_id", order_id, str), ("client_id", client_id, str),
                              ("post_only", post_only, bool), ("ts_ns", ts_ns, int)):
        if type(value) is not kind:
            raise TypeError(f"{name} must be a {kind.__name__}, got {value!r}")


class Engine:
    __slots__ = (
        "_spec",
        "_limits",
        "_max_price_ticks",
        "_min_qty_lots",
        "_max_qty_lots",
        "_min_pq",
        "_bids",
        "_asks",
        "_orders",
        "_seq",
        "_next_trade_id",
        "_next_priority",
        "_no_limit_key",
    )

    def __init__(
        self,
        spec: InstrumentSpec,
        *,
        seq: int = 0,
        next_trade_id: int = 1,
        next_priority: int = 1,
    ) -> None:
        self._spec = spec
        self._limits = limits_of(spec)
        # Copied out of the NamedTuple: slot reads are cheaper on the hot path.
        self._max_price_ticks = self._limits.max_price_ticks
        self._min_qty_lots = self._limits.min_qty_lots
        self._max_qty_lots = self._limits.max_qty_lots
        self._min_pq = self._limits.min_notional_ticks_lots
        self._bids = BookSide(_BUY)
        self._asks = BookSide(_SELL)
        self._orders: dict[str, RestingOrder] = {}
        self._seq = seq
        self._next_trade_id = next_trade_id
        self._next_priority = next_priority
        # Keys are price (bids) or -price (asks); every key is above this, so a
        # market order "crosses" whatever rests.
        self._no_limit_key = -(self._limits.max_price_ticks + 1)

    # ------------------------------------------------------------------
    # counters and spec
    # ------------------------------------------------------------------

    @property
    def spec(self) -> InstrumentSpec:
        return self._spec

    @property
    def seq(self) -> int:
        """Sequence of the last Trade/BookDelta emitted (the feed's position)."""
        return self._seq

    @property
    def next_trade_id(self) -> int:
        return self._next_trade_id

    @property
    def next_priority(self) -> int:
        return self._next_priority

    @property
    def open_order_count(self) -> int:
        return len(self._orders)

    # ------------------------------------------------------------------
    # commands
    # ------------------------------------------------------------------

    def apply(self, cmd: Place | Cancel | Modify) -> list[Event]:
        cls = type(cmd)
        if cls is _PLACE:
            return self.place(cmd)  # type: ignore[arg-type]
        if cls is _CANCEL:
            return self.cancel(cmd)  # type: ignore[arg-type]
        if cls is _MODIFY:
            return self.modify(cmd)  # type: ignore[arg-type]
        raise TypeError(f"not a command: {cmd!r}")

    def place(self, cmd: Place) -> list[Event]:
        """``place_values`` with the fields of ``cmd``."""
        # Read untyped, so that every value reaches place_values' own checks, in both builds.
        raw: Any = cmd
        return self.place_values(
            raw.order_id, raw.client_id, raw.side, raw.order_type, raw.price_ticks, raw.qty_lots, raw.tif,
            raw.post_only, raw.stp, raw.ts_ns,
        )

    def place_values(
        self,
        order_id: str,
        client_id: str,
        side: Any,
        order_type: Any,
        price_ticks: Any,
        qty_lots: Any,
        tif: Any = _GTC,
        post_only: bool = False,
        stp: Any = _STP_TAKER,
        ts_ns: Any = 0,
    ) -> list[Event]:
        """Place an order given as plain values: ``Place``'s fields, in its order, with its defaults.

        The entry for callers that hold the values (a command object is not needed to place
        an order). Checks, in this order: ``order_id``/``client_id`` not exactly a str,
        ``post_only`` not a bool or ``ts_ns`` not exactly an int raise TypeError; ``side``,
        ``order_type``, ``tif`` and ``stp`` take a member or its plain string value
        (``"buy"``, ``"limit"``, ``"GTC"``, ``"cancel_taker"``), anything else raises the
        enum's ValueError; then an unacceptable price, quantity or combination is a
        ``Rejected`` event with its reason. Both builds accept and refuse the same values.
        """
        # The enum, number and timestamp parameters are Any: compiled, a typed parameter
        # would raise TypeError at the call (before a bad price could be refused with a
        # reason, or a plain string normalized) or convert the value (a bool timestamp to 1).
        # The typed ones are checked here too, for the interpreted build.
        if not (
            type(order_id) is str and type(client_id) is str and type(post_only) is bool and type(ts_ns) is int
        ):
            _refuse_types(order_id, ts_ns, client_id, post_only)
        # Members from here on (typed, so the compiled build passes them on unchecked).
        side_m: Side = side if type(side) is _SIDE_CLS else _side(side)
        type_m: OrderType = order_type if type(order_type) is _TYPE_CLS else _order_type(order_type)
        tif_m: TimeInForce = tif if type(tif) is _TIF_CLS else _tif(tif)
        stp_m: STP = stp if type(stp) is _STP_CLS else _stp(stp)
        oid = order_id
        ts: int = ts_ns
        price_in = price_ticks
        qty_in = qty_lots
        # Fast accept for well-formed orders; anything else takes the full, shared check.
        # The condition implies check_order_limits(...) is None, never the other way round.
        if not (
            type(qty_in) is int
            and self._min_qty_lots <= qty_in <= self._max_qty_lots
            and (
                (
                    type_m is _LIMIT
                    and type(price_in) is int
                    and 0 < price_in <= self._max_price_ticks
                    and price_in * qty_in >= self._min_pq
                    and (tif_m is _GTC or not post_only)
                )
                or (type_m is _MARKET and price_in is None and not post_only)
            )
        ):
            reason = check_order_limits(self._limits, type_m, price_in, qty_in, tif_m, post_only)
            if reason is not None:
                return [Rejected(oid, reason, ts)]
        # Checked: from here on the values have their declared types.
        price: int | None = price_in
        qty: int = qty_in
        orders = self._orders
        if oid in orders:
            return [Rejected(oid, _R_DUPLICATE, ts)]

        if side_m is _BUY:
            own = self._bids
            opp = self._asks
            limit_key = self._no_limit_key if price is None else -price
        else:
            own = self._asks
            opp = self._bids
            limit_key = self._no_limit_key if price is None else price
        opp_keys = opp.keys
        crosses = bool(opp_keys) and opp_keys[-1] >= limit_key
        if crosses and post_only:
            return [Rejected(oid, _R_POST_ONLY, ts)]

        priority = self._next_priority
        self._next_priority = priority + 1
        cid = client_id
        if not crosses and tif_m is _GTC and price is not None:
            # The most frequent case by far: a passive GTC limit. Rest it whole.
            lvl = self._rest(own, oid, cid, side_m, price, qty, 0, priority, stp_m, post_only)
            seq = self._seq = self._seq + 1
            # price_ticks, the caller's int object, rather than price: narrowed to an int
            # here, the compiled build would box it again for the int | None field.
            return [
                Accepted(oid, ts),
                OrderUpdate(oid, cid, side_m, _OPEN, price_ticks, qty, 0, qty, priority, None, ts),
                BookDelta(seq, side_m, price, lvl.qty_lots, ts),
            ]

        events: list[Event] = [Accepted(oid, ts)]
        filled = 0
        end_reason = None
        if tif_m is not _GTC or price is None:
            if tif_m is _FOK and not (crosses and self._fok_fillable(opp, limit_key, cid, qty, stp_m)):
                events.append(OrderUpdate(oid, cid, side_m, _CANCELLED, price, qty, 0, qty, None, _R_FOK, ts))
                return events
            if crosses:
                filled, end_reason = self._match(events, opp, limit_key, oid, cid, side_m, qty, stp_m, ts)
            if filled != qty and end_reason is None:
                end_reason = _R_MARKET if price is None else _R_IOC
        else:
            filled, end_reason = self._match(events, opp, limit_key, oid, cid, side_m, qty, stp_m, ts)

        remaining = qty - filled
        if remaining == 0:
            events.append(OrderUpdate(oid, cid, side_m, _FILLED, price, qty, qty, 0, None, None, ts))
        elif end_reason is not None:
            events.append(
                OrderUpdate(oid, cid, side_m, _CANCELLED, price, qty, filled, remaining, None, end_reason, ts)
            )
        else:
            assert price is not None  # only a GTC limit order rests
            lvl = self._rest(own, oid, cid, side_m, price, qty, filled, priority, stp_m, post_only)
            seq = self._seq = self._seq + 1
            events.append(
                OrderUpdate(  # price_ticks: as above
                    oid, cid, side_m, _PARTIAL if filled else _OPEN, price_ticks, qty, filled, remaining, priority,
                    None, ts,
                )
            )
            events.append(BookDelta(seq, side_m, price, lvl.qty_lots, ts))
        return events

    def _rest(
        self, own: BookSide, oid: str, cid: str, side: Side, price: int, qty: int, filled: int,
        priority: int, stp: STP, post_only: bool,
    ) -> PriceLevel:
        """Index a new resting order and put it at the back of its level (returned).

        BookSide.append, inlined: this is the most frequent path of all.
        """
        order = RestingOrder(oid, cid, side, price, qty, filled, priority, stp, post_only)
        self._orders[oid] = order
        lvl = own.levels.get(own.key_of(price))
        if lvl is None:
            lvl = own.level_for(price)
            lvl.head = lvl.tail = order
            order.prev = None
        else:
            tail = lvl.tail
            assert tail is not None  # a level in the index is never empty
            # (narrowed, the compiled build sets the slot directly instead of a generic setattr)
            order.prev = tail
            tail.next = order
            lvl.tail = order
        order.level = lvl
        lvl.order_count += 1
        lvl.qty_lots += qty - filled
        return lvl

    def cancel(self, cmd: Cancel) -> list[Event]:
        """``cancel_values`` with the fields of ``cmd``."""
        raw: Any = cmd
        return self.cancel_values(raw.order_id, raw.ts_ns)

    def cancel_values(self, order_id: str, ts_ns: Any = 0) -> list[Event]:
        """Cancel a resting order given as plain values (``Cancel``'s fields and defaults).

        ``order_id`` not exactly a str or ``ts_ns`` not exactly an int raise TypeError, as in
        ``place_values``.
        """
        if not (type(order_id) is str and type(ts_ns) is int):
            _refuse_types(order_id, ts_ns)
        oid = order_id
        ts: int = ts_ns
        orders = self._orders
        order = orders.get(oid)
        if order is None:
            return [Rejected(oid, _R_UNKNOWN, ts)]
        del orders[oid]  # get + del: both are C primitives when compiled, pop is not
        qty = order.qty_lots
        filled = order.filled_lots
        remaining = qty - filled
        side = order.side
        total = (self._bids if side is _BUY else self._asks).unlink(order).qty_lots
        seq = self._seq = self._seq + 1
        price = order.price_ticks
        return [
            Accepted(oid, ts),
            OrderUpdate(oid, order.client_id, side, _CANCELLED, price, qty, filled, remaining, None, _R_BY_USER, ts),
            BookDelta(seq, side, price, total, ts),
        ]

    def modify(self, cmd: Modify) -> list[Event]:
        """``modify_values`` with the fields of ``cmd``."""
        raw: Any = cmd
        return self.modify_values(raw.order_id, raw.price_ticks, raw.qty_lots, raw.ts_ns)

    def modify_values(
        self, order_id: str, price_ticks: Any = None, qty_lots: Any = None, ts_ns: Any = 0
    ) -> list[Event]:
        """Modify a resting order given as plain values (``Modify``'s fields and defaults).

        ``qty_lots`` is the new TOTAL quantity. ``order_id`` not exactly a str or ``ts_ns``
        not exactly an int raise TypeError, as in ``place_values``; a bad price or quantity
        (Any, for the same reason as there) is a ``Rejected`` event with its reason.
        """
        if not (type(order_id) is str and type(ts_ns) is int):
            _refuse_types(order_id, ts_ns)
        oid = order_id
        ts: int = ts_ns
        order = self._orders.get(oid)
        if order is None:
            return [Rejected(oid, _R_UNKNOWN, ts)]
        new_price = price_ticks
        new_qty = qty_lots
        reason = self._check_modify(order, new_price, new_qty)
        if reason is not None:
            return [Rejected(oid, reason, ts)]
        old_price = order.price_ticks
        price: int = old_price if new_price is None else new_price
        qty: int = order.qty_lots if new_qty is None else new_qty
        side = order.side
        if side is _BUY:
            own, opp, limit_key = self._bids, self._asks, -price
        else:
            own, opp, limit_key = self._asks, self._bids, price
        opp_keys = opp.keys
        crosses = bool(opp_keys) and opp_keys[-1] >= limit_key
        if crosses and order.post_only:
            return [Rejected(oid, _R_POST_ONLY, ts)]

        events: list[Event] = [Accepted(oid, ts)]
        cid = order.client_id
        filled = order.filled_lots
        if price == old_price:
            lvl = order.level
            assert lvl is not None
            delta = qty - order.qty_lots
            if delta > 0:
                # An increase would let a late order jump the queue: back of the line.
                own.unlink(order)
                order.qty_lots = qty
                order.priority = self._next_priority
                self._next_priority += 1
                lvl = own.append(order)
            else:
                order.qty_lots = qty
                lvl.qty_lots += delta
            events.append(self._state(order, None, ts))
            if delta:
                self._seq += 1
                events.append(BookDelta(self._seq, side, price, lvl.qty_lots, ts))
            return events

        # Price change: leave the old level, then behave like a fresh aggressive order.
        old_lvl = own.unlink(order)
        self._seq += 1
        events.append(BookDelta(self._seq, side, old_price, old_lvl.qty_lots, ts))
        order.price_ticks = price
        order.qty_lots = qty
        order.priority = self._next_priority
        self._next_priority += 1
        end_reason = None
        if crosses:
            got, end_reason = self._match(events, opp, limit_key, oid, cid, side, qty - filled, order.stp, ts)
            filled = order.filled_lots = filled + got
        if filled == qty or end_reason is not None:
            del self._orders[oid]
            status = _FILLED if filled == qty else _CANCELLED
            events.append(
                OrderUpdate(oid, cid, side, status, price, qty, filled, qty - filled, None, end_reason, ts)
            )
            return events
        lvl = own.append(order)
        events.append(self._state(order, None, ts))
        self._seq += 1
        events.append(BookDelta(self._seq, side, price, lvl.qty_lots, ts))
        return events

    def _check_modify(self, order: RestingOrder, new_price: Any, new_qty: Any) -> Reason | None:
        if new_price is None and new_qty is None:
            return Reason.MODIFY_NOTHING
        lim = self._limits
        if new_price is not None:
            if type(new_price) is not int or new_price <= 0:
                return Reason.INVALID_PRICE
            if new_price > lim.max_price_ticks:
                return Reason.PRICE_TOO_HIGH
        if new_qty is not None:
            if type(new_qty) is not int or new_qty <= 0:
                return Reason.INVALID_QUANTITY
            if new_qty < lim.min_qty_lots:
                return Reason.QUANTITY_TOO_SMALL
            if new_qty > lim.max_qty_lots:
                return Reason.QUANTITY_TOO_LARGE
            if new_qty <= order.filled_lots:
                return Reason.MODIFY_QUANTITY_AT_OR_BELOW_FILLED
        price = order.price_ticks if new_price is None else new_price
        qty = order.qty_lots if new_qty is None else new_qty
        if price * qty < lim.min_notional_ticks_lots:
            return Reason.NOTIONAL_TOO_SMALL
        return None

    # ------------------------------------------------------------------
    # matching internals
    # ------------------------------------------------------------------

    def _fok_fillable(self, opp: BookSide, limit_key: int, cid: str, want: int, stp: STP) -> bool:
        """Would a taker of ``want`` lots fill completely? Mirrors ``_match`` exactly."""
        ordered = opp.ordered
        avail = 0
        stp_active = stp is not _STP_NONE
        for i in range(len(ordered) - 1, -1, -1):
            lvl = ordered[i]
            if lvl.key < limit_key:
                return False
            if not stp_active:
                avail += lvl.qty_lots
                if avail >= want:
                    return True
                continue
            maker = lvl.head
            while maker is not None:
                if maker.client_id == cid:
                    if stp is not _STP_MAKER:
                        return False  # matching would stop here, short of the goal
                else:
                    avail += maker.qty_lots - maker.filled_lots
                    if avail >= want:
                        return True
                maker = maker.next
        return False

    def _match(
        self,
        events: list[Event],
        opp: BookSide,
        limit_key: int,
        taker_id: str,
        cid: str,
        aggressor: Side,
        want: int,
        stp: STP,
        ts: int,
    ) -> tuple[int, Reason | None]:
        """Fill up to ``want`` lots against ``opp`` while its touch crosses ``limit_key``.

        Appends the maker-side events; returns (lots filled, STP reason that
        stopped the taker or None). The taker's own OrderUpdate is the caller's.
        """
        levels = opp.levels
        keys = opp.keys
        ordered = opp.ordered
        orders = self._orders
        opp_side = opp.side
        seq = self._seq
        trade_id = self._next_trade_id
        taker_buys = aggressor is _BUY
        stp_active = stp is not _STP_NONE
        remaining = want
        stop: Reason | None = None
        while ordered:
            lvl = ordered[-1]
            if lvl.key < limit_key:
                break
            price = lvl.price_ticks
            maker = lvl.head
            while maker is not None:
                # The maker is always the head here: everything before it was
                # filled or cancelled and unlinked.
                moid = maker.order_id
                mqty = maker.qty_lots
                mfilled = maker.filled_lots
                mrem = mqty - mfilled
                if stp_active and maker.client_id == cid:
                    if stp is _STP_TAKER:
                        stop = _R_STP_TAKER
                        break
                    why = _R_STP_MAKER if stp is _STP_MAKER else _R_STP_BOTH
                    lvl.remove(maker)
                    del orders[moid]
                    events.append(
                        OrderUpdate(moid, maker.client_id, opp_side, _CANCELLED, price, mqty, mfilled, mrem, None, why,
                                    ts)
                    )
                    seq += 1
                    events.append(BookDelta(seq, opp_side, price, lvl.qty_lots, ts))
                    if why is _R_STP_BOTH:
                        stop = why
                        break
                    maker = lvl.head
                    continue

                seq += 1
                if remaining < mrem:
                    # Taker exhausted inside this maker: maker stays at the head.
                    q = remaining
                    remaining = 0
                    mfilled = maker.filled_lots = mfilled + q
                    events.append(
                        Trade(
                                seq, trade_id, price, q, aggressor, moid, taker_id,
                                taker_id if taker_buys else moid, moid if taker_buys else taker_id, ts,
                            )
                    )
                    trade_id += 1
                    events.append(
                        OrderUpdate(moid, maker.client_id, opp_side, _PARTIAL, price, mqty, mfilled, mqty - mfilled,
                             maker.priority, None, ts)
                    )
                    lvl.qty_lots -= q
                    seq += 1
                    events.append(BookDelta(seq, opp_side, price, lvl.qty_lots, ts))
                    break
                remaining -= mrem
                lvl.remove(maker)
                maker.filled_lots = mqty
                events.append(
                    Trade(
                            seq, trade_id, price, mrem, aggressor, moid, taker_id,
                            taker_id if taker_buys else moid, moid if taker_buys else taker_id, ts,
                        )
                )
                trade_id += 1
                del orders[moid]
                events.append(
                    OrderUpdate(moid, maker.client_id, opp_side, _FILLED, price, mqty, mqty, 0, None, None, ts))
                seq += 1
                events.append(BookDelta(seq, opp_side, price, lvl.qty_lots, ts))
                if remaining == 0:
                    break
                maker = lvl.head
            if lvl.order_count == 0:
                # The touch emptied: it is keys[-1], so dropping it is a pop.
                keys.pop()
                ordered.pop()
                del levels[lvl.key]
            if stop is not None or remaining == 0:
                break
        self._seq = seq
        self._next_trade_id = trade_id
        return want - remaining, stop

    def _state(self, order: RestingOrder, reason: Reason | None, ts: int) -> OrderUpdate:
        """OrderUpdate for a resting order."""
        filled = order.filled_lots
        qty = order.qty_lots
        return OrderUpdate(
                order.order_id, order.client_id, order.side, _PARTIAL if filled else _OPEN, order.price_ticks,
                qty, filled, qty - filled, order.priority, reason, ts,
            )

    # ------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------

    def best_bid(self) -> tuple[int, int] | None:
        lvl = self._bids.best()
        return None if lvl is None else (lvl.price_ticks, lvl.qty_lots)

    def best_ask(self) -> tuple[int, int] | None:
        lvl = self._asks.best()
        return None if lvl is None else (lvl.price_ticks, lvl.qty_lots)

    def depth(self, n: int) -> Depth:
        return Depth(self._bids.depth(n), self._asks.depth(n))

    def get_order(self, order_id: str) -> OrderUpdate | None:
        """State of a resting order (a query, not an event: ts_ns is 0)."""
        order = self._orders.get(order_id)
        return None if order is None else self._state(order, None, 0)

    def snapshot(self) -> dict[str, Any]:
        """Deterministic, JSON-serializable state; see ``restore``.

        Orders: bids by price desc then priority, then asks by price asc then
        priority (i.e. each side from the touch outwards, FIFO within a level).
        """
        out: list[dict[str, Any]] = []
        for book in (self._bids, self._asks):
            for lvl in book.iter_levels():
                for o in lvl.orders():
                    out.append(
                        {
                            "order_id": o.order_id,
                            "client_id": o.client_id,
                            "side": o.side.value,
                            "price_ticks": o.price_ticks,
                            "qty_lots": o.qty_lots,
                            "filled_lots": o.filled_lots,
                            "priority": o.priority,
                            "stp": o.stp.value,
                            "post_only": o.post_only,
                        }
                    )
        return {
            "version": SNAPSHOT_VERSION,
            "symbol": self._spec.symbol,
            "seq": self._seq,
            "next_trade_id": self._next_trade_id,
            "next_priority": self._next_priority,
            "orders": out,
        }

    @classmethod
    def restore(cls, spec: InstrumentSpec, snapshot: dict[str, Any]) -> Engine:
        """Rebuild an engine from ``snapshot()`` output or the worker's equivalent.

        The orders may come in any order: FIFO is rebuilt from ``priority``.
        A malformed snapshot raises ValueError rather than building a wrong book.
        """
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snapshot.get('version')!r}")
        if snapshot.get("symbol") != spec.symbol:
            raise ValueError(f"snapshot is for {snapshot.get('symbol')!r}, not {spec.symbol!r}")
        engine = cls(
            spec,
            seq=int(snapshot["seq"]),
            next_trade_id=int(snapshot["next_trade_id"]),
            next_priority=int(snapshot["next_priority"]),
        )
        rows = sorted(snapshot["orders"], key=lambda r: r["priority"])
        seen_priorities: set[int] = set()
        for row in rows:
            oid = row["order_id"]
            side = Side(row["side"])
            price, qty, filled, priority = row["price_ticks"], row["qty_lots"], row["filled_lots"], row["priority"]
            fields = (("price_ticks", price), ("qty_lots", qty), ("filled_lots", filled), ("priority", priority))
            for name, value in fields:
                if type(value) is not int:
                    raise ValueError(f"order {oid!r}: {name} must be an int, got {value!r}")
            if price <= 0 or not (0 <= filled < qty):
                raise ValueError(f"order {oid!r}: bad price/quantity ({price}, {filled}/{qty})")
            if not (0 < priority < engine._next_priority) or priority in seen_priorities:
                raise ValueError(f"order {oid!r}: priority {priority} duplicated or not below next_priority")
            if oid in engine._orders:
                raise ValueError(f"duplicate order id {oid!r}")
            seen_priorities.add(priority)
            order = RestingOrder(
                oid, row["client_id"], side, price, qty, filled, priority, STP(row["stp"]), bool(row["post_only"])
            )
            engine._orders[oid] = order
            (engine._bids if side is _BUY else engine._asks).append(order)
        bid, ask = engine.best_bid(), engine.best_ask()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            raise ValueError(f"snapshot book is crossed: bid {bid[0]} >= ask {ask[0]}")
        return engine

    def check_invariants(self) -> None:
        """Raise AssertionError (with a message) if the book is inconsistent."""
        seen = self._bids.check(self._orders, self._next_priority)
        seen += self._asks.check(self._orders, self._next_priority)
        assert seen == len(self._orders), f"id index has {len(self._orders)} orders, book has {seen}"
        for oid, order in self._orders.items():
            assert order.order_id == oid, f"id index key {oid!r} points at {order.order_id!r}"
            assert order.level is not None, f"{oid!r} indexed but not in a level"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid[0] < ask[0], f"book crossed at rest: {bid} / {ask}"
        assert self._seq >= 0 and self._next_trade_id >= 1, "counters went negative"


__all__ = ["Engine", "PriceLevel", "SNAPSHOT_VERSION"]
