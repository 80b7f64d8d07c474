"""Recovery check: rebuild every book from PostgreSQL exactly as the worker does on start and
verify it, so an operator can trust (or distrust) the record before restarting the worker.

Checks, per instrument: the engine's invariants on the rebuilt book; each resting order's
filled quantity equals the sum of its trades; trade sequence numbers are unique and not beyond
the instrument's last_seq; and, if a persisted snapshot exists at the current seq, that the
rebuilt book equals it. Exits 1 if anything is wrong."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from marketdata.models import BookSnapshot
from marketdata.recovery import engine_from_database
from orders.models import Instrument


class Command(BaseCommand):
    help = "Rebuild every order book from PostgreSQL and verify it (invariants, fills vs trades, snapshots)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--instrument", help="only this symbol")

    def handle(self, *args: Any, **opts: Any) -> None:
        problems: list[str] = []
        qs = Instrument.objects.all()
        if opts.get("instrument"):
            qs = qs.filter(symbol=opts["instrument"])
        for inst in qs:
            try:
                engine = engine_from_database(inst)
            except (AssertionError, ValueError) as exc:
                problems.append(f"{inst.symbol}: cannot be rebuilt: {exc}")
                continue
            with connection.cursor() as cur:
                cur.execute("""
                    SELECT o.order_id, o.filled_quantity, coalesce(sum(t.quantity), 0)
                      FROM orders_order o
                      LEFT JOIN orders_trade t ON t.buy_order_id = o.order_id OR t.sell_order_id = o.order_id
                     WHERE o.instrument_id = %s AND o.status <> 'pending'
                     GROUP BY o.order_id, o.filled_quantity
                    HAVING o.filled_quantity <> coalesce(sum(t.quantity), 0)""", [inst.id])
                for oid, filled, traded in cur.fetchall():
                    problems.append(f"{inst.symbol}: order {oid} filled {filled} but its trades sum to {traded}")
                cur.execute("SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM orders_trade "
                            "WHERE instrument_id = %s", [inst.id])
                n, distinct, max_seq = cur.fetchone()  # type: ignore[misc]
            if n != distinct or max_seq > inst.last_seq:
                problems.append(f"{inst.symbol}: trade sequence numbers inconsistent "
                                f"({n} trades, {distinct} distinct seq, max {max_seq}, last_seq {inst.last_seq})")
            snap = BookSnapshot.objects.filter(instrument=inst, seq=inst.last_seq).first()
            verdict = "no snapshot at this seq"
            if snap is not None:
                same = snap.engine_snapshot.get("orders") == engine.snapshot()["orders"]
                verdict = f"matches snapshot #{snap.pk}" if same else f"DIFFERS from snapshot #{snap.pk}"
                if not same:
                    problems.append(f"{inst.symbol}: rebuilt book differs from snapshot #{snap.pk} at seq {snap.seq}")
            self.stdout.write(f"{inst.symbol}: {engine.open_order_count} resting orders, seq {engine.seq}, "
                              f"invariants ok, {verdict}")
        for line in problems:
            self.stderr.write(line)
        if problems:
            raise CommandError(f"{len(problems)} problem(s) found")
        self.stdout.write(self.style.SUCCESS("all books consistent"))
