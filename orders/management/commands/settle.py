"""manage.py settle --date YYYY-MM-DD [--instrument SYMBOL]: net every client's trades of that UTC
day into one settlement row per client and instrument, and write the CSV report (thin over
orders.settlement)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orders.instruments import read_sync
from orders.settlement import SettlementRefused, settlement_run


class Command(BaseCommand):
    help = "Settle a UTC day: one netted row per client and instrument, idempotent, and a CSV report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD (it must have ended)")
        parser.add_argument("--instrument", help="only this instrument (default: every one)")
        parser.add_argument("--report-dir", type=Path, default=None,
                            help=f"where the CSV goes (default {settings.SETTLEMENT_REPORT_DIR})")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = dt.date.fromisoformat(options["date"])
        except ValueError:
            raise CommandError(f"--date must be YYYY-MM-DD, got {options['date']!r}") from None
        instruments = read_sync(options["instrument"])
        if options["instrument"] and not instruments:
            raise CommandError(f"no instrument {options['instrument']!r}")
        try:
            report = settlement_run(day=day, instruments=instruments, now=timezone.now(),
                                    grace_s=settings.SETTLEMENT_GRACE_S,
                                    report_dir=options["report_dir"] or settings.SETTLEMENT_REPORT_DIR)
        except SettlementRefused as exc:
            raise CommandError(str(exc)) from None
        for settled in report.instruments:
            state = f"{settled.created} row(s) written" if settled.created else "already settled, unchanged"
            self.stdout.write(f"{day} {settled.instrument}: {len(settled.rows)} client(s), {state}")
        self.stdout.write(f"report: {report.report}")
