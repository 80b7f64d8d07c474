"""`manage.py recover --verify [--instrument X] [--no-live]`: prove that each book can be
recovered three ways that agree:

1. from the latest persisted snapshot plus the journal after it (matching.journal), compared
   with the book rebuilt from the open orders (what the worker does on start), both read in one
   snapshot of the database;
2. the matching worker's live book (it stores a snapshot of it now, at a committed position),
   compared with the snapshot before that plus the journal up to the live one's position.

Any difference is printed and the command exits 1. Without a reachable worker, (2) is skipped
(and said so); ``--no-live`` skips it on purpose."""
from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from marketdata.models import BookSnapshot
from matching import journal
from matching.contract import SnapshotsTaken, TakeSnapshot
from matching.engine.engine import Engine
from matching.records import MAX_PRIORITY_SQL, OPEN_ORDERS_SQL, engine_from_rows, spec_of
from orders.management.commands.replay import read_instrument, read_journal, repeatable_read


def _start(instrument: dict[str, Any], snap: BookSnapshot | None) -> journal.Start:
    if snap is None:
        return journal.Start()
    spec = spec_of(instrument)
    with connection.cursor() as cur:
        cur.execute(journal.HALTS_SQL, {"instrument_id": instrument["id"], "to": snap.command_seq})
        halts = cur.fetchall()
    return journal.Start(engine=Engine.restore(spec, snap.engine_snapshot), command_seq=snap.command_seq or 0,
                         halted=bool(halts[-1][1]) if halts else False)


def _latest(instrument_id: int, upto: int, exclude: int | None = None) -> BookSnapshot | None:
    qs = BookSnapshot.objects.filter(instrument_id=instrument_id, command_seq__isnull=False, command_seq__lte=upto)
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs.order_by("-command_seq", "-id").first()


def _from_snapshot(instrument: dict[str, Any], snap: BookSnapshot | None, to_seq: int,
                   compare_final: bool) -> journal.Replayed:
    start = _start(instrument, snap)
    from_trade = start.engine.next_trade_id if start.engine is not None else 1
    rows = read_journal(instrument["id"], start.command_seq, to_seq, from_trade)
    return journal.replay(spec_of(instrument), instrument, **rows, start=start, to_seq=to_seq,
                          compare_final=compare_final)


def _take_live(instrument_id: int) -> SnapshotsTaken | str:
    from orders import operations
    from orders.direct import WorkerUnavailable
    from orders.errors import ApiError

    async def take() -> Any:
        return await operations.send(TakeSnapshot(instrument_id=instrument_id), inbox=False)

    try:
        answer = asyncio.run(take())
    except WorkerUnavailable:
        return "no matching worker reachable"
    except ApiError as exc:
        return exc.detail
    return answer if isinstance(answer, SnapshotsTaken) else f"the worker answered {answer}"


class Command(BaseCommand):
    help = "Verify that every book is recovered alike from snapshot + journal, from open orders, and live."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--verify", action="store_true", required=True)
        parser.add_argument("--instrument", help="only this symbol")
        parser.add_argument("--no-live", action="store_true", help="do not compare with the worker's live book")

    def handle(self, *args: Any, **opts: Any) -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT symbol FROM orders_instrument ORDER BY id")
            symbols = [r[0] for r in cur.fetchall()]
        if opts.get("instrument"):
            symbols = [s for s in symbols if s == opts["instrument"]] or [opts["instrument"]]
        problems = 0
        for symbol in symbols:
            problems += self._verify(symbol, live=not opts["no_live"])
        if problems:
            raise CommandError(f"{problems} difference(s) found")
        self.stdout.write(self.style.SUCCESS("every book recovers alike"))

    def _report(self, symbol: str, what: str, differences: list[str]) -> int:
        if differences:
            self.stderr.write(f"{symbol}: {what}: DIFFERENT")
            for line in differences:
                self.stderr.write(f"  {line}")
        else:
            self.stdout.write(f"{symbol}: {what}: same")
        return len(differences)

    def _verify(self, symbol: str, live: bool) -> int:
        problems = 0
        with transaction.atomic():
            repeatable_read()
            instrument = read_instrument(symbol)
            last = instrument["last_command_seq"]
            snap = _latest(instrument["id"], last)
            with connection.cursor() as cur:
                cur.execute(OPEN_ORDERS_SQL, [instrument["id"]])
                open_orders = cur.fetchall()
                cur.execute(MAX_PRIORITY_SQL, [instrument["id"]])
                (max_priority,) = cur.fetchone() or (0,)
            try:
                rebuilt = engine_from_rows(spec_of(instrument), open_orders, last_seq=instrument["last_seq"],
                                           last_trade_id=instrument["last_trade_id"], max_priority=max_priority)
            except (AssertionError, ValueError) as exc:
                return self._report(symbol, "open orders", [f"cannot be rebuilt: {exc}"])
            replayed = _from_snapshot(instrument, snap, last, compare_final=True)
        base = "journal from the start" if snap is None else f"snapshot #{snap.pk} (command {snap.command_seq})"
        problems += self._report(symbol, f"{base} + {replayed.commands} command(s) vs the open orders "
                                         f"(command {last})",
                                 replayed.differences + journal.compare_books(replayed.book.engine, rebuilt,
                                                                              "snapshot+journal", "open orders"))
        if not live:
            return problems
        taken = _take_live(instrument["id"])
        if isinstance(taken, str):
            self.stdout.write(f"{symbol}: live book: not compared ({taken})")
            return problems
        (info,) = taken.snapshots
        live_snap = BookSnapshot.objects.get(pk=info.id)
        with transaction.atomic():
            repeatable_read()
            before = _latest(instrument["id"], info.command_seq, exclude=info.id)
            replayed = _from_snapshot(instrument, before, info.command_seq, compare_final=False)
        live_engine = Engine.restore(spec_of(instrument), live_snap.engine_snapshot)
        base = "journal from the start" if before is None else f"snapshot #{before.pk}"
        problems += self._report(symbol, f"live book (snapshot #{info.id}, command {info.command_seq}) vs {base} "
                                         f"+ {replayed.commands} command(s)",
                                 replayed.differences + journal.compare_books(live_engine, replayed.book.engine,
                                                                              "live", "snapshot+journal"))
        return problems
