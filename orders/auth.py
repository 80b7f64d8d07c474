"""Who is asking, and what they may do: API keys with roles, and the client a key acts for.

One check for every entry: the lean HTTP path (orders.fastpath), the DRF views (the
authentication and permission classes below), the WebSocket (marketdata.consumers) and
``is_admin``, the one admin-role check for the admin endpoints.

A key is ``pgb_<8 hex>_<43 characters of base64url>``: a prefix people can read in the admin,
then 32 random bytes. It is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (on
the WebSocket, in the opening handshake or a first ``auth`` message). Only its SHA-256 is
stored; a lookup is one index probe, and the answer is cached in the process: the keys' table
NOTIFYs every change (a trigger, see the migration), so a revoked key stops working in every
web process as soon as PostgreSQL delivers the notification. While a process is not listening,
what it cached is trusted for UNWATCHED_S at most.

Roles: ``trader`` places, cancels, modifies and reads its own client's orders; ``read_only``
reads them; ``admin`` (an operator) acts for any client: it names the client in each order, as
before keys existed, reads and cancels any order, and may use the admin endpoints. A staff
session (the Django admin's login) is an admin in the browsable API. Without a key, only the
public market data. PGBOURSE_AUTH=off: every request is an admin without a key.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

from matching.contract import Code

from . import audit, db, limits
from .callers import (
    ADMIN,
    READ_ONLY,
    Caller,
    anonymous,
    drf_caller,
    ip_identity,
    open_caller,
    staff_caller,
)
from .errors import ApiError, DrfApiError
from .listener import LISTEN_APPLICATION_NAME, hub
from .models import ApiKey, KeyRole

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"pgb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
# What a process cached while it was not listening for changes is trusted this long.
UNWATCHED_S = 1.0
# last_used_at is written at most this often per key and process (not once per request).
LAST_USED_EVERY_S = 60.0
WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="pgbourse"')

OFF_WARNING = ("PGBOURSE_AUTH=off: no API keys are checked and anyone who can reach this port may place, "
               "cancel and read every client's orders (local experiments only)")


def new_key() -> tuple[str, str, str]:
    """A new key: (the key, its prefix, its hash). The key itself is shown once, never stored."""
    prefix = f"pgb_{secrets.token_hex(4)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, key_hash(key)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_headers(authorization: bytes | str | None, x_api_key: bytes | str | None) -> str | None:
    """The key a request presents (Authorization: Bearer first), or None. Any other
    Authorization scheme is not ours and is ignored."""
    if authorization:
        text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
        scheme, _, value = text.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    if x_api_key:
        return (x_api_key.decode("latin-1") if isinstance(x_api_key, bytes) else x_api_key).strip()
    return None


# -- the cache of keys, kept true by NOTIFY -------------------------------------------------------

@dataclass(slots=True)
class _Record:
    key_id: int
    client_id: str
    role: str
    prefix: str
    revoked: bool
    rates: dict[str, str]
    loaded_at: float
    epoch: int  # the hub's LISTEN epoch when loaded, 0 if it was not listening
    used_at: float = 0.0

    def fresh(self) -> bool:
        if self.epoch and hub.is_listening and hub.listen_epoch == self.epoch:
            return True
        return time.monotonic() - self.loaded_at < UNWATCHED_S


_by_hash: dict[str, _Record] = {}
_invalidations = 0
_watchers: dict[int, set[Callable[[], None]]] = {}

LOOKUP_SQL = ("SELECT id, client_id, role, prefix, revoked_at IS NOT NULL, orders_rate, commands_rate, reads_rate "
              "FROM orders_apikey WHERE key_hash = %s")
TOUCH_SQL = "UPDATE orders_apikey SET last_used_at = now() WHERE id = %s"


def _on_key_change(payload: str | None) -> None:
    """The hub's callback: a key changed (its id), or None: the hub (re)connected and may have
    missed changes, so nothing cached is trusted any more."""
    global _invalidations
    _invalidations += 1
    if payload is None:
        _by_hash.clear()
        ids = list(_watchers)
    else:
        try:
            key_id = int(payload)
        except ValueError:
            return
        # (a copy first: DRF's thread may add an entry meanwhile)
        for h in [h for h, r in list(_by_hash.items()) if r.key_id == key_id]:
            _by_hash.pop(h, None)
        ids = [key_id]
    for key_id in ids:
        for callback in list(_watchers.get(key_id, ())):
            callback()


hub.add_key_subscriber(_on_key_change)


def watch(key_id: int, callback: Callable[[], None]) -> None:
    """Call ``callback`` (on the event loop) when the key may have changed."""
    _watchers.setdefault(key_id, set()).add(callback)


def unwatch(key_id: int, callback: Callable[[], None]) -> None:
    found = _watchers.get(key_id)
    if found is not None:
        found.discard(callback)
        if not found:
            del _watchers[key_id]


def _install(h: str, row: tuple[Any, ...] | None, invalidations_before: int) -> _Record | None:
    if row is None:
        return None
    key_id, client_id, role, prefix, revoked, orders_rate, commands_rate, reads_rate = row
    rates = {name: rate for name, rate in (("orders", orders_rate), ("commands", commands_rate),
                                            ("reads", reads_rate)) if rate}
    record = _Record(int(key_id), client_id, role, prefix, bool(revoked), rates, time.monotonic(),
                     hub.listen_epoch if hub.is_listening else 0)
    # A change notified while the row was being read may be newer than the row: use it, but do
    # not keep it.
    if _invalidations == invalidations_before:
        _by_hash[h] = record
    return record


_lookups: dict[str, asyncio.Future[_Record | None]] = {}


async def _lookup(h: str) -> _Record | None:
    """The key's row, read once however many requests ask for it at the same moment (a key
    that is no longer fresh, under load, would otherwise be read by each of them)."""
    pending = _lookups.get(h)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[_Record | None] = asyncio.get_running_loop().create_future()
    _lookups[h] = future
    try:
        before = _invalidations
        async with db.connection() as conn:  # bounded, and refused at once while the database is down
            cur = await conn.execute(LOOKUP_SQL, (h,))
            row = await cur.fetchone()
            await conn.commit()
        record = _install(h, row, before)
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: nobody else may be waiting
        raise
    else:
        future.set_result(record)
        return record
    finally:
        _lookups.pop(h, None)


def _lookup_sync(h: str) -> _Record | None:
    before = _invalidations
    with connection.cursor() as cur:
        cur.execute(LOOKUP_SQL, [h])
        row = cur.fetchone()
    return _install(h, row, before)


def _caller(record: _Record, h: str, ip: str) -> Caller:
    if record.revoked:
        raise _refused(Code.API_KEY_REVOKED, "This API key has been revoked.")
    return Caller(role=record.role, ip=ip, client_id=record.client_id, key_id=record.key_id, key_hash=h,
                  prefix=record.prefix, rates=record.rates)


def _refused(code: Code, detail: str) -> ApiError:
    return ApiError(401, code, detail, headers=[WWW_AUTHENTICATE])


def _needs_touch(record: _Record) -> bool:
    now = time.monotonic()
    if now - record.used_at < LAST_USED_EVERY_S:
        return False
    record.used_at = now
    return True


async def _touch(key_id: int) -> None:
    try:
        async with db.connection() as conn:
            await conn.execute(TOUCH_SQL, (key_id,))
            await conn.commit()
    except (psycopg.Error, *db.FAILURES, db.DatabaseDown) as exc:
        log.debug("could not record the use of key %d: %s", key_id, exc)


_background: dict[int, asyncio.Task[Any]] = {}


def start_background() -> None:
    """Once per event loop, cheap after: the LISTEN hub (which keeps the cache of keys true) and
    the limiter's count of web processes. Called on every request and socket."""
    loop = asyncio.get_running_loop()
    if id(loop) in _background:
        return
    hub.application_name = LISTEN_APPLICATION_NAME  # a web process: counted by orders.limits

    async def start_hub() -> None:
        try:
            await hub.ensure_started()
        except (TimeoutError, psycopg.Error, OSError):
            pass  # the hub keeps reconnecting on its own; until then the cache trusts for UNWATCHED_S

    _background[id(loop)] = loop.create_task(start_hub(), name="pgbourse-auth-hub")
    limits.start_background()


async def authenticate(key: str | None, ip: str) -> Caller:
    """The caller presenting ``key`` (None: no key) from address ``ip``; ApiError 401 for an
    unknown or revoked key, 429 once the address has spent its failure budget."""
    if not settings.AUTH_REQUIRED:
        return open_caller(ip)
    if key is None:
        return anonymous(ip)
    h = key_hash(key) if KEY_PATTERN.fullmatch(key) else ""
    record = _by_hash.get(h) if h else None
    if record is None or not record.fresh():
        await limits.refuse_if_failing(ip)
        record = await _lookup(h) if h else None
    if record is None or record.revoked:
        await limits.count_failure(ip)
    if record is None:
        raise _refused(Code.INVALID_API_KEY, "The API key is not valid.")
    caller = _caller(record, h, ip)
    if _needs_touch(record):
        asyncio.get_running_loop().create_task(_touch(record.key_id))
    return caller


def authenticate_sync(key: str | None, ip: str) -> Caller:
    """``authenticate`` for synchronous code (the DRF views, the admin)."""
    if not settings.AUTH_REQUIRED:
        return open_caller(ip)
    if key is None:
        return anonymous(ip)
    h = key_hash(key) if KEY_PATTERN.fullmatch(key) else ""
    record = _by_hash.get(h) if h else None
    if record is None or not record.fresh():
        limits.refuse_if_failing_sync(ip)
        record = _lookup_sync(h) if h else None
    if record is None or record.revoked:
        limits.count_failure_sync(ip)
    if record is None:
        raise _refused(Code.INVALID_API_KEY, "The API key is not valid.")
    caller = _caller(record, h, ip)
    if _needs_touch(record):
        ApiKey.objects.filter(pk=record.key_id).update(last_used_at=timezone.now())
    return caller


async def recheck(caller: Caller) -> Caller:
    """The caller as its key stands now (a long-lived socket's key may have been revoked or
    changed since it connected); ApiError 401 when it no longer works."""
    if caller.key_id is None or not settings.AUTH_REQUIRED:
        return caller
    record = _by_hash.get(caller.key_hash)
    if record is None or not record.fresh():
        record = await _lookup(caller.key_hash)
    if record is None:
        raise _refused(Code.INVALID_API_KEY, "The API key is not valid.")
    return _caller(record, caller.key_hash, caller.ip)


# -- what a caller may do ------------------------------------------------------------------------

READ, TRADE, OPERATE = "read", "trade", "operate"


def require(caller: Caller, need: str) -> None:
    """ApiError unless the caller may: 401 without a key, 403 with one whose role may not."""
    if caller.role is None:
        raise _refused(Code.AUTHENTICATION_REQUIRED, "An API key is required: Authorization: Bearer <key>.")
    if need == TRADE and caller.role == READ_ONLY:
        raise ApiError(403, Code.FORBIDDEN, "This API key is read-only.")
    if need == OPERATE and caller.role != ADMIN:
        raise ApiError(403, Code.FORBIDDEN, "This needs an admin key or a staff session.")


def is_admin(subject: Caller | Any) -> bool:
    """The one admin check (a caller, or a Django or DRF request): an admin key, a staff
    session, or PGBOURSE_AUTH=off."""
    caller = subject if isinstance(subject, Caller) else caller_of(subject)
    return caller.role == ADMIN


def bind_client(caller: Caller, data: Any) -> Any:
    """An order body as this caller may send it: a trader's or read-only key's orders are its
    client's (client_id filled in when absent; another client's is 403 client_mismatch). An
    admin names the client itself (`required` when it does not)."""
    bound = caller.limited_to
    if bound is None or not isinstance(data, dict):
        return data
    named = data.get("client_id")
    if named is None:
        return {**data, "client_id": bound}
    if isinstance(named, str) and named != bound:
        raise client_mismatch(bound)
    return data


def client_scope(caller: Caller, client_id: str | None) -> str | None:
    """Whose data a read names, as this caller may read it: a trader's or read-only key reads
    its own client's (named or not; another client's is 403 client_mismatch), an admin the
    client named (None: every client's)."""
    bound = caller.limited_to
    if bound is None:
        return client_id
    if client_id is not None and client_id != bound:
        raise client_mismatch(bound)
    return bound


def client_mismatch(bound: str) -> ApiError:
    return ApiError(403, Code.CLIENT_MISMATCH, f"This API key acts for client {bound!r} only.",
                    {"client_id": [{"code": Code.CLIENT_MISMATCH.value, "detail": "not this key's client"}]})


# -- DRF -----------------------------------------------------------------------------------------

def caller_of(request: Any) -> Caller:
    """The caller of a DRF or Django request (authenticated already by DRF; a plain Django
    request is authenticated here, by its key or its staff session)."""
    if hasattr(request, "_request"):  # a DRF request: authenticated already
        return drf_caller(request)
    user = getattr(request, "user", None)
    if isinstance(user, Caller):
        return user
    ip = ip_identity(request.META.get("REMOTE_ADDR"))
    key = key_from_headers(request.META.get("HTTP_AUTHORIZATION"), request.META.get("HTTP_X_API_KEY"))
    if key is not None or not settings.AUTH_REQUIRED:
        return authenticate_sync(key, ip)
    if user is not None and user.is_active and user.is_staff:
        return staff_caller(user, ip)
    return anonymous(ip)


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[Caller, None] | None:
        ip = ip_identity(request.META.get("REMOTE_ADDR"))
        if not settings.AUTH_REQUIRED:
            return open_caller(ip), None
        key = key_from_headers(request.META.get("HTTP_AUTHORIZATION"), request.META.get("HTTP_X_API_KEY"))
        if key is None:
            return None
        try:
            return authenticate_sync(key, ip), None
        except ApiError as exc:
            raise DrfApiError(exc) from None

    def authenticate_header(self, request: Any) -> str:
        return WWW_AUTHENTICATE[1].decode()


class StaffSessionAuthentication(SessionAuthentication):
    """A staff user's session (the admin's login), as an admin caller, CSRF-checked."""

    def authenticate(self, request: Any) -> tuple[Caller, None] | None:
        user = getattr(request._request, "user", None)
        if user is None or isinstance(user, Caller) or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        return staff_caller(user, ip_identity(request.META.get("REMOTE_ADDR"))), None


def _permit(request: Any, need: str) -> bool:
    try:
        require(caller_of(request), need)
    except ApiError as exc:
        raise DrfApiError(exc) from None
    return True


class IsCaller(BasePermission):
    """Any key, or a staff session (the default of every DRF view)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return _permit(request, READ)


class ReadsOrTrades(BasePermission):
    """Reads for any key, writes for trader and admin keys."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return _permit(request, READ if request.method in SAFE_METHODS else TRADE)


class PublicRead(BasePermission):
    """Public market data: no key needed (limited by address)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return True


class IsAdmin(BasePermission):
    """Admin keys and staff sessions (``is_admin``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return _permit(request, OPERATE)


# -- keys: create and revoke (audited) -----------------------------------------------------------

# -- development: the demo keys ----------------------------------------------------------------

def _database_identity() -> str:
    db = settings.DATABASES["default"]
    return f"{db.get('HOST', '')}:{db.get('PORT', '')}/{db['NAME']}"


def _saved_demo_keys() -> dict[str, Any]:
    try:
        saved = json.loads(settings.DEMO_KEYS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save_demo_keys(keys: dict[str, str]) -> None:
    """Development only: keep the demo keys (client -> key) of this database, readable by the
    owner only, for the trading page and the client commands of this machine."""
    saved = {**_saved_demo_keys(), _database_identity(): keys}
    path = settings.DEMO_KEYS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(saved, f, indent=1)


def demo_key(client_id: str) -> str:
    """The demo key of ``client_id`` that `make run` made for this database, or "" (outside
    development, or none made for this database)."""
    if not settings.DEVELOPMENT or not settings.AUTH_REQUIRED:
        return ""
    keys = _saved_demo_keys().get(_database_identity(), {})
    key = keys.get(client_id, "") if isinstance(keys, dict) else ""
    return key if isinstance(key, str) else ""


class KeyRefused(ValueError):
    """A key that cannot be created as asked (why is the message)."""


def api_key_create(*, client_id: str, role: str, actor: Any, name: str = "", rates: dict[str, str] | None = None,
                   rotate: bool = False) -> tuple[ApiKey, str]:
    """A new key for ``client_id``: (its row, the key, to be shown once). ``rotate`` revokes
    the client's live key in the same transaction; without it, a live key is KeyRefused."""
    from .validation import bad_text_path

    if not client_id or len(client_id) > 64 or bad_text_path(client_id) is not None or client_id != client_id.strip():
        raise KeyRefused("client_id must be 1 to 64 characters, without NUL, surrogates or surrounding spaces")
    if role not in KeyRole.values:
        raise KeyRefused(f"role must be one of {', '.join(KeyRole.values)}")
    rates = {k: v for k, v in (rates or {}).items() if v}
    for action, rate in rates.items():
        if action not in {a.value for a in limits.Action} or settings.RATE_SYNTAX.fullmatch(rate) is None:
            raise KeyRefused(f"{action} budget {rate!r}: use a budget such as 200/2s, 100/s or 6000/m")
    key, prefix, h = new_key()
    try:
        with transaction.atomic():
            if rotate:
                for live in ApiKey.objects.select_for_update().filter(client_id=client_id, revoked_at__isnull=True):
                    api_key_revoke(api_key=live, actor=actor)
            row = ApiKey.objects.create(client_id=client_id, role=role, name=name, prefix=prefix, key_hash=h,
                                        orders_rate=rates.get("orders", ""), commands_rate=rates.get("commands", ""),
                                        reads_rate=rates.get("reads", ""))
            audit.record(actor, "api_key_created", f"{prefix} ({client_id})",
                         {"role": role, "name": name, "rates": rates})
    except IntegrityError:
        raise KeyRefused(f"client {client_id!r} already has a live key: revoke it first (or rotate)") from None
    return row, key


def api_key_revoke(*, api_key: ApiKey, actor: Any) -> bool:
    """Revoke a key (every web process stops accepting it as soon as the change is notified).
    False if it was revoked already."""
    with transaction.atomic():
        done = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if done:
            audit.record(actor, "api_key_revoked", f"{api_key.prefix} ({api_key.client_id})", {"role": api_key.role})
    api_key.refresh_from_db(fields=["revoked_at"])
    return bool(done)
