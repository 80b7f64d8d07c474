"""Rate limits: one limiter for the lean HTTP path, the DRF views and the WebSocket.

A budget is django-ratelimit's: N requests per fixed window ("200/2s"), counted per caller
(``Caller.identity``: the API key, a staff user, or the IP address of an anonymous caller) and
per action (``Action``): orders placed, cancels and modifies, reads. The DRF views count through
django-ratelimit itself (``RateLimit``, its ``get_usage``); the lean path and the WebSocket
count through ``take``, with django-ratelimit's own window and cache key for the same caller,
action and budget, in the same store: so a client that places through both spends one budget.
An ``orders`` message over the WebSocket counts each of its orders.

The store (settings.RATE_LIMIT_STORE; the measurements behind the choice: docs/security.md):
  share     each web process counts in memory and allows its share of every budget: a budget
            of N over P live web processes is N / P in each (P counted in PostgreSQL every
            PGBOURSE_RATE_LIMIT_PEERS_EVERY_S, from their LISTEN sessions). The sum over the
            processes never exceeds the budget; a client whose requests all reach one process
            gets only its share. Costs a few microseconds and no I/O.
  postgres  one counter row per budget and window in an UNLOGGED table: exact whatever the
            spread, at a statement per check (group-committed on the async paths).
The failure budget (settings.RATE_LIMIT_AUTH_FAILURES, per IP) counts unknown and revoked keys:
past it, orders.auth refuses keys it does not already know with 429 without looking them up.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psycopg
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.db import connection
from django_ratelimit import ALL

# get_usage is django-ratelimit's public core; its window and key functions are not, and the
# lean path needs them to count in the very counters get_usage counts in (an `orders` message
# adds many at once, which get_usage cannot). The version is pinned; a test proves both paths
# share one counter (tests/orders/test_limits.py).
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate, get_usage
from rest_framework.throttling import BaseThrottle

from matching.contract import Code

from . import db
from .callers import Caller, drf_caller
from .coalesce import coalescer
from .errors import ApiError, DrfApiError

log = logging.getLogger(__name__)


class Action(str, Enum):
    ORDERS = "orders"  # place (and POST /orders/test)
    COMMANDS = "commands"  # cancel, modify
    READS = "reads"


AUTH_FAILURES = "auth_failures"


@dataclass(frozen=True, slots=True)
class Usage:
    """A budget after one check: ``count`` includes this request (all of an `orders` message)."""

    limit: int
    count: int
    reset_s: int

    @property
    def limited(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def allowed(self, n: int) -> int:
        """How many of the last ``n`` counted fit in the budget (the first ones)."""
        return max(0, min(n, self.limit - (self.count - n)))

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"x-ratelimit-limit", b"%d" % self.limit), (b"x-ratelimit-remaining", b"%d" % self.remaining),
               (b"x-ratelimit-reset", b"%d" % self.reset_s)]
        if self.limited:
            out.append((b"retry-after", b"%d" % self.reset_s))
        return out

    def as_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset_s}


def limited(usage: Usage, what: str = "requests") -> ApiError:
    return ApiError(429, Code.RATE_LIMITED, f"Too many {what}: the budget is {usage.limit} per window; "
                    f"retry in {usage.reset_s} s.", headers=usage.headers())


def budget(caller: Caller, action: Action | str) -> str:
    """The caller's budget for an action: its key's own, else its role's."""
    action = Action(action)
    own = caller.rates.get(action.value) if caller.rates else None
    if own:
        return own
    return settings.RATE_LIMITS[caller.role or "anonymous"][action.value]  # type: ignore[no-any-return]


def budgets(caller: Caller) -> dict[str, str]:
    """Every budget the caller has, by action ("200/2s"); a read-only key has no write budgets."""
    roles = settings.RATE_LIMITS[caller.role or "anonymous"]
    return {action.value: budget(caller, action) for action in Action if action.value in roles}


def _counter(group: str, rate: str, value: str) -> tuple[str, int, int, int]:
    """django-ratelimit's (cache key, limit, period, window end) for a caller's budget: made
    once per caller, budget and window (its key is an MD5 of them), then looked up."""
    made = _counters.get((group, rate, value))
    if made is not None and int(time.time()) <= made[3]:
        return made
    limit, period = _split_rate(rate)
    window = _get_window(value, period)
    made = (_make_cache_key(group, window, rate, value, ALL), limit, period, window)
    if len(_counters) >= COUNTERS_KEPT:
        _counters.clear()
    _counters[(group, rate, value)] = made
    return made


# The counters of the current windows, by (action, budget, caller). django-ratelimit's window
# stays the same while int(time.time()) <= its end. Bounded: emptied when it is full.
_counters: dict[tuple[str, str, str], tuple[str, int, int, int]] = {}
COUNTERS_KEPT = 10_000


def _reset_s(window: int) -> int:
    return max(1, window - int(time.time()))


async def take(caller: Caller, action: Action, n: int = 1) -> Usage | None:
    """Count ``n`` requests of the caller against its budget for ``action`` (None: limits off)."""
    if not settings.RATE_LIMITS_ENABLED:
        return None
    key, limit, period, window = _counter(action.value, budget(caller, action), caller.identity)
    count = await store().aincr(key, n, period + EXPIRATION_FUDGE)
    return Usage(limit, count, _reset_s(window))


def take_sync(request: Any, action: Action) -> Usage | None:
    """``take`` for the DRF views, through django-ratelimit's get_usage (one request)."""
    found = get_usage(request, group=action.value, key=_ratelimit_key, rate=_ratelimit_rate, method=ALL,
                      increment=True)
    if found is None:
        return None
    return Usage(found["limit"], found["count"], max(1, found["time_left"]))


def _ratelimit_key(group: str, request: Any) -> str:
    return drf_caller(request).identity


def _ratelimit_rate(group: str, request: Any) -> str:
    return budget(drf_caller(request), group)


class RateLimit(BaseThrottle):
    """The DRF views' limit: the view's ``rate_actions`` (method -> Action) names what a
    request spends; a view without one is not limited. The usage is kept on the request for the
    X-RateLimit headers (orders.api.Guarded)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        action = getattr(view, "rate_actions", {}).get(request.method)
        if action is None:
            return True
        usage = take_sync(request, action)
        request.rate_usage = usage
        if usage is not None and usage.limited:
            raise DrfApiError(limited(usage))
        return True


# -- the failure budget ---------------------------------------------------------------------------

def _failures(ip: str) -> tuple[str, int, int, int]:
    return _counter(AUTH_FAILURES, settings.RATE_LIMIT_AUTH_FAILURES, f"ip:{ip}")


def _failing(ip: str, count: int, limit: int, window: int) -> ApiError:
    return ApiError(429, Code.RATE_LIMITED, f"Too many invalid API keys from this address; retry in "
                    f"{_reset_s(window)} s.", headers=Usage(limit, max(count, limit + 1), _reset_s(window)).headers())


async def refuse_if_failing(ip: str) -> None:
    """429 when the address has spent its failure budget (before any key is looked up)."""
    key, limit, _, window = _failures(ip)
    count = await store().aget(key)
    if count >= limit:
        raise _failing(ip, count, limit, window)


def refuse_if_failing_sync(ip: str) -> None:
    key, limit, _, window = _failures(ip)
    count = store().get(key)
    if count >= limit:
        raise _failing(ip, count, limit, window)


def _log_failure(ip: str, count: int, limit: int, period: int) -> None:
    if count == limit:
        log.warning("%d invalid API keys from %s within %d s: further unknown keys from it are refused (429) "
                    "until the window ends", count, ip, period)


async def count_failure(ip: str) -> None:
    key, limit, period, _ = _failures(ip)
    _log_failure(ip, await store().aincr(key, 1, period + EXPIRATION_FUDGE), limit, period)


def count_failure_sync(ip: str) -> None:
    key, limit, period, _ = _failures(ip)
    _log_failure(ip, store().incr(key, 1, period + EXPIRATION_FUDGE), limit, period)


# -- the stores -----------------------------------------------------------------------------------

class ShareStore:
    """Counters in this process's memory, scaled by the number of live web processes: a count
    of c here stands for c x P over all of them, so each process stops at its share."""

    SWEEP_EVERY = 10_000

    def __init__(self) -> None:
        # key -> [expires at (monotonic), count]; the event loop and DRF's thread both count.
        self._counts: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._created = 0
        self.peers = 1

    def _entry(self, key: str, timeout_s: float, now: float) -> list[float]:
        entry = self._counts.get(key)
        if entry is None or entry[0] <= now:
            entry = self._counts[key] = [now + timeout_s, 0]
            self._created += 1
            if self._created % self.SWEEP_EVERY == 0:
                for stale in [k for k, e in self._counts.items() if e[0] <= now]:
                    del self._counts[stale]
        return entry

    def incr(self, key: str, n: int, timeout_s: float) -> int:
        now = time.monotonic()
        with self._lock:
            entry = self._entry(key, timeout_s, now)
            entry[1] += n
            return int(entry[1]) * self.peers

    def add(self, key: str, value: int, timeout_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            entry = self._counts.get(key)
            if entry is not None and entry[0] > now:
                return False
            self._entry(key, timeout_s, now)[1] = value
            return True

    def get(self, key: str) -> int:
        entry = self._counts.get(key)
        return 0 if entry is None or entry[0] <= time.monotonic() else int(entry[1]) * self.peers

    async def aincr(self, key: str, n: int, timeout_s: float) -> int:
        return self.incr(key, n, timeout_s)

    async def aget(self, key: str) -> int:
        return self.get(key)


UPSERT_ONE = """
INSERT INTO orders_ratecounter AS c (key, count, expires_at) VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (key) DO UPDATE SET count = c.count + EXCLUDED.count RETURNING count
"""
ADD_ONE = """
INSERT INTO orders_ratecounter (key, count, expires_at) VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (key) DO NOTHING RETURNING 1
"""
GET_ONE = "SELECT count FROM orders_ratecounter WHERE key = %s AND expires_at > now()"
# One statement for a group of checks (a key may come several times: summed first, as a row
# can be changed only once per statement).
UPSERT_MANY = """
INSERT INTO orders_ratecounter AS c (key, count, expires_at)
SELECT key, sum(n), now() + make_interval(secs => max(ttl))
  FROM unnest(%(keys)s::text[], %(ns)s::bigint[], %(ttls)s::float8[]) AS r(key, n, ttl)
 GROUP BY key
ON CONFLICT (key) DO UPDATE SET count = c.count + EXCLUDED.count
RETURNING key, count
"""
DELETE_EXPIRED = "DELETE FROM orders_ratecounter WHERE expires_at < now() - interval '10 seconds'"


class PostgresStore:
    """Counters in PostgreSQL: exact across any number of web processes."""

    def incr(self, key: str, n: int, timeout_s: float) -> int:
        with connection.cursor() as cur:
            cur.execute(UPSERT_ONE, [key, n, timeout_s])
            return int(cur.fetchone()[0])

    def add(self, key: str, value: int, timeout_s: float) -> bool:
        with connection.cursor() as cur:
            cur.execute(ADD_ONE, [key, value, timeout_s])
            return cur.fetchone() is not None

    def get(self, key: str) -> int:
        with connection.cursor() as cur:
            cur.execute(GET_ONE, [key])
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    async def aincr(self, key: str, n: int, timeout_s: float) -> int:
        return (await coalescer(_upsert_many).submit([(key, n, timeout_s)]))[0]

    async def aget(self, key: str) -> int:
        async with db.connection() as conn:
            cur = await conn.execute(GET_ONE, (key,))
            row = await cur.fetchone()
            await conn.commit()
        return 0 if row is None else int(row[0])


async def _upsert_many(items: list[tuple[str, int, float]]) -> dict[int, int]:
    """Each item's count as if the items had been counted one by one, in order."""
    async with db.connection() as conn:
        cur = await conn.execute(UPSERT_MANY, {"keys": [k for k, _, _ in items], "ns": [n for _, n, _ in items],
                                               "ttls": [t for _, _, t in items]})
        totals = {key: int(count) for key, count in await cur.fetchall()}
        await conn.commit()
    before = dict(totals)
    for key, n, _ in items:
        before[key] -= n
    answers: dict[int, int] = {}
    for i, (key, n, _) in enumerate(items):
        before[key] += n
        answers[i] = before[key]
    return answers


_stores: dict[str, ShareStore | PostgresStore] = {}


def store() -> ShareStore | PostgresStore:
    kind = settings.RATE_LIMIT_STORE
    found = _stores.get(kind)
    if found is None:
        found = _stores[kind] = ShareStore() if kind == "share" else PostgresStore()
    return found


class CounterCache(BaseCache):
    """The cache django-ratelimit counts in (settings.RATELIMIT_USE_CACHE): this module's store,
    so the DRF views and ``take`` share counters. Keys are used as given (no prefix, no
    version), the very keys ``take`` computes; only what django-ratelimit calls is here."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def _ttl(self, timeout: Any) -> float:
        return float(self.default_timeout if timeout is DEFAULT_TIMEOUT or timeout is None else timeout)

    def add(self, key: str, value: int, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return store().add(key, int(value), self._ttl(timeout))

    def incr(self, key: str, delta: int = 1, version: Any = None) -> int:
        return store().incr(key, delta, self.default_timeout)

    def get(self, key: str, default: Any = None, version: Any = None) -> Any:
        count = store().get(key)
        return count if count else default


# -- the number of live web processes (for `share`), and the counters' cleanup ------------------

PEER_SESSIONS_SQL = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND application_name = %s")
_peer_tasks: dict[int, asyncio.Task[None]] = {}


def peers() -> int:
    found = store()
    return found.peers if isinstance(found, ShareStore) else 1


def start_background() -> None:
    """Start, once per event loop, the task that counts the live web processes (each holds one
    LISTEN session, orders.listener) and deletes expired counter rows."""
    loop = asyncio.get_running_loop()
    task = _peer_tasks.get(id(loop))
    if task is None or task.done():
        _peer_tasks[id(loop)] = loop.create_task(_count_peers(), name="pgbourse-rate-limit-peers")


async def _count_peers() -> None:
    from .listener import LISTEN_APPLICATION_NAME, hub

    cleaned_at = 0.0
    while True:
        try:
            async with db.connection() as conn:
                cur = await conn.execute(PEER_SESSIONS_SQL, (LISTEN_APPLICATION_NAME,))
                (sessions,) = await cur.fetchone()  # type: ignore[misc]
                if settings.RATE_LIMIT_STORE == "postgres" and time.monotonic() - cleaned_at > 10:
                    await conn.execute(DELETE_EXPIRED)
                    cleaned_at = time.monotonic()
                await conn.commit()
            found = store()
            if isinstance(found, ShareStore):
                # This process counts itself even while its own LISTEN session is down.
                found.peers = max(1, int(sessions) + (0 if hub.is_listening else 1))
        except (psycopg.Error, *db.FAILURES, db.DatabaseDown) as exc:
            # The last count stands until PostgreSQL answers again.
            log.debug("counting web processes failed: %s", exc)
        await asyncio.sleep(settings.RATE_LIMIT_PEERS_EVERY_S)
