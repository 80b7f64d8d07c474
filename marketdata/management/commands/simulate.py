"""`manage.py simulate`: a living market on a running exchange, through its real order path.

    .venv/bin/python manage.py simulate --instrument BTC-USD --rate 200
    .venv/bin/python manage.py simulate --rate 50 --duration 60 --seed 7 --url http://127.0.0.1:8710 --via ws

The mid follows geometric Brownian motion from the live book's mid (or --mid); market makers
quote around it and cancel/replace or move their quotes; takers arrive as a Poisson process
(marketdata.simulation.market). Every order, cancel and modify goes to the server at --url, over
HTTP or the WebSocket (which has no modify: there the makers only cancel and replace). Runs for
--duration seconds or until Ctrl-C, then waits for what is in flight, cancels the quotes it left
resting (unless --keep-quotes) and prints a summary. The same --seed draws the same mid path
and the same sequence of decisions; what fills still depends on the exchange's timing.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from marketdata.simulation.market import Market, MarketParams
from marketdata.simulation.simulator import Simulator, format_summary, instrument_spec, market_mid
from marketdata.simulation.transport import HttpTransport, open_transport
from matching.engine.types import InvalidNumber

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MID = Decimal("30000.00")


class Command(BaseCommand):
    help = "Simulate market makers and takers around a GBM mid price, through the server's HTTP or WebSocket."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--instrument", default="BTC-USD")
        parser.add_argument("--rate", type=float, default=200, help="events (orders, cancels, modifies) per second")
        parser.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
        parser.add_argument("--via", choices=("http", "ws"), default="http")
        parser.add_argument("--mid", type=Decimal, help=f"starting mid (default: the live book's, else {DEFAULT_MID})")
        parser.add_argument("--volatility", type=float, default=0.0003,
                            help="of the log price per square root of a second (default 0.0003: ~0.23%% a minute)")
        parser.add_argument("--drift", type=float, default=0.0, help="of the log price per second")
        parser.add_argument("--makers", type=int, default=4)
        parser.add_argument("--spread", type=Decimal, default=Decimal("0.0001"),
                            help="makers' half spread as a share of the mid (default 0.0001)")
        parser.add_argument("--quote-size", type=Decimal, default=Decimal("0.01"), help="scale of quote sizes")
        parser.add_argument("--take-size", type=Decimal, default=Decimal("0.005"), help="scale of taker sizes")
        parser.add_argument("--keep-quotes", action="store_true", help="leave the makers' quotes on the book at exit")
        parser.add_argument("--json", type=Path, help="also write the summary to this file as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["rate"] <= 0:
            raise CommandError("--rate must be positive")
        summary = asyncio.run(self._run(opts))
        self.stdout.write(format_summary(summary))
        if opts["json"]:
            opts["json"].write_text(json.dumps(summary, indent=2) + "\n")

    async def _params(self, http: HttpTransport, opts: dict[str, Any]) -> tuple[Any, MarketParams]:
        try:
            spec = await instrument_spec(http, opts["instrument"])
            mid = spec.price_to_ticks(opts["mid"]) if opts["mid"] is not None else await market_mid(http, spec)
            mid = mid or spec.price_to_ticks(DEFAULT_MID)
            quote_lots = spec.qty_to_lots(opts["quote_size"])
            take_lots = spec.qty_to_lots(opts["take_size"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        except InvalidNumber as exc:
            raise CommandError(f"--mid and sizes must be on {opts['instrument']}'s grid: {exc.reason.value}") from None
        half_spread = max(1, int(mid * opts["spread"]))
        params = MarketParams(
            mid_ticks=mid, volatility=opts["volatility"], drift=opts["drift"], makers=opts["makers"],
            half_spread_ticks=half_spread, level_ticks=max(1, half_spread // 2), quote_lots=quote_lots,
            take_lots=take_lots, min_lots=spec.qty_to_lots(spec.min_qty), max_lots=spec.qty_to_lots(spec.max_qty),
            max_price_ticks=spec.price_to_ticks(spec.max_price))
        return spec, params

    async def _run(self, opts: dict[str, Any]) -> dict[str, Any]:
        from tqdm import tqdm

        http = HttpTransport(opts["url"], connections=8)
        try:
            spec, params = await self._params(http, opts)
        except OSError as exc:
            raise CommandError(f"cannot reach {opts['url']}: {exc}") from None
        finally:
            await http.close()
        transport = await open_transport(opts["via"], opts["url"], connections=64)
        market = Market(params, seed=opts["seed"], can_modify=transport.can_modify)
        sim = Simulator(transport, market, spec)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        total = int(opts["rate"] * opts["duration"]) if opts["duration"] else None
        with tqdm(total=total, unit=" events", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
            def tick() -> None:
                bar.update(1)
                if bar.n % 50 == 0:
                    bar.set_postfix(mid=sim.fmt.price(market.mid_ticks), trades=len(sim.taker_trades), refresh=False)
            try:
                await sim.run(opts["rate"], opts["duration"], stop, on_event=tick)
                if not opts["keep_quotes"]:
                    await sim.cancel_quotes()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                await transport.close()
        return sim.summary()
