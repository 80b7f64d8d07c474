"""Fan-out of committed market data to this process's WebSocket connections.

The web process's one LISTEN connection (orders.listener.hub) hands every market payload
(matching.contract.MarketPayload) to `Fanout.on_market`, synchronously on the event loop. For
each connection subscribed to that instrument the fan-out picks the events it asked for, in
their original order, and appends them to the connection's own bounded outbox; the
connection's writer task sends them.

Why not Channels groups: the in-memory channel layer drops a message silently when a member's
channel is full, and deep-copies every message for every member. Here each event is serialized
once, and each committed batch is queued as ONE item shared by all connections with the same
interests (its events already comma-joined for batch frames), so N sockets cost N appends per
batch, not one object per event per socket; and a connection whose outbox is full loses its
queued market events *visibly*: they are replaced by one `resync_required` marker, so the client knows to
resync and nobody else waits for it. Replies (acks, pongs, book snapshots) are never dropped; a
connection whose replies alone fill the outbox is closed with a reason.

How a slow socket is noticed depends on the server. Under granian (the default) the ASGI send()
waits once the server and the kernel hold about 3 MB for the socket, so the writer stops and the
outbox fills and overflows. Daphne's send() never waits (Twisted buffers without limit), so
there the writer reads the transport's unsent bytes instead (marketdata.consumers).

Topics: ("trades"|"book"|"ticker"|"snapshot"|"ticker_24h", instrument), ("candles:<interval>",
instrument) and ("orders", instrument, client_id).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from django.conf import settings

from matching.contract import MarketPayload
from orders import metrics

log = logging.getLogger(__name__)

MARKET_CHANNELS = ("trades", "book", "ticker", "snapshot")
# Candles are subscribed per interval: the topic is candle_topic(interval).
ANALYTICS_CHANNELS = ("candles", "ticker_24h")
CHANNELS = (*MARKET_CHANNELS, *ANALYTICS_CHANNELS, "orders")
EVENT_CHANNEL = {"new_trade": "trades", "book_delta": "book", "ticker": "ticker", "snapshot": "snapshot",
                 "order_update": "orders", "candle": "candles", "ticker_24h": "ticker_24h"}


def candle_topic(interval: str) -> str:
    return f"candles:{interval}"


# Outbox bound, counted in events (a market event is ~200-300 bytes on the wire).
OUTBOX_MAX_EVENTS = 2048
# Stop writing to a socket whose unsent bytes exceed this (the server buffers without limit).
TRANSPORT_HIGH_WATER_BYTES = 128 * 1024
# A connection that cannot take even its replies for this long is closed.
STALLED_CLOSE_AFTER_S = 30.0
# In batch mode, at most this many events per frame.
FRAME_MAX_EVENTS = 500
# Market events go out on a tick (settings.FEED_FLUSH_MS): the first events after a flush start
# a timer, and what arrived until it fires goes out as one frame per connection. Fewer, fuller
# frames: each frame costs the server a send and the client a read, whatever its size, and with
# hundreds of sockets those per-frame costs are most of the fan-out's CPU. The price, up to one
# tick more of latency, is paid only where the per-frame costs matter: from FLUSH_MIN_SOCKETS
# sockets on an instrument (docs/performance.md has both sides of it).
FLUSH_MIN_SOCKETS = 64


class Sender(Protocol):
    async def __call__(self, text: str) -> None: ...


@dataclass(slots=True)
class _Item:
    """Queued output: one reply, or one committed batch's market events for this connection.

    A batch item is shared by every connection with the same interests: ``texts`` are the
    events' JSON, ``joined`` the same texts comma-joined (built once, for batch frames)."""

    texts: list[str]
    joined: str
    market: bool  # market events may be dropped (with a resync marker); replies never
    frame: str = ""  # "[joined]": the batch frame of a connection that has nothing else queued


def _reply(text: str) -> _Item:
    return _Item([text], text, market=False)


def _market(texts: list[str]) -> _Item:
    joined = ",".join(texts)
    return _Item(texts, joined, market=True, frame="[" + joined + "]")


@dataclass(eq=False)
class Outbox:
    """One connection's ordered, bounded queue of outgoing frames and the task that sends them."""

    send: Sender
    batch: bool = False
    backlog: Callable[[], int] | None = None  # unsent bytes in the server's transport, if known
    max_events: int = OUTBOX_MAX_EVENTS
    on_stalled: Callable[[], Any] | None = None
    items: deque[_Item] = field(default_factory=deque)
    queued: int = 0  # events in items (a reply counts as one)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resyncs: int = 0
    sent: int = 0
    closed: bool = False
    # topic -> set of instrument-level subscriptions, kept by the fan-out
    market: dict[str, set[str]] = field(default_factory=dict)  # instrument -> channels
    orders: dict[str, set[str]] = field(default_factory=dict)  # instrument -> client ids
    # instrument -> (channels, client ids) as frozensets: the key of the batch it shares
    interests: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def refresh_interests(self) -> None:
        self.interests = {i: (frozenset(self.market.get(i, ())), frozenset(self.orders.get(i, ())))
                          for i in set(self.market) | set(self.orders)}

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._writer(), name="marketdata-outbox")

    def stop(self) -> None:
        self.closed = True
        self.items.clear()
        self.queued = 0
        if self.task is not None:
            self.task.cancel()

    def reply(self, message: dict[str, Any]) -> None:
        self._put(_reply(orjson.dumps(message).decode()))

    def reply_text(self, text: str) -> None:
        self._put(_reply(text))

    def market_events(self, item: _Item, wake: bool = True) -> None:
        """Queue one committed batch's events (an item shared with other connections); with
        wake=False the writer is woken later (Fanout's flush tick)."""
        self._put(item, wake)

    def resync(self, reason: str) -> None:
        """Tell the client that market events were lost at this point in the stream."""
        if self.closed:
            return
        self.resyncs += 1
        metrics.resynced(reason)
        self._put(_reply(orjson.dumps(self._resync_message(reason)).decode()))

    def _resync_message(self, reason: str) -> dict[str, Any]:
        return {"event": "resync_required", "reason": reason,
                "instruments": sorted(set(self.market) | set(self.orders))}

    def _put(self, item: _Item, wake: bool = True) -> None:
        if self.closed:
            return
        self.items.append(item)
        self.queued += len(item.texts)
        if self.queued > self.max_events:
            self._overflow("slow_consumer")
        if wake:
            self.wake.set()

    def _overflow(self, reason: str) -> None:
        # Drop the queued market events, keep the replies in order, and mark the gap once.
        kept = deque(i for i in self.items if not i.market)
        self.items = kept
        self.resyncs += 1
        metrics.resynced(reason)
        marker = orjson.dumps(self._resync_message(reason)).decode()
        if not (kept and kept[-1].joined == marker):
            kept.append(_reply(marker))
        self.queued = len(kept)
        if len(kept) > self.max_events:
            # Replies alone exceed the bound: the client is not reading at all.
            log.warning("closing a WebSocket whose replies alone exceed %d queued frames", self.max_events)
            self.items.clear()
            self.queued = 0
            metrics.slow_consumer_closed()
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
                        self.queued = 0
                        metrics.slow_consumer_closed()
                        self.on_stalled()
                        return
                    await asyncio.sleep(0.01)
                    continue
                stalled_since = None
                if self.batch and len(self.items) == 1 and self.items[0].frame:
                    # The common case: one committed batch, its frame built once for everyone.
                    item = self.items.popleft()
                    self.queued -= len(item.texts)
                    self.sent += len(item.texts)
                    await self.send(item.frame)
                elif self.batch:
                    # Whole queued items into one frame, up to about FRAME_MAX_EVENTS events.
                    parts = []
                    count = 0
                    while self.items and (not parts or count + len(self.items[0].texts) <= FRAME_MAX_EVENTS):
                        item = self.items.popleft()
                        parts.append(item.joined)
                        count += len(item.texts)
                    self.queued -= count
                    self.sent += count
                    await self.send("[" + ",".join(parts) + "]")
                else:
                    item = self.items.popleft()
                    self.queued -= len(item.texts)
                    for text in item.texts:  # one event per frame
                        self.sent += 1
                        await self.send(text)


class Fanout:
    """This process's map from topics to outboxes; registered once with the LISTEN hub."""

    def __init__(self, flush_interval: float) -> None:
        self.by_instrument: dict[str, set[Outbox]] = {}
        self.messages = 0
        self.events = 0
        self.flush_interval = flush_interval
        self._unflushed: set[Outbox] = set()
        self._flush_at: asyncio.TimerHandle | None = None

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, box: Outbox, instrument: str, channels: list[str], client_id: str | None) -> None:
        for channel in channels:
            if channel == "orders":
                assert client_id is not None
                box.orders.setdefault(instrument, set()).add(client_id)
            else:
                box.market.setdefault(instrument, set()).add(channel)
        box.refresh_interests()
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
        box.refresh_interests()
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
        box.interests = {}

    # -- hub callbacks --------------------------------------------------------------------
    def on_market(self, message: MarketPayload) -> None:
        """One committed market payload, in commit order."""
        self.messages += 1
        instrument = message.instrument
        boxes = self.by_instrument.get(instrument)
        if not boxes:
            return
        events = message.events
        self.events += len(events)
        texts: list[str | None] = [None] * len(events)
        tick = self.flush_interval > 0 and len(boxes) >= FLUSH_MIN_SOCKETS
        # Connections with the same interests share one batch: built, serialized and joined once.
        batches: dict[tuple[frozenset[str], frozenset[str]], _Item | None] = {}
        for box in list(boxes):
            key = box.interests.get(instrument)
            if key is None:
                continue
            if key in batches:
                batch = batches[key]
            else:
                chosen: list[str] = []
                chans, clients = key
                for n, ev in enumerate(events):
                    channel = EVENT_CHANNEL.get(ev.get("event", ""))
                    if channel is None:
                        continue
                    if channel == "candles":
                        channel = candle_topic(ev["interval"])
                    if channel == "orders" and ev.get("client_id") not in clients:
                        continue
                    if channel != "orders" and channel not in chans:
                        continue
                    text = texts[n]
                    if text is None:
                        text = texts[n] = orjson.dumps(ev).decode()
                    chosen.append(text)
                batch = batches[key] = _market(chosen) if chosen else None
            if batch is not None:
                if not tick:
                    box.market_events(batch)
                else:
                    box.market_events(batch, wake=False)
                    self._unflushed.add(box)
        if self._unflushed and self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self.flush_interval, self._flush)

    def _flush(self) -> None:
        """Wake every connection that got market events since the last tick: each sends what
        it has in one frame."""
        self._flush_at = None
        boxes, self._unflushed = self._unflushed, set()
        for box in boxes:
            box.wake.set()

    def on_resync(self) -> None:
        """The LISTEN connection was lost and is back: events in between are gone for everyone."""
        unique = {box for boxes in self.by_instrument.values() for box in boxes}
        for box in unique:
            box.resync("feed_reconnected")


fanout = Fanout(flush_interval=settings.FEED_FLUSH_MS / 1000)
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
