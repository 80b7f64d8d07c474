"""Reference client for WS /stream: keeps a local order book in sync and proves it.

The sync procedure (docs/websocket.md):
  1. connect and subscribe to ["book", "trades"] for one instrument; `seq` is shared by
     trades and book deltas, so the two together are gap-free;
  2. buffer every new_trade/book_delta until the `book_snapshot` arrives; it carries the
     seq N of the committed book it shows;
  3. drop buffered and later events with seq <= N, apply the rest in order; each must be
     exactly the previous seq + 1;
  4. after each book_delta compare the checksum of the local top 10 levels with the one sent;
  5. on a gap, a checksum mismatch or `resync_required`, subscribe to "book" again (the server
     sends a new book_snapshot) and go back to step 2.

Usable as a library (BookClient) and from the command line:
  python -m marketdata.client --url ws://127.0.0.1:8000/stream --instrument BTC-USD
It imports nothing from Django: only websockets, orjson and marketdata.checksum.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import websockets

from marketdata.checksum import DEPTH, book_checksum

log = logging.getLogger("marketdata.client")

SEQUENCED = ("new_trade", "book_delta")


class BookSide:
    """Price levels of one side: Decimal price -> (price text, quantity text), best first."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: dict[Decimal, tuple[str, str]] = {}
        self._keys: list[Decimal] = []  # sort keys: -price for bids

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()

    def set(self, price: str, quantity: str) -> None:
        p = Decimal(price)
        key = -p if self.descending else p
        if Decimal(quantity) == 0:
            if p in self.levels:
                del self.levels[p]
                self._keys.pop(bisect.bisect_left(self._keys, key))
            return
        if p not in self.levels:
            bisect.insort(self._keys, key)
        self.levels[p] = (price, quantity)

    def top(self, n: int | None = None) -> list[tuple[str, str]]:
        keys = self._keys if n is None else self._keys[:n]
        return [self.levels[-k if self.descending else k] for k in keys]

    def as_decimals(self) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(q)) for p, q in self.top()]


class SyncError(Exception):
    """Raised by BookClient.run when strict=True and the stream needed a resync."""


class BookClient:
    """Connects, subscribes, keeps `bids`/`asks` equal to the exchange's committed book.

    seq: the seq the local book reflects (None until the first snapshot is applied).
    resyncs: how many times it had to resync, by reason. events: every event seen, if record=True.
    on_event: called with each event (after it is applied), e.g. to print trades.
    """

    def __init__(self, url: str, instrument: str, channels: tuple[str, ...] = ("book", "trades"),
                 client_id: str | None = None, record: bool = False, strict: bool = False,
                 on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None) -> None:
        self.url = url + ("&" if "?" in url else "?") + "batch=1"
        self.instrument = instrument
        self.channels = tuple(dict.fromkeys(("book", "trades", *channels)))
        self.client_id = client_id
        self.record = record
        self.strict = strict
        self.on_event = on_event
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.seq: int | None = None
        self.synced = asyncio.Event()
        self.resyncs: dict[str, int] = {}
        self.checksums_verified = 0
        self.events: list[dict[str, Any]] = []
        self.last_trade: dict[str, Any] | None = None
        self._buffer: list[dict[str, Any]] | None = []  # None once a snapshot is applied
        self._snapshots_due = 1
        self._ws: Any = None
        self._seq_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- the procedure --------------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> str | None:
        """Apply one event; returns a resync reason if the book can no longer be trusted."""
        kind = event.get("event")
        if self.record:
            self.events.append(event)
        if kind == "resync_required":
            return f"server:{event.get('reason')}"
        if event.get("instrument") != self.instrument:
            return None
        if kind == "book_snapshot":
            return self._apply_snapshot(event)
        if kind in SEQUENCED:
            if self._buffer is not None:
                self._buffer.append(event)
                return None
            return self._apply(event)
        return None

    def _apply_snapshot(self, snap: dict[str, Any]) -> str | None:
        # Only the answer to the latest request counts: an earlier one may predate lost events.
        self._snapshots_due -= 1
        if self._snapshots_due > 0 or self._buffer is None:
            self._snapshots_due = max(self._snapshots_due, 0)
            return None
        self.bids.clear()
        self.asks.clear()
        for price, qty in snap["bids"]:
            self.bids.set(price, qty)
        for price, qty in snap["asks"]:
            self.asks.set(price, qty)
        self.seq = int(snap["seq"])
        buffered, self._buffer = self._buffer or [], None
        for ev in buffered:
            reason = self._apply(ev)
            if reason:
                return reason
        self.synced.set()
        self._wake_seq_waiters()
        return None

    def _apply(self, ev: dict[str, Any]) -> str | None:
        assert self.seq is not None
        seq = int(ev["seq"])
        if seq <= self.seq:
            return None  # already in the snapshot
        if seq != self.seq + 1:
            return f"gap:{self.seq}->{seq}"
        self.seq = seq
        if ev["event"] == "book_delta":
            (self.bids if ev["side"] == "bid" else self.asks).set(ev["price"], ev["new_quantity"])
            if "checksum" in ev:
                if self.checksum() != ev["checksum"]:
                    return f"checksum:{seq}"
                self.checksums_verified += 1
        else:
            self.last_trade = ev
        self._wake_seq_waiters()
        return None

    def checksum(self) -> int:
        return book_checksum(self.asks.top(DEPTH), self.bids.top(DEPTH))

    # -- I/O ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, subscribe and follow the stream until `stop` is set or the socket closes."""
        async with websockets.connect(self.url, max_size=2**24, open_timeout=10) as ws:
            self._ws = ws
            await ws.send(orjson.dumps(self._subscribe_message(self.channels)))
            stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
            try:
                while True:
                    recv = asyncio.ensure_future(ws.recv())
                    waiting = {recv} | ({stopper} if stopper else set())
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if recv not in done:
                        recv.cancel()
                        return
                    frame = orjson.loads(recv.result())
                    for event in frame if isinstance(frame, list) else [frame]:
                        reason = self.handle(event)
                        if reason:
                            await self._resync(reason)
                        if self.on_event is not None:
                            result = self.on_event(event)
                            if asyncio.iscoroutine(result):
                                await result
            except websockets.ConnectionClosed:
                return
            finally:
                if stopper is not None:
                    stopper.cancel()
                self._ws = None

    def _subscribe_message(self, channels: tuple[str, ...]) -> dict[str, Any]:
        message: dict[str, Any] = {"op": "subscribe", "instrument": self.instrument, "channels": list(channels)}
        if "orders" in channels:
            message["client_id"] = self.client_id
        return message

    async def _resync(self, reason: str) -> None:
        kind = reason.split(":", 1)[0]
        self.resyncs[kind] = self.resyncs.get(kind, 0) + 1
        log.warning("%s: resyncing (%s)", self.instrument, reason)
        if self.strict:
            raise SyncError(reason)
        self.synced.clear()
        self._buffer = []
        self._snapshots_due += 1
        await self._ws.send(orjson.dumps(self._subscribe_message(("book",))))

    async def wait_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until the local book reflects at least `seq`."""
        if self.seq is not None and self._buffer is None and self.seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq_waiters.append((seq, fut))
        await asyncio.wait_for(fut, timeout)

    def _wake_seq_waiters(self) -> None:
        if self.seq is None:
            return
        keep = []
        for seq, fut in self._seq_waiters:
            if self.seq >= seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._seq_waiters = keep

    def book(self) -> dict[str, list[tuple[Decimal, Decimal]]]:
        return {"bids": self.bids.as_decimals(), "asks": self.asks.as_decimals()}


# -- command line -------------------------------------------------------------------------
def _print_top(client: BookClient, depth: int) -> None:
    asks = list(reversed(client.asks.top(depth)))
    bids = client.bids.top(depth)
    lines = [f"{client.instrument} seq={client.seq} checksum={client.checksum()}"]
    lines += [f"  ask {p:>14} {q:>14}" for p, q in asks]
    lines += ["  " + "-" * 32]
    lines += [f"  bid {p:>14} {q:>14}" for p, q in bids]
    print("\n".join(lines), flush=True)


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    client: BookClient

    def show(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "new_trade" and client.synced.is_set():
            print(f"trade #{event['trade_id']} {event['aggressor_side']} {event['quantity']} @ {event['price']} "
                  f"seq={event['seq']}", flush=True)
        elif kind == "book_delta" and not args.trades_only and client.synced.is_set() or kind == "book_snapshot":
            _print_top(client, args.depth)
        elif kind in ("ticker", "order_update", "error", "resync_required"):
            print(orjson.dumps(event).decode(), flush=True)

    client = BookClient(args.url, args.instrument, channels=tuple(args.channels), client_id=args.client_id,
                        on_event=show)
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    await client.run(stop)
    print(f"done: seq={client.seq} checksums verified={client.checksums_verified} resyncs={client.resyncs}",
          flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketdata.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/stream")
    parser.add_argument("--instrument", required=True)
    parser.add_argument("--channels", nargs="*", default=["book", "trades"],
                        help="extra channels: ticker, snapshot, orders (with --client-id)")
    parser.add_argument("--client-id")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--trades-only", action="store_true", help="print trades, not the book on every delta")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    if "orders" in args.channels and not args.client_id:
        parser.error("--channels orders needs --client-id")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
