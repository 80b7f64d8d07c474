"""Persisted book snapshots (BookSnapshot rows): taken from a live book in memory, written once
the state they show has committed.

A snapshot is taken between two commands (under the worker's lock, or inside a batch in its
turn among the orders), so it shows the book after every command before it, at the book's
market ``seq`` and journal position ``command_seq``. It is written on a connection of its own
and outside the order of writes: a large book's snapshot is megabytes of jsonb, and written in
turn it would hold every commit behind it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from matching.contract import SnapshotInfo
from matching.engine.types import Depth
from matching.records import fmt_time

from .books import Book

INSERT_SNAPSHOT = ("INSERT INTO marketdata_booksnapshot (instrument_id, seq, command_seq, order_count, taken_at, "
                   "source, bids, asks, engine_snapshot) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb) RETURNING id")


@dataclass(frozen=True, slots=True)
class Taken:
    book: Book
    seq: int
    command_seq: int
    depth: Depth
    snapshot: dict[str, Any]


def take(book: Book) -> Taken:
    """The book as it stands now (call between two commands)."""
    return Taken(book, book.engine.seq, book.command_seq, book.engine.depth(10**9), book.engine.snapshot())


async def write(conninfo: dict[str, Any], taken: list[Taken], source: str,
                taken_at: dt.datetime) -> list[SnapshotInfo]:
    """Store the snapshots (call once the state they show has committed); what was stored."""
    stored: list[SnapshotInfo] = []
    if not taken:
        return stored
    async with await psycopg.AsyncConnection.connect(**conninfo, autocommit=True) as conn:
        for t in taken:
            g = t.book.grid
            bids = [[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count] for lv in t.depth.bids]
            asks = [[g.price(lv.price_ticks), g.qty(lv.qty_lots), lv.order_count] for lv in t.depth.asks]
            cur = await conn.execute(INSERT_SNAPSHOT, (t.book.id, t.seq, t.command_seq, len(t.snapshot["orders"]),
                                                       taken_at, source,
                                                       orjson.dumps(bids).decode(), orjson.dumps(asks).decode(),
                                                       orjson.dumps(t.snapshot).decode()))
            row = await cur.fetchone()
            assert row is not None
            stored.append(SnapshotInfo(id=row[0], instrument=t.book.symbol, seq=t.seq, command_seq=t.command_seq,
                                       bid_levels=len(bids), ask_levels=len(asks), orders=len(t.snapshot["orders"]),
                                       taken_at=fmt_time(taken_at)))
    return stored
