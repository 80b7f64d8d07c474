"""Writes on the order path: place, cancel, modify. Every entry point (the lean HTTP path, the
DRF views, WebSocket order entry, management commands) calls these, with the contract's
commands (matching.contract) that orders.validation builds.

The path of an order:
  1. straight to the matching worker when one is reachable (orders.direct): it decides
     duplicates, matches, commits the order once with its outcome, and only then answers;
  2. else through the PostgreSQL inbox: one group-committed statement stores the order as a
     pending row with its first OrderEvent and NOTIFYs the worker, which matches it and
     NOTIFYs the outcome from the batch's transaction; the LISTEN hub wakes the request;
  3. no outcome within ORDER_ACK_TIMEOUT_S: 202 pending, once the pending row is durable.
The inbox insert commits with synchronous_commit off: nothing is acknowledged on it alone.

What a failure answers: 503 database_unavailable when nothing can have happened; 504
outcome_unknown once the order (or command) may have been carried out (the worker had it, or
its row's COMMIT was sent): never "failed" for an order that may trade.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import psycopg
from django.conf import settings
from psycopg import sql

from matching.contract import (
    FINAL_STATUSES,
    INBOX_CHANNEL,
    Answer,
    CancelOrder,
    Code,
    CommandOutcome,
    CommandResult,
    Duplicate,
    ModifyOrder,
    OrderState,
    OrderStatus,
    Placed,
    PlaceOrder,
    PlaceOutcome,
    Refused,
)

from .admission import admitted
from .coalesce import coalescer
from .db import FAILURES, DatabaseDown, connection, is_down
from .direct import WorkerLost, WorkerUnavailable
from .direct import client as direct_client
from .errors import ApiError, database_unavailable, outcome_unknown
from .instruments import by_symbol, symbol_of
from .listener import hub
from .logs import orders_received
from .representation import order_body
from .selectors import orders_by_id
from .validation import modify_request

log = logging.getLogger(__name__)

INSERT_ORDERS = f"""
WITH ins AS (
    INSERT INTO orders_order (order_id, client_id, idempotency_key, request_hash, instrument_id, side, type,
                              time_in_force, post_only, stp, price, quantity, filled_quantity, status,
                              created_at, updated_at)
    SELECT r.order_id, r.client_id, r.idempotency_key, r.request_hash, r.instrument_id, r.side, r.type,
           r.time_in_force, r.post_only, r.stp, r.price, r.quantity, 0, 'pending', now(), now()
      FROM json_populate_recordset(NULL::orders_order, %(orders)s::json) WITH ORDINALITY AS r
     ORDER BY r.ordinality
    ON CONFLICT DO NOTHING
    RETURNING order_id, client_id, idempotency_key, instrument_id, price, quantity, created_at
), ev AS (
    INSERT INTO orders_orderevent (order_id, instrument_id, status, price, quantity, filled_quantity, created_at)
    SELECT order_id, instrument_id, 'pending', price, quantity, 0, created_at FROM ins
)
SELECT order_id, client_id, idempotency_key, (SELECT pg_notify('{INBOX_CHANNEL}', '')) FROM ins
"""

EXISTING_BY_KEY = """
SELECT r.client_id, r.idempotency_key, o.order_id, o.request_hash
FROM unnest(%(client_id)s::text[], %(key)s::text[]) AS r(client_id, idempotency_key)
JOIN orders_order o ON o.client_id = r.client_id AND o.idempotency_key = r.idempotency_key
"""

# One statement for a group of cancels/modifies: each order's current status and, where it is
# still live, the command row (its id drawn first, so each request knows its row) and a NOTIFY
# to the worker. A request without a row back names no order. {sequence}: the id column's
# sequence, looked up once per process (pg_get_serial_sequence() per row is costly). A command
# acting for a client (client_id) names no order of another client.
INSERT_COMMANDS = f"""
WITH r AS MATERIALIZED (
    SELECT x.n, x.kind, x.order_id, x.price, x.quantity, x.client_id, nextval({{sequence}}) AS id
      FROM ROWS FROM (json_to_recordset(%(commands)s::json)
                      AS (kind text, order_id uuid, price numeric, quantity numeric, client_id text))
           WITH ORDINALITY AS x(kind, order_id, price, quantity, client_id, n)
), o AS MATERIALIZED (
    SELECT r.n, r.id, r.kind, r.order_id, r.price, r.quantity, o.status, o.instrument_id
      FROM r JOIN orders_order o ON o.order_id = r.order_id AND (r.client_id IS NULL OR o.client_id = r.client_id)
), ins AS (
    INSERT INTO orders_ordercommand (id, kind, order_id, new_price, new_quantity, processed, created_at)
    SELECT id, kind, order_id, price, quantity, false, now() FROM o
     WHERE status IN ('pending', 'open', 'partially_filled')
     ORDER BY n
    RETURNING id
)
SELECT o.n, o.status, ins.id, (SELECT pg_notify('{INBOX_CHANNEL}', '') WHERE EXISTS (SELECT FROM ins))
  FROM o LEFT JOIN ins ON ins.id = o.id
"""

# A database that cannot be reached, or answers no more: expected, and answered 503 or 504.
DB_FAILURES = (*FAILURES, DatabaseDown)


@dataclass(slots=True)
class Result:
    """What an entry point answers: HTTP-style status and a JSON body."""

    status: int
    body: dict[str, Any]
    idempotency_key: str | None = None


class CommitUncertain(Exception):
    """The COMMIT of a write was sent and no answer came back: it may or may not have happened."""


async def _make_durable(conn: psycopg.AsyncConnection[Any]) -> None:
    """Flush the WAL up to now with one synchronous commit (the 202 path)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = on")
        await conn.execute("SELECT pg_current_xact_id()")


async def _await_outcomes(keys: list[str], futures: list[asyncio.Future[Any]]) -> list[Any]:
    if not futures:
        return []
    done, pending = await asyncio.wait(futures, timeout=settings.ORDER_ACK_TIMEOUT_S)
    results = [f.result() if f in done else None for f in futures]
    for key, fut in zip(keys, futures):
        if fut in pending:
            hub.forget(key, fut)
    return results


def _refuse_while_down() -> None:
    """503 at once while the database is known to be away (orders.db): nothing is sent."""
    if is_down():
        raise database_unavailable()


def _unknown(orders: list[PlaceOrder], exc: BaseException) -> list[Result]:
    log.warning("order outcome unknown after a database failure (%s): %d order(s)", exc, len(orders))
    return [Result(504, outcome_unknown(o.order_id, o.idempotency_key).body(), o.idempotency_key) for o in orders]


# --------------------------------------------------------------------------------------------
# Place
# --------------------------------------------------------------------------------------------


async def orders_place(orders: list[PlaceOrder]) -> list[Result]:
    """Place validated orders (orders.validation.place_request); one answer each, in order.

    Nothing is answered before the outcome is committed, except 202 pending for an order stored
    as pending and not yet matched. 503 at once, nothing sent, while the database is away or
    the process is at capacity (orders.admission)."""
    orders_received(orders, symbol_of)
    _refuse_while_down()
    async with admitted():
        return await _place(orders)


async def _place(orders: list[PlaceOrder]) -> list[Result]:
    if settings.MATCHING_DIRECT:
        try:
            answers = await _direct(list(orders))
        except WorkerUnavailable:
            pass  # nothing was sent: the inbox takes these orders
        except WorkerLost:
            # Sent, but no answer: each order was committed by the worker, or was not and now
            # gets stored as pending (same order id: the constraints make it one order).
            return await _place_via_inbox(orders, settle=True)
        else:
            return await _direct_results(orders, [answers[n] for n in range(len(orders))])
    return await _place_via_inbox(orders)


async def _direct(commands: list[PlaceOrder | CancelOrder | ModifyOrder]) -> dict[int, Answer]:
    """The worker's answers to a request's commands, sent with those of concurrent requests.
    WorkerLost when none came within the worker's part of the ack bound counted from now: a
    request queued behind a stalled group does not wait out that group's bound, then its own."""
    try:
        return await asyncio.wait_for(coalescer(_send_direct).submit(commands),
                                      settings.ORDER_ACK_TIMEOUT_S - settings.ORDER_SETTLE_S)
    except TimeoutError:
        raise WorkerLost("no answer in time") from None


async def _send_direct(commands: list[PlaceOrder | CancelOrder | ModifyOrder]) -> dict[int, Answer]:
    return dict(enumerate(await direct_client().send(list(commands))))


async def _direct_results(orders: list[PlaceOrder], answers: list[Answer]) -> list[Result]:
    results: list[Result | None] = []
    for answer in answers:
        if isinstance(answer, Placed):
            results.append(Result(201, order_body(answer.order)))
        elif isinstance(answer, Refused):
            # A halted instrument is a state of the venue, not a fault of the request.
            status = 409 if answer.code is Code.INSTRUMENT_HALTED else 400
            results.append(Result(status, ApiError(status, answer.code, f"The order was refused: {answer.code.value}.")
                                  .body()))
        else:
            assert isinstance(answer, Duplicate), answer
            results.append(None)
    dup_idx = [n for n, r in enumerate(results) if r is None]
    if dup_idx:
        try:
            async with connection() as conn:
                await _answer_duplicates(conn, orders, dup_idx, results)
        except DB_FAILURES:
            # Only the duplicates go unanswered: the orders placed beside them stand (201).
            for n in dup_idx:
                results[n] = Result(503, database_unavailable().body())
    return _keyed(orders, results)


def _keyed(orders: list[PlaceOrder], results: list[Result | None]) -> list[Result]:
    """Every order answered, each answer carrying its order's idempotency key."""
    out: list[Result] = []
    for order, res in zip(orders, results):
        assert res is not None
        res.idempotency_key = order.idempotency_key
        out.append(res)
    return out


async def _place_via_inbox(orders: list[PlaceOrder], settle: bool = False) -> list[Result]:
    """Store the orders as pending rows for the worker's inbox and wait for their outcomes.
    settle: the orders were already sent to the worker directly and their answer lost, so an
    order already stored under its own id is this request's (201), and nobody waits again: the
    worker had its part of the ack bound, and each statement here has ORDER_SETTLE_S."""
    bound = settings.ORDER_SETTLE_S if settle else None
    keys = [o.order_id for o in orders]
    futures: list[asyncio.Future[Any]] = []
    may_exist = settle
    results: list[Result | None] = [None] * len(orders)
    try:
        if not settle:
            await hub.ensure_started()
            futures = [hub.expect(k) for k in keys]
        inserted = await coalescer(_settle_orders if settle else _insert_orders).submit(list(orders))
        may_exist = True
        dup_idx = [n for n in range(len(orders)) if n not in inserted]
        if dup_idx:
            if not settle:
                for n in dup_idx:
                    hub.forget(keys[n], futures[n])
            async with connection(bound) as conn:
                await _answer_duplicates(conn, orders, dup_idx, results, own=settle)
        # The connection goes back to the pool while we wait for the worker.
        live = [n for n in range(len(orders)) if results[n] is None]
        outcomes: list[Any] = [None] * len(live) if settle else \
            await _await_outcomes([keys[n] for n in live], [futures[n] for n in live])
        # No outcome in time, or one too large for a NOTIFY: PostgreSQL has the answer.
        unresolved = [keys[n] for n, o in zip(live, outcomes) if not isinstance(o, PlaceOutcome) or o.order is None]
        from_db: dict[str, OrderState] = {}
        if unresolved:
            async with connection(bound) as conn:
                from_db = await orders_by_id(conn, unresolved)
                if any(state.status is OrderStatus.PENDING for state in from_db.values()):
                    await _make_durable(conn)
        for n, outcome in zip(live, outcomes):
            if isinstance(outcome, PlaceOutcome) and outcome.order is not None:
                results[n] = Result(201, order_body(outcome.order))
            else:
                state = from_db[keys[n]]
                results[n] = Result(202 if state.status is OrderStatus.PENDING else 201, order_body(state))
    except (psycopg.Error, *DB_FAILURES, CommitUncertain) as exc:
        for k, f in zip(keys, futures):
            hub.forget(k, f)
        if may_exist or isinstance(exc, CommitUncertain):
            return _unknown(orders, exc)
        if not isinstance(exc, DB_FAILURES):
            raise
        raise database_unavailable() from exc
    return _keyed(orders, results)


async def _insert_orders(orders: list[PlaceOrder], bound: float | None = None) -> dict[int, bool]:
    """One statement for a group of orders: the orders, their first OrderEvent, and a NOTIFY to
    the worker. Answers True at the index of each order that was inserted."""
    async with connection(bound) as conn:
        rows = [{"order_id": o.order_id, "client_id": o.client_id, "idempotency_key": o.idempotency_key,
                 "request_hash": o.request_hash, "instrument_id": o.instrument_id, "side": o.side.value,
                 "type": o.type.value, "time_in_force": o.time_in_force.value, "post_only": o.post_only,
                 "stp": o.stp.value, "price": o.price, "quantity": o.quantity} for o in orders]
        cur = await conn.execute(INSERT_ORDERS, {"orders": orjson.dumps(rows).decode()})
        inserted = {(str(row[0]), row[1], row[2]) for row in await cur.fetchall()}
        try:
            await conn.commit()
        except psycopg.Error as exc:
            raise CommitUncertain(str(exc)) from exc
    # A row is an order's only if order_id, client and key all match: two requests in one
    # group may carry the same client-supplied order_id, or be the very same request twice (the
    # first in the statement's order is the one inserted).
    answers: dict[int, bool] = {}
    for n, o in enumerate(orders):
        key = (o.order_id, o.client_id, o.idempotency_key)
        if key in inserted:
            inserted.discard(key)
            answers[n] = True
    return answers


async def _settle_orders(orders: list[PlaceOrder]) -> dict[int, bool]:
    """_insert_orders for orders whose answer from the worker was lost, within ORDER_SETTLE_S
    (a group of their own: they are not held behind a statement that has the longer bound)."""
    return await _insert_orders(orders, settings.ORDER_SETTLE_S)


async def _answer_duplicates(conn: psycopg.AsyncConnection[Any], orders: list[PlaceOrder], dup_idx: list[int],
                             results: list[Result | None], own: bool = False) -> None:
    """Answer orders whose key or order_id is on record: the original (200), or a 409. own:
    an order on record under its very own id is the request's (the worker committed it)."""
    cur = await conn.execute(EXISTING_BY_KEY, {"client_id": [orders[n].client_id for n in dup_idx],
                                               "key": [orders[n].idempotency_key for n in dup_idx]})
    existing = {(c, k): (str(oid), h) for c, k, oid, h in await cur.fetchall()}
    current = await orders_by_id(conn, [oid for oid, _ in existing.values()])
    for n in dup_idx:
        order = orders[n]
        found = existing.get((order.client_id, order.idempotency_key))
        if found is None:
            # No row under this key, so the conflict was on order_id: another order owns it.
            results[n] = Result(409, ApiError(409, Code.DUPLICATE_ORDER_ID,
                                              f"order_id {order.order_id} is already used by another order.",
                                              {"order_id": [{"code": Code.DUPLICATE_ORDER_ID.value,
                                                             "detail": "already used"}]}).body())
        elif own and found[0] == order.order_id:
            results[n] = Result(201, order_body(current[found[0]]))
        elif found[1] != order.request_hash:
            results[n] = Result(409, ApiError(
                409, Code.IDEMPOTENCY_KEY_REUSED,
                "This idempotency_key was already used with a different request body.",
                {"idempotency_key": [{"code": Code.IDEMPOTENCY_KEY_REUSED.value, "detail": "different body"}]},
                {"order": order_body(current[found[0]])}).body())
        else:
            results[n] = Result(200, order_body(current[found[0]]))


# --------------------------------------------------------------------------------------------
# Read one
# --------------------------------------------------------------------------------------------


def _parse_uuid(order_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(order_id))
    except ValueError:
        raise _not_found(str(order_id)) from None


def _not_found(order_id: str) -> ApiError:
    return ApiError(404, Code.ORDER_NOT_FOUND, f"No order {order_id}.")


async def _read_orders(order_ids: list[uuid.UUID]) -> dict[int, OrderState]:
    """One read for a group of requests: at each index, the order if it exists."""
    async with connection() as conn:
        found = await orders_by_id(conn, list(set(order_ids)))
    return {n: found[str(oid)] for n, oid in enumerate(order_ids) if str(oid) in found}


async def read_order(order_id: uuid.UUID) -> OrderState | None:
    return (await coalescer(_read_orders).submit([order_id])).get(0)


async def order_get(order_id: str, client_id: str | None = None) -> dict[str, Any]:
    """One order; ``client_id``: the caller may see only that client's (another's is 404)."""
    oid = _parse_uuid(order_id)
    try:
        found = await read_order(oid)
    except DB_FAILURES as exc:
        raise database_unavailable() from exc
    if found is None or (client_id is not None and found.client_id != client_id):
        raise _not_found(order_id)
    return order_body(found)


# --------------------------------------------------------------------------------------------
# Cancel and modify
# --------------------------------------------------------------------------------------------


async def order_command(order_id: str, kind: str, data: Any = None, client_id: str | None = None) -> Result:
    """Cancel or modify an order through the matching worker; the final state comes back.
    ``client_id``: the client the caller acts for; another client's order is 404, untouched
    (None: any client's)."""
    oid = _parse_uuid(order_id)
    _refuse_while_down()
    async with admitted():
        return await _command(oid, order_id, kind, data, client_id)


async def _command(oid: uuid.UUID, order_id: str, kind: str, data: Any, client_id: str | None) -> Result:
    try:
        await hub.ensure_started()
    except (psycopg.Error, *DB_FAILURES) as exc:
        raise database_unavailable() from exc
    # Whether the command may have been carried out already: after that, a failure is 504.
    may_exist = False
    # The worker's answer to the command was lost: what is left of the ack bound settles it.
    lost = False
    try:
        command: CancelOrder | ModifyOrder = CancelOrder(order_id=str(oid), client_id=client_id)
        if kind == "modify":
            # The new price and quantity are checked against the order's instrument first; an
            # order that does not exist or has finished is answered from this read already.
            found = await read_order(oid)
            if found is None or (client_id is not None and found.client_id != client_id):
                raise _not_found(order_id)
            if found.status in FINAL_STATUSES:
                raise _not_open(order_body(found))
            instrument = await by_symbol(found.instrument)
            assert instrument is not None
            command = msgspec.structs.replace(modify_request(data, instrument, str(oid)), client_id=client_id)
        if settings.MATCHING_DIRECT:
            direct, lost = await _command_direct(command)
            if direct is not None:
                return direct
            may_exist = lost
        bound = settings.ORDER_SETTLE_S if lost else None
        answers = await coalescer(_settle_commands if lost else _insert_commands).submit([command])
        may_exist = True
        if 0 not in answers:
            raise _not_found(order_id)
        answer = answers[0]
        if answer is None:
            current = await read_order(oid)
            assert current is not None
            raise _not_open(order_body(current))
        command_id, fut = answer
        if lost:
            hub.forget(f"cmd:{command_id}", fut)  # no second wait: the worker had its time
            outcome = None
        else:
            (outcome,) = await _await_outcomes([f"cmd:{command_id}"], [fut])
        if not isinstance(outcome, CommandOutcome):
            async with connection(bound) as conn:
                # The outcome may have come while the LISTEN was reconnecting; PostgreSQL knows.
                code = await _command_outcome_from_db(conn, command_id)
                if code is None:
                    await _make_durable(conn)
                    latest = (await orders_by_id(conn, [oid]))[str(oid)]
                    return Result(202, {**order_body(latest), "command_id": command_id, "command_status": "pending"})
        else:
            code = outcome.code
        latest = await read_order(oid)
        assert latest is not None
    except (psycopg.Error, *DB_FAILURES, CommitUncertain) as exc:
        if may_exist or isinstance(exc, CommitUncertain):
            log.warning("%s of %s: outcome unknown after a database failure (%s)", kind, oid, exc)
            raise outcome_unknown(str(oid)) from exc
        if not isinstance(exc, DB_FAILURES):
            raise
        raise database_unavailable() from exc
    return _command_result(kind, code, order_body(latest))


def _not_open(order: dict[str, Any]) -> ApiError:
    return ApiError(409, Code.ORDER_NOT_OPEN, f"The order is already {order['status']}.", extra={"order": order})


async def _command_direct(command: CancelOrder | ModifyOrder) -> tuple[Result | None, bool]:
    """The command through the direct path, or None when the inbox must take it: no worker
    reachable, an answer lost (a repeat is harmless: a cancel of a cancelled order is refused,
    a modify sets the same values again), or the order still a pending row (only the inbox
    orders the command after its place). An order that is finished, or unknown, the worker
    says so from its own read (409 with the order, 404). The flag says whether the worker may
    have carried the command out (its answer was lost)."""
    try:
        (answer,) = (await _direct([command])).values()
    except WorkerUnavailable:
        return None, False
    except WorkerLost:
        return None, True
    assert isinstance(answer, CommandResult), answer
    if answer.code is Code.DEFERRED:
        return None, False
    if answer.code is Code.ORDER_NOT_FOUND:
        raise _not_found(command.order_id)
    assert answer.order is not None  # the worker read the order back in its batch's round trip
    kind = "cancel" if isinstance(command, CancelOrder) else "modify"
    return _command_result(kind, answer.code, order_body(answer.order)), False


def _command_result(kind: str, code: Code, latest: dict[str, Any]) -> Result:
    if code is not Code.OK:
        # The engine forgets finished orders; the order exists, so it is simply no longer open.
        if code is Code.UNKNOWN_ORDER:
            code = Code.ORDER_NOT_OPEN
        detail = _REFUSALS.get(code, f"The {kind} was refused: {code.value}.")
        raise ApiError(409, code, detail, extra={"order": latest})
    return Result(200, latest)


_REFUSALS = {
    Code.ORDER_NOT_OPEN: "The order is no longer open.",
    Code.MODIFY_QUANTITY_AT_OR_BELOW_FILLED: "The new quantity must be above the filled quantity.",
    Code.POST_ONLY_WOULD_TAKE: "A post-only order cannot move to a price that would take liquidity.",
}

_insert_commands_sql: str | None = None


async def _insert_commands(
    commands: list[CancelOrder | ModifyOrder], bound: float | None = None,
) -> dict[int, tuple[int, asyncio.Future[Any]] | None]:
    """One statement for a group of cancels/modifies. At each index that names an order: None
    if it is no longer live, else the command's id and the future its outcome will resolve
    (registered before the commit, so the worker cannot answer before anyone listens)."""
    global _insert_commands_sql
    async with connection(bound) as conn:
        if _insert_commands_sql is None:
            cur = await conn.execute("SELECT pg_get_serial_sequence('orders_ordercommand', 'id')")
            (sequence,) = await cur.fetchone()  # type: ignore[misc]
            _insert_commands_sql = INSERT_COMMANDS.replace("{sequence}", sql.quote(sequence))
        rows = [{"kind": "cancel", "order_id": c.order_id, "client_id": c.client_id} if isinstance(c, CancelOrder)
                else {"kind": "modify", "order_id": c.order_id, "price": c.price, "quantity": c.quantity,
                      "client_id": c.client_id}
                for c in commands]
        cur = await conn.execute(_insert_commands_sql, {"commands": orjson.dumps(rows).decode()})
        answers = {n - 1: None if command_id is None else (command_id, hub.expect(f"cmd:{command_id}"))
                   for n, _, command_id, _ in await cur.fetchall()}
        try:
            await conn.commit()
        except BaseException as exc:
            for answer in answers.values():
                if answer is not None:
                    hub.forget(f"cmd:{answer[0]}", answer[1])
            if isinstance(exc, psycopg.Error):
                raise CommitUncertain(str(exc)) from exc
            raise
    return answers


async def _settle_commands(
    commands: list[CancelOrder | ModifyOrder],
) -> dict[int, tuple[int, asyncio.Future[Any]] | None]:
    """_insert_commands for commands whose answer from the worker was lost, within ORDER_SETTLE_S."""
    return await _insert_commands(commands, settings.ORDER_SETTLE_S)


async def _command_outcome_from_db(conn: psycopg.AsyncConnection[Any], command_id: int) -> Code | None:
    cur = await conn.execute("SELECT processed, result FROM orders_ordercommand WHERE id = %s", (command_id,))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    return Code(row[1])
