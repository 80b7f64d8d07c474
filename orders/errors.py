"""One error shape for every 4xx/5xx the API gives: {"code", "detail", "fields"}.

Expected failures are values: validation raises ApiError with a machine-readable code; the DRF
exception handler and the raw ASGI fast path both render it the same way.
"""
from __future__ import annotations

from typing import Any

import psycopg
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from matching.contract import Code

from .db import FAILURES, DatabaseDown


class ApiError(Exception):
    def __init__(self, status_code: int, code: Code | str, detail: str, fields: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code.value if isinstance(code, Code) else code
        self.detail = detail
        self.fields = fields or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, "fields": self.fields, **self.extra}


def invalid(field: str, code: Code, detail: str) -> ApiError:
    """400 for one bad field: ``{"code", "detail": "field: detail", "fields": {field: [...]}}``."""
    return ApiError(400, code, f"{field}: {detail}", {field: [{"code": code.value, "detail": detail}]})


# Answers that invite a retry carry Retry-After (seconds): the database or the exchange is
# away or busy, or the outcome is not known yet.
RETRY_STATUSES = frozenset({429, 503, 504})
RETRY_AFTER_S = 1


def database_unavailable() -> ApiError:
    return ApiError(503, Code.DATABASE_UNAVAILABLE, "PostgreSQL is unreachable; try again shortly.")


def outcome_unknown(order_id: str, idempotency_key: str | None = None) -> ApiError:
    """The answer for a request that may have been carried out: the order (or command) reached
    the matching worker or PostgreSQL, and then the way back failed. Never "failed": a retry
    with the same idempotency key, or GET /orders/{order_id}, tells what happened."""
    extra: dict[str, Any] = {"order_id": order_id}
    if idempotency_key is not None:
        extra["idempotency_key"] = idempotency_key
    return ApiError(504, Code.OUTCOME_UNKNOWN,
                    "The request reached the exchange but its outcome could not be confirmed: it may have "
                    "been carried out. Retry with the same idempotency_key, or GET /orders/{order_id}.",
                    extra=extra)


def _flatten(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        out: dict[str, Any] = {}
        for key, value in detail.items():
            items = value if isinstance(value, list) else [value]
            out[str(key)] = [{"code": getattr(v, "code", "invalid"), "detail": str(v)} for v in items]
        return out
    return {}


def _retryable(response: Response) -> Response:
    if response.status_code in RETRY_STATUSES:
        response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApiError):
        return _retryable(Response(exc.body(), status=exc.status_code))
    if isinstance(exc, (OperationalError, InterfaceError, psycopg.OperationalError, DatabaseDown, *FAILURES)):
        return _retryable(Response(database_unavailable().body(), status=503))
    if isinstance(exc, Http404):
        return Response({"code": Code.NOT_FOUND.value, "detail": "Not found.", "fields": {}}, status=404)
    if isinstance(exc, exceptions.ParseError):
        return Response({"code": Code.INVALID_JSON.value, "detail": str(exc.detail), "fields": {}}, status=400)
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.values()), [{"code": "invalid"}])[0]["code"]
        return Response({"code": first if first in _KNOWN else Code.VALIDATION_ERROR.value,
                         "detail": "Invalid request.", "fields": fields}, status=400)
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        code = _DRF_CODES.get(code, code)
        return _retryable(Response({"code": code if code in _KNOWN else Code.INVALID_BODY.value,
                                    "detail": str(exc.detail), "fields": {}}, status=exc.status_code))
    # Anything else is a fault of ours: Django logs it and handler500 answers in the same shape.
    return None


_KNOWN = frozenset(c.value for c in Code)
# DRF's own codes, as the contract names them.
_DRF_CODES = {"permission_denied": Code.FORBIDDEN.value, "parse_error": Code.INVALID_JSON.value}


__all__ = ["ApiError", "invalid", "database_unavailable", "exception_handler", "status"]


# -- Django's own refusals, in the same shape (exchange_project.urls names these handlers) --


def _error_response(status: int, code: Code, detail: str) -> JsonResponse:
    return JsonResponse({"code": code.value, "detail": detail, "fields": {}}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error_response(404, Code.NOT_FOUND, f"No such path: {request.path}")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return _error_response(413, Code.BODY_TOO_LARGE, "The request body is too large.")
    return _error_response(400, Code.INVALID_BODY, "The request could not be read.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error_response(403, Code.FORBIDDEN, "Not allowed.")


def server_error(request: HttpRequest) -> JsonResponse:
    return _error_response(500, Code.SERVER_ERROR, "The server failed to answer this request.")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    return _error_response(403, Code.CSRF_FAILED, f"CSRF verification failed: {reason or 'no token'}.")
