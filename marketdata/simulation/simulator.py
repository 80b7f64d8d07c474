"""Runs the market model (marketdata.simulation.market) against a live exchange, over its HTTP API or its
WebSocket: every order, cancel and modify takes the real order path, so the trading page, the
feeds and the metrics show a living market. The model decides; this module keeps time, sends,
tells the model what the exchange answered, and counts."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from matching.engine.grid import GridFormat
from matching.engine.types import InstrumentSpec

from .market import Action, Cancel, Market, Modify, Place
from .replay import percentile
from .transport import Answer, HttpTransport, Transport

MAX_INFLIGHT = 256  # requests awaiting an answer; beyond it the schedule waits (and falls behind)
DRAIN_S = 15.0  # at the end: how long in-flight requests get to be answered
RESTING = ("open", "partially_filled")
TOO_LATE = ("order_not_open", "order_not_found")  # the quote filled (or went) before the command


async def instrument_spec(http: HttpTransport, symbol: str) -> InstrumentSpec:
    status, body = await http.request("GET", "/instruments")
    if status != 200:
        raise LookupError(f"GET /instruments answered {status}")
    for item in body["results"]:
        if item["symbol"] == symbol:
            return InstrumentSpec(symbol=symbol, tick_size=Decimal(item["tick_size"]),
                                  lot_size=Decimal(item["lot_size"]), min_qty=Decimal(item["min_qty"]),
                                  max_qty=Decimal(item["max_qty"]), max_price=Decimal(item["max_price"]),
                                  min_notional=None if item["min_notional"] is None else Decimal(item["min_notional"]))
    raise LookupError(f"no instrument {symbol!r}")


async def market_mid(http: HttpTransport, spec: InstrumentSpec) -> int | None:
    """The live mid in ticks: between the best bid and ask, else the last trade, else None."""
    status, book = await http.request("GET", f"/orderbook?instrument={spec.symbol}&levels=1")
    if status == 200 and book["bids"] and book["asks"]:
        return (spec.price_to_ticks(Decimal(book["bids"][0]["price"]))
                + spec.price_to_ticks(Decimal(book["asks"][0]["price"]))) // 2
    status, trades = await http.request("GET", f"/trades?instrument={spec.symbol}&limit=1")
    if status == 200 and trades["results"]:
        return spec.price_to_ticks(Decimal(trades["results"][0]["price"]))
    return None


class Simulator:
    def __init__(self, transport: Transport, market: Market, spec: InstrumentSpec) -> None:
        self.transport = transport
        self.market = market
        self.spec = spec
        self.fmt = GridFormat(spec)
        self.run_id = uuid.uuid4().hex[:8]
        self._n = 0
        self._slots = asyncio.Semaphore(MAX_INFLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.taker_trades: set[int] = set()
        self.latencies_s: list[float] = []
        self.behind_s = 0.0
        self.start_mid = market.mid_ticks
        self.started = time.monotonic()
        self.finished: float | None = None

    # -- the schedule ---------------------------------------------------------------------
    async def run(self, rate: float, duration: float | None, stop: asyncio.Event,
                  on_event: Callable[[], None] | None = None) -> None:
        """Events at Poisson times until `duration` seconds have passed or `stop` is set; then
        waits (a bounded time) for what is in flight."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.started = time.monotonic()
        stopped = loop.create_task(stop.wait())
        at = 0.0
        try:
            while not stop.is_set():
                at += self.market.gap_s(rate)
                if duration is not None and at > duration:
                    break
                delay = start + at - loop.time()
                if delay > 0:
                    await asyncio.wait([stopped], timeout=delay)
                    if stop.is_set():
                        break
                else:
                    self.behind_s = max(self.behind_s, -delay)
                action = self.market.step(at)
                await self._slots.acquire()
                self._spawn(self._do(action))
                if on_event is not None:
                    on_event()
        finally:
            stopped.cancel()
            await self._drain()
            self.finished = time.monotonic()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=DRAIN_S)

    # -- one event ------------------------------------------------------------------------
    async def _do(self, action: Action) -> None:
        try:
            sent = time.monotonic()
            if isinstance(action, Place):
                self.sent[f"place_{action.role}"] += 1
                (answer,) = await self.transport.place([self._body(action)])
                self._placed(action, answer)
            elif isinstance(action, Cancel):
                self.sent[action.why] += 1
                self._commanded("cancel", action.order_id, await self.transport.cancel(action.order_id))
            else:
                self.sent["modify"] += 1
                change = {"price": self.fmt.price(action.price_ticks)}
                answer = await self.transport.modify(action.order_id, change)
                self._commanded("modify", action.order_id, answer, action)
            self.latencies_s.append(time.monotonic() - sent)
        finally:
            self._slots.release()

    def _body(self, action: Place) -> dict[str, Any]:
        self._n += 1
        body: dict[str, Any] = {"idempotency_key": f"sim-{self.run_id}-{self._n}", "client_id": action.client_id,
                                "instrument": self.spec.symbol, "side": action.side,
                                "quantity": self.fmt.qty(action.lots)}
        if action.price_ticks is None:
            body["type"] = "market"
        else:
            body |= {"type": "limit", "price": self.fmt.price(action.price_ticks),
                     "time_in_force": action.time_in_force}
        return body

    def _count_trades(self, order: dict[str, Any]) -> None:
        # An order's body lists all its fills; a trade has exactly one taker, so the taker's
        # trade ids, seen once each, count every trade this simulator caused.
        self.taker_trades.update(f["trade_id"] for f in order.get("fills", ()) if f.get("role") == "taker")

    def _placed(self, action: Place, answer: Answer) -> None:
        status, body = answer
        if status == 201:
            self.outcomes["placed"] += 1
            self._count_trades(body)
            if body.get("status") in RESTING:
                self.market.rested(body["order_id"], action)
        elif status == 202:
            self.outcomes["placed_pending"] += 1
        elif status >= 400:
            self.rejected[str(body.get("code"))] += 1
        else:
            self.outcomes[f"place_{status}"] += 1

    def _commanded(self, kind: str, order_id: str, answer: Answer, action: Modify | None = None) -> None:
        status, body = answer
        if status == 200:
            self.outcomes["cancelled" if kind == "cancel" else "modified"] += 1
            self._count_trades(body)
            if action is not None and body.get("status") in RESTING:
                self.market.moved(order_id, action.price_ticks)
            else:
                self.market.gone(order_id)
        elif status >= 400 and body.get("code") in TOO_LATE:
            self.outcomes[f"{kind}_too_late"] += 1
            self.market.gone(order_id)
        elif status >= 400:
            self.rejected[str(body.get("code"))] += 1
            if body.get("code") != "connection_lost" and kind == "modify":
                self.market.gone(order_id)  # a refused modify leaves the order; forget it, cancel it at exit
        else:
            self.outcomes[f"{kind}_{status}"] += 1

    # -- the end --------------------------------------------------------------------------
    async def cancel_quotes(self) -> int:
        """Cancel every quote the model knows to rest (a clean exit leaves no simulated book)."""
        order_ids = sorted(self.market.quotes)
        answers = await asyncio.gather(*(self.transport.cancel(oid) for oid in order_ids))
        done = 0
        for oid, (status, body) in zip(order_ids, answers):
            self.market.gone(oid)
            if status == 200:
                done += 1
                self._count_trades(body)
        self.outcomes["cancelled_at_exit"] += done
        return done

    def summary(self) -> dict[str, Any]:
        elapsed = (self.finished or time.monotonic()) - self.started
        events = sum(self.sent.values())
        lat = sorted(self.latencies_s)
        return {
            "instrument": self.spec.symbol, "via": self.transport.name, "seed": self.market.seed,
            "elapsed_s": round(elapsed, 3), "events": events,
            "events_per_s": round(events / elapsed, 1) if elapsed > 0 else None,
            "sent": dict(sorted(self.sent.items())), "outcomes": dict(sorted(self.outcomes.items())),
            "rejected_by_code": dict(sorted(self.rejected.items())), "trades": len(self.taker_trades),
            "mid": {"start": self.fmt.price(self.start_mid), "end": self.fmt.price(self.market.mid_ticks)},
            "latency_ms": {name: None if (v := percentile(lat, p)) is None else round(v * 1000, 2)
                           for name, p in (("p50", 50), ("p99", 99), ("max", 100))},
            "behind_schedule_max_s": round(self.behind_s, 3),
        }


def format_summary(s: dict[str, Any]) -> str:
    o, lat = s["outcomes"], s["latency_ms"]
    return "\n".join([
        f"{s['instrument']} via {s['via']}, seed {s['seed']}: {s['events']:,} events in {s['elapsed_s']:.1f} s "
        f"= {s['events_per_s'] or 0:,.1f}/s (schedule at most {s['behind_schedule_max_s']} s behind)",
        "sent             " + ", ".join(f"{k} {v:,}" for k, v in s["sent"].items()),
        "answered         " + ", ".join(f"{k} {v:,}" for k, v in o.items()),
        "rejected         " + (", ".join(f"{k} {v:,}" for k, v in s["rejected_by_code"].items()) or "none"),
        f"trades           {s['trades']:,}",
        f"mid              {s['mid']['start']} -> {s['mid']['end']}",
        f"latency          p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
    ])
