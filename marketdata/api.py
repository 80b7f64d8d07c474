"""REST views of the trade aggregates: GET /analytics/vwap, GET /klines, GET /ticker/24h.

DRF views (browsable API, OpenAPI schema with examples, the one error body). They parse, call
one selector (marketdata.selectors) and answer; the numbers come from the candles the matching
worker keeps in each batch's transaction.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.aggregates import INTERVALS
from matching.contract import Code
from orders import auth
from orders.api import INSTRUMENT, READ_ERRORS, READS, Guarded, _instrument_or_400, _int_param, _limit
from orders.errors import invalid

from . import selectors
from .serializers import KlineSerializer, Ticker24hSerializer, VwapSerializer

# A day of 1-minute candles (1,440) in one request.
MAX_KLINES = 1500
_WINDOW = re.compile(r"([1-9][0-9]{0,4})(m|h|d)")
_WINDOW_US = {"m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_TIME_HELP = "Unix milliseconds or ISO-8601 (UTC when no offset is given; write + as %2B)"


def now_us() -> int:
    return selectors.us_of(timezone.now())


def time_param(request: Request, name: str) -> int | None:
    """A query parameter that is a time: Unix milliseconds or ISO-8601, as microseconds."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if raw.isascii() and raw.isdigit() and len(raw) <= 15:
            return int(raw) * 1000
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        us = selectors.us_of(value)
        if us < 0:
            raise ValueError(raw)
        return us
    except (ValueError, OverflowError):
        raise invalid(name, Code.INVALID_TIME, "must be Unix milliseconds or an ISO-8601 time") from None


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str | None) -> str:
    raw = request.query_params.get(name) or default
    if raw is None:
        raise invalid(name, Code.REQUIRED, "this query parameter is required")
    if raw not in choices:
        raise invalid(name, Code.INVALID_CHOICE, f"must be one of {', '.join(choices)}")
    return raw


class FastJSONRenderer(JSONRenderer):
    """JSON by orjson: the answers here are plain strings, ints and None, and a day of 1-minute
    klines is 400 KB, which the standard library's encoder takes several times longer to write."""

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict[str, Any] | None = None) -> bytes:
        return b"" if data is None else orjson.dumps(data)


RENDERERS = [FastJSONRenderer, BrowsableAPIRenderer]


class Vwap(Guarded, APIView):
    """VWAP and the statistics of the trades executed in [from, to) (or the last `window`):
    exact, `sum(price x quantity) / sum(quantity)` rounded half-even to the instrument's tick."""

    permission_classes = [auth.PublicRead]  # market data: no key needed (limited by address)
    rate_actions = READS

    renderer_classes = RENDERERS

    @extend_schema(
        parameters=[INSTRUMENT,
                    OpenApiParameter("from", str, description=f"range start, inclusive: {_TIME_HELP}"),
                    OpenApiParameter("to", str, description=f"range end, exclusive (default: now): {_TIME_HELP}"),
                    OpenApiParameter("window", str, description="instead of from/to: the last 15m, 1h, 24h, 7d..."
                                     " (up to 99999 minutes, hours or days)")],
        responses={200: VwapSerializer, **READ_ERRORS},
        examples=[OpenApiExample("the last hour", response_only=True, value={
            "instrument": "BTC-USD", "from": "2026-12-02T11:00:00Z", "to": "2026-12-02T12:00:00Z",
            "vwap": "30001.37", "volume": "12.4000", "notional": "372017.000000", "trade_count": 57,
            "high": "30010.00", "low": "29990.00", "first": "29995.00", "last": "30004.00", "first_seq": 1021,
            "last_seq": 1310})])
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        window = request.query_params.get("window")
        start, end = time_param(request, "from"), time_param(request, "to")
        if window:
            if start is not None or end is not None:
                raise invalid("window", Code.INVALID_RANGE, "give either window or from/to, not both")
            found = _WINDOW.fullmatch(window)
            if found is None:
                raise invalid("window", Code.INVALID_CHOICE, "must be a number of minutes, hours or days: 15m, 1h, 7d")
            end = now_us()
            start = end - int(found.group(1)) * _WINDOW_US[found.group(2)]
        else:
            if start is None:
                raise invalid("from", Code.REQUIRED, "give from (and to), or window")
            if end is None:
                end = now_us()
        if end < start:
            raise invalid("to", Code.INVALID_RANGE, "must not be before from")
        return Response(async_to_sync(selectors.vwap)(instrument, from_us=max(start, 0), to_us=end))


class Klines(Guarded, APIView):
    """Candles (klines), oldest first, in Binance's order of fields: the first `limit` from
    `start`, else the last `limit` up to `end` (or now). An interval without trades is omitted;
    with `fill=previous` it carries the previous close with zero volume (none before the first
    trade)."""

    permission_classes = [auth.PublicRead]  # market data: no key needed (limited by address)
    rate_actions = READS

    renderer_classes = RENDERERS

    @extend_schema(
        parameters=[INSTRUMENT,
                    OpenApiParameter("interval", str, required=True, enum=list(INTERVALS)),
                    OpenApiParameter("start", str, description=f"first open time, inclusive: {_TIME_HELP}"),
                    OpenApiParameter("end", str, description=f"last open time, inclusive: {_TIME_HELP}"),
                    _limit("limit", 500, MAX_KLINES, "klines"),
                    OpenApiParameter("fill", str, enum=["none", "previous"],
                                     description="intervals without trades: omitted (none, default) or the "
                                     "previous close with zero volume (previous)")],
        responses={200: KlineSerializer(many=True), **READ_ERRORS},
        examples=[OpenApiExample("1m klines", response_only=True, value=[{
            "open_time": 1764676800000, "open": "30000.00", "high": "30010.00", "low": "29995.00",
            "close": "30004.00", "volume": "1.2500", "close_time": 1764676859999,
            "quote_volume": "37505.125000", "trade_count": 9, "taker_buy_volume": "0.7500",
            "taker_buy_quote_volume": "22503.750000", "vwap": "30004.10", "seq": 4471}])])
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        interval = _choice(request, "interval", tuple(INTERVALS), None)
        start, end = time_param(request, "start"), time_param(request, "end")
        limit = _int_param(request, "limit", 500, 1, MAX_KLINES)
        fill = _choice(request, "fill", ("none", "previous"), "none") == "previous"
        if start is not None and end is not None and end < start:
            raise invalid("end", Code.INVALID_RANGE, "must not be before start")
        return Response(async_to_sync(selectors.klines)(
            instrument, interval=interval, start_ms=None if start is None else -(-start // 1000),
            end_ms=None if end is None else end // 1000, limit=limit, fill=fill, now_ms=now_us() // 1000))


class Ticker24h(Guarded, APIView):
    """Rolling 24 h statistics: the current minute and the 1,439 before it (so 23 h 59 min to
    24 h of trades), with the touch of the book."""

    permission_classes = [auth.PublicRead]  # market data: no key needed (limited by address)
    rate_actions = READS

    renderer_classes = RENDERERS

    @extend_schema(
        parameters=[INSTRUMENT], responses={200: Ticker24hSerializer, **READ_ERRORS},
        examples=[OpenApiExample("BTC-USD", response_only=True, value={
            "instrument": "BTC-USD", "open_time": 1764590460000, "close_time": 1764676859999, "open": "29500.00",
            "high": "30100.00", "low": "29400.00", "last": "30004.00", "change": "504.00",
            "change_percent": "1.708", "volume": "850.1200", "quote_volume": "25312044.310000",
            "vwap": "29774.66", "trade_count": 20411, "seq": 88120, "best_bid": "30003.00",
            "best_bid_size": "0.5000", "best_ask": "30004.00", "best_ask_size": "1.2000",
            "time": "2026-12-02T12:00:41.517Z"})])
    def get(self, request: Request) -> Response:
        instrument = _instrument_or_400(request.query_params.get("instrument"))
        return Response(async_to_sync(selectors.ticker_24h)(instrument, now_ms=now_us() // 1000))
