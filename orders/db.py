"""Raw psycopg access for the hot paths (order entry, LISTEN), beside Django's ORM.

The ORM serves the browsable API, admin and reads; the order path needs async I/O on the web
process's event loop (a request waits for the matching worker without holding a thread), which
the ORM does not give. Both use the same settings.DATABASES entry.
"""
from __future__ import annotations

import asyncio

from django.conf import settings
from psycopg_pool import AsyncConnectionPool

from matching.worker.postgres import conninfo

_pools: dict[int, AsyncConnectionPool] = {}


async def pool() -> AsyncConnectionPool:
    """The process's pool, one per event loop."""
    loop_id = id(asyncio.get_running_loop())
    found = _pools.get(loop_id)
    if found is None:
        kwargs = conninfo("pgbourse-web")
        # Order entry commits asynchronously: nothing is acknowledged on these commits alone
        # (see orders.services). Set once per connection instead of per transaction.
        kwargs["options"] = (kwargs.get("options", "") + " -c synchronous_commit=off").strip()
        found = AsyncConnectionPool(kwargs=kwargs, min_size=1, max_size=settings.DB_POOL_MAX,
                                    timeout=settings.DB_CONNECT_TIMEOUT_S, open=False, name="orders")
        _pools[loop_id] = found
        await found.open(wait=False)
    return found
