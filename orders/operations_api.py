"""The operations endpoints (/admin/..., admin keys and staff sessions: orders.auth.IsAdmin): snapshots of the
live books, halt and resume, cancel-all, the worker's state. Each parses, sends one admin
command to the matching worker (orders.operations), records itself in the audit trail
(orders.audit.record) and renders the answer."""
from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.contract import (
    AdminAnswer,
    AllCancelled,
    CancelAll,
    Code,
    HaltSet,
    ReadWorkerState,
    Refused,
    SetHalted,
    SnapshotsTaken,
    TakeSnapshot,
    WorkerState,
    to_builtins,
)
from matching.records import fmt_time

from . import audit, operations
from .api import COMMANDS, READ_ERRORS, READS, Guarded, _instrument_or_400, _int_param
from .auth import IsAdmin
from .errors import ApiError, invalid
from .instruments import CachedInstrument
from .selectors import snapshots_list
from .serializers import ErrorSerializer
from .validation import refuse_bad_text

# Besides the API's own refusals: no key (401), a key that may not operate (403).
OPERATION_ERRORS = {**READ_ERRORS, 401: ErrorSerializer, 403: ErrorSerializer, 504: ErrorSerializer}


def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    data = request.data
    if hasattr(data, "dict"):
        data = {k: v for k, v in data.dict().items() if v not in ("", None) and k != "csrfmiddlewaretoken"}
    if not isinstance(data, dict):
        raise ApiError(400, Code.INVALID_BODY, "The request body must be a JSON object.")
    refuse_bad_text(data)
    for name, value in data.items():
        if name not in allowed:
            raise invalid(str(name), Code.UNKNOWN_FIELD, "is not a field of this request")
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 64):
            raise invalid(name, Code.INVALID_STRING, "must be a string of 1 to 64 characters")
    return data


def _send(command: Any, actor: Any, action: str, target: str) -> AdminAnswer | operations.Pending:
    """Send, record in the audit trail whatever came of it, and return the answer."""
    try:
        answer = async_to_sync(operations.send)(command)
    except ApiError as exc:
        audit.record(actor, action, target, {"error": exc.code})
        raise
    if isinstance(answer, operations.Pending):
        audit.record(actor, action, target, {"pending": answer.command_id})
    else:
        audit.record(actor, action, target, to_builtins(answer))
    return answer


def _answer(answer: AdminAnswer | operations.Pending, ok_status: int = 200) -> Response:
    if isinstance(answer, operations.Pending):
        return Response({"status": "pending", "command_id": answer.command_id,
                         "detail": "No matching worker answered yet; the command is stored and will be carried out "
                                   f"when one runs (GET /admin/commands/{answer.command_id})."}, status=202)
    if isinstance(answer, Refused):
        status = 404 if answer.code is Code.UNKNOWN_INSTRUMENT else 409
        raise ApiError(status, answer.code, f"The matching worker refused the command: {answer.code.value}.")
    body = to_builtins(answer)
    body.pop("kind", None)
    return Response(body, status=ok_status)


class SnapshotTake(Guarded, APIView):
    """Persist a BookSnapshot of the live book (``instrument``, or every instrument) at a
    committed sequence: 201 with its id, seq, journal position, level and order counts."""

    permission_classes = [IsAdmin]
    rate_actions = COMMANDS

    @extend_schema(request=None, responses={201: dict, 202: dict, **OPERATION_ERRORS})
    def post(self, request: Request) -> Response:
        data = _body(request, {"instrument"})
        instrument: CachedInstrument | None = None
        if data.get("instrument") is not None:
            instrument = _instrument_or_400(data["instrument"])
        answer = _send(TakeSnapshot(instrument_id=None if instrument is None else instrument.id),
                       request.user, "snapshot", "all" if instrument is None else instrument.symbol)
        if isinstance(answer, SnapshotsTaken):
            taken = [to_builtins(s) for s in answer.snapshots]
            return Response(taken[0] if instrument is not None and len(taken) == 1 else {"snapshots": taken},
                            status=201)
        return _answer(answer)


class SnapshotList(Guarded, APIView):
    """Persisted snapshots, newest first (without their contents: the admin shows those)."""

    permission_classes = [IsAdmin]
    rate_actions = READS

    @extend_schema(parameters=[OpenApiParameter("instrument", str), OpenApiParameter("limit", int)],
                   responses={200: dict, **OPERATION_ERRORS})
    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 1000)
        symbol = request.query_params.get("instrument")
        instrument_id = _instrument_or_400(symbol).id if symbol else None
        return Response({"snapshots": async_to_sync(snapshots_list)(instrument_id, limit)})


class InstrumentHalt(Guarded, APIView):
    """Halt (``halted``) or resume an instrument: while halted, new orders and modifies are
    refused with ``instrument_halted``; cancels still work; it survives a restart."""

    permission_classes = [IsAdmin]
    rate_actions = COMMANDS

    @extend_schema(request=None, responses={200: dict, 202: dict, **OPERATION_ERRORS})
    def post(self, request: Request, symbol: str, halted: bool) -> Response:
        _body(request, set())
        instrument = _instrument_or_400(symbol)
        answer = _send(SetHalted(instrument_id=instrument.id, halted=halted), request.user,
                       "halt" if halted else "resume", instrument.symbol)
        assert isinstance(answer, (HaltSet, Refused, operations.Pending)), answer
        return _answer(answer)


class CancelAllOrders(Guarded, APIView):
    """Cancel every open order of an ``instrument``, of a ``client_id``, or of both together."""

    permission_classes = [IsAdmin]
    rate_actions = COMMANDS

    @extend_schema(request=None, responses={200: dict, 202: dict, **OPERATION_ERRORS})
    def post(self, request: Request) -> Response:
        data = _body(request, {"instrument", "client_id"})
        if data.get("instrument") is None and data.get("client_id") is None:
            raise invalid("instrument", Code.REQUIRED, "give an instrument, a client_id, or both")
        instrument = None if data.get("instrument") is None else _instrument_or_400(data["instrument"])
        client_id = data.get("client_id")
        target = " ".join(t for t in (instrument and instrument.symbol, client_id and f"client:{client_id}") if t)
        answer = _send(CancelAll(instrument_id=None if instrument is None else instrument.id, client_id=client_id),
                       request.user, "cancel_all", target)
        assert isinstance(answer, (AllCancelled, Refused, operations.Pending)), answer
        return _answer(answer)


class WorkerStateView(Guarded, APIView):
    """The matching worker's own account: its books, counters and last batch."""

    permission_classes = [IsAdmin]
    rate_actions = READS

    @extend_schema(responses={200: dict, **OPERATION_ERRORS})
    def get(self, request: Request) -> Response:
        answer = async_to_sync(operations.send)(ReadWorkerState())
        assert isinstance(answer, (WorkerState, Refused, operations.Pending)), answer
        return _answer(answer)


class AdminCommandDetail(Guarded, APIView):
    """An admin command stored in the inbox: whether it was carried out, and its answer."""

    permission_classes = [IsAdmin]
    rate_actions = READS

    @extend_schema(responses={200: dict, **OPERATION_ERRORS},
                   parameters=[OpenApiParameter("command_id", int, OpenApiParameter.PATH)])
    def get(self, request: Request, command_id: str) -> Response:
        # (any text routes here, so that a malformed id is this API's 404, not the admin site's)
        row = async_to_sync(operations.command_row)(int(command_id)) if command_id.isdigit() and \
            len(command_id) < 19 else None
        if row is None:
            raise ApiError(404, Code.NOT_FOUND, f"No admin command {command_id}.")
        return Response({"command_id": command_id, "kind": row["kind"], "command": row["command"],
                         "processed": row["processed"], "result": row["result"],
                         "created_at": fmt_time(row["created_at"]),
                         "processed_at": None if row["processed_at"] is None else fmt_time(row["processed_at"])})
