"""Admin commands to the matching worker (matching.contract: TakeSnapshot, SetHalted,
CancelAll, ReadWorkerState): the live books are the worker's, so these go to it like orders do,
straight over the direct connection, or through the PostgreSQL inbox when no worker is
reachable (an AdminCommand row, its answer NOTIFYed once the worker has carried it out).

What the caller gets: the worker's answer; ``Pending`` when it went to the inbox and no answer
came within ORDER_ACK_TIMEOUT_S (the command is stored and will be carried out when a worker
runs: GET /admin/commands/{id}); ApiError 504 when it reached the worker and its answer was lost
(it may have been carried out), 503 when PostgreSQL is unreachable too.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from django.conf import settings

from matching.contract import (
    INBOX_CHANNEL,
    AdminAnswer,
    AdminCommand,
    AdminOutcome,
    Code,
    Refused,
    decode_admin_answer,
    to_builtins,
)

from .db import pool
from .direct import WorkerLost, WorkerUnavailable
from .direct import client as direct_client
from .errors import ApiError, database_unavailable
from .listener import hub
from .services import DB_FAILURES

log = logging.getLogger(__name__)

# Stored durably before anyone is told "pending" (the pool's sessions commit asynchronously).
INSERT_ADMIN_SQL = f"""
WITH ins AS (
    INSERT INTO orders_admincommand (kind, instrument_id, client_id, command, processed, created_at)
    VALUES (%(kind)s, %(instrument_id)s, %(client_id)s, %(command)s::jsonb, false, now()) RETURNING id)
SELECT id, (SELECT pg_notify('{INBOX_CHANNEL}', '')) FROM ins
"""
ADMIN_ROW_SQL = ("SELECT kind, instrument_id, client_id, command, processed, result, command_seq, created_at, "
                 "processed_at FROM orders_admincommand WHERE id = %s")


@dataclass(frozen=True, slots=True)
class Pending:
    """Stored in the inbox; no answer yet."""

    command_id: int


async def send(command: AdminCommand, inbox: bool = True) -> AdminAnswer | Pending:
    """``inbox=False``: only straight to the worker (WorkerUnavailable when none is reachable)."""
    if settings.MATCHING_DIRECT or not inbox:
        try:
            (answer,) = await direct_client().send([command], timeout=settings.ADMIN_COMMAND_TIMEOUT_S)
        except WorkerUnavailable:
            if not inbox:
                raise
        except WorkerLost as exc:
            raise ApiError(504, Code.OUTCOME_UNKNOWN, "The command reached the matching worker but its answer was "
                           "lost: it may have been carried out. Check before repeating it.") from exc
        else:
            assert not isinstance(answer, (AdminOutcome,)), answer
            return answer  # type: ignore[return-value]
    return await _via_inbox(command)


async def _via_inbox(command: AdminCommand) -> AdminAnswer | Pending:
    try:
        await hub.ensure_started()
        async with (await pool()).connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            cur = await conn.execute(INSERT_ADMIN_SQL, {
                "kind": command.__struct_config__.tag, "instrument_id": getattr(command, "instrument_id", None),
                "client_id": getattr(command, "client_id", None),
                "command": orjson.dumps(to_builtins(command)).decode()})
            row = await cur.fetchone()
            assert row is not None
            command_id = int(row[0])
            waiting = hub.expect(f"admin:{command_id}")
    except (psycopg.Error, *DB_FAILURES) as exc:
        raise database_unavailable() from exc
    try:
        outcome = await asyncio.wait_for(waiting, settings.ORDER_ACK_TIMEOUT_S)
    except TimeoutError:
        outcome = None
    finally:
        hub.forget(f"admin:{command_id}", waiting)
    if isinstance(outcome, AdminOutcome):
        return outcome.answer
    # No NOTIFY seen (or the LISTEN connection came back meanwhile): the row knows.
    stored = await command_row(command_id)
    if stored is not None and stored["processed"] and stored["result"] is not None:
        return decode_admin_answer(orjson.dumps(stored["result"]))
    return Pending(command_id)


async def command_row(command_id: int) -> dict[str, Any] | None:
    try:
        async with (await pool()).connection() as conn:
            cur = await conn.execute(ADMIN_ROW_SQL, (command_id,))
            row = await cur.fetchone()
    except (psycopg.Error, *DB_FAILURES) as exc:
        raise database_unavailable() from exc
    if row is None:
        return None
    names = ("kind", "instrument_id", "client_id", "command", "processed", "result", "command_seq", "created_at",
             "processed_at")
    return dict(zip(names, row))


def refused(answer: AdminAnswer | Pending) -> Code | None:
    return answer.code if isinstance(answer, Refused) else None
