"""WebSocket helpers for the feed tests: a raw session that understands batch frames, order
bodies, and a helper that runs a BookClient in the background."""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import orjson
import websockets

from marketdata.client import BookClient
from tests.http import acall
from tests.keys import AUTO, auth_headers, choose


def body(instrument: str, side: str, price: str | None, quantity: str, client_id: str = "alice",
         **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"idempotency_key": uuid.uuid4().hex, "client_id": client_id, "instrument": instrument,
                           "side": side, "quantity": quantity, "type": "limit" if price is not None else "market"}
    if price is not None:
        out["price"] = price
    out.update(extra)
    return out


class Session:
    """One raw WebSocket: send JSON, receive events (a batch frame is several events)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else orjson.dumps(message, default=str))

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        while not self.pending:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.pending.extend(frame if isinstance(frame, list) else [frame])
        return self.pending.pop(0)

    async def until(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(deadline - time.monotonic(), 0.001))
            if match(event):
                return event

    async def request(self, message: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send a message with an id and return the reply carrying that id."""
        req_id = uuid.uuid4().hex
        await self.send({**message, "id": req_id})
        return await self.until(lambda e: e.get("id") == req_id, timeout)


@contextlib.asynccontextmanager
async def session(url: str, batch: bool = False, key: Any = AUTO, **kwargs: Any) -> AsyncIterator[Session]:
    """A socket with the admin key in its handshake (tests.keys), or ``key`` (None: none)."""
    headers = auth_headers(choose(url, key))
    async with websockets.connect(url + ("?batch=1" if batch else ""), max_size=2**24,
                                  additional_headers=headers, **kwargs) as ws:
        yield Session(ws)


@contextlib.asynccontextmanager
async def following(url: str, instrument: str, **kwargs: Any) -> AsyncIterator[BookClient]:
    """A BookClient running in the background, synced before the block starts."""
    client = BookClient(url, instrument, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await asyncio.wait_for(client.synced.wait(), 10)
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def rest_book(http: str, instrument: str) -> dict[str, Any]:
    status, book = await acall(http, "GET", f"/orderbook?instrument={instrument}&levels=1000")
    assert status == 200, book
    return book


def levels(book: dict[str, Any]) -> dict[str, list[tuple[Decimal, Decimal]]]:
    return {side: [(Decimal(lv["price"]), Decimal(lv["quantity"])) for lv in book[side]] for side in ("bids", "asks")}


async def assert_client_matches_rest(client: BookClient, http: str, instrument: str) -> dict[str, Any]:
    """Wait for the client to reach the REST book's seq; then both books must be equal."""
    book = await rest_book(http, instrument)
    assert book["bid_level_count"] == len(book["bids"]) and book["ask_level_count"] == len(book["asks"])
    await client.wait_seq(book["seq"], timeout=20)
    assert client.seq == book["seq"], "the book moved after the test stopped trading"
    mine, theirs = client.book(), levels(book)
    for side in ("bids", "asks"):
        extra = sorted(set(mine[side]) - set(theirs[side]))
        missing = sorted(set(theirs[side]) - set(mine[side]))
        assert (extra, missing) == ([], []), f"{side}: only in the client {extra[:5]}, only in REST {missing[:5]}"
    assert mine == theirs
    return book


def random_orders(instrument: str, n: int, seed: int, clients: tuple[str, ...] = ("c1", "c2", "c3", "c4"),
                  mid_ticks: int = 10_000, spread_ticks: int = 40) -> list[dict[str, Any]]:
    """A seeded stream of limit (mostly), IOC and market orders around a mid price."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        side = rng.choice(("buy", "sell"))
        qty = str(Decimal(rng.randint(1, 50)) / 100)
        roll = rng.random()
        if roll < 0.05:
            out.append(body(instrument, side, None, qty, client_id=rng.choice(clients)))
            continue
        offset = rng.randint(-spread_ticks // 4, spread_ticks)
        ticks = mid_ticks - offset if side == "buy" else mid_ticks + offset
        price = str(Decimal(ticks) / 100)
        extra = {"time_in_force": "IOC"} if roll < 0.10 else {}
        out.append(body(instrument, side, price, qty, client_id=rng.choice(clients), **extra))
    return out


async def place_all(url: str, orders: list[dict[str, Any]], chunk: int = 250,
                    window: int = 4) -> list[dict[str, Any]]:
    """Place orders over one WebSocket as `orders` batches, `window` messages in flight."""
    acks: list[dict[str, Any]] = []
    async with session(url, batch=True) as ws:
        chunks = [orders[i:i + chunk] for i in range(0, len(orders), chunk)]
        sent = 0
        outstanding = 0
        while sent < len(chunks) or outstanding:
            while sent < len(chunks) and outstanding < window:
                await ws.send({"op": "orders", "orders": chunks[sent], "id": sent})
                sent += 1
                outstanding += 1
            reply = await ws.until(lambda e: e.get("event") == "orders_ack", timeout=60)
            acks.extend(reply["acks"])
            outstanding -= 1
    return acks
