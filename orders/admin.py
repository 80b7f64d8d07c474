from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from matching.contract import CancelAll, SetHalted, TakeSnapshot, to_builtins

from . import audit, operations, services
from .errors import ApiError
from .models import AdminCommand, AuditEntry, Instrument, Order, OrderCommand, OrderEvent, Trade, WorkerStatus
from .permissions import actor_of


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "tick_size", "lot_size", "min_qty", "max_qty", "max_price", "min_notional",
                    "is_active", "halted", "last_seq", "last_trade_id")
    readonly_fields = ("last_seq", "last_trade_id", "created_at", "halted", "last_command_seq", "worker_owner",
                       "worker_heartbeat", "worker_last_batch", "book_state", "inbox_backlog")
    actions = ["halt", "resume", "cancel_all_open_orders", "take_snapshot"]
    worker_fields = ("worker_owner", "worker_heartbeat", "worker_last_batch", "book_state", "inbox_backlog")

    def get_fieldsets(self, request: HttpRequest, obj: Instrument | None = None) -> Any:
        fields = [f for f in self.get_fields(request, obj) if f not in self.worker_fields]
        if obj is None:
            return [(None, {"fields": fields})]
        # The matching worker's state, from its heartbeat (refreshed every second).
        return [(None, {"fields": fields}), ("Matching worker", {"fields": self.worker_fields})]

    def get_readonly_fields(self, request: HttpRequest, obj: Instrument | None = None) -> Any:
        return self.readonly_fields if obj is not None else ("last_seq", "last_trade_id", "created_at")

    @staticmethod
    def _status() -> WorkerStatus | None:
        return WorkerStatus.objects.filter(pk=1).first()

    @admin.display(description="owner")
    def worker_owner(self, obj: Instrument) -> str:
        status = self._status()
        return "no worker has run yet" if status is None else f"{status.owner} (direct: {status.direct_address or '-'})"

    @admin.display(description="heartbeat")
    def worker_heartbeat(self, obj: Instrument) -> str:
        status = self._status()
        if status is None:
            return "-"
        age = (timezone.now() - status.heartbeat_at).total_seconds()
        return f"{age:.1f} s ago ({status.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"

    @admin.display(description="last batch")
    def worker_last_batch(self, obj: Instrument) -> str:
        status = self._status()
        if status is None or status.last_batch_at is None:
            return "-"
        return f"{(timezone.now() - status.last_batch_at).total_seconds():.1f} s ago, {status.batches} batches"

    @admin.display(description="book in the worker")
    def book_state(self, obj: Instrument) -> str:
        status = self._status()
        book = next((b for b in (status.books if status else []) if b.get("instrument") == obj.symbol), None)
        if book is None:
            return "not loaded (the worker loads a new instrument with its first order)"
        return (f"{book['open_orders']} open orders ({book['buy_orders']} bids on {book['buy_levels']} levels, "
                f"{book['sell_orders']} asks on {book['sell_levels']} levels), seq {book['seq']}, "
                f"command {book['command_seq']}{', HALTED' if book['halted'] else ''}")

    @admin.display(description="inbox backlog")
    def inbox_backlog(self, obj: Instrument) -> str:
        pending = Order.objects.filter(instrument=obj, status="pending").count()
        commands = OrderCommand.objects.filter(order__instrument=obj, processed=False).count()
        return f"{pending} pending orders, {commands} pending cancels/modifies"

    def _command(self, request: HttpRequest, command: Any, action: str, target: str) -> None:
        try:
            answer = async_to_sync(operations.send)(command)
        except ApiError as exc:
            audit.record(actor_of(request.user), action, target, {"error": exc.code})
            self.message_user(request, f"{target}: {exc.detail}", messages.ERROR)
            return
        if isinstance(answer, operations.Pending):
            audit.record(actor_of(request.user), action, target, {"pending": answer.command_id})
            self.message_user(request, f"{target}: stored for the matching worker (command {answer.command_id}); "
                              "no worker answered yet", messages.WARNING)
            return
        audit.record(actor_of(request.user), action, target, to_builtins(answer))
        self.message_user(request, f"{target}: {to_builtins(answer)}", messages.INFO)

    @admin.action(description="Halt selected instruments (refuse new orders and modifies)")
    def halt(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        for inst in queryset:
            self._command(request, SetHalted(instrument_id=inst.pk, halted=True), "halt", inst.symbol)

    @admin.action(description="Resume selected instruments")
    def resume(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        for inst in queryset:
            self._command(request, SetHalted(instrument_id=inst.pk, halted=False), "resume", inst.symbol)

    @admin.action(description="Cancel every open order of the selected instruments")
    def cancel_all_open_orders(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        for inst in queryset:
            self._command(request, CancelAll(instrument_id=inst.pk), "cancel_all", inst.symbol)

    @admin.action(description="Take a snapshot of the selected live books")
    def take_snapshot(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        for inst in queryset:
            self._command(request, TakeSnapshot(instrument_id=inst.pk), "snapshot", inst.symbol)


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


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnly):
    list_display = ("at", "actor", "action", "target", "detail")
    list_filter = ("action", "actor")
    search_fields = ("target", "actor")


@admin.register(AdminCommand)
class AdminCommandAdmin(ReadOnly):
    list_display = ("id", "kind", "instrument", "client_id", "processed", "command_seq", "created_at", "processed_at")
    list_filter = ("kind", "processed")


@admin.register(WorkerStatus)
class WorkerStatusAdmin(ReadOnly):
    list_display = ("owner", "direct_address", "heartbeat_at", "last_batch_at", "batches", "retries", "started_at")
