"""Create the instruments of a fixture file that do not exist yet.

Unlike `loaddata`, it never touches an existing instrument: overwriting one would reset the
sequence counters the matching worker owns (last_seq, last_trade_id) and change a live grid.
Change a live instrument's grid in the admin, then restart the worker."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orders.models import Instrument

FIELDS = ("tick_size", "lot_size", "min_qty", "max_qty", "max_price", "min_notional", "is_active")


class Command(BaseCommand):
    help = "Create missing instruments from a fixture (default fixtures/instruments.json); never modify existing ones."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", nargs="?", default=str(Path(settings.BASE_DIR) / "fixtures" / "instruments.json"))

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            entries = json.loads(Path(opts["path"]).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {opts['path']}: {exc}") from exc
        with transaction.atomic():
            for entry in entries:
                if entry.get("model") != "orders.instrument":
                    continue
                fields = entry["fields"]
                values = {k: (Decimal(fields[k]) if k != "is_active" and fields.get(k) is not None else fields.get(k))
                          for k in FIELDS if k in fields}
                inst, created = Instrument.objects.get_or_create(symbol=fields["symbol"], defaults=values)
                self.stdout.write(f"{inst.symbol}: {'created' if created else 'exists, left unchanged'}")
