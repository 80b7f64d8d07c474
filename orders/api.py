"""REST views: one per operation. They parse, call one service or selector, and answer.

These are DRF views (browsable API, OpenAPI schema, one error shape). POST /orders with JSON
normally takes the lean path in orders.fastpath; the same validation and service run here for
the browsable API's forms, so both answer identically. Who may call each (orders.auth) and what
a call spends (orders.limits, django-ratelimit) are declared on the view (``Guarded``).
"""
from __future__ import annotations

import base64
import datetime as dt
import time
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from matching.contract import Code, OrderStatus

from . import auth, limits, metrics, services
from .errors import ApiError, invalid
from .instruments import CachedInstrument, by_symbol, listed
from .models import Order, Status
from .representation import order_body
from .selectors import audit_entries, orders_page, positions_of, read_orderbook, recent_trades, settlements
from .serializers import (
    AccountSerializer,
    AuditEntrySerializer,
    ErrorSerializer,
    InstrumentSerializer,
    OrderBookSerializer,
    OrderCreateSerializer,
    OrderModifySerializer,
    OrderPageSerializer,
    OrderSerializer,
    OrderTestSerializer,
    PositionsSerializer,
    SettlementSerializer,
    TradeSerializer,
)
from .validation import instrument_symbol, place_request, refuse_bad_text, tested_order

# Every refusal the API can give, in the one error shape (orders.errors).
_E = ErrorSerializer
READ_ERRORS = {400: _E, 401: _E, 403: _E, 404: _E, 405: _E, 408: _E, 429: _E, 503: _E}
WRITE_ERRORS = {**READ_ERRORS, 409: _E, 413: _E, 415: _E, 504: _E}


def _limit(name: str, default: int, high: int, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, {"type": "integer", "minimum": 1, "maximum": high, "default": default},
                            description=f"{what}: 1..{high}, default {default}")


INSTRUMENT = OpenApiParameter("instrument", str, required=True, description="a symbol of GET /instruments")


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
    if request.content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")) and \
            request._request.body.lstrip()[:1] in (b"{", b"["):
        # JSON labelled as a form would be read as one field named after the whole body.
        raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE,
                       "The body is JSON: send it with Content-Type: application/json.")
    data = request.data
    if hasattr(data, "dict"):  # a form (QueryDict): plain values, blanks as absent
        data = {k: v for k, v in data.dict().items() if v not in ("", None) and k != "csrfmiddlewaretoken"}
    return data


def _instrument_or_400(symbol: str | None) -> CachedInstrument:
    if not symbol:
        raise invalid("instrument", Code.REQUIRED, "this query parameter is required")
    instrument = async_to_sync(by_symbol)(symbol)
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


def _cursor(request: Request) -> tuple[int | None, int | None]:
    """(older_than, newer_than) from the opaque ?cursor= of a page link."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None, None
    try:
        text = base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)).decode()
        direction, row_id = text[0], int(text[1:])
        if direction not in "on" or row_id < 0:
            raise ValueError(text)
    except (ValueError, UnicodeDecodeError, IndexError):
        raise invalid("cursor", Code.INVALID_CHOICE, "not a cursor this API gave") from None
    return (row_id, None) if direction == "o" else (None, row_id)


def _page_link(request: Request, direction: str, row_id: int | None) -> str | None:
    if row_id is None:
        return None
    token = base64.urlsafe_b64encode(f"{direction}{row_id}".encode()).decode().rstrip("=")
    return replace_query_param(request.build_absolute_uri(), "cursor", token)


class _Checked:
    """Every view's query parameters are refused at once if one holds a NUL or a lone surrogate
    (a string nothing may read, store or echo: orders.validation)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        refuse_bad_text({name: request.query_params.getlist(name) for name in request.query_params})
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


class Guarded(_Checked):
    """The base of every view: its query checked (``_Checked``), who may call it declared
    (``permission_classes``, orders.auth), what a call spends declared (``rate_actions``:
    method -> orders.limits.Action, counted by orders.limits.RateLimit); every answer carries
    the caller's budget left (X-RateLimit-Limit, -Remaining, -Reset) once it was counted."""

    permission_classes = [auth.ReadsOrTrades]
    rate_actions: dict[str, limits.Action] = {}

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        usage = getattr(request, "rate_usage", None)
        if usage is not None:
            for name, value in usage.headers():
                response[name.decode()] = value.decode()
        return response


READS = {"GET": limits.Action.READS, "HEAD": limits.Action.READS, "OPTIONS": limits.Action.READS}
COMMANDS = {m: limits.Action.COMMANDS for m in ("PATCH", "PUT", "DELETE", "POST")}


class OrderCollection(Guarded, generics.GenericAPIView):
    """List orders (newest first, cursor-paginated; a trader's or read-only key sees its own
    client's only) or place one."""

    rate_actions = {**READS, "POST": limits.Action.ORDERS}
    serializer_class = OrderCreateSerializer
    queryset = Order.objects.none()  # the browsable API's form needs one; reads go through selectors

    @extend_schema(parameters=[OpenApiParameter("client_id", str),
                               OpenApiParameter("status", str, enum=[s.value for s in OrderStatus]),
                               OpenApiParameter("instrument", str), _limit("limit", 50, 1000, "orders per page"),
                               OpenApiParameter("cursor", str, description="from a page's next/previous")],
                   responses={200: OrderPageSerializer, **READ_ERRORS}, operation_id="orders_list")
    def get(self, request: Request) -> Response:
        params = request.query_params
        bound = auth.caller_of(request).limited_to
        client_id = params.get("client_id") or None
        if bound is not None and client_id not in (None, bound):
            raise auth.client_mismatch(bound)
        status = params.get("status")
        if status is not None and status not in Status.values:
            raise invalid("status", Code.INVALID_CHOICE, f"must be one of {', '.join(Status.values)}")
        symbol = params.get("instrument")
        older_than, newer_than = _cursor(request)
        page = async_to_sync(orders_page)(
            client_id=client_id or bound, status=status,
            instrument_id=_instrument_or_400(symbol).id if symbol else None,
            limit=_int_param(request, "limit", 50, 1, 1000), older_than=older_than, newer_than=newer_than)
        return Response({"next": _page_link(request, "o", page.older),
                         "previous": _page_link(request, "n", page.newer),
                         "results": [order_body(state) for state in page.orders]})

    @extend_schema(request=OrderCreateSerializer,
                   responses={201: OrderSerializer, 200: OrderSerializer, 202: OrderSerializer, **WRITE_ERRORS},
                   description="201: placed, its outcome committed (fills included). 200: the same "
                               "idempotency_key and body again: the original order. 202: stored, not yet "
                               "matched (status pending). 409: the key with another body, or a taken order_id.")
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        data = auth.bind_client(auth.caller_of(request), _data(request))
        symbol = instrument_symbol(data)
        order = place_request(data, async_to_sync(by_symbol)(symbol) if symbol else None)
        (result,) = async_to_sync(services.orders_place)([order])
        metrics.drf_answered(started)
        return Response(result.body, status=result.status)


class OrderTest(Guarded, APIView):
    """Validate an order exactly as POST /orders would, and store nothing (as Binance's
    /order/test). JSON bodies take the lean path (orders.fastpath); this view serves forms."""

    rate_actions = {"POST": limits.Action.ORDERS}
    serializer_class = OrderCreateSerializer

    @extend_schema(request=OrderCreateSerializer, responses={200: OrderTestSerializer, **WRITE_ERRORS})
    def post(self, request: Request) -> Response:
        data = auth.bind_client(auth.caller_of(request), _data(request))
        symbol = instrument_symbol(data)
        instrument = async_to_sync(by_symbol)(symbol) if symbol else None
        return Response(tested_order(place_request(data, instrument), instrument))


class _NoObjectMetadata(SimpleMetadata):
    """OPTIONS describes the operations without looking up the object (an order is read through
    the services, not a queryset lookup)."""

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        actions = {}
        for method in {"PUT", "PATCH", "POST"} & set(view.allowed_methods):
            actions[method] = self.get_serializer_info(view.get_serializer())
        return actions


class OrderDetail(Guarded, generics.GenericAPIView):
    """One order: read it, modify it (PATCH/PUT: new price and/or new total quantity), cancel it
    (DELETE). Another client's order is 404 to a trader's or read-only key."""

    rate_actions = {**READS, **COMMANDS}
    serializer_class = OrderModifySerializer
    queryset = Order.objects.all()
    metadata_class = _NoObjectMetadata

    @extend_schema(responses={200: OrderSerializer, **READ_ERRORS}, operation_id="order_get")
    def get(self, request: Request, order_id: str) -> Response:
        return Response(async_to_sync(services.order_get)(order_id, auth.caller_of(request).limited_to))

    @extend_schema(request=OrderModifySerializer, responses={200: OrderSerializer, 202: OrderSerializer,
                                                            **WRITE_ERRORS})
    def patch(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "modify", _data(request),
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)

    put = patch

    @extend_schema(responses={200: OrderSerializer, 202: OrderSerializer, **WRITE_ERRORS})
    def delete(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel",
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)


class OrderCancel(Guarded, APIView):
    """Cancel an order: the answer is its final state (cancelled, with the remaining quantity)."""

    rate_actions = COMMANDS

    @extend_schema(request=None, responses={200: OrderSerializer, 202: OrderSerializer, **WRITE_ERRORS})
    def post(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel",
                                                        client_id=auth.caller_of(request).limited_to)
        return Response(result.body, status=result.status)


class TradeList(Guarded, APIView):
    """Recent trades of an instrument, newest first."""

    permission_classes = [auth.PublicRead]
    rate_actions = READS

    @extend_schema(parameters=[INSTRUMENT, _limit("limit", 50, 1000, "trades")],
                   responses={200: TradeSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        limit = _int_param(request, "limit", 50, 1, 1000)
        return Response(async_to_sync(recent_trades)(instrument, limit))


class OrderBook(Guarded, APIView):
    """The order book: bids high to low, asks low to high, with the sequence it reflects."""

    permission_classes = [auth.PublicRead]
    rate_actions = READS

    @extend_schema(parameters=[INSTRUMENT, _limit("levels", 20, 1000, "price levels per side")],
                   responses={200: OrderBookSerializer, **READ_ERRORS})
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        levels = _int_param(request, "levels", 20, 1, 1000)
        return Response(async_to_sync(read_orderbook)(instrument, levels))


class InstrumentList(Guarded, APIView):
    """Tradable instruments and their grids."""

    permission_classes = [auth.PublicRead]
    rate_actions = READS

    @extend_schema(responses={200: InstrumentSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request) -> Response:
        def text(value: Decimal) -> str:
            return format(value, "f")

        return Response([{
            "symbol": i.symbol, "tick_size": text(i.spec.tick_size), "lot_size": text(i.spec.lot_size),
            "min_qty": text(i.spec.min_qty), "max_qty": text(i.spec.max_qty), "max_price": text(i.spec.max_price),
            "min_notional": None if i.spec.min_notional is None else text(i.spec.min_notional),
            "is_active": i.is_active, "halted": i.halted} for i in async_to_sync(listed)()])


class Account(Guarded, APIView):
    """GET /account: who the caller is, as the exchange sees it: the client its key acts for
    (null for an admin key or a staff session: any client), its role, its key's prefix, and
    its budgets (requests per window, by action)."""

    permission_classes = [auth.IsCaller]
    rate_actions = READS

    @extend_schema(responses={200: AccountSerializer, **READ_ERRORS}, operation_id="account_get")
    def get(self, request: Request) -> Response:
        caller = auth.caller_of(request)
        return Response({"client_id": caller.limited_to, "role": caller.role, "key_prefix": caller.prefix or None,
                         "rate_limits": limits.budgets(caller)})


# --------------------------------------------------------------------------------------------
# Positions and settlements
# --------------------------------------------------------------------------------------------


class PositionList(Guarded, APIView):
    """A client's positions, one per instrument it traded: net quantity, quote cash flow,
    average entry price and realized PnL by average cost, unrealized PnL at the last price.
    A trader's or read-only key reads its own client's; an admin's any client's."""

    rate_actions = READS

    @extend_schema(
        parameters=[OpenApiParameter("instrument", str, description="only this instrument")],
        responses={200: PositionsSerializer, **READ_ERRORS},
        examples=[OpenApiExample("alice", response_only=True, value={"client_id": "alice", "positions": [{
            "instrument": "BTC-USD", "net_quantity": "0.3000", "quote_cash_flow": "-8996.500000",
            "average_entry_price": "30001.67", "cost_basis": "9000.500000", "realized_pnl": "4.000000",
            "unrealized_pnl": "0.700000", "last_price": "30004.00", "bought_quantity": "0.8000",
            "sold_quantity": "0.5000", "bought_quote": "24001.500000", "sold_quote": "15005.000000",
            "trade_count": 4, "seq": 188, "updated_at": "2026-12-02T12:00:41.517Z"}]})])
    def get(self, request: Request, client_id: str) -> Response:
        auth.client_scope(auth.caller_of(request), client_id)
        symbol = request.query_params.get("instrument")
        instrument = _instrument_or_400(symbol) if symbol else None
        return Response({"client_id": client_id, "positions": async_to_sync(positions_of)(client_id, instrument)})


class SettlementList(Guarded, APIView):
    """End-of-day settlements (`manage.py settle`), newest day first: a trader's or read-only
    key's own client's; an admin's of the client named, or of every client."""

    rate_actions = READS

    @extend_schema(
        parameters=[OpenApiParameter("date", str, description="YYYY-MM-DD"), OpenApiParameter("client_id", str),
                    OpenApiParameter("instrument", str), _limit("limit", 100, 1000, "settlements")],
        responses={200: SettlementSerializer(many=True), **READ_ERRORS},
        examples=[OpenApiExample("one client's day", response_only=True, value=[{
            "date": "2026-12-01", "instrument": "BTC-USD", "client_id": "alice", "bought_quantity": "0.8000",
            "sold_quantity": "0.5000", "net_quantity": "0.3000", "bought_quote": "24001.500000",
            "sold_quote": "15005.000000", "net_quote": "-8996.500000", "buy_vwap": "30001.88",
            "sell_vwap": "30010.00", "trade_count": 4}])])
    def get(self, request: Request) -> Response:
        client_id = auth.client_scope(auth.caller_of(request), request.query_params.get("client_id") or None)
        raw_day = request.query_params.get("date")
        day = None
        if raw_day:
            try:
                day = dt.date.fromisoformat(raw_day)
            except ValueError:
                raise invalid("date", Code.INVALID_TIME, "must be a date, YYYY-MM-DD") from None
        symbol = request.query_params.get("instrument")
        instrument = _instrument_or_400(symbol) if symbol else None
        limit = _int_param(request, "limit", 100, 1, 1000)
        return Response(async_to_sync(settlements)(day=day, client_id=client_id, instrument=instrument,
                                                   limit=limit))



class AuditList(Guarded, APIView):
    """GET /admin/audit: the newest entries of the audit trail (admin keys and staff sessions)."""

    permission_classes = [auth.IsAdmin]
    rate_actions = READS

    @extend_schema(parameters=[OpenApiParameter("action", str), _limit("limit", 50, 1000, "entries")],
                   responses={200: AuditEntrySerializer(many=True), **READ_ERRORS}, operation_id="audit_list")
    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, 1000)
        return Response(async_to_sync(audit_entries)(request.query_params.get("action") or None, limit))
