"""In-memory order book structure: one ``BookSide`` per side.

Layout (chosen for O(1) cancel and cheap access to the touch):

* ``RestingOrder``: mutable, slotted, and threaded on an intrusive doubly
  linked list per price level, so a cancel unlinks in O(1) and a fill pops the
  head in O(1) without leaving tombstones behind (a deque with lazy deletion
  would need periodic compaction).
* ``PriceLevel``: the FIFO (head/tail) plus running totals, so a BookDelta
  never needs a walk.
* ``BookSide``: ``levels`` maps a *key* to its level and ``keys`` is the
  sorted list of keys, where key = price for bids and -price for asks. With
  that sign flip the best level of either side is always ``keys[-1]``: removing
  the touch (the common case while matching) is ``list.pop()``, and inserts
  near the touch move only a few pointers. A few hundred levels make
  a ``bisect`` insert far cheaper than any pure-Python tree or heap.
  ``ordered`` holds the levels themselves in the same order (``ordered[i]`` is
  the level of ``keys[i]``): walking from the touch then needs no dict lookup,
  which compiled would also box every key again.

Pure: no I/O, no clock. The engine inlines the hottest of these operations;
this module owns the data layout and the slow-path helpers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from matching.engine.types import STP, Level, Side

try:
    # A compile-time hint for mypyc (installed with mypy); a no-op at run time.
    from mypy_extensions import mypyc_attr
except ImportError:  # the engine needs nothing outside the standard library

    def mypyc_attr(*_args: object, **_hints: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls


# free_list_len: compiled, one freed order is kept for the next to reuse (orders
# come and go all the time), saving an allocation.
@mypyc_attr(free_list_len=1)
class RestingOrder:
    __slots__ = (
        "order_id",
        "client_id",
        "side",
        "price_ticks",
        "qty_lots",
        "filled_lots",
        "priority",
        "stp",
        "post_only",
        "prev",
        "next",
        "level",
    )

    def __init__(
        self,
        order_id: str,
        client_id: str,
        side: Side,
        price_ticks: int,
        qty_lots: int,
        filled_lots: int,
        priority: int,
        stp: STP,
        post_only: bool,
    ) -> None:
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price_ticks = price_ticks
        self.qty_lots = qty_lots
        self.filled_lots = filled_lots
        self.priority = priority
        self.stp = stp
        self.post_only = post_only
        self.prev: RestingOrder | None = None
        self.next: RestingOrder | None = None
        self.level: PriceLevel | None = None


class PriceLevel:
    __slots__ = ("key", "price_ticks", "qty_lots", "order_count", "head", "tail")

    def __init__(self, key: int, price_ticks: int) -> None:
        self.key = key
        self.price_ticks = price_ticks
        self.qty_lots = 0  # sum of the remaining quantity of its orders
        self.order_count = 0
        self.head: RestingOrder | None = None
        self.tail: RestingOrder | None = None

    def remove(self, order: RestingOrder) -> None:
        """Take ``order`` (resting in this level) out of the list, with its remaining quantity.

        The one unlink of the book: a cancel, a fill and a self-trade prevention all come here.
        The level may be left empty; dropping it is the side's job (``BookSide.unlink``) or,
        while a sweep walks the level, the sweep's.
        """
        prev = order.prev
        nxt = order.next
        if prev is None:
            self.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            self.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = order.level = None
        self.order_count -= 1
        self.qty_lots -= order.qty_lots - order.filled_lots

    def orders(self) -> Iterator[RestingOrder]:
        node = self.head
        while node is not None:
            yield node
            node = node.next


class BookSide:
    __slots__ = ("side", "sign", "levels", "keys", "ordered")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = 1 if side is Side.BUY else -1
        self.levels: dict[int, PriceLevel] = {}
        self.keys: list[int] = []  # ascending; best level is keys[-1]
        self.ordered: list[PriceLevel] = []  # the levels of keys, in the same order

    # -- structure ---------------------------------------------------------

    def key_of(self, price_ticks: int) -> int:
        # A negation, not a multiplication by sign: compiled, multiplying by a negative
        # number always takes the slow path through a boxed int.
        return price_ticks if self.sign > 0 else -price_ticks

    def level_for(self, price_ticks: int) -> PriceLevel:
        """The level at this price, created (and indexed) if missing."""
        key = self.key_of(price_ticks)
        lvl = self.levels.get(key)
        if lvl is None:
            lvl = self.levels[key] = PriceLevel(key, price_ticks)
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
                self.ordered.append(lvl)
            else:
                i = bisect_left(keys, key)
                keys.insert(i, key)
                self.ordered.insert(i, lvl)
        return lvl

    def drop_level(self, lvl: PriceLevel) -> None:
        key = lvl.key
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
            self.ordered.pop()
        else:
            i = bisect_left(keys, key)
            del keys[i]
            del self.ordered[i]
        del self.levels[key]

    def append(self, order: RestingOrder) -> PriceLevel:
        """Put ``order`` at the back of its price level's queue."""
        lvl = self.level_for(order.price_ticks)
        tail = lvl.tail
        order.prev = tail
        order.next = None
        order.level = lvl
        if tail is None:
            lvl.head = order
        else:
            tail.next = order
        lvl.tail = order
        lvl.order_count += 1
        lvl.qty_lots += order.qty_lots - order.filled_lots
        return lvl

    def unlink(self, order: RestingOrder) -> PriceLevel:
        """Take ``order`` out of its level (its whole remaining quantity).

        The level is dropped when it empties, so "no empty level" holds after
        every call. Returns the level so the caller can report its new total.
        """
        lvl = order.level
        assert lvl is not None
        lvl.remove(order)
        if lvl.order_count == 0:
            self.drop_level(lvl)
        return lvl

    # -- queries -----------------------------------------------------------

    def best(self) -> PriceLevel | None:
        ordered = self.ordered
        return ordered[-1] if ordered else None

    def iter_levels(self) -> Iterator[PriceLevel]:
        """Levels from the touch outwards."""
        yield from reversed(self.ordered)

    def depth(self, n: int) -> list[Level]:
        out: list[Level] = []
        cum = 0
        ordered = self.ordered
        for i in range(len(ordered) - 1, max(len(ordered) - n, 0) - 1, -1):
            lvl = ordered[i]
            cum += lvl.qty_lots
            out.append(Level(lvl.price_ticks, lvl.qty_lots, lvl.order_count, cum))
        return out

    def check(self, index: dict[str, RestingOrder], next_priority: int) -> int:
        """Assert this side's invariants; returns the number of orders seen."""
        name = self.side.value
        keys = self.keys
        assert all(keys[i] < keys[i + 1] for i in range(len(keys) - 1)), f"{name}: price keys not strictly sorted"
        assert set(keys) == set(self.levels), f"{name}: sorted keys and level dict disagree"
        assert [lvl.key for lvl in self.ordered] == keys, f"{name}: ordered levels and sorted keys disagree"
        assert all(self.levels[lvl.key] is lvl for lvl in self.ordered), f"{name}: ordered level not the indexed one"
        seen = 0
        for key, lvl in self.levels.items():
            where = f"{name} level {lvl.price_ticks}"
            assert lvl.key == key and key == self.key_of(lvl.price_ticks), f"{where}: key mismatch"
            assert lvl.price_ticks > 0, f"{where}: non-positive price"
            assert lvl.order_count > 0 and lvl.head is not None, f"{where}: empty level kept"
            count = 0
            total = 0
            last_priority = 0
            prev: RestingOrder | None = None
            node: RestingOrder | None = lvl.head
            while node is not None:
                oid = node.order_id
                assert node.prev is prev, f"{where}: broken back link at {oid}"
                assert node.level is lvl, f"{where}: {oid} points at another level"
                assert node.side is self.side, f"{where}: {oid} on the wrong side"
                assert node.price_ticks == lvl.price_ticks, f"{where}: {oid} has price {node.price_ticks}"
                assert 0 <= node.filled_lots < node.qty_lots, (
                    f"{where}: {oid} filled {node.filled_lots}/{node.qty_lots}")
                assert node.priority > last_priority, f"{where}: FIFO broken at {oid}"
                assert node.priority < next_priority, f"{where}: {oid} priority from the future"
                assert index.get(oid) is node, f"{where}: {oid} missing from the id index"
                last_priority = node.priority
                count += 1
                total += node.qty_lots - node.filled_lots
                prev = node
                node = node.next
            assert lvl.tail is prev, f"{where}: tail is not the last order"
            assert count == lvl.order_count, f"{where}: order_count {lvl.order_count} != {count}"
            assert total == lvl.qty_lots, f"{where}: qty {lvl.qty_lots} != sum of orders {total}"
            seen += count
        return seen
