"""REST views: one per operation. They parse, call one service or selector, and answer.

These are DRF views (browsable API, OpenAPI schema, one error shape). POST /orders with JSON
normally takes the lean path in orders.fastpath; the same validation and service run here for
the browsable API's forms, so both answer identically.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from asgiref.sync import async_to_sync
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.contract import Code
from matching.records import ORDER_COLUMNS, fmt_decimal, fmt_time

from . import services
from .access import check_client_access
from .errors import invalid
from .instruments import CachedInstrument, by_symbol_sync
from .models import Instrument, Order, Status, Trade
from .representation import order_body, trade_json
from .selectors import orderbook_sync, orders_sync, positions_of, settlements
from .serializers import (
    ErrorSerializer,
    InstrumentSerializer,
    OrderBookSerializer,
    OrderCreateSerializer,
    OrderModifySerializer,
    OrderSerializer,
    PositionsSerializer,
    SettlementSerializer,
    TradeSerializer,
)
from .validation import instrument_symbol, place_request

ERRORS = {400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer, 503: ErrorSerializer}


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


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 1000


class OrderCollection(generics.GenericAPIView):
    """List orders (newest first, cursor-paginated) or place one."""

    serializer_class = OrderCreateSerializer
    pagination_class = NewestFirst
    queryset = Order.objects.all()

    @extend_schema(parameters=[OpenApiParameter("client_id", str), OpenApiParameter("status", str),
                               OpenApiParameter("instrument", str), OpenApiParameter("limit", int)],
                   responses={200: OrderSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        qs = self.get_queryset()
        if client_id := request.query_params.get("client_id"):
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
        data = _data(request)
        symbol = instrument_symbol(data)
        order = place_request(data, by_symbol_sync(symbol) if symbol else None)
        (result,) = async_to_sync(services.orders_place)([order])
        return Response(result.body, status=result.status)


class OrderDetail(generics.GenericAPIView):
    """One order: read it, modify it (PATCH/PUT: new price and/or new total quantity), cancel it (DELETE)."""

    serializer_class = OrderModifySerializer
    queryset = Order.objects.all()

    @extend_schema(responses={200: OrderSerializer, **ERRORS})
    def get(self, request: Request, order_id: str) -> Response:
        return Response(async_to_sync(services.order_get)(order_id))

    @extend_schema(request=OrderModifySerializer, responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def patch(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "modify", _data(request))
        return Response(result.body, status=result.status)

    put = patch

    @extend_schema(responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def delete(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel")
        return Response(result.body, status=result.status)


class OrderCancel(APIView):
    """Cancel an order: the answer is its final state (cancelled, with the remaining quantity)."""

    @extend_schema(request=None, responses={200: OrderSerializer, 202: OrderSerializer, **ERRORS})
    def post(self, request: Request, order_id: str) -> Response:
        result = async_to_sync(services.order_command)(order_id, "cancel")
        return Response(result.body, status=result.status)


class TradeList(APIView):
    """Recent trades of an instrument, newest first."""

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


class OrderBook(APIView):
    """The order book: bids high to low, asks low to high, with the sequence it reflects."""

    @extend_schema(parameters=[OpenApiParameter("instrument", str, required=True),
                               OpenApiParameter("levels", int, description="1..1000, default 20")],
                   responses={200: OrderBookSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        levels = _int_param(request, "levels", 20, 1, 1000)
        return Response(orderbook_sync(instrument, levels))


class InstrumentList(APIView):
    """Tradable instruments and their grids."""

    @extend_schema(responses={200: InstrumentSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response([{
            "symbol": i.symbol, "tick_size": str(i.tick_size.normalize()), "lot_size": str(i.lot_size.normalize()),
            "min_qty": str(i.min_qty.normalize()), "max_qty": str(i.max_qty.normalize()),
            "max_price": str(i.max_price.normalize()),
            "min_notional": None if i.min_notional is None else str(i.min_notional.normalize()),
            "is_active": i.is_active} for i in Instrument.objects.all()])


# --------------------------------------------------------------------------------------------
# Positions and settlements (analytics, issue 15)
# --------------------------------------------------------------------------------------------


class PositionList(APIView):
    """A client's positions, one per instrument it traded: net quantity, quote cash flow,
    average entry price and realized PnL by average cost, unrealized PnL at the last price."""

    @extend_schema(
        parameters=[OpenApiParameter("instrument", str, description="only this instrument")],
        responses={200: PositionsSerializer, **ERRORS},
        examples=[OpenApiExample("alice", response_only=True, value={"client_id": "alice", "positions": [{
            "instrument": "BTC-USD", "net_quantity": "0.3000", "quote_cash_flow": "-8996.500000",
            "average_entry_price": "30001.67", "cost_basis": "9000.500000", "realized_pnl": "4.000000",
            "unrealized_pnl": "0.700000", "last_price": "30004.00", "bought_quantity": "0.8000",
            "sold_quantity": "0.5000", "bought_quote": "24001.500000", "sold_quote": "15005.000000",
            "trade_count": 4, "seq": 188, "updated_at": "2026-12-02T12:00:41.517Z"}]})])
    def get(self, request: Request, client_id: str) -> Response:
        check_client_access(request, client_id)
        symbol = request.query_params.get("instrument")
        instrument = _instrument_or_400(symbol) if symbol else None
        return Response({"client_id": client_id, "positions": positions_of(client_id, instrument)})


class SettlementList(APIView):
    """End-of-day settlements (`manage.py settle`), newest day first."""

    @extend_schema(
        parameters=[OpenApiParameter("date", str, description="YYYY-MM-DD"), OpenApiParameter("client_id", str),
                    OpenApiParameter("instrument", str), OpenApiParameter("limit", int, description="1..1000, "
                                                                                          "default 100")],
        responses={200: SettlementSerializer(many=True), **ERRORS},
        examples=[OpenApiExample("one client's day", response_only=True, value=[{
            "date": "2026-12-01", "instrument": "BTC-USD", "client_id": "alice", "bought_quantity": "0.8000",
            "sold_quantity": "0.5000", "net_quantity": "0.3000", "bought_quote": "24001.500000",
            "sold_quote": "15005.000000", "net_quote": "-8996.500000", "buy_vwap": "30001.88",
            "sell_vwap": "30010.00", "trade_count": 4}])])
    def get(self, request: Request) -> Response:
        client_id = request.query_params.get("client_id") or None
        check_client_access(request, client_id)
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
        return Response(settlements(day=day, client_id=client_id, instrument=instrument, limit=limit))

