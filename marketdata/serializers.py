"""DRF serializers of the analytics answers: they describe the API (OpenAPI schema, browsable
API). Every decimal is a fixed-point string; times in klines are Unix milliseconds (Binance's
shape), elsewhere ISO-8601 in UTC."""
from __future__ import annotations

from rest_framework import serializers


class KlineSerializer(serializers.Serializer):
    open_time = serializers.IntegerField(help_text="Unix ms, the interval's start (inclusive)")
    open = serializers.CharField()
    high = serializers.CharField()
    low = serializers.CharField()
    close = serializers.CharField()
    volume = serializers.CharField(help_text="base quantity traded")
    close_time = serializers.IntegerField(help_text="Unix ms, the interval's last millisecond")
    quote_volume = serializers.CharField(help_text="sum of price x quantity")
    trade_count = serializers.IntegerField()
    taker_buy_volume = serializers.CharField(help_text="base quantity of the trades a buyer took")
    taker_buy_quote_volume = serializers.CharField()
    vwap = serializers.CharField(allow_null=True, help_text="quote_volume / volume, half-even to the tick")
    seq = serializers.IntegerField(help_text="seq of the last trade in the candle")


class VwapSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    vwap = serializers.CharField(allow_null=True, help_text="sum(price x quantity) / sum(quantity), half-even "
                                 "to the tick; null without trades")
    volume = serializers.CharField()
    notional = serializers.CharField(help_text="sum(price x quantity), exact")
    trade_count = serializers.IntegerField()
    high = serializers.CharField(allow_null=True)
    low = serializers.CharField(allow_null=True)
    first = serializers.CharField(allow_null=True, help_text="price of the first trade (lowest seq)")
    last = serializers.CharField(allow_null=True, help_text="price of the last trade (highest seq)")
    first_seq = serializers.IntegerField(allow_null=True)
    last_seq = serializers.IntegerField(allow_null=True)
    to = serializers.DateTimeField(help_text="end of the range (exclusive)")
    # "from" is a Python keyword: declared below.


VwapSerializer._declared_fields["from"] = serializers.DateTimeField(help_text="start of the range (inclusive)")


class Ticker24hSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    open_time = serializers.IntegerField(help_text="Unix ms: the first minute of the window")
    close_time = serializers.IntegerField(help_text="Unix ms: the last millisecond of the current minute")
    open = serializers.CharField(allow_null=True)
    high = serializers.CharField(allow_null=True)
    low = serializers.CharField(allow_null=True)
    last = serializers.CharField(allow_null=True)
    change = serializers.CharField(allow_null=True, help_text="last - open")
    change_percent = serializers.CharField(allow_null=True, help_text="(last - open) / open x 100, half-even to "
                                           "3 decimals")
    volume = serializers.CharField()
    quote_volume = serializers.CharField()
    vwap = serializers.CharField(allow_null=True)
    trade_count = serializers.IntegerField()
    seq = serializers.IntegerField(allow_null=True, help_text="seq of the last trade in the window")
    best_bid = serializers.CharField(allow_null=True)
    best_bid_size = serializers.CharField(allow_null=True)
    best_ask = serializers.CharField(allow_null=True)
    best_ask_size = serializers.CharField(allow_null=True)
    time = serializers.DateTimeField()
