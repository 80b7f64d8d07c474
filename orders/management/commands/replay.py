"""`manage.py replay --instrument X [--to-seq N]`: replay the instrument's stored commands (its
journal: places, cancels, modifies, halts, in the order the matching worker processed them)
through a fresh engine and check that they produce exactly the stored events, trades and final
order states (matching.journal). Any difference is printed, and the command exits 1."""
from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from matching import journal
from matching.records import INSTRUMENT_COLUMNS, INSTRUMENTS_SQL, spec_of


def read_instrument(symbol: str) -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute(INSTRUMENTS_SQL + " WHERE symbol = %s", [symbol])
        row = cur.fetchone()
    if row is None:
        raise CommandError(f"no instrument {symbol!r}")
    return dict(zip(INSTRUMENT_COLUMNS, row))


def read_journal(instrument_id: int, after: int, to_seq: int, from_trade: int = 1) -> dict[str, list[Any]]:
    """The journal rows after ``after`` up to ``to_seq`` (call inside one snapshot)."""
    params = {"instrument_id": instrument_id, "after": after, "to": to_seq, "from_trade": from_trade}
    out: dict[str, list[Any]] = {}
    with connection.cursor() as cur:
        for name, sql in (("events", journal.EVENTS_SQL), ("orders", journal.ORDERS_SQL),
                          ("trades", journal.TRADES_SQL), ("halts", journal.HALTS_SQL)):
            cur.execute(sql, params)
            out[name] = cur.fetchall()
    return out


def repeatable_read() -> None:
    with connection.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


class Command(BaseCommand):
    help = "Replay an instrument's stored commands through a fresh engine and compare with the stored record."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--instrument", required=True)
        parser.add_argument("--to-seq", type=int, default=None,
                            help="stop after command N (the instrument's command_seq); compare the events up to it")
        parser.add_argument("--max-differences", type=int, default=50)

    def handle(self, *args: Any, **opts: Any) -> None:
        started = time.monotonic()
        with transaction.atomic():
            repeatable_read()
            instrument = read_instrument(opts["instrument"])
            last = instrument["last_command_seq"]
            to_seq = last if opts["to_seq"] is None else min(opts["to_seq"], last)
            rows = read_journal(instrument["id"], 0, to_seq)
        read_s = time.monotonic() - started
        result = journal.replay(spec_of(instrument), instrument, **rows, to_seq=to_seq,
                                compare_final=to_seq == last, max_differences=opts["max_differences"])
        engine = result.book.engine
        self.stdout.write(
            f"{instrument['symbol']}: replayed {result.commands} command(s) (1..{to_seq} of {last}), "
            f"{result.trades} trade(s), {len(result.states)} order(s); book: {engine.open_order_count} resting, "
            f"seq {engine.seq} (read {read_s:.2f} s, replay {time.monotonic() - started - read_s:.2f} s)")
        for line in result.differences:
            self.stderr.write(line)
        if result.differences:
            raise CommandError(f"the replay differs from the record ({len(result.differences)} difference(s))")
        self.stdout.write(self.style.SUCCESS("the replay produces exactly the stored events, trades and order states"))
