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


# -- positions and settlements (analytics, issue 15) --


class PositionSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    net_quantity = serializers.CharField(help_text="bought - sold (negative: short)")
    quote_cash_flow = serializers.CharField(help_text="quote received - quote paid")
    average_entry_price = serializers.CharField(allow_null=True, help_text="|cost_basis| / |net_quantity|, "
                                                "half-even to the tick; null when flat")
    cost_basis = serializers.CharField(help_text="what the open quantity cost, by average cost (signed like "
                                       "net_quantity)")
    realized_pnl = serializers.CharField(help_text="average cost; equals quote_cash_flow when flat")
    unrealized_pnl = serializers.CharField(allow_null=True, help_text="net_quantity x last_price - cost_basis")
    last_price = serializers.CharField(allow_null=True, help_text="the instrument's last trade price")
    bought_quantity = serializers.CharField()
    sold_quantity = serializers.CharField()
    bought_quote = serializers.CharField()
    sold_quote = serializers.CharField()
    trade_count = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="seq of the client's last fill in the instrument")
    updated_at = serializers.DateTimeField()


class PositionsSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    positions = PositionSerializer(many=True)


class SettlementSerializer(serializers.Serializer):
    date = serializers.DateField()
    instrument = serializers.CharField()
    client_id = serializers.CharField()
    bought_quantity = serializers.CharField()
    sold_quantity = serializers.CharField()
    net_quantity = serializers.CharField()
    bought_quote = serializers.CharField()
    sold_quote = serializers.CharField()
    net_quote = serializers.CharField(help_text="quote received - quote paid")
    buy_vwap = serializers.CharField(allow_null=True)
    sell_vwap = serializers.CharField(allow_null=True)
    trade_count = serializers.IntegerField()
