"""Instruments as the order path sees them: cached in the process, refreshed on a miss and every
few seconds, so validating an order costs no query."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from matching.engine.types import InstrumentSpec
from matching.records import INSTRUMENT_COLUMNS, INSTRUMENTS_SQL, spec_of

from .db import connection

REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class CachedInstrument:
    id: int
    symbol: str
    spec: InstrumentSpec
    is_active: bool
    halted: bool = False

    @property
    def price_step(self) -> Decimal:
        return self.spec.tick_size

    @property
    def qty_step(self) -> Decimal:
        return self.spec.lot_size


_by_symbol: dict[str, CachedInstrument] = {}
_by_id: dict[int, CachedInstrument] = {}
_loaded_at = 0.0
_lock: asyncio.Lock | None = None

SQL = INSTRUMENTS_SQL


def _build(values: tuple[Any, ...]) -> CachedInstrument:
    row = dict(zip(INSTRUMENT_COLUMNS, values))
    return CachedInstrument(id=row["id"], symbol=row["symbol"], spec=spec_of(row), is_active=row["is_active"],
                            halted=row["halted"])


def _install(rows: list[tuple[Any, ...]]) -> None:
    global _by_symbol, _by_id, _loaded_at
    built = [_build(r) for r in rows]
    _by_symbol = {i.symbol: i for i in built}
    _by_id = {i.id: i for i in built}
    _loaded_at = time.monotonic()


async def refresh(since: float | None = None) -> None:
    """Read the instruments again; with ``since``, not if another request has read them after
    it while this one waited for the lock (single flight: the requests that find the cache stale
    at once share one query instead of queueing one each)."""
    global _lock
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if since is not None and _loaded_at > since:
            return
        async with connection() as conn:
            cur = await conn.execute(SQL)
            _install(await cur.fetchall())


async def by_symbol(symbol: str) -> CachedInstrument | None:
    found = _by_symbol.get(symbol)
    if found is None or time.monotonic() - _loaded_at > REFRESH_S:
        await refresh(since=_loaded_at)
        found = _by_symbol.get(symbol)
    return found


async def by_id(instrument_id: int) -> CachedInstrument | None:
    found = _by_id.get(instrument_id)
    if found is None:
        await refresh(since=_loaded_at)
        found = _by_id.get(instrument_id)
    return found


async def listed() -> list[CachedInstrument]:
    """Every instrument, freshly read, by symbol."""
    await refresh()
    return sorted(_by_symbol.values(), key=lambda i: i.symbol)


def symbol_of(instrument_id: int) -> str | None:
    """The symbol of a cached instrument (no query: for log lines)."""
    found = _by_id.get(instrument_id)
    return None if found is None else found.symbol
# -- for management commands and migrations --


def read_sync(symbol: str | None = None) -> list[CachedInstrument]:
    """Instruments read through Django's connection, by symbol (one, or every one): for the
    synchronous management commands (settle, analytics_check) and data migrations."""
    from django.db import connection as django_connection

    with django_connection.cursor() as cur:
        if symbol is None:
            cur.execute(SQL + " ORDER BY symbol")
        else:
            cur.execute(SQL + " WHERE symbol = %s", [symbol])
        return [_build(r) for r in cur.fetchall()]
