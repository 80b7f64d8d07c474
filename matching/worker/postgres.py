"""psycopg's connection arguments, from Django's DATABASES entry, and the backoff with which
every process reconnects: one place for all (the web processes' pool and LISTEN hub, the
worker's sessions, the inbox)."""

from __future__ import annotations

import random
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


def backoff_s(attempt: int, cap_s: float) -> float:
    """The wait before reconnection attempt ``attempt`` (0, 1, ...): doubling from 50 ms up to
    ``cap_s``, with jitter so that processes that lost the database together do not all come
    back at the same instant."""
    return random.uniform(0.5, 1.0) * min(cap_s, 0.05 * 2**attempt)
