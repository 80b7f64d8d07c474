"""API keys for the tests, made straight in the test database (orders.auth's own key format
and hash), so that a test that is not about keys never has to think of them.

``tests.http.call``/``acall`` and ``tests.marketdata.streams.session`` send a key unless told
otherwise: the trader key of the body's ``client_id`` when there is one (made on first use),
else the admin key (which acts for any client, as every request did before keys existed). A
test about keys passes ``key=`` itself (``None``: no key at all). Keys made here get budgets no
test reaches, except those a test makes with budgets of its own (``KeyRing.create``). A server
with PGBOURSE_AUTH=off ignores whatever key is sent.
"""
from __future__ import annotations

import uuid
from typing import Any

import psycopg

from orders.auth import new_key

UNLIMITED = "1000000/s"
ADMIN_CLIENT = "tests-admin"


class Auto:
    """The default of ``key=``: choose the key from the request."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = Auto()


class KeyRing:
    def __init__(self, conninfo: dict[str, Any]) -> None:
        self.conninfo = conninfo
        self._traders: dict[str, str] = {}
        self._admin: str | None = None

    def create(self, client_id: str | None = None, role: str = "trader", *, orders_rate: str = UNLIMITED,
               commands_rate: str = UNLIMITED, reads_rate: str = UNLIMITED, name: str = "tests") -> str:
        """A new live key (a fresh client id unless given: a client has one live key)."""
        client_id = client_id or f"cl-{uuid.uuid4().hex[:12]}"
        key, prefix, digest = new_key()
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO orders_apikey (client_id, role, name, prefix, key_hash, orders_rate, "
                         "commands_rate, reads_rate, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
                         (client_id, role, name, prefix, digest, orders_rate, commands_rate, reads_rate))
        return key

    def trader(self, client_id: str) -> str:
        found = self._traders.get(client_id)
        if found is None:
            found = self._traders[client_id] = self.create(client_id, "trader")
        return found

    def admin(self) -> str:
        if self._admin is None:
            self._admin = self.create(ADMIN_CLIENT, "admin")
        return self._admin

    def for_body(self, body: Any) -> str:
        client_id = body.get("client_id") if isinstance(body, dict) else None
        if isinstance(client_id, str) and 0 < len(client_id) <= 64 and client_id.isprintable() \
                and client_id == client_id.strip() and client_id.isascii():
            return self.trader(client_id)
        return self.admin()


_rings: dict[str, KeyRing] = {}


def register(ring: KeyRing, *urls: str) -> None:
    """Requests to these base URLs (http://..., ws://.../stream) get keys from ``ring``."""
    for url in urls:
        _rings[url.rstrip("/")] = ring


def ring_for(url: str) -> KeyRing | None:
    """The ring registered for ``url``; for a server nobody registered (a test's own), the
    exchange's first: its keys are right if the server shares the database, and fail the way
    any key would if it does not."""
    return _rings.get(url.rstrip("/")) or next(iter(_rings.values()), None)


def choose(url: str, key: Any, body: Any = None) -> str | None:
    """The key a request to ``url`` sends: ``key`` itself unless it is AUTO."""
    if key is not AUTO:
        return key  # type: ignore[no-any-return]
    ring = ring_for(url)
    return None if ring is None else ring.for_body(body)


def auth_headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def key_id(ring: KeyRing, key: str) -> int:
    from orders.auth import key_hash

    with psycopg.connect(**ring.conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM orders_apikey WHERE key_hash = %s", (key_hash(key),)).fetchone()
    assert row is not None
    return int(row[0])


def fresh_window(identity: str, period_s: int, need_s: float) -> None:
    """Wait until the current window of a budget (django-ratelimit's, per identity) has at
    least ``need_s`` left, so that a test's requests all fall in one window."""
    import time

    from django_ratelimit.core import _get_window

    while _get_window(identity, period_s) - time.time() < need_s:
        time.sleep(0.2)


def wait_for_web_processes(bases: list[str], count: int, timeout: float = 15) -> None:
    """Wait until each server counts ``count`` live web processes: budgets are shared among
    them (orders.limits, the `share` store), so a test that counts requests against a budget
    needs to know how many there are."""
    import time

    from tests.http import call

    deadline = time.monotonic() + timeout
    while True:
        seen = [call(b, "GET", "/readyz", key=None)[1]["rate_limits"]["web_processes"] for b in bases]
        if seen == [count] * len(bases):
            return
        assert time.monotonic() < deadline, f"web processes seen: {seen}, expected {count}"
        time.sleep(0.2)
