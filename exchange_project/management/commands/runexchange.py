"""`make run`: the whole exchange in one command.

Starts the embedded PostgreSQL (when DATABASE_URL is unset), migrates, creates BTC-USD if
missing, then runs and supervises the matching worker and the ASGI server: a crashed worker is
restarted (it rebuilds its books from PostgreSQL), Ctrl-C stops everything cleanly.
"""
from __future__ import annotations

import signal
import subprocess
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from exchange_project import pgembed
from exchange_project.processes import (
    SERVERS,
    child_env,
    server_command,
    stop_process_group,
    worker_command,
)

BTC_USD = {"tick_size": Decimal("0.01"), "lot_size": Decimal("0.0001"), "min_qty": Decimal("0.0001"),
           "max_qty": Decimal("1000"), "max_price": Decimal("10000000")}


def ensure_default_instrument() -> bool:
    from orders.models import Instrument

    _, created = Instrument.objects.get_or_create(symbol="BTC-USD", defaults=BTC_USD)
    return created


DEMO_CLIENTS = (("demo", "trader"), ("admin", "admin"))


def ensure_demo_keys() -> list[tuple[str, str, str]]:
    """Development only: a `demo` trader key and an `admin` key, made on the first start (only
    their hashes are stored, so they are printed then, never again). (client, role, key) made."""
    from orders.audit import command_actor
    from orders.auth import api_key_create
    from orders.models import ApiKey

    made = []
    if not ApiKey.objects.exists():
        for client, role in DEMO_CLIENTS:
            _, key = api_key_create(client_id=client, role=role, name="make run (development)",
                                    actor=command_actor("runexchange"))
            made.append((client, role, key))
    return made


class Command(BaseCommand):
    help = "Run the exchange: embedded PostgreSQL (if no DATABASE_URL), migrations, matching worker, ASGI server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--server", choices=SERVERS, default=settings.ASGI_SERVER)
        parser.add_argument("--web-workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args: Any, **opts: Any) -> None:
        if settings.EMBEDDED_POSTGRES:
            pgembed.ensure_running()
        call_command("migrate", interactive=False, verbosity=0)
        if ensure_default_instrument():
            self.stdout.write("created instrument BTC-USD (tick 0.01, lot 0.0001)")
        if not settings.AUTH_REQUIRED:
            from orders.auth import OFF_WARNING

            self.stderr.write(self.style.WARNING(f"WARNING: {OFF_WARNING}"))
        elif settings.DEVELOPMENT:
            made = ensure_demo_keys()
            for client, role, key in made:
                self.stdout.write(self.style.SUCCESS(f"API key of client {client!r} ({role}): {key}"))
            if made:
                self.stdout.write("  (development only; shown this once: only their hashes are stored. More: "
                                  "python manage.py create_api_key --client NAME --role trader)")
        env = child_env()
        specs = {
            "worker": worker_command(),
            "server": server_command(opts["port"], opts["server"], opts["web_workers"], opts["host"]),
        }
        # Each child in its own session: Ctrl-C reaches only this supervisor, which stops them
        # (and the processes they spawn) in order.
        children: dict[str, subprocess.Popen[bytes]] = {
            name: subprocess.Popen(cmd, env=env, start_new_session=True) for name, cmd in specs.items()}
        base = f"http://{opts['host']}:{opts['port']}"
        self.stdout.write(self.style.SUCCESS(
            f"pgbourse is up ({opts['server']}, {opts['web_workers']} web process(es)):\n"
            f"  API (browsable)  {base}/orders  {base}/orderbook?instrument=BTC-USD  {base}/trades?instrument=BTC-USD\n"
            f"  OpenAPI / docs   {base}/schema  {base}/docs\n"
            f"  admin            {base}/admin/   (python manage.py createsuperuser)\n"
            f"  WebSocket        ws://{opts['host']}:{opts['port']}/stream\n"
            f"  metrics          {base}/metrics\n"
            f"Ctrl-C stops everything."))
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        restarts: dict[str, list[float]] = {name: [] for name in specs}
        while not stopping:
            time.sleep(0.2)
            for name, proc in list(children.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                recent = [t for t in restarts[name] if time.monotonic() - t < 60]
                delay = min(0.2 * 2 ** len(recent), 10.0)
                self.stderr.write(f"{name} exited with code {code}; restarting in {delay:.1f}s")
                time.sleep(delay)
                restarts[name] = [*recent, time.monotonic()]
                stop_process_group(proc, timeout=0)
                children[name] = subprocess.Popen(specs[name], env=env, start_new_session=True)
        self.stdout.write("stopping...")
        # The server first (no new requests), then the worker finishes its batch and exits.
        stop_process_group(children["server"])
        stop_process_group(children["worker"])
        self.stdout.write("stopped.")
