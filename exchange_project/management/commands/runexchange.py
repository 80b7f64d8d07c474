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

import psycopg
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


def _announce_going_away() -> None:
    """Tell the web processes that the exchange stops, so that they close their WebSockets
    with a close frame (1001) before the server goes; best effort, a second at most."""
    from matching.contract import CONTROL_CHANNEL, GOING_AWAY
    from matching.worker.postgres import conninfo

    try:
        with psycopg.connect(**{**conninfo("pgbourse-supervisor"), "connect_timeout": 2}, autocommit=True) as conn:
            conn.execute(f"SELECT pg_notify('{CONTROL_CHANNEL}', %s)", (GOING_AWAY,))
    except psycopg.Error:
        return
    time.sleep(0.5)


class Command(BaseCommand):
    help = "Run the exchange: embedded PostgreSQL (if no DATABASE_URL), migrations, matching worker, ASGI server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--server", choices=SERVERS, default=settings.ASGI_SERVER)
        parser.add_argument("--web-workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args: Any, **opts: Any) -> None:
        # The embedded PostgreSQL stops with the exchange if this command started it; one started
        # by `make db-start` stays up.
        started_db = settings.EMBEDDED_POSTGRES and pgembed.ensure_running()
        call_command("migrate", interactive=False, verbosity=0)
        if ensure_default_instrument():
            self.stdout.write("created instrument BTC-USD (tick 0.01, lot 0.0001)")
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
        _announce_going_away()
        # The server first (no new requests), then the worker finishes its batch and exits.
        stop_process_group(children["server"])
        stop_process_group(children["worker"])
        if started_db:
            pgembed.stop()
            self.stdout.write("embedded PostgreSQL stopped (`make db-start` keeps one running).")
        self.stdout.write("stopped.")
