"""Settings: everything that varies comes from the environment, read once here, typed, failing
fast on a bad value. (Two variables are read before Django starts, by modules that must not
depend on it: PGBOURSE_ENGINE, which engine build matching.engine loads, and PGBOURSE_PGDATA,
where exchange_project.pgembed keeps the embedded PostgreSQL.)"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {raw!r}")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_address(name: str, default: str) -> tuple[str, int]:
    """host:port (port 0: any free one)."""
    raw = os.environ.get(name, default)
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ImproperlyConfigured(f"{name} must be host:port, got {raw!r}")
    return host, int(port)


def database_from_url(url: str) -> dict[str, object]:
    """postgres://user:pass@host:port/db?sslmode=... -> Django DATABASES entry (host may be a socket dir)."""
    parts = urlparse(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = unquote(parts.hostname or "") or query.pop("host", "")
    return {
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or query.pop("port", "") or ""),
        "OPTIONS": query,
    }


DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]").split(",") if h]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "channels",
    "exchange_project",
    "orders",
    "matching",
    "marketdata",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "exchange_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "exchange_project.asgi.application"

# Without DATABASE_URL, an embedded PostgreSQL under var/ (exchange_project/pgembed.py).
EMBEDDED_POSTGRES = not os.environ.get("DATABASE_URL")
if not EMBEDDED_POSTGRES:
    _db = database_from_url(os.environ["DATABASE_URL"])
else:
    from exchange_project import pgembed

    _params = pgembed.connection_params()
    _db = {"NAME": _params["dbname"], "USER": _params["user"], "PASSWORD": "",
           "HOST": _params["host"], "PORT": str(_params["port"]), "OPTIONS": {}}

# libpq's connect_timeout (its minimum is 2 s) and the pool's wait for a connection: fail fast
# when PostgreSQL is unreachable, so the API answers 503 instead of hanging.
DB_CONNECT_TIMEOUT_S = env_int("DB_CONNECT_TIMEOUT_S", 2, minimum=2)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **_db,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": DB_CONNECT_TIMEOUT_S, **_db["OPTIONS"]},  # type: ignore[dict-item]
        "TEST": {"NAME": os.environ.get("PGBOURSE_TEST_DB", f"test_pgbourse_{os.getpid()}")},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --------------------------------------------------------------------------------------------
# Accounts and limits (docs/security.md)
# --------------------------------------------------------------------------------------------


def env_rate(name: str, default: str) -> str:
    """A budget as django-ratelimit writes it: N requests per period, "200/2s", "100/s", "6000/m"."""
    value = os.environ.get(name, default)
    if RATE_SYNTAX.fullmatch(value) is None:
        raise ImproperlyConfigured(f"{name} must be a budget such as 200/2s or 6000/m, got {value!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


RATE_SYNTAX = re.compile(r"[1-9][0-9]{0,9}/([1-9][0-9]{0,5})?[smhd]")

# Development is this checkout's embedded PostgreSQL (no DATABASE_URL: `make run`, `make test`
# and the benchmarks, whose child processes inherit PGBOURSE_ENV=development from
# exchange_project.processes.child_env), or PGBOURSE_ENV=development said explicitly. Anything
# else is production: a SECRET_KEY of its own is required and PGBOURSE_AUTH=off is refused.
PGBOURSE_ENV = env_choice("PGBOURSE_ENV", "development" if EMBEDDED_POSTGRES else "production",
                          ("development", "production"))
DEVELOPMENT = PGBOURSE_ENV == "development"
_DEV_SECRET_KEY = "dev-only-not-secret-pgbourse"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", _DEV_SECRET_KEY if DEVELOPMENT else "")
if not DEVELOPMENT and (len(SECRET_KEY) < 32 or SECRET_KEY == _DEV_SECRET_KEY):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (at least 32 random characters) outside development "
                               "(PGBOURSE_ENV=production, or a DATABASE_URL)")
# `off`: no keys, every request acts as an unrestricted operator, as before keys existed. For
# local experiments only (refused in production); warned about in every web process's log and on
# /readyz.
AUTH_REQUIRED = env_choice("PGBOURSE_AUTH", "required", ("required", "off")) == "required"
if not AUTH_REQUIRED and not DEVELOPMENT:
    raise ImproperlyConfigured("PGBOURSE_AUTH=off is for local experiments: refused outside development")
RATE_LIMITS_ENABLED = env_bool("PGBOURSE_RATE_LIMITS", True)
# Where the counters live (orders/limits.py): `share`, each web process counts in memory and
# allows its share of every budget (budget / live web processes); `postgres`, one counter row
# per budget and window in an UNLOGGED table, exact, a statement per check.
RATE_LIMIT_STORE = env_choice("PGBOURSE_RATE_LIMIT_STORE", "share", ("share", "postgres"))
# How often a web process counts the live web processes (its share's divisor).
RATE_LIMIT_PEERS_EVERY_S = env_float("PGBOURSE_RATE_LIMIT_PEERS_EVERY_S", 1.0)
# Budgets per role and action; a key's own budgets (admin, create_api_key) override them.
# `anonymous` is per IP address, for the public market data; `auth_failures` is per IP too:
# past it, unknown keys are refused with 429 without being looked up.
# (A read-only key and an anonymous caller never write, so they have no write budgets.)
RATE_LIMIT_DEFAULTS = {
    "trader": {"orders": "200/2s", "commands": "200/2s", "reads": "100/2s"},
    "read_only": {"reads": "40/2s"},
    "admin": {"orders": "1000/2s", "commands": "1000/2s", "reads": "400/2s"},
    "anonymous": {"reads": "100/2s"},
}
RATE_LIMITS = {role: {action: env_rate(f"PGBOURSE_RATE_{role.upper()}_{action.upper()}", rate)
                      for action, rate in actions.items()} for role, actions in RATE_LIMIT_DEFAULTS.items()}
RATE_LIMIT_AUTH_FAILURES = env_rate("PGBOURSE_RATE_AUTH_FAILURES", "20/60s")
# The key the client commands (load_orders, simulate) send when --key is not given: an admin's
# (they place for many clients), with budgets above the rate they are asked for.
CLIENT_API_KEY = os.environ.get("PGBOURSE_API_KEY", "")
# Development only: the demo keys `make run` made (orders.auth.demo_key), kept here so that the
# trading page and `make simulate` work at once on this machine. Never in production.
DEMO_KEYS_FILE = BASE_DIR / "var" / "demo-keys.json"
# django-ratelimit (the DRF views) counts in this cache, the same counters as the lean path and
# the WebSocket (orders/limits.py).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {"BACKEND": "orders.limits.CounterCache"},
}
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_ENABLE = RATE_LIMITS_ENABLED
# django-ratelimit knows only memcached and redis as shared caches; ours is shared by design.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"CSRF_TRUSTED_ORIGINS entries need a scheme (https://...), got {_origin!r}")
# HTML pages (admin, browsable API, Swagger UI): no framing, no sniffing, a strict referrer
# policy (SecurityMiddleware's defaults), and a content security policy that allows this site's
# own scripts and the Swagger UI's CDN.
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "https://cdn.jsdelivr.net"],
    "style-src": ["'self'", "'unsafe-inline'", "https://cdn.jsdelivr.net"],
    "img-src": ["'self'", "data:", "https://cdn.jsdelivr.net"],
    "frame-ancestors": ["'none'"],
}
# Behind TLS (a terminating proxy): secure cookies, HSTS, and the proxy's scheme header trusted.
HTTPS = env_bool("PGBOURSE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("PGBOURSE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
FIXTURE_DIRS = [BASE_DIR / "fixtures"]
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer",
                                 "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser",
                               "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    # An API key (orders.auth, the same check as the lean path and the WebSocket), or a staff
    # session for the browsable API; a view is closed unless it says who may use it.
    "DEFAULT_AUTHENTICATION_CLASSES": ["orders.auth.ApiKeyAuthentication",
                                       "orders.auth.StaffSessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["orders.auth.IsCaller"],
    "DEFAULT_THROTTLE_CLASSES": ["orders.limits.RateLimit"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "orders.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "pgbourse API",
    "DESCRIPTION": "Limit order book exchange on PostgreSQL: orders, trades, order book.",
    "VERSION": "1.0.0",
    "ENUM_NAME_OVERRIDES": {"SideEnum": "orders.models.Side"},
}

# How long a POST waits for the matching worker before answering 202 pending.
ORDER_ACK_TIMEOUT_S = env_float("ORDER_ACK_TIMEOUT_S", 2.0)
# Of that bound, the part kept for settling an order (or a cancel) whose answer from the worker
# did not come: storing it as pending, or finding it committed. The worker gets the rest, so a
# hung database, which also stalls the worker, still has the order answered within the bound.
ORDER_SETTLE_S = min(env_float("ORDER_SETTLE_S", 0.5), ORDER_ACK_TIMEOUT_S / 2)
# Orders go straight to the matching worker when it is reachable (matching/worker/direct.py);
# 0 (in the worker and the web processes) sends every order through the PostgreSQL inbox.
MATCHING_DIRECT = env_bool("MATCHING_DIRECT", True)
# Where the worker listens for web processes (port 0: any free port), and the address it
# advertises to them (default: the bound one; set it when they run on other hosts).
MATCHING_DIRECT_BIND = env_address("MATCHING_DIRECT_BIND", "127.0.0.1:0")
MATCHING_DIRECT_ADVERTISE = os.environ.get("MATCHING_DIRECT_ADVERTISE") or None
# How long the matching worker waits for a statement (a commit, a duplicate check) before it
# counts the database as lost, and the cap of its jittered backoff while it reconnects.
MATCHING_DB_TIMEOUT_S = env_float("MATCHING_DB_TIMEOUT_S", 5.0)
MATCHING_RECONNECT_MAX_S = env_float("MATCHING_RECONNECT_MAX_S", 0.5)
# One channel layer, the matching worker's: PostgreSQL itself (matching/worker/inbox.py). The
# WebSocket consumers use none: the market feeds reach them through the LISTEN hub and their
# own bounded outboxes (marketdata/fanout.py).
CHANNEL_LAYERS = {"matching": {"BACKEND": "matching.worker.inbox.PostgresInboxLayer",
                               "CONFIG": {"batch_limit": 2000, "timeout_s": MATCHING_DB_TIMEOUT_S,
                                          "reconnect_max_s": MATCHING_RECONNECT_MAX_S}}}

# A batch slower than this (match + commit) is logged.
MATCHING_SLOW_BATCH_MS = env_float("PGBOURSE_SLOW_BATCH_MS", 250.0)
# The `snapshot` feed's period, the period of persisted book snapshots, and how often the hot
# tables' planner statistics are checked (matching/worker/periodic.py).
SNAPSHOT_FEED_EVERY_S = env_float("PGBOURSE_SNAPSHOT_FEED_EVERY_S", 1.0)
SNAPSHOT_PERSIST_EVERY_S = env_float("PGBOURSE_SNAPSHOT_PERSIST_EVERY_S", 60.0)
STATISTICS_EVERY_S = env_float("PGBOURSE_STATISTICS_EVERY_S", 2.0)
# From this many sockets on an instrument, market frames go out on a tick of this period
# (marketdata/fanout.py); 0: never.
FEED_FLUSH_MS = env_float("PGBOURSE_FEED_FLUSH_MS", 20.0)
DB_POOL_MAX = env_int("DB_POOL_MAX", 16, minimum=2)
# Order requests one web process has in flight at most (orders.admission: a place, a cancel, a
# modify, or one WebSocket `orders` message); past it, 503 overloaded at once. About what the
# exchange completes in a fifth of a second, so an admitted request's wait stays short.
REQUESTS_IN_FLIGHT_MAX = env_int("REQUESTS_IN_FLIGHT_MAX", 1024, minimum=1)
# Past this lag of its event loop a web process refuses new order requests as they arrive.
SHED_LAG_MS = env_float("SHED_LAG_MS", 200.0)
# A request body must have arrived whole within this (else 408): a client that trickles its
# body does not hold a request open.
HTTP_BODY_TIMEOUT_S = env_float("HTTP_BODY_TIMEOUT_S", 5.0)
# Every refusal is the API's one JSON error shape, the CSRF one too (orders.errors).
CSRF_FAILURE_VIEW = "orders.errors.csrf_failure"
# The web processes' bound on one request's statements (a hung database is a timeout), and the
# cap of the jittered backoff with which they, and the LISTEN hub, look for a lost database.
DB_OPERATION_TIMEOUT_S = env_float("DB_OPERATION_TIMEOUT_S", 2.0)
DB_RECONNECT_MAX_S = env_float("DB_RECONNECT_MAX_S", 0.5)
# The ASGI server that `manage.py runexchange` runs (granian by measurement: docs/decisions.md),
# its address and number of web processes.
ASGI_SERVER = env_choice("ASGI_SERVER", "granian", ("granian", "daphne", "uvicorn"))
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1)
WEB_WORKERS = env_int("WEB_WORKERS", 1, minimum=1)

# --------------------------------------------------------------------------------------------
# Operations: health, metrics, logs, admin controls (docs/operations.md)
# --------------------------------------------------------------------------------------------
# Prometheus metrics on (default) or off (to measure what they cost). Every process of one
# exchange writes them to PROMETHEUS_MULTIPROC_DIR (prometheus_client reads it at import; the
# processes that start the exchange set it: exchange_project.processes.metrics_dir), and a web
# process's /metrics merges them; unset, each process counts for itself.
METRICS_ENABLED = env_choice("PGBOURSE_METRICS", "on", ("on", "off")) == "on"
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
# The matching worker refreshes its heartbeat row this often; /readyz fails when it is older than
# READY_HEARTBEAT_MAX_AGE_S, or when the oldest pending (inbox) order is older than
# READY_PENDING_MAX_AGE_S; /readyz answers within READY_TIMEOUT_S whatever PostgreSQL does.
HEARTBEAT_EVERY_S = env_float("PGBOURSE_HEARTBEAT_EVERY_S", 1.0)
READY_HEARTBEAT_MAX_AGE_S = env_float("PGBOURSE_READY_HEARTBEAT_MAX_AGE_S", 5.0)
READY_PENDING_MAX_AGE_S = env_float("PGBOURSE_READY_PENDING_MAX_AGE_S", 10.0)
READY_TIMEOUT_S = env_float("PGBOURSE_READY_TIMEOUT_S", 0.8)
# How long an admin command (snapshot, halt, cancel-all) may take the worker before the answer
# is "outcome unknown" (a cancel-all of many orders is one large batch).
ADMIN_COMMAND_TIMEOUT_S = env_float("PGBOURSE_ADMIN_TIMEOUT_S", 30.0)

# Logs: LOG_FORMAT json (one object a line; the Docker image's default) or text (make run's);
# LOG_LEVEL for everything, LOG_ORDER_LEVEL for the per-order lines (logger pgbourse.orders;
# INFO: one line per order received, accepted, rejected, matched, cancelled, modified). They are
# off (WARNING) unless asked for: what a busy venue runs (docs/operations.md has what they cost).
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", _LOG_LEVELS)
LOG_ORDER_LEVEL = env_choice("LOG_ORDER_LEVEL", "WARNING", _LOG_LEVELS)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"text": {"()": "exchange_project.logs.TextFormatter"},
                   "json": {"()": "exchange_project.logs.JsonFormatter"}},
    "filters": {"request_id": {"()": "orders.logs.RequestIdFilter"}},
    # Formatted where logged, written to stderr from a thread: a slow disk or a full pipe never
    # stalls an event loop (docs/operations.md, "Logs", has what it changed).
    "handlers": {"console": {"()": "exchange_project.logs.ThreadWriter", "formatter": LOG_FORMAT,
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.request": {"level": "ERROR"}, "daphne": {"level": "WARNING"},
                "pgbourse.orders": {"level": LOG_ORDER_LEVEL}},
}

# -- Analytics, positions and settlement --
# `manage.py settle` settles a UTC day only this long after its end, so that every batch matched
# before midnight has committed (a batch is answered within ORDER_ACK_TIMEOUT_S, or its worker
# has ended), and writes its CSV report into this directory.
SETTLEMENT_GRACE_S = env_float("PGBOURSE_SETTLEMENT_GRACE_S", 60.0)
SETTLEMENT_REPORT_DIR = Path(os.environ.get("PGBOURSE_SETTLEMENT_REPORT_DIR", BASE_DIR / "var" / "settlements"))
