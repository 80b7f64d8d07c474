"""Settings: everything that varies comes from the environment, read once here, failing fast."""
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
    "orders",
    "matching",
    "marketdata",
    "web",
    "simulation",
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

if os.environ.get("DATABASE_URL"):
    _db = database_from_url(os.environ["DATABASE_URL"])
else:
    from exchange_project import pgembed

    _params = pgembed.connection_params()
    _db = {"NAME": _params["dbname"], "USER": _params["user"], "PASSWORD": "",
           "HOST": _params["host"], "PORT": str(_params["port"]), "OPTIONS": {}}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **_db,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        # Fail fast when PostgreSQL is unreachable: the API answers 503 instead of hanging.
        "OPTIONS": {"connect_timeout": 2, **_db["OPTIONS"]},  # type: ignore[dict-item]
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

# Channels groups live in each web process; PostgreSQL LISTEN/NOTIFY feeds them (no broker).
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                              "CONFIG": {"capacity": 1000, "expiry": 60}}}

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
}

# How long a POST waits for the matching worker before answering 202 pending.
ORDER_ACK_TIMEOUT_S = env_float("ORDER_ACK_TIMEOUT_S", 2.0)
# Orders go straight to the matching worker when it is reachable (matching.direct); 0 sends
# every order through the PostgreSQL inbox instead.
MATCHING_DIRECT = os.environ.get("MATCHING_DIRECT", "1") != "0"
DB_POOL_MAX = int(os.environ.get("DB_POOL_MAX", "16"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}, "daphne": {"level": "WARNING"}},
}

# The matching worker's channel layer: PostgreSQL itself (see matching/inbox.py).
CHANNEL_LAYERS["matching"] = {"BACKEND": "matching.inbox.PostgresInboxLayer", "CONFIG": {"batch_limit": 2000}}
