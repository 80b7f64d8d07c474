from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .errors import ApiError
from .models import Instrument, Order, OrderCommand, OrderEvent, Position, Settlement, Trade


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "tick_size", "lot_size", "min_qty", "max_qty", "max_price", "min_notional",
                    "is_active", "last_seq", "last_trade_id")
    readonly_fields = ("last_seq", "last_trade_id", "created_at")


class ReadOnly(admin.ModelAdmin):
    """The record is written by the order path and the matching worker only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnly):
    list_display = ("order_id", "client_id", "instrument", "side", "type", "price", "quantity", "filled_quantity",
                    "status", "reason", "created_at")
    list_filter = ("status", "instrument", "side", "type")
    search_fields = ("order_id", "client_id", "idempotency_key")
    actions = ["cancel_orders"]

    @admin.action(description="Cancel selected open orders (through the matching worker)")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        done = refused = 0
        for order in queryset.filter(status__in=["pending", "open", "partially_filled"]):
            try:
                async_to_sync(services.order_command)(str(order.order_id), "cancel")
                done += 1
            except ApiError:
                refused += 1
        self.message_user(request, f"{done} cancelled, {refused} refused", messages.INFO)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Trade)
class TradeAdmin(ReadOnly):
    list_display = ("instrument", "trade_id", "seq", "price", "quantity", "aggressor_side", "executed_at")
    list_filter = ("instrument", "aggressor_side")


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnly):
    list_display = ("order_id", "status", "price", "quantity", "filled_quantity", "reason", "trade_id", "created_at")
    list_filter = ("status",)
    search_fields = ("order_id",)


@admin.register(OrderCommand)
class OrderCommandAdmin(ReadOnly):
    list_display = ("id", "kind", "order", "new_price", "new_quantity", "processed", "result", "created_at")
    list_filter = ("kind", "processed")


# -- positions and settlements (analytics, issue 15) --


@admin.register(Position)
class PositionAdmin(ReadOnly):
    """Kept by the matching worker with the trades (read-only)."""

    list_display = ("client_id", "instrument", "net_quantity", "cost_basis", "realized_pnl", "bought_quantity",
                    "sold_quantity", "trade_count", "updated_at")
    list_filter = ("instrument",)
    search_fields = ("client_id",)


@admin.register(Settlement)
class SettlementAdmin(ReadOnly):
    """Written by `manage.py settle` (read-only: a settled day never changes)."""

    list_display = ("date", "instrument", "client_id", "bought_quantity", "sold_quantity", "net_quantity",
                    "net_quote", "buy_vwap", "sell_vwap", "trade_count")
    list_filter = ("date", "instrument")
    search_fields = ("client_id",)
    date_hierarchy = "date"

