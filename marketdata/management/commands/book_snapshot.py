"""Persist a snapshot of every book, rebuilt from PostgreSQL (same as the admin's button)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from marketdata.recovery import snapshot_from_database
from orders.models import Instrument


class Command(BaseCommand):
    help = "Store a BookSnapshot of every instrument's book, rebuilt from PostgreSQL."

    def handle(self, *args: Any, **opts: Any) -> None:
        for inst in Instrument.objects.all():
            snap = snapshot_from_database(inst, source="command")
            self.stdout.write(f"{inst.symbol}: snapshot #{snap.pk} at seq {snap.seq} "
                              f"({len(snap.bids)} bid levels, {len(snap.asks)} ask levels)")
