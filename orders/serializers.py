"""DRF serializers: they describe the API (browsable forms, OpenAPI schema). Validation itself is
orders.validation, shared with the fast path and the WebSocket, so every entry point agrees."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from matching.contract import Code, OrderStatus

from .models import OrderType, Side, Stp, TimeInForce
from .validation import DECIMAL_PATTERN, MAX_NUMBER_DIGITS


# A decimal as the API reads it: a string of ASCII digits, or a JSON number, read exactly.
@extend_schema_field({"oneOf": [{"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": MAX_NUMBER_DIGITS},
                                {"type": "number"}],
                      "description": "Exact decimal: a string (preferred) or a JSON number, never read as a float."})
class DecimalInput(serializers.CharField):
    pass


# A decimal as the API writes it: fixed-point, with the instrument's decimals.
@extend_schema_field({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "example": "30000.00"})
class DecimalOutput(serializers.CharField):
    pass


class OrderCreateSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=128, help_text="Unique per client_id; a retry with the "
                                            "same key returns the original order (200) instead of a new one.")
    client_id = serializers.CharField(max_length=64)
    instrument = serializers.CharField(max_length=32, help_text="A symbol of GET /instruments, e.g. BTC-USD")
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices, default=OrderType.LIMIT, initial=OrderType.LIMIT)
    price = DecimalInput(required=False, allow_null=True,
                         help_text="Limit orders only: on the instrument's tick, within its max_price")
    quantity = DecimalInput(help_text="On the instrument's lot, from min_qty to max_qty")
    order_id = serializers.UUIDField(required=False, allow_null=True)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, default=TimeInForce.GTC,
                                            initial=TimeInForce.GTC)
    post_only = serializers.BooleanField(default=False)
    # initial: what the browsable API's form shows selected, the same as the API's default
    stp = serializers.ChoiceField(choices=Stp.choices, default=Stp.CANCEL_TAKER, initial=Stp.CANCEL_TAKER)


class OrderModifySerializer(serializers.Serializer):
    price = DecimalInput(required=False, allow_null=True, help_text="New price, on the tick")
    quantity = DecimalInput(required=False, allow_null=True, help_text="New TOTAL quantity (filled included)")


class FillSerializer(serializers.Serializer):
    trade_id = serializers.IntegerField(min_value=1)
    price = DecimalOutput()
    quantity = DecimalOutput()
    role = serializers.ChoiceField(choices=["maker", "taker"])
    seq = serializers.IntegerField(min_value=1)
    executed_at = serializers.DateTimeField()


class OrderSerializer(serializers.Serializer):
    order_id = serializers.UUIDField()
    client_id = serializers.CharField()
    instrument = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices)
    post_only = serializers.BooleanField()
    stp = serializers.ChoiceField(choices=Stp.choices)
    price = DecimalOutput(allow_null=True)
    quantity = DecimalOutput()
    filled_quantity = DecimalOutput()
    remaining_quantity = DecimalOutput()
    status = serializers.ChoiceField(choices=[s.value for s in OrderStatus])
    reason = serializers.CharField(allow_null=True, help_text="Why it was rejected or cancelled (a code)")
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    fills = FillSerializer(many=True)


class OrderPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The page of older orders, if any")
    previous = serializers.URLField(allow_null=True, help_text="The page of newer orders, if any")
    results = OrderSerializer(many=True)


class OrderTestSerializer(serializers.Serializer):
    """What POST /orders/test answers: the order as it would be placed, nothing stored."""

    instrument = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    price = DecimalOutput(allow_null=True)
    quantity = DecimalOutput()
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices)
    post_only = serializers.BooleanField()
    stp = serializers.ChoiceField(choices=Stp.choices)
    client_id = serializers.CharField()
    idempotency_key = serializers.CharField()
    valid = serializers.BooleanField()


class TradeSerializer(serializers.Serializer):
    trade_id = serializers.IntegerField(min_value=1)
    instrument = serializers.CharField()
    price = DecimalOutput()
    quantity = DecimalOutput()
    aggressor_side = serializers.ChoiceField(choices=Side.choices)
    buy_order_id = serializers.UUIDField()
    sell_order_id = serializers.UUIDField()
    maker_order_id = serializers.UUIDField()
    taker_order_id = serializers.UUIDField()
    seq = serializers.IntegerField(min_value=1)
    executed_at = serializers.DateTimeField()


class LevelSerializer(serializers.Serializer):
    price = DecimalOutput()
    quantity = DecimalOutput()
    order_count = serializers.IntegerField(min_value=1)
    cumulative_quantity = DecimalOutput()


class OrderBookSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    seq = serializers.IntegerField(min_value=0)
    bids = LevelSerializer(many=True)
    asks = LevelSerializer(many=True)
    bid_total_quantity = DecimalOutput()
    ask_total_quantity = DecimalOutput()
    bid_level_count = serializers.IntegerField(min_value=0)
    ask_level_count = serializers.IntegerField(min_value=0)


class FieldProblemSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The one error shape. Some codes add members: ``order`` (409: the order as it stands),
    ``order_id`` and ``idempotency_key`` (504 outcome_unknown)."""

    code = serializers.ChoiceField(choices=[c.value for c in Code], help_text="machine-readable")
    detail = serializers.CharField()
    fields = serializers.DictField(child=FieldProblemSerializer(many=True), help_text="per field, its problems")


class InstrumentSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    tick_size = DecimalOutput()
    lot_size = DecimalOutput()
    min_qty = DecimalOutput()
    max_qty = DecimalOutput()
    max_price = DecimalOutput()
    min_notional = DecimalOutput(allow_null=True)
    is_active = serializers.BooleanField()
    halted = serializers.BooleanField(help_text="halted by an operator: new orders and modifies are refused")


class AuditEntrySerializer(serializers.Serializer):
    """One entry of the audit trail (GET /admin/audit)."""

    time = serializers.DateTimeField()
    actor = serializers.CharField(help_text='who: "key:pgb_1a2b3c4d (client)", "user:alice", "command:..."')
    action = serializers.CharField(help_text="what: halt, resume, cancel_all, snapshot, api_key_created, ...")
    target = serializers.CharField(help_text="on what: an instrument, a client, a key")
    detail = serializers.DictField(help_text="the outcome")


class AccountSerializer(serializers.Serializer):
    """The caller (GET /account)."""

    client_id = serializers.CharField(allow_null=True, help_text="the client whose orders the key places, sees and "
                                      "cancels; null: any client's (an admin key, a staff session)")
    role = serializers.ChoiceField(choices=["trader", "read_only", "admin"])
    key_prefix = serializers.CharField(allow_null=True, help_text="the key's first characters (null: a staff "
                                       "session, or keys off)")
    rate_limits = serializers.DictField(child=serializers.CharField(), help_text='by action: "200/2s" (requests '
                                        "per window); orders, commands, reads")


# -- positions and settlements --


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
