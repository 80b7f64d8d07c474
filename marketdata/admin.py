from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect

from orders.models import Instrument

from .models import BookSnapshot
from .recovery import snapshot_from_database


@admin.register(BookSnapshot)
class BookSnapshotAdmin(admin.ModelAdmin):
    list_display = ("instrument", "seq", "taken_at", "source")
    list_filter = ("instrument", "source")
    readonly_fields = ("instrument", "seq", "taken_at", "source", "bids", "asks", "engine_snapshot")
    change_list_template = "admin/marketdata/booksnapshot/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_urls(self):  # type: ignore[no-untyped-def]
        from django.urls import path

        return [path("take/", self.admin_site.admin_view(self.take_now), name="marketdata_booksnapshot_take"),
                *super().get_urls()]

    def take_now(self, request: HttpRequest) -> HttpResponseRedirect:
        taken = [snapshot_from_database(i, source="admin") for i in Instrument.objects.all()]
        self.message_user(request, f"Took {len(taken)} snapshot(s) from PostgreSQL.", messages.SUCCESS)
        return HttpResponseRedirect("../")
