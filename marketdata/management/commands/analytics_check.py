"""manage.py analytics_check [--instrument SYMBOL] [--rebuild]: recompute the candles and the
positions from the raw trades and compare them with the stored ones (marketdata.recompute); exit
status 1 if anything differs. --rebuild replaces the stored ones by the recomputation (only
with the matching worker stopped: it holds the positions in memory)."""
from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata import recompute
from orders.instruments import read_sync


class Command(BaseCommand):
    help = "Check the trade aggregates (candles, positions) against a recomputation from the trades."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instrument", help="only this instrument (default: every one)")
        parser.add_argument("--rebuild", action="store_true",
                            help="replace the stored aggregates by the recomputed ones (worker stopped)")

    def handle(self, *args: Any, **options: Any) -> None:
        instruments = read_sync(options["instrument"])
        if options["instrument"] and not instruments:
            raise CommandError(f"no instrument {options['instrument']!r}")
        if options["rebuild"]:
            if recompute.worker_running():
                raise CommandError("the matching worker is running (it holds the positions in memory): stop it "
                                   "before --rebuild")
            for instrument in instruments:
                candles, positions = recompute.rebuild(instrument)
                self.stdout.write(f"{instrument.symbol}: rebuilt {candles} candle(s), {positions} position(s)")
            return
        failed = 0
        for instrument in instruments:
            started = time.perf_counter()
            trades, lines = recompute.differences(instrument)
            took = time.perf_counter() - started
            if lines:
                failed += 1
                self.stdout.write(f"{instrument.symbol}: {trades} trade(s), aggregates DIFFER ({took:.1f} s):")
                for line in lines:
                    self.stdout.write(f"  {line}")
            else:
                self.stdout.write(f"{instrument.symbol}: {trades} trade(s), candles and positions equal the "
                                  f"recomputation ({took:.1f} s)")
        if failed:
            raise CommandError(f"{failed} instrument(s) whose aggregates differ from their trades")
