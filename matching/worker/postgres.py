"""psycopg's connection arguments, from Django's DATABASES entry: one place for every process
(the web processes' pool and LISTEN hub, the worker's sessions, the inbox)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def conninfo(application_name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect``. ``application_name`` names the session in
    pg_stat_activity (pgbourse-web, pgbourse-worker, ...), so an operator sees who is who."""
    db = settings.DATABASES["default"]
    kwargs: dict[str, Any] = {"dbname": db["NAME"], "user": db.get("USER") or None,
                              "password": db.get("PASSWORD") or None, "host": db.get("HOST") or None,
                              "port": db.get("PORT") or None}
    kwargs.update(db.get("OPTIONS", {}))
    kwargs.pop("pool", None)
    if application_name is not None:
        kwargs["application_name"] = application_name
    return {k: v for k, v in kwargs.items() if v is not None}
