"""`manage.py load_orders FILE --via http|ws|direct`: replay an order file (fixtures/gen_orders.py)
through the real order path, then say what the exchange answered.

    .venv/bin/python manage.py load_orders var/orders.jsonl --via ws
    .venv/bin/python manage.py load_orders var/orders.csv --via http --rate 2000 --url http://127.0.0.1:8000
    .venv/bin/python manage.py load_orders var/orders.jsonl --via direct --instrument ETH-USD --rekey

http: POST /orders to --url; ws: `op: orders` messages on WS /stream at --url; direct: in this
process, orders.validation and orders.services.orders_place, as the web processes do (needs the
database and the matching worker, not the server).
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from marketdata.simulation.orderfile import read_orders
from marketdata.simulation.replay import format_summary, replay
from marketdata.simulation.transport import WS_MAX_BATCH, open_transport

DEFAULT_URL = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = "Replay a file of orders (JSON lines or CSV) through POST /orders, WS /stream or in-process."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", type=Path, help="orders, one POST /orders body a line (.jsonl) or .csv")
        parser.add_argument("--via", choices=("http", "ws", "direct"), default="ws")
        parser.add_argument("--rate", type=float, default=0, help="orders per second; 0 (default): as fast as "
                            "the exchange answers")
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the server, for http and ws (default {DEFAULT_URL})")
        parser.add_argument("--batch", type=int, default=500, help="orders per WS message / orders_place call")
        parser.add_argument("--inflight", type=int, default=0, help="requests in flight at once (default: 64 "
                            "HTTP requests, 8 WS messages, 8 in-process batches)")
        parser.add_argument("--instrument", help="place every order on this instrument instead of the file's")
        parser.add_argument("--rekey", action="store_true", help="append a fresh run id to every idempotency "
                            "key, so a file already loaded is placed again as new orders")
        parser.add_argument("--limit", type=int, help="only the first N orders of the file")
        parser.add_argument("--json", type=Path, help="also write the summary to this file as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not 1 <= opts["batch"] <= WS_MAX_BATCH:
            raise CommandError(f"--batch must be 1..{WS_MAX_BATCH}")
        try:
            bodies = list(read_orders(opts["file"]))
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if opts["limit"] is not None:
            bodies = bodies[:opts["limit"]]
        run = uuid.uuid4().hex[:8]
        for body in bodies:
            if opts["instrument"]:
                body["instrument"] = opts["instrument"]
            if opts["rekey"] and isinstance(body.get("idempotency_key"), str):
                body["idempotency_key"] += f"-{run}"
        summary = asyncio.run(self._run(bodies, opts))
        self.stdout.write(format_summary(summary))
        if opts["json"]:
            opts["json"].write_text(json.dumps(summary, indent=2) + "\n")

    async def _run(self, bodies: list[dict[str, Any]], opts: dict[str, Any]) -> dict[str, Any]:
        from tqdm import tqdm

        inflight = opts["inflight"] or {"http": 64, "ws": 8, "direct": 8}[opts["via"]]
        try:
            transport = await open_transport(opts["via"], opts["url"], connections=inflight, window=inflight)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot reach {opts['url']}: {exc}") from None
        with tqdm(total=len(bodies), unit=" orders", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                  disable=None) as bar:
            try:
                tally = await replay(transport, bodies, rate=opts["rate"], batch=opts["batch"], inflight=inflight,
                                     on_answers=bar.update)
            finally:
                await transport.close()
        unit = "request" if opts["via"] == "http" else f"message (up to {opts['batch']} orders)" \
            if opts["via"] == "ws" else f"orders_place call (up to {opts['batch']} orders)"
        return tally.summary(unit) | {"via": opts["via"], "file": str(opts["file"])}
