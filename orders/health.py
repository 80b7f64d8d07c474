"""Health and metrics on the lean ASGI path, in front of everything else: they answer even when
Django's thread pool is busy, and never wait on the order path's connection pool.

- ``GET /healthz``: liveness, ``{"status": "ok"}`` while the process serves (no I/O at all).
- ``GET /readyz`` (and ``GET /healthz?full=1``, the same): readiness, each check with its
  figure: PostgreSQL (round trip), the matching worker (its heartbeat's age and whether its
  session holds the ownership lock), this process's LISTEN hub, the inbox backlog (and its
  oldest pending order's age), the last committed batch. 200 when every check passes, else
  503 naming the failing ones. Bounded by READY_TIMEOUT_S whatever PostgreSQL does.
- ``GET /metrics``: Prometheus text: every process's metrics (prometheus_client's multiprocess
  directory) plus the readiness figures as gauges.

The checks run on a PostgreSQL session of their own, driven by a thread of its own: a hung
server (a stopped postmaster, a dead network path) can hold that thread, never the event loop,
and while one probe is stuck the next ones answer at once from the deadline.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from matching.worker.postgres import conninfo
from matching.worker.store import LOCK_KEY

from . import auth, limits
from .listener import hub

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# What this module answers (outside the API's schema: the Postman collection covers them too).
PATHS = ("/healthz", "/readyz", "/metrics")
JSON = [(b"content-type", b"application/json")]
LIVE = orjson.dumps({"status": "ok"})

# One round trip for every figure PostgreSQL has. The ownership lock is a session advisory lock
# on one bigint key: pg_locks shows it as classid (high 32 bits), objid (low 32 bits).
CHECKS_SQL = """
SELECT w.owner, w.direct_address, extract(epoch FROM clock_timestamp() - w.heartbeat_at)::float8,
       extract(epoch FROM clock_timestamp() - w.last_batch_at)::float8, w.batches,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = w.backend_pid
                  AND l.classid = %(hi)s::oid AND l.objid = %(lo)s::oid AND l.objsubid = 1),
       (SELECT count(*) FROM orders_order WHERE status = 'pending'),
       (SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8 FROM orders_order
         WHERE status = 'pending'),
       (SELECT count(*) FROM orders_ordercommand WHERE NOT processed)
       + (SELECT count(*) FROM orders_admincommand WHERE NOT processed)
  FROM (SELECT 1) AS one LEFT JOIN orders_workerstatus w ON w.id = 1
"""


class Probe:
    """The readiness checks' PostgreSQL session and the one thread that uses it."""

    def __init__(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pgbourse-ready")
        self._conn: psycopg.Connection[Any] | None = None
        self._running: concurrent.futures.Future[dict[str, Any]] | None = None
        self._since = 0.0

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            kwargs = conninfo("pgbourse-web-ready")
            # A statement that runs long (locks, a busy server) ends on the server's side too.
            timeout_ms = max(100, int(settings.READY_TIMEOUT_S * 1000))
            kwargs["options"] = (kwargs.get("options", "") + f" -c statement_timeout={timeout_ms}").strip()
            self._conn = psycopg.Connection.connect(**kwargs, autocommit=True)
        return self._conn

    def _figures(self) -> dict[str, Any]:
        """In the probe's thread: every figure PostgreSQL has, or the error."""
        try:
            conn = self._connect()
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            rtt = time.perf_counter() - started
            row = conn.execute(CHECKS_SQL, {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF}).fetchone()
        except psycopg.Error as exc:
            if self._conn is not None:
                self._conn.close()
            return {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
        assert row is not None
        owner, address, heartbeat_age, batch_age, batches, holds_lock, pending, oldest, commands = row
        return {"round_trip_s": rtt, "owner": owner, "direct_address": address, "heartbeat_age_s": heartbeat_age,
                "last_batch_age_s": batch_age, "batches": batches, "holds_lock": bool(holds_lock),
                "pending_orders": pending, "oldest_pending_age_s": oldest, "pending_commands": commands}

    async def figures(self, timeout: float) -> dict[str, Any]:
        """The figures, or {"error": ...} within ``timeout``. A probe still running from an
        earlier call is waited for (within the same bound), never doubled."""
        now = time.monotonic()
        if self._running is None or self._running.done():
            self._running = self._thread.submit(self._figures)
            self._since = now
        waiting = asyncio.wrap_future(self._running)
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
        if not done:
            return {"error": f"no answer from PostgreSQL for {time.monotonic() - self._since:.1f} s"}
        return waiting.result()


probe = Probe()


def _age(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 3)


def access_settings() -> dict[str, Any]:
    """What this web process checks of its callers (orders.auth, orders.limits); a warning when
    keys are not checked."""
    return {"auth": "required" if settings.AUTH_REQUIRED else "off",
            "rate_limits": {"enabled": settings.RATE_LIMITS_ENABLED, "store": settings.RATE_LIMIT_STORE,
                            "web_processes": limits.peers()},
            "warnings": [] if settings.AUTH_REQUIRED else [auth.OFF_WARNING]}


async def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, the body of /readyz)."""
    deadline = time.monotonic() + settings.READY_TIMEOUT_S
    figures = await probe.figures(settings.READY_TIMEOUT_S)
    db_ok = "error" not in figures
    checks: dict[str, dict[str, Any]] = {}
    checks["database"] = ({"ok": True, "round_trip_ms": round(figures["round_trip_s"] * 1000, 3)} if db_ok
                          else {"ok": False, "error": figures["error"]})
    if db_ok:
        age = figures["heartbeat_age_s"]
        worker_ok = age is not None and age <= settings.READY_HEARTBEAT_MAX_AGE_S and figures["holds_lock"]
        checks["matching_worker"] = {"ok": worker_ok, "heartbeat_age_s": _age(age), "holds_lock": figures["holds_lock"],
                                     "owner": figures["owner"], "direct_address": figures["direct_address"]}
        oldest = figures["oldest_pending_age_s"]
        checks["inbox"] = {"ok": oldest is None or oldest <= settings.READY_PENDING_MAX_AGE_S,
                           "pending_orders": figures["pending_orders"], "pending_commands": figures["pending_commands"],
                           "oldest_pending_age_s": _age(oldest)}
        checks["last_batch"] = {"ok": True, "age_s": _age(figures["last_batch_age_s"]), "batches": figures["batches"]}
    else:
        for name in ("matching_worker", "inbox", "last_batch"):
            checks[name] = {"ok": False, "error": "database unreachable"}
    try:
        await hub.ensure_started(timeout=max(0.01, deadline - time.monotonic()))
    except (TimeoutError, psycopg.Error, OSError):
        pass
    checks["listen_hub"] = {"ok": hub.is_listening, "reconnects": hub.reconnects}
    failing = [name for name, check in checks.items() if not check["ok"]]
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "checks": checks,
                            **access_settings()}
    if failing:
        body.update(code="not_ready", detail=f"failing: {', '.join(failing)}", fields={}, failing=failing)
    return not failing, body


# --------------------------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------------------------

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _forget_dead_processes(directory: str) -> None:
    """A process that died leaves its "live" gauges behind (its WebSocket count, the worker's
    books): drop them, as prometheus_client's mark_process_dead would."""
    pids = {int(m.group(1)) for f in glob.glob(os.path.join(directory, "gauge_live*.db"))
            if (m := _LIVE_GAUGE_FILE.search(f))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:
            pass  # alive, another user's


class _Figures:
    """The readiness figures as gauges (read at scrape time)."""

    def __init__(self, figures: dict[str, Any], listening: bool) -> None:
        self.figures = figures
        self.listening = listening

    def collect(self) -> Any:
        f = self.figures
        up = "error" not in f
        yield GaugeMetricFamily("database_up", "1 if PostgreSQL answered the readiness probe", value=1 if up else 0)
        yield GaugeMetricFamily("listen_connected", "1 if this web process's LISTEN connection is up",
                                value=1 if self.listening else 0)
        if not up:
            return
        yield GaugeMetricFamily("database_round_trip_seconds", "SELECT 1 from a web process", value=f["round_trip_s"])
        yield GaugeMetricFamily("inbox_pending_orders", "Orders stored pending, not yet matched",
                                value=f["pending_orders"])
        yield GaugeMetricFamily("inbox_pending_commands", "Cancels, modifies and admin commands waiting in the inbox",
                                value=f["pending_commands"])
        if f["oldest_pending_age_s"] is not None:
            yield GaugeMetricFamily("inbox_oldest_pending_age_seconds", "Age of the oldest pending order",
                                    value=max(f["oldest_pending_age_s"], 0.0))
        if f["heartbeat_age_s"] is not None:
            yield GaugeMetricFamily("matching_worker_heartbeat_age_seconds", "Age of the matching worker's heartbeat",
                                    value=max(f["heartbeat_age_s"], 0.0))
            yield GaugeMetricFamily("matching_worker_holds_lock",
                                    "1 if the heartbeat's session holds the ownership lock",
                                    value=1 if f["holds_lock"] else 0)
        if f["last_batch_age_s"] is not None:
            yield GaugeMetricFamily("matching_last_batch_age_seconds", "Age of the last batch that changed a book",
                                    value=max(f["last_batch_age_s"], 0.0))


def _exposition(figures: dict[str, Any], listening: bool) -> bytes:
    extra = CollectorRegistry()
    extra.register(_Figures(figures, listening))  # type: ignore[arg-type]
    directory = settings.METRICS_DIR
    if directory:
        _forget_dead_processes(directory)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, directory)
        return generate_latest(merged) + generate_latest(extra)
    return generate_latest(REGISTRY) + generate_latest(extra)


async def metrics_text() -> bytes:
    figures = await probe.figures(settings.READY_TIMEOUT_S)
    return await asyncio.to_thread(_exposition, figures, hub.is_listening)


# --------------------------------------------------------------------------------------------
# ASGI
# --------------------------------------------------------------------------------------------


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def health_application(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """/healthz, /readyz and /metrics; everything else goes to ``app``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if path not in PATHS:
            await app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            body = orjson.dumps({"code": "method_not_allowed", "detail": f"{path} answers GET only.", "fields": {}})
            await _respond(send, 405, body, [*JSON, (b"allow", b"GET, HEAD")])
            return
        if path == "/metrics":
            await _respond(send, 200, await metrics_text(), [(b"content-type", CONTENT_TYPE_LATEST.encode())])
            return
        if path == "/healthz" and b"full=1" not in scope.get("query_string", b""):
            await _respond(send, 200, LIVE, JSON)
            return
        auth.start_background()  # the LISTEN hub and the count of web processes it reports
        ready, body = await readiness()
        await _respond(send, 200 if ready else 503, orjson.dumps(body), JSON)

    return wrapped
