"""The web processes' metrics of record (Prometheus), beside the matching worker's
(matching.worker.metrics): what only the edge knows. All processes of one exchange write to
one PROMETHEUS_MULTIPROC_DIR, and /metrics merges them (orders.health).

- ``order_latency_seconds{transport}``: from a request's arrival to its acknowledged answer;
- ``orders_rejected_total{instrument,reason}``: orders refused at the edge (validation); the
  worker counts the engine's refusals under the same name;
- ``order_requests_total{operation,status}``: the lean HTTP path's answers;
- ``websocket_connections``, ``fanout_resyncs_total{reason}``, ``fanout_slow_consumers_total``,
  ``listen_reconnects_total``.

Each helper is a no-op with PGBOURSE_METRICS=off (to measure what metrics cost).
"""
from __future__ import annotations

import bisect
import time
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

# One metric of record counted on both sides of the worker's boundary: defined there.
from matching.worker.metrics import ORDERS_REJECTED

ENABLED: bool = settings.METRICS_ENABLED

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ORDER_LATENCY = Histogram("order_latency_seconds", "From a request's arrival to its acknowledged answer",
                          ["transport"], buckets=LATENCY_BUCKETS)
ORDER_REQUESTS = Counter("order_requests", "Order-entry requests on the lean HTTP path, by answer",
                         ["operation", "status"])
WEBSOCKETS = Gauge("websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum")
RESYNCS = Counter("fanout_resyncs", "resync_required sent to a WebSocket client", ["reason"])
SLOW_CONSUMERS = Counter("fanout_slow_consumers", "WebSockets closed for not reading their events")
LISTEN_RECONNECTS = Counter("listen_reconnects", "The LISTEN connection was lost and made again")

_HTTP = ORDER_LATENCY.labels("http")
_WS = ORDER_LATENCY.labels("ws")
# labels() builds a key and takes a lock on every call: the few (operation, status) children are
# looked up once each.
_REQUESTS: dict[tuple[str, int], Any] = {}


def http_answered(operation: str, status: int, started: float) -> None:
    """A lean-path request answered (``started``: time.perf_counter() at its arrival)."""
    if ENABLED:
        if operation != "test":
            _HTTP.observe(time.perf_counter() - started)
        child = _REQUESTS.get((operation, status))
        if child is None:
            child = _REQUESTS[(operation, status)] = ORDER_REQUESTS.labels(operation, str(status))
        child.inc()


def ws_answered(started: float, orders: int = 1) -> None:
    """``orders`` orders of one WebSocket message answered at once."""
    if ENABLED and orders:
        observe_many(_WS, time.perf_counter() - started, orders)


def drf_answered(started: float) -> None:
    if ENABLED:
        _HTTP.observe(time.perf_counter() - started)


def order_refused(instrument: str | None, code: str) -> None:
    if ENABLED:
        ORDERS_REJECTED.labels(instrument or "unknown", code).inc()


def websocket_opened() -> None:
    if ENABLED:
        WEBSOCKETS.inc()


def websocket_closed() -> None:
    if ENABLED:
        WEBSOCKETS.dec()


def resynced(reason: str) -> None:
    if ENABLED:
        RESYNCS.labels(reason).inc()


def slow_consumer_closed() -> None:
    if ENABLED:
        SLOW_CONSUMERS.inc()


def listen_reconnected() -> None:
    if ENABLED:
        LISTEN_RECONNECTS.inc()


def observe_many(child: Histogram, amount: float, count: int) -> None:
    """``count`` observations of the same value at the cost of one: a WebSocket `orders` message
    answers its orders together. (prometheus_client observes one value at a time; this writes
    the same two values observe() writes, tested against it in tests/orders/test_metrics.py.)"""
    child._raise_if_not_observable()
    child._sum.inc(amount * count)
    index = bisect.bisect_left(child._upper_bounds, amount)
    child._buckets[index].inc(count)
