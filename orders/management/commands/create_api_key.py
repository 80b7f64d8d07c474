"""manage.py create_api_key --client alice --role trader: a new API key, printed once.

    python manage.py create_api_key --client alice --role trader
    python manage.py create_api_key --client ops --role admin --name "operations desk"
    python manage.py create_api_key --client lt-001 --client lt-002 --orders-rate 100000/s --rotate --json

Only the key's hash is stored: the key is printed here and never again. ``--rotate`` revokes the
client's live key first (in the same transaction); several ``--client`` make one key each.
``--json`` prints {client_id: key} (for programs, e.g. the benchmarks). Every key made is
audited (orders.audit).
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from orders.audit import command_actor
from orders.auth import KeyRefused, api_key_create
from orders.models import KeyRole


class Command(BaseCommand):
    help = "Create an API key for a client and print it (only its hash is stored)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--client", action="append", required=True, dest="clients",
                            help="the client the key acts for (repeat for several keys)")
        parser.add_argument("--role", choices=KeyRole.values, default=KeyRole.TRADER.value)
        parser.add_argument("--name", default="", help="a label for people")
        for action in ("orders", "commands", "reads"):
            parser.add_argument(f"--{action}-rate", default="", metavar="BUDGET",
                                help=f"this key's own {action} budget, e.g. 200/2s (default: the role's)")
        parser.add_argument("--rotate", action="store_true", help="revoke the client's live key first")
        parser.add_argument("--json", action="store_true", help="print {client_id: key} as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        rates = {action: opts[f"{action}_rate"] for action in ("orders", "commands", "reads")}
        made: dict[str, str] = {}
        for client in opts["clients"]:
            try:
                row, key = api_key_create(client_id=client, role=opts["role"], name=opts["name"], rates=rates,
                                          rotate=opts["rotate"], actor=command_actor("create_api_key"))
            except KeyRefused as exc:
                raise CommandError(str(exc)) from None
            made[client] = key
            if not opts["json"]:
                self.stdout.write(f"{key}    client {client}, role {row.role}, prefix {row.prefix} "
                                  "(shown once: only its hash is stored)")
        if opts["json"]:
            self.stdout.write(json.dumps(made))
