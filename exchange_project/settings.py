"""Settings: everything that varies comes from the environment, read once here, typed, failing
fast on a bad value. (Two variables are read before Django starts, by modules that must not
depend on it: PGBOURSE_ENGINE, which engine build matching.engine loads, and PGBOURSE_PGDATA,
where exchange_project.pgembed keeps the embedded PostgreSQL.)"""
from __future__ import annotations

import os
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


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret-pgbourse")
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
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
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
MATCHING_RECONNECT_MAX_S = env_float("MATCHING_RECONNECT_MAX_S", 1.0)
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
# Orders and commands one web process has in flight at most (orders.admission); past it, 503
# overloaded at once. Above one WebSocket client's own pipelining window (8 x 500).
ORDERS_IN_FLIGHT_MAX = env_int("ORDERS_IN_FLIGHT_MAX", 12_000, minimum=1)
# A request body must have arrived whole within this (else 408): a client that trickles its
# body does not hold a request open.
HTTP_BODY_TIMEOUT_S = env_float("HTTP_BODY_TIMEOUT_S", 5.0)
# Every refusal is the API's one JSON error shape, the CSRF one too (orders.errors).
CSRF_FAILURE_VIEW = "orders.errors.csrf_failure"
# The web processes' bound on one request's statements (a hung database is a timeout), and the
# cap of the jittered backoff with which they, and the LISTEN hub, look for a lost database.
DB_OPERATION_TIMEOUT_S = env_float("DB_OPERATION_TIMEOUT_S", 2.0)
DB_RECONNECT_MAX_S = env_float("DB_RECONNECT_MAX_S", 1.0)
# The ASGI server that `manage.py runexchange` runs (granian by measurement: docs/decisions.md),
# its address and number of web processes.
ASGI_SERVER = env_choice("ASGI_SERVER", "granian", ("granian", "daphne", "uvicorn"))
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1)
WEB_WORKERS = env_int("WEB_WORKERS", 1, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}, "daphne": {"level": "WARNING"}},
}

# -- Analytics, positions and settlement (issue 15) --
# `manage.py settle` settles a UTC day only this long after its end, so that every batch matched
# before midnight has committed (a batch is answered within ORDER_ACK_TIMEOUT_S, or its worker
# has ended), and writes its CSV report into this directory.
SETTLEMENT_GRACE_S = env_float("PGBOURSE_SETTLEMENT_GRACE_S", 60.0)
SETTLEMENT_REPORT_DIR = Path(os.environ.get("PGBOURSE_SETTLEMENT_REPORT_DIR", BASE_DIR / "var" / "settlements"))
