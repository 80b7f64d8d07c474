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


# --------------------------------------------------------------------------------------------
# Candles
# --------------------------------------------------------------------------------------------

MONEY = {"max_digits": 30, "decimal_places": 12}
# A quote amount (price x quantity) has the decimals of the tick and of the lot together.
QUOTE = {"max_digits": 50, "decimal_places": 24}


class CandleInterval(models.TextChoices):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"


class Candle(models.Model):
    """The trades of one instrument in one interval (matching.aggregates.INTERVALS, aligned to
    the epoch). Written only by the matching worker, in the transaction of the batch whose trades
    they add (each batch adds its own trades to the candles they fall in): a candle never
    disagrees with the trades committed. ``first_seq``/``last_seq``: its first and last trade,
    whose prices are the open and the close."""

    instrument = models.ForeignKey("orders.Instrument", on_delete=models.PROTECT, related_name="+", db_index=False)
    interval = models.CharField(max_length=3, choices=CandleInterval.choices)
    open_time = models.DateTimeField()
    open = models.DecimalField(**MONEY)
    high = models.DecimalField(**MONEY)
    low = models.DecimalField(**MONEY)
    close = models.DecimalField(**MONEY)
    volume = models.DecimalField(**MONEY)
    quote_volume = models.DecimalField(**QUOTE)
    taker_buy_volume = models.DecimalField(**MONEY)
    taker_buy_quote_volume = models.DecimalField(**QUOTE)
    trade_count = models.BigIntegerField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()

    class Meta:
        ordering = ["instrument", "interval", "-open_time"]
        constraints = [
            # Also the index every read uses: an instrument's candles of one interval by time.
            models.UniqueConstraint(fields=["instrument", "interval", "open_time"], name="candle_per_interval"),
            models.CheckConstraint(condition=models.Q(trade_count__gt=0) & models.Q(volume__gt=0)
                                   & models.Q(low__lte=models.F("high"))
                                   & models.Q(first_seq__lte=models.F("last_seq")),
                                   name="candle_consistent"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.open_time:%Y-%m-%d %H:%M}"
