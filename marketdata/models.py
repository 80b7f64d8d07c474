from __future__ import annotations

from django.db import models


class BookSnapshot(models.Model):
    """A persisted order book at one sequence number: the engine's full snapshot (restorable) and
    its aggregated levels. Written by the matching worker on start and periodically, and on
    demand from the admin or `manage.py book_snapshot`."""

    instrument = models.ForeignKey("orders.Instrument", on_delete=models.PROTECT, related_name="snapshots")
    seq = models.BigIntegerField()
    taken_at = models.DateTimeField()
    source = models.CharField(max_length=16, default="worker")
    bids = models.JSONField(help_text="[[price, quantity, order_count], ...] best first")
    asks = models.JSONField(help_text="[[price, quantity, order_count], ...] best first")
    engine_snapshot = models.JSONField(help_text="matching.engine.engine snapshot (restorable)")
    # The instrument's journal position it reflects (OrderEvent.command_seq): recovery replays
    # the commands after it.
    command_seq = models.BigIntegerField(null=True, blank=True)
    order_count = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["instrument", "-seq"], name="snapshot_instrument_seq")]

    def __str__(self) -> str:
        return f"{self.instrument} @ seq {self.seq}"
