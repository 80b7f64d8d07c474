"""manage.py revoke_api_key PREFIX (or --client X): the key stops working in every web process
as soon as PostgreSQL notifies them (a trigger on the keys' table). Audited."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from orders.audit import command_actor
from orders.auth import api_key_revoke
from orders.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key, by its prefix (pgb_1a2b3c4d) or its client's live key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("prefix", nargs="?", help="the key's prefix, as the admin shows it")
        parser.add_argument("--client", help="revoke this client's live key")

    def handle(self, *args: Any, **opts: Any) -> None:
        if bool(opts["prefix"]) == bool(opts["client"]):
            raise CommandError("give a key prefix or --client, not both")
        if opts["prefix"]:
            keys = ApiKey.objects.filter(prefix=opts["prefix"])
        else:
            keys = ApiKey.objects.filter(client_id=opts["client"], revoked_at__isnull=True)
        found = list(keys)
        if not found:
            raise CommandError("no such key")
        for key in found:
            done = api_key_revoke(api_key=key, actor=command_actor("revoke_api_key"))
            self.stdout.write(f"{key.prefix} ({key.client_id}): {'revoked' if done else 'was revoked already'}")
