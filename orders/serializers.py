"""DRF serializers: they describe the API (browsable forms, OpenAPI schema). Validation itself is
orders.validation, shared with the fast path and the WebSocket, so every entry point agrees."""
from __future__ import annotations

from rest_framework import serializers

from .models import OrderType, Side, Stp, TimeInForce


class OrderCreateSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=128, help_text="Unique per client_id; a retry with the "
                                            "same key returns the original order (200) instead of a new one.")
    client_id = serializers.CharField(max_length=64)
    instrument = serializers.CharField(max_length=32, default="BTC-USD")
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices, default=OrderType.LIMIT)
    price = serializers.CharField(required=False, allow_null=True, help_text="Decimal string; limit orders only")
    quantity = serializers.CharField(help_text="Decimal string (JSON numbers accepted)")
    order_id = serializers.UUIDField(required=False, allow_null=True)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = serializers.BooleanField(default=False)
    stp = serializers.ChoiceField(choices=Stp.choices, default=Stp.CANCEL_TAKER)


class OrderModifySerializer(serializers.Serializer):
    price = serializers.CharField(required=False, allow_null=True)
    quantity = serializers.CharField(required=False, allow_null=True, help_text="New TOTAL quantity")


class FillSerializer(serializers.Serializer):
    trade_id = serializers.IntegerField()
    price = serializers.CharField()
    quantity = serializers.CharField()
    role = serializers.ChoiceField(choices=["maker", "taker"])
    seq = serializers.IntegerField()
    executed_at = serializers.DateTimeField()


class OrderSerializer(serializers.Serializer):
    order_id = serializers.UUIDField()
    client_id = serializers.CharField()
    instrument = serializers.CharField()
    side = serializers.CharField()
    type = serializers.CharField()
    time_in_force = serializers.CharField()
    post_only = serializers.BooleanField()
    stp = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    quantity = serializers.CharField()
    filled_quantity = serializers.CharField()
    remaining_quantity = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "open", "partially_filled", "filled", "cancelled",
                                              "rejected"])
    reason = serializers.CharField(allow_null=True)
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    fills = FillSerializer(many=True)


class TradeSerializer(serializers.Serializer):
    trade_id = serializers.IntegerField()
    instrument = serializers.CharField()
    price = serializers.CharField()
    quantity = serializers.CharField()
    aggressor_side = serializers.CharField()
    buy_order_id = serializers.UUIDField()
    sell_order_id = serializers.UUIDField()
    maker_order_id = serializers.UUIDField()
    taker_order_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    executed_at = serializers.DateTimeField()


class LevelSerializer(serializers.Serializer):
    price = serializers.CharField()
    quantity = serializers.CharField()
    order_count = serializers.IntegerField()
    cumulative_quantity = serializers.CharField()


class OrderBookSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    seq = serializers.IntegerField()
    bids = LevelSerializer(many=True)
    asks = LevelSerializer(many=True)
    bid_total_quantity = serializers.CharField()
    ask_total_quantity = serializers.CharField()
    bid_level_count = serializers.IntegerField()
    ask_level_count = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField()


class InstrumentSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    tick_size = serializers.CharField()
    lot_size = serializers.CharField()
    min_qty = serializers.CharField()
    max_qty = serializers.CharField()
    max_price = serializers.CharField()
    min_notional = serializers.CharField(allow_null=True)
    is_active = serializers.BooleanField()
    halted = serializers.BooleanField(help_text="halted by an operator: new orders and modifies are refused")
