"""Fan-out of committed market data to this process's WebSocket connections.

The web process's one LISTEN connection (orders.listener.hub) hands every `pgb_market` payload
to `Fanout.on_market`, synchronously on the event loop. For each connection subscribed to that
instrument the fan-out picks the events it asked for, in their original order, and appends them
to the connection's own bounded outbox; the connection's writer task sends them.

Why not Channels groups: the in-memory channel layer drops a message silently when a member's
channel is full, and deep-copies every message for every member. Here each event is serialized
once, shared by all connections, and a connection whose outbox is full loses its queued market
events *visibly*: they are replaced by one `resync_required` marker, so the client knows to
resync and nobody else waits for it. Replies (acks, pongs, book snapshots) are never dropped; a
connection whose replies alone fill the outbox is closed with a reason.

How a slow socket is noticed depends on the server. Under granian (the default) the ASGI send()
waits once the server and the kernel hold about 3 MB for the socket, so the writer stops and the
outbox fills and overflows. Daphne's send() never waits (Twisted buffers without limit), so
there the writer reads the transport's unsent bytes instead (marketdata.consumers).

Topics: ("trades"|"book"|"ticker"|"snapshot", instrument) and ("orders", instrument, client_id).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

MARKET_CHANNELS = ("trades", "book", "ticker", "snapshot")
CHANNELS = (*MARKET_CHANNELS, "orders")
EVENT_CHANNEL = {"new_trade": "trades", "book_delta": "book", "ticker": "ticker", "snapshot": "snapshot",
                 "order_update": "orders"}

# Outbox bound, counted in events (a market event is ~200-300 bytes on the wire).
OUTBOX_MAX_EVENTS = 2048
# Stop writing to a socket whose unsent bytes exceed this (the server buffers without limit).
TRANSPORT_HIGH_WATER_BYTES = 128 * 1024
# A connection that cannot take even its replies for this long is closed.
STALLED_CLOSE_AFTER_S = 30.0
# In batch mode, at most this many events per frame.
FRAME_MAX_EVENTS = 500


class Sender(Protocol):
    async def __call__(self, text: str) -> None: ...


@dataclass(slots=True)
class _Item:
    text: str
    market: bool  # market events may be dropped (with a resync marker); replies never


@dataclass(eq=False)
class Outbox:
    """One connection's ordered, bounded queue of outgoing frames and the task that sends them."""

    send: Sender
    batch: bool = False
    backlog: Callable[[], int] | None = None  # unsent bytes in the server's transport, if known
    max_events: int = OUTBOX_MAX_EVENTS
    on_stalled: Callable[[], Any] | None = None
    items: deque[_Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resyncs: int = 0
    sent: int = 0
    closed: bool = False
    # topic -> set of instrument-level subscriptions, kept by the fan-out
    market: dict[str, set[str]] = field(default_factory=dict)  # instrument -> channels
    orders: dict[str, set[str]] = field(default_factory=dict)  # instrument -> client ids
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._writer(), name="marketdata-outbox")

    def stop(self) -> None:
        self.closed = True
        self.items.clear()
        if self.task is not None:
            self.task.cancel()

    def reply(self, message: dict[str, Any]) -> None:
        self._put(_Item(orjson.dumps(message).decode(), market=False))

    def reply_text(self, text: str) -> None:
        self._put(_Item(text, market=False))

    def market_events(self, texts: list[str]) -> None:
        if self.closed:
            return
        for text in texts:
            self.items.append(_Item(text, market=True))
        if len(self.items) > self.max_events:
            self._overflow("slow_consumer")
        self.wake.set()

    def resync(self, reason: str) -> None:
        """Tell the client that market events were lost at this point in the stream."""
        if self.closed:
            return
        self.resyncs += 1
        self._put(_Item(orjson.dumps(self._resync_message(reason)).decode(), market=False))

    def _resync_message(self, reason: str) -> dict[str, Any]:
        return {"event": "resync_required", "reason": reason,
                "instruments": sorted(set(self.market) | set(self.orders))}

    def _put(self, item: _Item) -> None:
        if self.closed:
            return
        self.items.append(item)
        if len(self.items) > self.max_events:
            self._overflow("slow_consumer")
        self.wake.set()

    def _overflow(self, reason: str) -> None:
        # Drop the queued market events, keep the replies in order, and mark the gap once.
        kept = deque(i for i in self.items if not i.market)
        self.items = kept
        self.resyncs += 1
        marker = orjson.dumps(self._resync_message(reason)).decode()
        if not (kept and kept[-1].text == marker):
            kept.append(_Item(marker, market=False))
        if len(kept) > self.max_events:
            # Replies alone exceed the bound: the client is not reading at all.
            log.warning("closing a WebSocket whose replies alone exceed %d queued frames", self.max_events)
            self.items.clear()
            if self.on_stalled is not None:
                self.on_stalled()
            self.closed = True

    async def _writer(self) -> None:
        stalled_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.items:
                if self.backlog is not None and self.backlog() > TRANSPORT_HIGH_WATER_BYTES:
                    # The client is not reading: let the socket drain, keep queuing (bounded).
                    now = loop.time()
                    stalled_since = stalled_since or now
                    if now - stalled_since > STALLED_CLOSE_AFTER_S and self.on_stalled is not None:
                        log.warning("closing a WebSocket that has not read for %.0fs", now - stalled_since)
                        self.closed = True
                        self.items.clear()
                        self.on_stalled()
                        return
                    await asyncio.sleep(0.01)
                    continue
                stalled_since = None
                if self.batch:
                    texts = []
                    while self.items and len(texts) < FRAME_MAX_EVENTS:
                        texts.append(self.items.popleft().text)
                    self.sent += len(texts)
                    await self.send("[" + ",".join(texts) + "]")
                else:
                    item = self.items.popleft()
                    self.sent += 1
                    await self.send(item.text)


class Fanout:
    """This process's map from topics to outboxes; registered once with the LISTEN hub."""

    def __init__(self) -> None:
        self.by_instrument: dict[str, set[Outbox]] = {}
        self.messages = 0
        self.events = 0

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, box: Outbox, instrument: str, channels: list[str], client_id: str | None) -> None:
        for channel in channels:
            if channel == "orders":
                assert client_id is not None
                box.orders.setdefault(instrument, set()).add(client_id)
            else:
                box.market.setdefault(instrument, set()).add(channel)
        self.by_instrument.setdefault(instrument, set()).add(box)

    def unsubscribe(self, box: Outbox, instrument: str, channels: list[str], client_id: str | None) -> None:
        for channel in channels:
            if channel == "orders":
                ids = box.orders.get(instrument, set())
                if client_id is None:
                    ids.clear()
                else:
                    ids.discard(client_id)
                if not ids:
                    box.orders.pop(instrument, None)
            else:
                chans = box.market.get(instrument, set())
                chans.discard(channel)
                if not chans:
                    box.market.pop(instrument, None)
        if instrument not in box.market and instrument not in box.orders:
            boxes = self.by_instrument.get(instrument)
            if boxes is not None:
                boxes.discard(box)
                if not boxes:
                    del self.by_instrument[instrument]

    def drop(self, box: Outbox) -> None:
        for instrument in list(set(box.market) | set(box.orders)):
            boxes = self.by_instrument.get(instrument)
            if boxes is not None:
                boxes.discard(box)
                if not boxes:
                    del self.by_instrument[instrument]
        box.market.clear()
        box.orders.clear()

    # -- hub callbacks --------------------------------------------------------------------
    def on_market(self, message: dict[str, Any]) -> None:
        """One committed pgb_market payload: {"instrument": X, "events": [...]}, in commit order."""
        self.messages += 1
        boxes = self.by_instrument.get(message["instrument"])
        if not boxes:
            return
        instrument = message["instrument"]
        events = message["events"]
        self.events += len(events)
        texts: list[str | None] = [None] * len(events)
        # Connections with the same interests get the same list: build each list once.
        lists: dict[tuple[frozenset[str], frozenset[str]], list[str]] = {}
        for box in list(boxes):
            key = (frozenset(box.market.get(instrument, ())), frozenset(box.orders.get(instrument, ())))
            chosen = lists.get(key)
            if chosen is None:
                chosen = []
                chans, clients = key
                for n, ev in enumerate(events):
                    channel = EVENT_CHANNEL.get(ev.get("event", ""))
                    if channel is None:
                        continue
                    if channel == "orders" and ev.get("client_id") not in clients:
                        continue
                    if channel != "orders" and channel not in chans:
                        continue
                    text = texts[n]
                    if text is None:
                        text = texts[n] = orjson.dumps(ev).decode()
                    chosen.append(text)
                lists[key] = chosen
            if chosen:
                box.market_events(chosen)

    def on_resync(self) -> None:
        """The LISTEN connection was lost and is back: events in between are gone for everyone."""
        unique = {box for boxes in self.by_instrument.values() for box in boxes}
        for box in unique:
            box.resync("feed_reconnected")


fanout = Fanout()
_registered = False


async def ensure_listening() -> None:
    """Start this process's LISTEN hub and register the fan-out with it (once)."""
    global _registered
    from orders.listener import hub

    if not _registered:
        hub.add_market_subscriber(fanout.on_market)
        hub.add_resync_subscriber(fanout.on_resync)
        _registered = True
    await hub.ensure_started()
