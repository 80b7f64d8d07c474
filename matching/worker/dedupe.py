"""Which orders of a batch are already taken: on record in PostgreSQL, or matched in a batch
that may still be committing (which PostgreSQL cannot show yet). PostgreSQL's unique
constraints stay the last word; this check is what lets a duplicate be answered instead of
failing the batch."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import orjson
import psycopg

from matching.contract import PlaceOrder

RECENT_MAX = 200_000

# Orders on record under one of these keys, or under a client-chosen order_id.
KNOWN_SQL = """
SELECT o.order_id::text, o.client_id, o.idempotency_key
  FROM jsonb_to_recordset(%(orders)s::jsonb) AS r(order_id uuid, client_id text, idempotency_key text,
                                                  order_id_supplied bool)
  JOIN orders_order o ON o.client_id = r.client_id AND o.idempotency_key = r.idempotency_key
UNION ALL
SELECT o.order_id::text, o.client_id, o.idempotency_key
  FROM jsonb_to_recordset(%(orders)s::jsonb) AS r(order_id uuid, client_id text, idempotency_key text,
                                                  order_id_supplied bool)
  JOIN orders_order o ON o.order_id = r.order_id
 WHERE r.order_id_supplied
"""


class Recent:
    """Membership of the last ``size`` (up to 2 * ``size``) keys added, in O(1) per add.

    Two generations of sets: when the newer one is full it becomes the older and the oldest
    keys go all at once. (Evicting one key at a time from the front of a dict is quadratic:
    each ``next(iter(d))`` walks past every slot emptied before it.)"""

    __slots__ = ("size", "newer", "older")

    def __init__(self, size: int = RECENT_MAX) -> None:
        self.size = size
        self.newer: set[Hashable] = set()
        self.older: set[Hashable] = set()

    def add(self, key: Hashable) -> None:
        self.newer.add(key)
        if len(self.newer) >= self.size:
            self.older, self.newer = self.newer, set()

    def __contains__(self, key: object) -> bool:
        return key in self.newer or key in self.older


class Taken:
    """The orders a new batch must treat as already placed."""

    def __init__(self, size: int = RECENT_MAX) -> None:
        # Orders of the batches matched lately (either way in), kept while they may still be
        # committing: by order id, and by (client_id, idempotency_key).
        self.order_ids = Recent(size)
        self.keys = Recent(size)

    def remember(self, orders: Iterable[tuple[str, str, str]]) -> None:
        """(order_id, client_id, idempotency_key) of a batch's places, before it commits."""
        for order_id, client_id, key in orders:
            self.order_ids.add(order_id)
            self.keys.add((client_id, key))

    async def known(self, conn: psycopg.AsyncConnection[Any], places: list[PlaceOrder]) -> set[Hashable]:
        """Of these orders, the (client_id, idempotency_key) pairs and the order ids already
        taken, in PostgreSQL or by a batch still committing."""
        found: set[Hashable] = set()
        if not places:
            return found
        for p in places:
            if (p.client_id, p.idempotency_key) in self.keys:
                found.add((p.client_id, p.idempotency_key))
            if p.order_id in self.order_ids:
                found.add(p.order_id)
        rows = orjson.dumps([{"order_id": p.order_id, "client_id": p.client_id, "idempotency_key": p.idempotency_key,
                              "order_id_supplied": p.order_id_supplied} for p in places]).decode()
        cur = await conn.execute(KNOWN_SQL, {"orders": rows})
        for order_id, client_id, key in await cur.fetchall():
            found.add(order_id)
            found.add((client_id, key))
        return found
