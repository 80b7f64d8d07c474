from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from matching.contract import CancelAll, SetHalted, TakeSnapshot, to_builtins

from . import audit, auth, operations, services
from .errors import ApiError
from .models import (
    AdminCommand,
    ApiKey,
    AuditEntry,
    Instrument,
    Order,
    OrderCommand,
    OrderEvent,
    Position,
    Settlement,
    Trade,
    WorkerStatus,
)


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
            audit.record(request.user, action, target, {"error": exc.code})
            self.message_user(request, f"{target}: {exc.detail}", messages.ERROR)
            return
        if isinstance(answer, operations.Pending):
            audit.record(request.user, action, target, {"pending": answer.command_id})
            self.message_user(request, f"{target}: stored for the matching worker (command {answer.command_id}); "
                              "no worker answered yet", messages.WARNING)
            return
        audit.record(request.user, action, target, to_builtins(answer))
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
        done: list[str] = []
        refused = 0
        for order in queryset.filter(status__in=["pending", "open", "partially_filled"]):
            try:
                async_to_sync(services.order_command)(str(order.order_id), "cancel")
                done.append(str(order.order_id))
            except ApiError:
                refused += 1
        if done:
            audit.record(request.user, "orders_cancelled", f"{len(done)} order(s)", {"order_ids": done})
        self.message_user(request, f"{len(done)} cancelled, {refused} refused", messages.INFO)

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
# -- accounts -----------------------------------------------------------------------------------

class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("client_id", "role", "name", "orders_rate", "commands_rate", "reads_rate")

    def clean_client_id(self) -> str:
        client_id: str = self.cleaned_data["client_id"]
        if self.instance.pk is None and ApiKey.objects.filter(client_id=client_id, revoked_at__isnull=True).exists():
            raise forms.ValidationError("This client has a live key: revoke it first.")
        return client_id


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here (the key is shown once, on the page after saving) and revoked with
    the action; every creation, change and revocation is audited. Keys are never deleted."""

    form = ApiKeyForm
    list_display = ("prefix", "client_id", "role", "name", "orders_rate", "commands_rate", "reads_rate",
                    "created_at", "last_used_at", "revoked_at")
    list_filter = ("role", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "client_id", "name")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A key's client is what it acts for: a key for another client is a new key.
        return (*self.readonly_fields, "client_id") if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ApiKeyForm.Meta.fields
        return fields if obj is None else (*fields, *self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save()
            audit.record(request.user, "api_key_changed", f"{obj.prefix} ({obj.client_id})",
                         {name: form.cleaned_data.get(name) for name in form.changed_data})
            return
        row, key = auth.api_key_create(client_id=obj.client_id, role=obj.role, name=obj.name, actor=request.user,
                                       rates={"orders": obj.orders_rate, "commands": obj.commands_rate,
                                              "reads": obj.reads_rate})
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = row.pk, row.prefix, row.key_hash, row.created_at
        request._pgbourse_new_key = key  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        # The key is shown on this page only: not in a message (stored in a cookie or the
        # session), not in a redirect, not cached.
        response = TemplateResponse(request, "admin/orders/apikey/created.html", {
            **self.admin_site.each_context(request), "title": "API key created", "key": request._pgbourse_new_key,  # type: ignore[attr-defined]
            "api_key": obj, "opts": self.model._meta})
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys (they stop working at once, everywhere)")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(auth.api_key_revoke(api_key=key, actor=request.user) for key in queryset)
        self.message_user(request, f"{revoked} key(s) revoked", messages.INFO)
# -- positions and settlements -----------------------------------------------------------------


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

