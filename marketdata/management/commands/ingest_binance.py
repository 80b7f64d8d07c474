"""`manage.py ingest_binance`: replay Binance's public trade stream as market orders here.

Reads Binance `@trade` events (e, E, s, t, p, q, T, m, M) or `@aggTrade` events
(e, E, s, a, p, q, f, l, T, m, M), raw or wrapped by a combined stream ({"stream", "data"}),
from a WebSocket (reconnecting with exponential backoff) or from a JSON-lines recording
(--file). Each trade becomes a market order on --instrument for --client-id: `m` true means the
buyer was the maker, so the taker sold. The quantity is multiplied by --scale and rounded down
to the instrument's lot; a trade that rounds to nothing is skipped and counted.

Idempotency: the key is `binance-<symbol>-<t>` for a trade and `binance-<symbol>-agg<a>` for an
aggregate trade (the two id spaces overlap, hence the prefix), so a reconnect or a replay that
sees a trade again gets the original order back (200) instead of placing it twice.

Orders are submitted in-process through orders.services.orders_place, in batches of what has
arrived: the same validation, idempotency and acknowledgement as POST /orders, without an HTTP
hop, and one INSERT per batch however fast the feed is.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("marketdata.ingest")

DEFAULT_URL = "wss://stream.binance.com:9443/ws/btcusdt@trade"
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class BinanceTrade:
    symbol: str
    trade_key: str  # "<t>" or "agg<a>"
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool

    @property
    def taker_side(self) -> str:
        return "sell" if self.buyer_is_maker else "buy"


def parse_trade(message: Any) -> BinanceTrade | None:
    """A Binance trade/aggTrade event, or None for anything else (subscription replies...)."""
    if isinstance(message, dict) and isinstance(message.get("data"), dict) and "stream" in message:
        message = message["data"]
    if not isinstance(message, dict):
        return None
    kind = message.get("e")
    if kind == "trade":
        ident = message.get("t")
        key = str(ident)
    elif kind == "aggTrade":
        ident = message.get("a")
        key = f"agg{ident}"
    else:
        return None
    if not isinstance(ident, int) or not isinstance(message.get("s"), str) or not isinstance(message.get("m"), bool):
        return None
    raw_price, raw_quantity = message.get("p"), message.get("q")
    # Binance sends strings; a JSON number is read as Decimal by decode(). A float here could
    # only be inexact already: refused, never rounded.
    if not all(isinstance(v, (str, Decimal, int)) and not isinstance(v, bool) for v in (raw_price, raw_quantity)):
        return None
    try:
        price, quantity = Decimal(str(raw_price)), Decimal(str(raw_quantity))
    except InvalidOperation:
        return None
    if not (price.is_finite() and quantity.is_finite()) or quantity <= 0:
        return None
    return BinanceTrade(symbol=message["s"], trade_key=key, price=price, quantity=quantity,
                        buyer_is_maker=message["m"])


def decode(raw: str | bytes) -> Any:
    """One message, with JSON numbers that have a fraction read exactly (Decimal, not float)."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError:  # JSONDecodeError and undecodable bytes
        return None


def scaled_quantity(quantity: Decimal, scale: Decimal, lot_size: Decimal) -> Decimal:
    """quantity x scale, rounded down to whole lots (zero if less than one lot)."""
    lots = (quantity * scale) // lot_size
    return lots * lot_size


def order_body(trade: BinanceTrade, instrument: str, client_id: str, quantity: Decimal) -> dict[str, Any]:
    return {"idempotency_key": f"binance-{trade.symbol}-{trade.trade_key}", "client_id": client_id,
            "instrument": instrument, "side": trade.taker_side, "type": "market", "quantity": str(quantity)}


class Ingester:
    def __init__(self, *, instrument: str, client_id: str, scale: Decimal, batch_size: int,
                 max_messages: int | None, deadline: float | None, log_every_s: float) -> None:
        self.instrument_symbol = instrument
        self.client_id = client_id
        self.scale = scale
        self.batch_size = batch_size
        self.max_messages = max_messages
        self.deadline = deadline
        self.log_every_s = log_every_s
        self.counts: Counter[str] = Counter()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)
        self._last_log = time.monotonic()

    def done(self) -> bool:
        if self.max_messages is not None and self.counts["messages"] >= self.max_messages:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- sources --------------------------------------------------------------------------
    async def from_websocket(self, url: str) -> None:
        import websockets

        backoff = BACKOFF_START_S
        while not self.done():
            try:
                async with websockets.connect(url, open_timeout=10, max_size=2**20) as ws:
                    self.counts["connections"] += 1
                    log.info("connected to %s", url)
                    async for raw in ws:
                        backoff = BACKOFF_START_S
                        await self._accept(raw)
                        if self.done():
                            return
                    log.warning("stream closed by the server")
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                log.warning("stream failed (%s)", exc)
            if self.done():
                return
            self.counts["reconnects"] += 1
            log.info("reconnecting in %.1fs", backoff)
            await asyncio.sleep(min(backoff, max(self._time_left(), 0)))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def from_file(self, path: Path) -> None:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    await self._accept(line)
                if self.done():
                    return

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    async def _accept(self, raw: str | bytes) -> None:
        message = decode(raw)
        if message is None:
            self.counts["unparsable"] += 1
            return
        trade = parse_trade(message)
        if trade is None:
            self.counts["ignored"] += 1
            return
        self.counts["messages"] += 1
        await self.queue.put(trade)

    # -- submission -----------------------------------------------------------------------
    async def submit_forever(self) -> None:
        from matching.contract import Transport
        from orders.errors import ApiError
        from orders.instruments import by_symbol
        from orders.services import orders_place
        from orders.validation import place_request

        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            instrument = await by_symbol(self.instrument_symbol)
            if instrument is None:
                raise CommandError(f"No instrument {self.instrument_symbol!r}.")
            requests = []
            for trade in batch:
                qty = scaled_quantity(trade.quantity, self.scale, instrument.spec.lot_size)
                if qty <= 0:
                    self.counts["skipped_zero_quantity"] += 1
                    continue
                try:
                    requests.append(place_request(order_body(trade, instrument.symbol, self.client_id, qty),
                                                  instrument, Transport.LOCAL))
                except ApiError as exc:
                    self.counts[f"invalid_{exc.code}"] += 1
            while requests:
                try:
                    results = await orders_place(requests)
                except ApiError as exc:  # 503: PostgreSQL unreachable; the same keys are safe to retry
                    log.warning("submission failed (%s); retrying in 1s", exc.code)
                    await asyncio.sleep(1)
                    continue
                for result in results:
                    self.counts[{201: "placed", 200: "duplicates", 202: "pending"}.get(result.status, "conflicts")] += 1
                    if result.status in (200, 201, 202):
                        self.counts[f"status_{result.body.get('status')}"] += 1
                break
            for _ in batch:
                self.queue.task_done()
            self._maybe_log()

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.info("progress: %s", ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))

    async def run(self, url: str | None, path: Path | None) -> Counter[str]:
        submitter = asyncio.create_task(self.submit_forever())
        source = self.from_file(path) if path is not None else self.from_websocket(url or DEFAULT_URL)
        try:
            reader = asyncio.create_task(source)
            done, _ = await asyncio.wait({reader, submitter}, timeout=None if self.deadline is None
                                         else max(self._time_left(), 0), return_when=asyncio.FIRST_COMPLETED)
            if submitter in done:
                reader.cancel()
                submitter.result()  # raises what stopped it
            if reader not in done:
                reader.cancel()
            else:
                reader.result()
            # Everything read is submitted before we stop.
            drain = asyncio.create_task(self.queue.join())
            await asyncio.wait({drain, submitter}, return_when=asyncio.FIRST_COMPLETED)
            if submitter.done():
                submitter.result()
        finally:
            submitter.cancel()
        self._maybe_log(force=True)
        return self.counts


class Command(BaseCommand):
    help = "Submit Binance @trade/@aggTrade events as market orders on one of our instruments."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=None, help=f"WebSocket URL (default {DEFAULT_URL})")
        parser.add_argument("--file", type=Path, default=None, help="replay a JSON-lines recording instead")
        parser.add_argument("--instrument", required=True, help="our instrument, e.g. BTC-USD")
        parser.add_argument("--scale", type=Decimal, default=Decimal(1), help="quantity multiplier (Decimal)")
        parser.add_argument("--client-id", default="binance")
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument("--max-messages", type=int, default=None, help="stop after this many trades")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
        parser.add_argument("--log-every", type=float, default=10.0, help="progress log interval, seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["url"] and opts["file"]:
            raise CommandError("Give --url or --file, not both.")
        if not opts["scale"].is_finite() or opts["scale"] <= 0:
            raise CommandError("--scale must be a positive number.")
        ingester = Ingester(instrument=opts["instrument"], client_id=opts["client_id"], scale=opts["scale"],
                            batch_size=opts["batch_size"], max_messages=opts["max_messages"],
                            deadline=None if opts["duration"] is None else time.monotonic() + opts["duration"],
                            log_every_s=opts["log_every"])
        counts = asyncio.run(ingester.run(opts["url"], opts["file"]))
        self.stdout.write(orjson.dumps(dict(sorted(counts.items()))).decode())
