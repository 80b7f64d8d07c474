"""REST views: one per operation. They parse, call one service or selector, and answer.

These are DRF views (browsable API, OpenAPI schema, one error shape). POST /orders with JSON
normally takes the lean path in orders.fastpath; the same validation and service run here for
the browsable API's forms, so both answer identically. Who may call each (orders.auth) and what
a call spends (orders.limits, django-ratelimit) are declared on the view (``Guarded``).
"""
from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.contract import Code
from matching.records import ORDER_COLUMNS, fmt_decimal, fmt_time

from . import auth, limits, services
from .errors import invalid
from .instruments import CachedInstrument, by_symbol_sync
from .models import AuditEntry, Instrument, Order, Status, Trade
from .representation import order_body, trade_json
from .selectors import orderbook_sync, orders_sync
from .serializers import (
    ErrorSerializer,
    InstrumentSerializer,
    OrderBookSerializer,
    OrderCreateSerializer,
    OrderModifySerializer,
    OrderSerializer,
    TradeSerializer,
)
from .validation import instrument_symbol, place_request

ERRORS = {400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer, 503: ErrorSerializer}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The schema's (and Swagger UI's "Authorize") name for orders.auth's keys."""

    target_class = "orders.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer pgb_..."}


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "orders.auth.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def _data(request: Request) -> Any:
    data = request.data
    if hasattr(data, "dict"):  # a form (QueryDict): plain values, blanks as absent
        data = {k: v for k, v in data.dict().items() if v not in ("", None) and k != "csrfmiddlewaretoken"}
    return data


def _instrument_or_400(symbol: str | None) -> CachedInstrument:
    if not symbol:
        raise invalid("instrument", Code.REQUIRED, "this query parameter is required")
    instrument = by_symbol_sync(symbol)
    if instrument is None:
        raise invalid("instrument", Code.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}")
    return instrument


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise invalid(name, Code.OUT_OF_RANGE, f"must be an integer from {low} to {high}")
    return value


class Guarded:
    """Every answer carries the caller's budget left (X-RateLimit-Limit, -Remaining, -Reset)
    once the request was counted (orders.limits.RateLimit, from the view's ``rate_actions``)."""

    permission_classes = [auth.ReadsOrTrades]
    rate_actions: dict[str, limits.Action] = {}

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        usage = getattr(request, "rate_usage", None)
        if usage is not None:
            for name, value in usage.headers():
                response[name.decode()] = value.decode()
        return response


_READ = {"GET": limits.Action.READS, "HEAD": limits.Action.READS, "OPTIONS": limits.Action.READS}
_COMMAND = {m: limits.Action.COMMANDS for m in ("PATCH", "PUT", "DELETE", "POST")}


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 1000


class OrderCollection(Guarded, generics.GenericAPIView):
    """List orders (newest first, cursor-paginated; a trader's or read-only key sees its own
    client's only) or place one."""

    rate_actions = {**_READ, "POST": limits.Action.ORDERS}
    serializer_class = OrderCreateSerializer
    pagination_class = NewestFirst
    queryset = Order.objects.all()

    @extend_schema(parameters=[OpenApiParameter("client_id", str), OpenApiParameter("status", str),
                               OpenApiParameter("instrument", str), OpenApiParameter("limit", int)],
                   responses={200: OrderSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        qs = self.get_queryset()
        bound = auth.caller_of(request).limited_to
        client_id = request.query_params.get("client_id")
        if bound is not None and client_id not in (None, bound):
            raise auth.client_mismatch(bound)
        if client_id := client_id or bound:
            qs = qs.filter(client_id=client_id)
        if status := request.query_params.get("status"):
            if status not in Status.values:
                raise invalid("status", Code.INVALID_CHOICE, f"must be one of {', '.join(Status.values)}")
            qs = qs.filter(status=status)
        if symbol := request.query_params.get("instrument"):
            qs = qs.filter(instrument=_instrument_or_400(symbol).id)
        _int_param(request, "limit", 50, 1, 1000)
        page = self.paginate_queryset(qs.values(*ORDER_COLUMNS, "id"))
        assert page is not None
        return self.get_paginated_response([order_body(state) for state in orders_sync(list(page))])

    @extend_schema(request=OrderCreateSerializer,
                   responses={201: OrderSerializer, 200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        data = auth.bind_client(auth.caller_of(request), _data(request))
        symbol = instrument_symbol(data)
        order = place_request(data, by_symbol_sync(symbol) if symbol else None)
        (result,) = async_to_sync(services.orders_place)([order])
        return Response(result.body, status=result.status)


class OrderDetail(Guarded, generics.GenericAPIView):
    """One order: read it, modify it (PATCH/PUT: new price and/or new total quantity), cancel it
    (DELETE). Another client's order is 404 to a trader's or read-only key."""

    rate_actions = {**_READ, **_COMMAND}
    serializer_class = OrderModifySerializer
    queryset = Order.objects.all()

    @extend_schema(responses={200: OrderSerializer, **ERRORS})
    def get(self, request: Request, order_id: str) -> Response:
        return Response(async_to_sync(services.order_get)(order_id, auth.caller_of(request).limited_to))

    @extend_schema(request=OrderModifySerializer, responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def patch(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "modify", _data(request),
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)

    put = patch

    @extend_schema(responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def delete(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel",
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)


class OrderCancel(Guarded, APIView):
    """Cancel an order: the answer is its final state (cancelled, with the remaining quantity)."""

    rate_actions = _COMMAND

    @extend_schema(request=None, responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def post(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel",
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)


class TradeList(Guarded, APIView):
    """Recent trades of an instrument, newest first."""

    permission_classes = [auth.PublicRead]
    rate_actions = _READ

    @extend_schema(parameters=[OpenApiParameter("instrument", str, required=True),
                               OpenApiParameter("limit", int, description="1..1000, default 50")],
                   responses={200: TradeSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        limit = _int_param(request, "limit", 50, 1, 1000)
        tick, lot = instrument.spec.tick_size, instrument.spec.lot_size
        rows = Trade.objects.filter(instrument=instrument.id).order_by("-seq")[:limit]
        return Response([trade_json(
            trade_id=t.trade_id, instrument=instrument.symbol, price=fmt_decimal(t.price, tick),
            quantity=fmt_decimal(t.quantity, lot), aggressor_side=t.aggressor_side,
            buy_order_id=str(t.buy_order_id), sell_order_id=str(t.sell_order_id),
            maker_order_id=str(t.maker_order_id), taker_order_id=str(t.taker_order_id), seq=t.seq,
            executed_at=fmt_time(t.executed_at)) for t in rows])


class OrderBook(Guarded, APIView):
    """The order book: bids high to low, asks low to high, with the sequence it reflects."""

    permission_classes = [auth.PublicRead]
    rate_actions = _READ

    @extend_schema(parameters=[OpenApiParameter("instrument", str, required=True),
                               OpenApiParameter("levels", int, description="1..1000, default 20")],
                   responses={200: OrderBookSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        levels = _int_param(request, "levels", 20, 1, 1000)
        return Response(orderbook_sync(instrument, levels))


class InstrumentList(Guarded, APIView):
    """Tradable instruments and their grids."""

    permission_classes = [auth.PublicRead]
    rate_actions = _READ

    @extend_schema(responses={200: InstrumentSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response([{
            "symbol": i.symbol, "tick_size": str(i.tick_size.normalize()), "lot_size": str(i.lot_size.normalize()),
            "min_qty": str(i.min_qty.normalize()), "max_qty": str(i.max_qty.normalize()),
            "max_price": str(i.max_price.normalize()),
            "min_notional": None if i.min_notional is None else str(i.min_notional.normalize()),
            "is_active": i.is_active} for i in Instrument.objects.all()])


class Readiness(APIView):
    """GET /readyz: what this web process runs with; a warning when keys are not checked.
    (No I/O: it answers from what the process knows.)"""

    authentication_classes: list[Any] = []
    permission_classes = [auth.PublicRead]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        from django.conf import settings

        warnings = [] if settings.AUTH_REQUIRED else [auth.OFF_WARNING]
        return Response({"status": "ok", "auth": "required" if settings.AUTH_REQUIRED else "off",
                         "rate_limits": {"enabled": settings.RATE_LIMITS_ENABLED, "store": settings.RATE_LIMIT_STORE,
                                         "web_processes": limits.peers()},
                         "warnings": warnings})


class AuditList(Guarded, APIView):
    """GET /admin/audit: the newest entries of the audit trail (admin keys and staff sessions)."""

    permission_classes = [auth.IsAdmin]
    rate_actions = _READ

    @extend_schema(parameters=[OpenApiParameter("action", str), OpenApiParameter("limit", int)],
                   responses={200: dict, **ERRORS})
    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 1000)
        entries = AuditEntry.objects.all()
        if action := request.query_params.get("action"):
            entries = entries.filter(action=action)
        return Response([{"time": fmt_time(e.created_at), "actor": e.actor, "action": e.action, "target": e.target,
                          "detail": e.detail} for e in entries[:limit]])

