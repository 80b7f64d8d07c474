"""Raw psycopg access for the hot paths (order entry, LISTEN), beside Django's ORM.

The ORM serves the browsable API, admin and reads; the order path needs async I/O on the web
process's event loop (a request waits for the matching worker without holding a thread), which
the ORM does not give. Both use the same settings.DATABASES entry.
"""
from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from psycopg_pool import AsyncConnectionPool

CONNECT_TIMEOUT_S = 2


def conninfo_kwargs(application_name: str | None = None) -> dict[str, Any]:
    """psycopg's connection arguments; ``application_name`` names the session in
    pg_stat_activity (pgbourse-web, pgbourse-worker...), so an operator sees who is who."""
    db = settings.DATABASES["default"]
    kwargs: dict[str, Any] = {"dbname": db["NAME"], "user": db.get("USER") or None,
                              "password": db.get("PASSWORD") or None, "host": db.get("HOST") or None,
                              "port": db.get("PORT") or None}
    kwargs.update(db.get("OPTIONS", {}))
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    kwargs.pop("pool", None)
    if application_name is not None:
        kwargs["application_name"] = application_name
    return {k: v for k, v in kwargs.items() if v is not None}


_pools: dict[int, AsyncConnectionPool] = {}


async def pool() -> AsyncConnectionPool:
    """The process's pool, one per event loop (daphne runs one loop per process)."""
    loop_id = id(asyncio.get_running_loop())
    found = _pools.get(loop_id)
    if found is None:
        kwargs = conninfo_kwargs("pgbourse-web")
        # Order entry commits asynchronously: nothing is acknowledged on these commits alone
        # (see orders.services). Set once per connection instead of per transaction.
        kwargs["options"] = (kwargs.get("options", "") + " -c synchronous_commit=off").strip()
        found = AsyncConnectionPool(kwargs=kwargs, min_size=1, max_size=settings.DB_POOL_MAX,
                                    timeout=CONNECT_TIMEOUT_S, open=False, name="orders")
        _pools[loop_id] = found
        await found.open(wait=False)
    return found
