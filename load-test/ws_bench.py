"""WebSocket benchmark: market-data delivery latency under load, and order-entry throughput.

Needs a running exchange (`python manage.py runexchange`) and an instrument (default BTC-USD).

  fanout:  N subscribers (default 500, batch frames) on --channels of one instrument, spread
           over --procs client processes, while a feeder places --rate orders/s over one
           WebSocket. Two latencies per frame, each from its OLDEST event (a frame lists events
           in commit order), so an upper bound for every event of the frame:
           - worker-match -> client: receipt time - the `time` of the first timed event (new_trade
             or ticker; a book_delta has none), which the matching worker stamps when it matches
             the batch, before the commit: it over-states commit -> client by the commit itself;
           - commit -> client: receipt time - PostgreSQL's commit timestamp of that same batch's
             transaction (pg_xact_commit_timestamp of the xmin of the OrderEvent rows the batch
             wrote, stamped with the same `time`; read after the run). Needs
             track_commit_timestamp = on, which the embedded server has.
           Same host, same clock. Frames are scanned, not parsed, so the clients keep up with
           what the server sends. The database: DATABASE_URL, else the embedded server's.
  entry:   one client pipelines `orders` messages (--batch orders each, --window in flight)
           for --duration seconds; throughput = acknowledged orders / elapsed, and the latency
           from sending a message to receiving its acks. In-flight orders (batch x window) over
           the throughput is the queueing delay: past the 2 s ack bound orders answer 202.

  python load-test/ws_bench.py fanout --subscribers 500 --rate 1000 --duration 20
  python load-test/ws_bench.py entry --batch 500 --window 8 --duration 15

API keys: every socket sends one in its handshake: --api-key (or PGBOURSE_API_KEY), else an
admin key it makes itself (`manage.py create_api_key --client bench-ws --role admin --rotate`,
against the same database: DATABASE_URL, else the embedded server's) with budgets of
1,000,000/s, so the limiter is consulted on every message and never refuses one. An admin key
acts for the 8 client ids the entry mode spreads its orders over (as before keys existed).
With PGBOURSE_AUTH=off in its environment it sends none (for runs against a server started so).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop
import websockets
from machine import CpuTimes, usage  # load-test/machine.py
from series import histogram, per_second  # load-test/series.py
from series import percentile as percentile_or_none

ROOT = Path(__file__).resolve().parent.parent
BENCH_BUDGET = "1000000/s"


def api_key(given: str) -> str:
    """The key the sockets send: the one given, none with PGBOURSE_AUTH=off, else a new admin key."""
    if given or os.environ.get("PGBOURSE_AUTH") == "off":
        return given
    import json
    import subprocess

    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "create_api_key", "--client", "bench-ws",
                           "--role", "admin", "--rotate", "--json", "--name", "ws_bench", "--orders-rate", BENCH_BUDGET,
                           "--commands-rate", BENCH_BUDGET, "--reads-rate", BENCH_BUDGET],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    print(f"made an admin key for client bench-ws (budgets {BENCH_BUDGET}; --api-key to bring your own)", flush=True)
    return str(json.loads(done.stdout.strip().splitlines()[-1])["bench-ws"])


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def order(instrument: str, rng: random.Random, client: str) -> dict[str, Any]:
    """Limit orders around 30,000 that keep a two-sided book, with some crossing ones."""
    side = rng.choice(("buy", "sell"))
    offset = rng.randint(-20, 40)  # negative: crosses the spread and trades
    ticks = 3_000_000 - offset if side == "buy" else 3_000_000 + offset
    return {"idempotency_key": uuid.uuid4().hex, "client_id": client, "instrument": instrument, "side": side,
            "type": "limit", "price": str(Decimal(ticks) / 100), "quantity": str(Decimal(rng.randint(1, 20)) / 1000)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


TIME_FIELD = b'"time":"'


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- fanout ----------------------------------------------------------------------------------
class _Reading:
    """What the subscribers of one process saw: frames, events, resync markers, closes, and a
    latency per frame. No full parse: 500 sockets of JSON would make these client processes,
    not the server, the bottleneck. A frame lists events in commit order, so its first "time"
    is its oldest event: that event's latency bounds every other event's in the frame."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.latencies: list[float] = []
        self.timed: list[tuple[str, float]] = []  # (a frame's first `time`, receipt time)
        self.counts = {"events": 0, "frames": 0, "resync_required": 0, "closed": 0}
        self.start_measure = time.time() + warmup
        self.stop_at = time.time() + warmup + duration

    def frame(self, raw: bytes, now: float) -> None:
        counts = self.counts
        counts["frames"] += 1
        if b'"resync_required"' in raw:
            counts["resync_required"] += raw.count(b'"resync_required"')
        if self.start_measure <= now < self.stop_at:
            counts["events"] += raw.count(b'{"event":') - raw.count(b'{"event":"book_snapshot"')
            at = raw.find(TIME_FIELD)
            if at >= 0:  # new_trade, ticker (a book_delta has no time of its own)
                start = at + len(TIME_FIELD)
                text = raw[start:raw.index(b'"', start)].decode()
                self.latencies.append(now - parse_time(text))
                self.timed.append((text, now))

    def result(self) -> dict[str, Any]:
        return {"latencies": self.latencies, "timed": self.timed, **self.counts}


async def _subscribers(url: str, instrument: str, channels: list[str], count: int, duration: float,
                       warmup: float, key: str) -> dict[str, Any]:
    reading = _Reading(warmup, duration)

    async def one() -> None:
        try:
            async with websockets.connect(url + "?batch=1", max_size=2**24, open_timeout=30,
                                          ping_interval=None, additional_headers=auth_headers(key)) as ws:
                await ws.send(orjson.dumps({"op": "subscribe", "instrument": instrument, "channels": channels}))
                while True:
                    left = reading.stop_at - time.time()
                    if left <= 0:
                        return
                    try:
                        raw = await asyncio.wait_for(ws.recv(decode=False), left)
                    except TimeoutError:
                        return
                    reading.frame(raw, time.time())
        except websockets.ConnectionClosed:
            reading.counts["closed"] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return reading.result()


class _LeanSubscriber(asyncio.Protocol):
    """A minimal RFC 6455 client for the subscribers: the opening handshake, one masked text
    frame out (the subscribe), and incoming frames cut out of the byte stream in place. The
    `websockets` library costs ~3x more CPU per received frame; with 500 sockets on the two
    cores the server runs on, the clients then take more CPU than the server and the latency
    measured is theirs. Frames are handed over as bytes, unparsed (see _subscribers)."""

    def __init__(self, host: str, path: str, on_frame: Callable[[bytes, float], None],
                 done: asyncio.Future[None], key: str = "") -> None:
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n{auth}"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.on_frame = on_frame
        self.done = done
        self.opened: asyncio.Future[None] = done.get_loop().create_future()
        self.buf = bytearray()
        self.fragments: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def send_text(self, payload: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        size = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | size]) if size < 126 else
                                          bytes([0x80 | 126]) + size.to_bytes(2, "big"))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf
        buf += data
        if not self.opened.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.opened.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            pos += head + length
            opcode = b0 & 0x0F
            if opcode in (0x0, 0x1, 0x2):
                self.fragments.append(payload)
                if b0 & 0x80:
                    frame, self.fragments = b"".join(self.fragments), []
                    self.on_frame(frame, now)
            elif opcode == 0x9:
                self.send_text(payload, opcode=0xA)  # pong
            elif opcode == 0x8:
                if not self.done.done():
                    self.done.set_exception(ConnectionError("closed by the server"))
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection lost"))
        if not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))


async def _subscribers_lean(url: str, instrument: str, channels: list[str], count: int, duration: float,
                            warmup: float, key: str) -> dict[str, Any]:
    reading = _Reading(warmup, duration)
    parts = urlsplit(url)
    path = (parts.path or "/") + "?batch=1"

    async def one() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        transport, proto = await loop.create_connection(
            lambda: _LeanSubscriber(parts.netloc, path, reading.frame, done, key), parts.hostname, parts.port)
        try:
            await asyncio.wait_for(proto.opened, 30)
            proto.send_text(orjson.dumps({"op": "subscribe", "instrument": instrument, "channels": channels}))
            await asyncio.wait_for(done, max(0.0, reading.stop_at - time.time()))
        except TimeoutError:
            pass
        except ConnectionError:
            reading.counts["closed"] += 1
        finally:
            transport.close()

    await asyncio.gather(*(one() for _ in range(count)))
    return reading.result()


def _subscriber_proc(args: tuple[Any, ...], out: Any) -> None:
    # uvloop (a pinned dependency, the server's loop too): the subscriber processes took half
    # of a core each on asyncio's own loop, a third of one on uvloop, at 500 subscribers and
    # 1,000 orders/s; the two cores they share with the server are the bench's scarce resource.
    lean, *rest = args
    out.put(uvloop.run((_subscribers_lean if lean else _subscribers)(*rest)))


async def _feeder(url: str, instrument: str, rate: float, seconds: float, key: str) -> dict[str, Any]:
    """Places `rate` orders/s in 10 ms slices over one pipelining socket."""
    rng = random.Random(1)
    sent = acked = 0
    async with websockets.connect(url, max_size=2**24, additional_headers=auth_headers(key)) as ws:
        async def read() -> None:
            nonlocal acked
            async for raw in ws:
                ev = orjson.loads(raw)
                if ev.get("event") == "orders_ack":
                    acked += len(ev["acks"])
        reader = asyncio.create_task(read())
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) - sent
            if due > 0:
                await ws.send(orjson.dumps({"op": "orders",
                                            "orders": [order(instrument, rng, "bench-feed") for _ in range(due)]}))
                sent += due
            await asyncio.sleep(0.01)
        await asyncio.sleep(2)
        reader.cancel()
    return {"sent": sent, "acked": acked, "rate": sent / seconds}


def commit_latencies(instrument: str, received: list[tuple[str, float]]) -> list[float] | str:
    """Receipt time - commit time of the batch each frame's first `time` names, or why not."""
    import psycopg

    url = os.environ.get("DATABASE_URL")
    if url:
        conninfo: dict[str, Any] = {"conninfo": url}
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from exchange_project import pgembed

        conninfo = dict(pgembed.connection_params())
    batches = {text: dt.datetime.fromisoformat(text.replace("Z", "+00:00")) for text, _ in received}
    with psycopg.connect(**conninfo) as conn:
        if conn.execute("SHOW track_commit_timestamp").fetchone()[0] != "on":  # type: ignore[index]
            return "track_commit_timestamp is off on this server"
        rows = conn.execute(
            "SELECT DISTINCT ON (e.created_at) e.created_at, extract(epoch FROM pg_xact_commit_timestamp(e.xmin))"
            " FROM orders_orderevent e JOIN orders_instrument i ON i.id = e.instrument_id"
            " WHERE i.symbol = %s AND e.created_at = ANY(%s)", (instrument, list(set(batches.values())))).fetchall()
    committed_at = {at: float(epoch) for at, epoch in rows if epoch is not None}
    out = [now - committed_at[batches[text]] for text, now in received if batches[text] in committed_at]
    return out or "no commit timestamps (the batches committed before track_commit_timestamp was on)"


def fanout(args: argparse.Namespace) -> None:
    channels = args.channels.split(",")
    per = [args.subscribers // args.procs + (1 if i < args.subscribers % args.procs else 0) for i in range(args.procs)]
    warmup = 3.0 + args.subscribers / 200  # connect everyone first
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    procs = [ctx.Process(target=_subscriber_proc,
                         args=((args.client == "lean", args.url, args.instrument, channels, n, args.duration,
                                warmup, args.key), queue))
             for n in per]
    for p in procs:
        p.start()
    time.sleep(warmup - 1)
    cpu0 = CpuTimes.now()
    feed = asyncio.run(_feeder(args.url, args.instrument, args.rate, args.duration + 1, args.key))
    busy, steal = usage(cpu0, CpuTimes.now())
    results = [queue.get(timeout=args.duration + warmup + 60) for _ in procs]
    for p in procs:
        p.join(10)
    lat = [x for r in results for x in r["latencies"]]
    total = {k: sum(r[k] for r in results) for k in ("events", "frames", "resync_required", "closed")}
    print(f"fanout: {args.subscribers} subscribers ({args.client} client) on {channels} of {args.instrument} over "
          f"{args.procs} client processes; feeder {feed['rate']:.0f} orders/s offered, {feed['acked']} acked")
    figures: dict[str, Any] = {
        "mode": "fanout", "subscribers": args.subscribers, "rate": args.rate, "duration_s": args.duration,
        "channels": channels, "offered_per_s": feed["rate"], "acked": feed["acked"], **total,
        "machine_busy_pct": busy, "steal_pct": steal}
    if not lat:
        print("  no events received")
        _write_json(args.json, figures)
        return
    print(f"  delivered {total['events']} events in {total['frames']} frames "
          f"({total['events'] / args.duration:.0f} events/s to all clients), resync_required={total['resync_required']}, "
          f"closed={total['closed']}")
    committed = commit_latencies(args.instrument, [t for r in results for t in r["timed"]])
    figures["events_per_s"] = total["events"] / args.duration
    figures["match_to_client_ms"] = {"p50": statistics.median(lat) * 1000, "p99": percentile(lat, 99) * 1000,
                                     "max": max(lat) * 1000}
    if isinstance(committed, str):
        print(f"  latency commit -> client: not measured ({committed})")
    else:
        figures["commit_to_client_ms"] = {"p50": statistics.median(committed) * 1000,
                                          "p99": percentile(committed, 99) * 1000, "max": max(committed) * 1000}
        print(f"  latency commit -> client: p50 {statistics.median(committed) * 1000:.1f} ms, "
              f"p99 {percentile(committed, 99) * 1000:.1f} ms, max {max(committed) * 1000:.1f} ms "
              f"({len(committed)} of {len(lat)} frames' batches found)")
    print(f"  latency worker-match -> client: p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {percentile(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms")
    print(f"  machine busy {busy:.0f}%, taken by the host (steal) {steal:.0f}% while the feeder ran")
    _write_json(args.json, figures)


def _write_json(path: str | None, figures: dict[str, Any]) -> None:
    if path:
        Path(path).write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")


# -- order entry -----------------------------------------------------------------------------
async def entry(args: argparse.Namespace) -> None:
    rng = random.Random(2)
    statuses: dict[str, int] = {}
    acked = 0
    sent_at: dict[str, float] = {}  # first idempotency key of a message -> when it was sent
    latencies: list[float] = []
    answered: list[tuple[float, float, int]] = []  # (since start, message latency, acks) for --json
    async with websockets.connect(args.url, max_size=2**26, additional_headers=auth_headers(args.key)) as ws:
        window = asyncio.Semaphore(args.window)

        async def read() -> None:
            nonlocal acked
            async for raw in ws:
                ev = orjson.loads(raw)
                if ev.get("event") == "orders_ack":
                    first = ev["acks"][0].get("idempotency_key") if ev["acks"] else None
                    if first in sent_at:
                        now = time.monotonic()
                        latencies.append(now - sent_at.pop(first))
                        answered.append((now - start, latencies[-1], len(ev["acks"])))
                    for ack in ev["acks"]:
                        key = str(ack.get("status")) if ack["event"] == "order_ack" else ack.get("code", "error")
                        statuses[key] = statuses.get(key, 0) + 1
                    acked += len(ev["acks"])
                    window.release()

        reader = asyncio.create_task(read())
        cpu0 = CpuTimes.now()
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < args.duration:
            await window.acquire()
            batch = [order(args.instrument, rng, f"bench-{n % 8}") for n in range(args.batch)]
            sent_at[batch[0]["idempotency_key"]] = time.monotonic()
            await ws.send(orjson.dumps({"op": "orders", "orders": batch}))
            sent += len(batch)
        while acked < sent and time.monotonic() - start < args.duration + 30:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - start
        busy, steal = usage(cpu0, CpuTimes.now())
        reader.cancel()
    print(f"entry: one client, {args.batch} orders per message, {args.window} messages in flight: "
          f"{acked} orders acknowledged in {elapsed:.2f}s = {acked / elapsed:.0f} orders/s; statuses {statuses}; "
          f"API key {'sent' if args.key else 'none'}")
    if latencies:
        print(f"  message sent -> its acks received: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
              f"over {len(latencies)} messages")
    print(f"  machine busy {busy:.0f}%, taken by the host (steal) {steal:.0f}%")
    if args.json:
        ordered = sorted(latencies)

        def ms(p: float) -> float | None:
            v = percentile_or_none(ordered, p)
            return None if v is None else v * 1000

        Path(args.json).write_bytes(orjson.dumps({
            "mode": "entry", "batch": args.batch, "window": args.window, "duration_s": args.duration,
            "sent": sent, "acked": acked, "elapsed_s": elapsed, "orders_per_s": acked / elapsed,
            "statuses": statuses, "messages": len(latencies), "api_key": bool(args.key),
            "latency_of": f"message of {args.batch} orders, sent -> its acks received",
            "p50_ms": ms(50), "p95_ms": ms(95), "p99_ms": ms(99), "max_ms": ms(100),
            "machine_busy_pct": busy, "steal_pct": steal,
            # Per second by the time the acks came, and the distribution (load-test/report.py).
            "timeseries": per_second(answered), "latency_histogram": histogram(latencies),
        }, option=orjson.OPT_INDENT_2) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/stream")
    parser.add_argument("--instrument", default="BTC-USD")
    parser.add_argument("--api-key", default=os.environ.get("PGBOURSE_API_KEY", ""),
                        help="the key every socket sends (default: a new admin key, see above)")
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("fanout")
    f.add_argument("--subscribers", type=int, default=500)
    f.add_argument("--procs", type=int, default=2)
    f.add_argument("--rate", type=float, default=1000)
    f.add_argument("--duration", type=float, default=20)
    f.add_argument("--channels", default="trades,ticker,book")
    f.add_argument("--client", choices=("lean", "websockets"), default="lean",
                   help="subscriber implementation: a minimal RFC 6455 reader (default) or the websockets library")
    f.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    e = sub.add_parser("entry")
    e.add_argument("--batch", type=int, default=500)
    e.add_argument("--window", type=int, default=8)
    e.add_argument("--duration", type=float, default=15)
    e.add_argument("--json", metavar="PATH", help="also write the figures, per-second samples and the latency "
                   "distribution as JSON to PATH")
    args = parser.parse_args()
    args.key = api_key(args.api_key)
    if args.mode == "fanout":
        fanout(args)
    else:
        asyncio.run(entry(args))


if __name__ == "__main__":
    sys.exit(main())
