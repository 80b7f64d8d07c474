#!/usr/bin/env python3
"""Open-loop HTTP load generator for the order API (stdlib asyncio + orjson; uvloop if present).

    python load-test/http_load.py --url http://127.0.0.1:8000 --rate 2000 --duration 60 --warmup 5
    python load-test/http_load.py --endpoint test --rate 2000 --duration 60      # bare endpoint
    python load-test/http_load.py --mix limit=80,market=20 --rate 1500             # place-only

Open loop, no coordinated omission: request i is *scheduled* at start + i/rate whatever the
server does; it waits in a queue until one of ``--connections`` keep-alive connections is free,
and its latency runs from the scheduled time to the last byte of the response. A server that
falls behind therefore shows as growing latency (and a completed rate below the offered one),
never as a politely slower generator.

The client is a minimal HTTP/1.1 client on asyncio streams (Content-Length and chunked
responses, keep-alive, no pipelining): a few tens of microseconds of CPU per request, so it takes
little of the 2 cores it shares with the server and PostgreSQL. Its own CPU use is measured
(process time / wall time) and printed.

The mix (``--mix``, percentages; default the realistic mix below) is drawn from a seeded RNG, so
the sequence of operations, prices and sizes is the same on every run; only which resting order
a cancel/modify hits depends on the server's answers.
  limit   POST /orders, limit near the touch around a mid price that random-walks by one tick:
          mostly passive (GTC, 10% of them post-only) 1..40 ticks behind the touch, 15% crossing
          up to 5 ticks through it (a third of those IOC)
  market  POST /orders, market order of 1..20 lots (0.0001 BTC each)
  cancel  DELETE /orders/{id} of an order this run saw acknowledged as resting ("open" or
          "partially_filled"); a limit order instead while none is known
  modify  PATCH /orders/{id} {"price"}: moves such an order 1..5 ticks further from the touch
          (never crosses, so a post-only order stays valid); a limit order while none is known
Every order carries a fresh idempotency_key (run id + sequence number); client ids cycle over
``--clients`` names. API keys: ``--keys FILE`` ({client_id: key}, what ``manage.py create_api_key
--client lt-000 ... --json`` prints; run_http_bench.py makes it), each request with its client's
key (a cancel or modify with its order's); or ``--api-key KEY`` for every request (an admin key,
which acts for any client). The keys need budgets above the offered rate, or requests get 429. With ``--endpoint test`` every place goes to POST /orders/test (validated,
never stored) and cancel/modify are drawn as places: the bare-endpoint ceiling.

Counting. Latency percentiles and the completed rate cover requests *scheduled* after
``--warmup`` seconds. Errors are transport failures, timeouts and any non-2xx answer, except one
expected race, reported apart as "refused": a cancel/modify answered 409 because the order was
filled (or already cancelled) between its acknowledgment and the command. 202 (accepted, the
matching outcome not yet known after the server's ack timeout) counts as success and is shown
in the status counts. Exit status 1 if errors > 0 (``--allow-errors`` to disable).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from series import histogram, per_second  # load-test/series.py

DEFAULT_MIX = "limit=60,market=15,cancel=20,modify=5"
KINDS = ("limit", "market", "cancel", "modify")
TICK_DIGITS = 2  # BTC-USD: tick 0.01
LOT_DIGITS = 4  # lot 0.0001
RESTING = ("open", "partially_filled")
EXPECTED_REFUSALS = {b"order_not_open", b"unknown_order"}


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, pct = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r} in --mix; choose from {', '.join(KINDS)}")
        try:
            mix[name] = float(pct)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix needs kind=percent pairs, got {part!r}") from None
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("--mix percentages must add up to more than 0")
    return mix


def ticks_str(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}"


def lots_str(lots: int) -> str:
    return f"{lots // 10000}.{lots % 10000:04d}"


@dataclass(slots=True)
class Op:
    """One scheduled operation: what to send is fixed at schedule time except a cancel/modify's target."""

    seq: int
    at: float  # scheduled send time, loop clock
    kind: str
    body: dict[str, Any] | None = None
    modify_ticks: int = 0
    retried: bool = False


@dataclass(slots=True)
class Resting:
    order_id: str
    side: str
    price_ticks: int
    client_id: str = ""


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # each answer's loop time, beside its latency
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    completed_in_window: int = 0
    warmup_done: int = 0


class Mix:
    """Deterministic operation stream (seeded), steered only by the kind percentages."""

    def __init__(self, mix: dict[str, float], seed: int, instrument: str, clients: int, run_id: str,
                 mid_ticks: int, test_endpoint: bool) -> None:
        self.rng = random.Random(seed)
        self.kinds = list(mix)
        self.weights = [mix[k] for k in self.kinds]
        self.instrument = instrument
        self.clients = [f"lt-{n:03d}" for n in range(clients)]
        self.run_id = run_id
        self.mid = mid_ticks
        self.test_endpoint = test_endpoint

    def _limit(self, seq: int) -> dict[str, Any]:
        rng = self.rng
        side = "buy" if rng.random() < 0.5 else "sell"
        sign = 1 if side == "buy" else -1
        tif = "GTC"
        post_only = False
        if rng.random() < 0.15:  # crossing: through the touch by up to 5 ticks
            price = self.mid + sign * rng.randint(1, 5)
            if rng.random() < 1 / 3:
                tif = "IOC"
        else:
            price = self.mid - sign * rng.randint(1, 40)
            post_only = rng.random() < 0.10
        return {"idempotency_key": f"{self.run_id}-{seq}", "client_id": self.clients[seq % len(self.clients)],
                "instrument": self.instrument, "side": side, "type": "limit", "price": ticks_str(price),
                "quantity": lots_str(rng.randint(1, 100)), "time_in_force": tif, "post_only": post_only,
                "stp": "cancel_taker"}

    def _market(self, seq: int) -> dict[str, Any]:
        rng = self.rng
        return {"idempotency_key": f"{self.run_id}-{seq}", "client_id": self.clients[seq % len(self.clients)],
                "instrument": self.instrument, "side": "buy" if rng.random() < 0.5 else "sell",
                "type": "market", "quantity": lots_str(rng.randint(1, 20)), "time_in_force": "IOC",
                "post_only": False, "stp": "cancel_taker"}

    def next(self, seq: int, at: float) -> Op:
        rng = self.rng
        if rng.random() < 0.02:
            self.mid += 1 if rng.random() < 0.5 else -1
        kind = rng.choices(self.kinds, self.weights)[0]
        # Draw the fallback place order always, so the RNG stream does not depend on responses.
        fallback = self._limit(seq)
        if kind == "market":
            return Op(seq, at, kind, self._market(seq))
        if kind == "limit" or self.test_endpoint:
            return Op(seq, at, "limit", fallback)
        return Op(seq, at, kind, fallback, modify_ticks=rng.randint(1, 5))


class Book:
    """Orders this run saw acknowledged as resting: the targets of cancel/modify."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed + 1)
        self.items: list[Resting] = []

    def add(self, item: Resting) -> None:
        self.items.append(item)

    def take(self) -> Resting | None:
        if not self.items:
            return None
        n = self.rng.randrange(len(self.items))
        self.items[n], self.items[-1] = self.items[-1], self.items[n]
        return self.items.pop()


class HttpError(Exception):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (no pipelining).

    Callback-based (no task, no StreamReader per request): the response is parsed in
    data_received and handed to the run, which gives the connection its next request at once.
    """

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.op: Op | None = None
        self.sent: tuple[str, Resting | None] | None = None
        self.head_end = -1
        self.status = 0
        self.length = -1
        self.chunked = False
        self.close_after = False
        self.served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, op: Op, data: bytes, kind: str, target: Resting | None) -> None:
        assert self.transport is not None
        self.op = op
        self.sent = (kind, target)
        self.buf = b""
        self.head_end = -1
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        self.buf = buf
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            head = buf[:end].lower()
            try:
                self.status = int(head[9:12])
            except ValueError:
                self._fail("HttpError")
                return
            self.length = -1
            n = head.find(b"\r\ncontent-length:")
            if n >= 0:
                eol = head.find(b"\r\n", n + 17)
                self.length = int(head[n + 17:eol if eol > 0 else len(head)])
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            self.close_after = b"\r\nconnection: close" in head
        if self.chunked:
            if not buf.endswith(b"0\r\n\r\n"):
                return
            body = _dechunk(buf[self.head_end:])
        elif self.length >= 0:
            if len(buf) - self.head_end < self.length:
                return
            body = buf[self.head_end:self.head_end + self.length]
        else:
            return  # read-until-close bodies finish in connection_lost
        self._done(body)

    def _done(self, body: bytes) -> None:
        self.served += 1
        op, sent = self.op, self.sent
        self.op = self.sent = None
        self.buf = b""
        self.head_end = -1
        assert op is not None and sent is not None
        if self.close_after and self.transport is not None:
            self.transport.close()
            self.transport = None
            self.run.reconnect(self)
            self.run.on_response(op, sent, self.status, body, None)
        else:
            self.run.on_response(op, sent, self.status, body, self)

    def _fail(self, why: str) -> None:
        op, sent = self.op, self.sent
        self.op = self.sent = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if op is not None and sent is not None:
            self.run.on_failure(op, why)
        self.run.reconnect(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.op is not None and self.head_end >= 0 and self.length < 0 and not self.chunked:
            self._done(self.buf[self.head_end:])
            return
        if self.transport is None and self.op is None:
            return
        self.transport = None
        op = self.op
        if op is not None and not self.buf and self.served and not op.retried:
            # The server closed a kept-alive connection just as the request went out (its idle
            # timeout): nothing was answered, so send it again once, as HTTP clients do.
            self.op = self.sent = None
            op.retried = True
            self.run.retry(op)
            self.run.reconnect(self)
        elif op is not None:
            self._fail(type(exc).__name__ if exc else "connection_closed")
        else:
            self.run.reconnect(self)


def _dechunk(data: bytes) -> bytes:
    parts = []
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(parts)
        parts.append(data[eol + 2:eol + 2 + size])
        pos = eol + 4 + size


class LoadRun:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        if url.scheme != "http":
            raise SystemExit("--url must be http://host:port (TLS is not supported)")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        host_header = (url.netloc or self.host).encode()
        self.prefix = url.path.rstrip("/").encode()
        self.args = args
        place_path = self.prefix + (b"/orders/test" if args.endpoint == "test" else b"/orders")
        self.place_head = (b"POST %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                           b"Content-Type: application/json\r\n" % (place_path, host_header))
        self.host_header = host_header
        # The Authorization header line of each client (b"" without keys).
        self.auth_lines: dict[str, bytes] = {}
        if args.keys:
            with open(args.keys) as f:
                self.auth_lines = {client: b"Authorization: Bearer %s\r\n" % key.encode()
                                   for client, key in json.load(f).items()}
        self.auth_any = b"Authorization: Bearer %s\r\n" % args.api_key.encode() if args.api_key else b""
        run_id = args.run_id or f"lt{int(time.time() * 1000):x}"
        self.mix = Mix(args.mix, args.seed, args.instrument, args.clients, run_id,
                       round(args.mid * 100), args.endpoint == "test")
        self.book = Book(args.seed)
        self.stats = Stats()
        self.warmup_stats = Stats()
        self.idle: deque[Connection] = deque()
        self.backlog: deque[Op] = deque()
        self.busy: set[Connection] = set()
        self.reconnecting = 0
        self.window_start = 0.0
        self.window_end = 0.0
        self.max_queued = 0
        self.max_in_flight = 0
        self.all_done: asyncio.Event | None = None
        self.scheduled = 0
        self.finished = 0
        self.retries = 0

    async def run(self) -> dict[str, Any]:
        args = self.args
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.all_done = asyncio.Event()
        # Open every connection before the clock starts, so connecting is not measured as latency.
        try:
            conns = await asyncio.wait_for(asyncio.gather(*(
                loop.create_connection(lambda: Connection(self), self.host, self.port)
                for _ in range(args.connections))), args.timeout)
        except (OSError, TimeoutError) as exc:
            raise SystemExit(f"cannot connect to {args.url}: {exc}") from None
        self.idle = deque(proto for _, proto in conns)
        sweeper = loop.create_task(self._sweep_timeouts())
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        start = loop.time() + 0.05
        self.window_start = start + args.warmup
        self.window_end = self.window_start + args.duration
        total = int((args.warmup + args.duration) * args.rate)
        interval = 1.0 / args.rate
        seq = 0
        while seq < total:
            now = loop.time()
            while seq < total and start + seq * interval <= now:
                self.dispatch(self.mix.next(seq, start + seq * interval))
                seq += 1
            if len(self.backlog) > self.max_queued:
                self.max_queued = len(self.backlog)
            if seq < total:
                # At least 1 ms: the event loop's timers have millisecond resolution, and shorter
                # sleeps would spin. Requests due meanwhile go out together at the next wake-up,
                # their latency still counted from their own scheduled time.
                await asyncio.sleep(max(0.001, start + seq * interval - loop.time()))
        self.scheduled = seq
        if self.finished < seq:
            try:
                await asyncio.wait_for(self.all_done.wait(), args.timeout + 1.0)
            except TimeoutError:
                pass
        sweeper.cancel()
        unfinished = seq - self.finished
        for c in [*self.idle, *self.busy]:
            if c.transport is not None:
                c.transport.close()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        s = self.stats
        if unfinished:
            s.errors["unfinished"] += unfinished
        lat = sorted(s.latencies)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else None

        errors = sum(s.errors.values())
        return {
            "url": args.url, "endpoint": args.endpoint, "mix": args.mix, "connections": args.connections,
            "offered_rate": args.rate, "duration_s": args.duration, "warmup_s": args.warmup, "seed": args.seed,
            "requests": len(lat) + errors, "completed": len(lat),
            "completed_rate": s.completed_in_window / args.duration,
            "statuses": dict(sorted(s.statuses.items())), "kinds": dict(sorted(s.kinds.items())),
            "errors": errors, "error_kinds": dict(s.errors), "refused": s.refused,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": lat[-1] * 1000 if lat else None,
            "mean_ms": sum(lat) / len(lat) * 1000 if lat else None,
            "max_queued": self.max_queued, "max_in_flight": self.max_in_flight, "retries": self.retries,
            "warmup_errors": sum(self.warmup_stats.errors.values()),
            "generator_cpu_pct": 100 * cpu / wall, "generator_cpu_us_per_req": 1e6 * cpu / max(1, seq),
            "loop": type(loop).__module__.split(".")[0],
            # For plots (load-test/report.py): each second of the measured window by answer time,
            # and the distribution of the latencies above.
            "timeseries": per_second((at - self.window_start, latency, 1)
                                     for at, latency in zip(s.done_at, s.latencies, strict=True)),
            "latency_histogram": histogram(lat),
        }

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, op: Op) -> None:
        if self.idle:
            # Oldest idle connection first, so every connection stays in use and none sits idle
            # long enough for the server's keep-alive timeout to close it under us.
            self._send(self.idle.popleft(), op)
        else:
            self.backlog.append(op)

    def _send(self, conn: Connection, op: Op) -> None:
        data, kind, target = self._request(op)
        (self.stats if op.at >= self.window_start else self.warmup_stats).kinds[kind] += 1
        self.busy.add(conn)
        if len(self.busy) > self.max_in_flight:
            self.max_in_flight = len(self.busy)
        conn.send(op, data, kind, target)

    def _next(self, conn: Connection) -> None:
        self.busy.discard(conn)
        if self.backlog:
            self._send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def _finish_one(self) -> None:
        self.finished += 1
        if self.scheduled and self.finished >= self.scheduled and self.all_done is not None:
            self.all_done.set()

    def on_response(self, op: Op, sent: tuple[str, Resting | None], status: int, payload: bytes,
                    conn: Connection | None) -> None:
        now = self.loop.time()
        kind, target = sent
        stats = self.stats if op.at >= self.window_start else self.warmup_stats
        stats.statuses[str(status)] += 1
        if 200 <= status < 300 or (status == 409 and kind in ("cancel", "modify")
                                   and self._expected_refusal(payload)):
            stats.latencies.append(now - op.at)
            stats.done_at.append(now)
            if self.window_start <= now < self.window_end:
                stats.completed_in_window += 1
            if status == 409:
                stats.refused += 1
            else:
                self._learn(kind, payload, target)
        else:
            stats.errors[f"http_{status}"] += 1
            if self.args.verbose and stats.errors[f"http_{status}"] <= 3:
                print(f"{kind} -> {status}: {payload[:300]!r}", file=sys.stderr)
        self._finish_one()
        if conn is not None:
            self._next(conn)

    def retry(self, op: Op) -> None:
        self.retries += 1
        self.backlog.appendleft(op)

    def on_failure(self, op: Op, why: str) -> None:
        (self.stats if op.at >= self.window_start else self.warmup_stats).errors[why] += 1
        self._finish_one()

    def reconnect(self, conn: Connection) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        for attempt in range(20):
            try:
                _, proto = await self.loop.create_connection(lambda: Connection(self), self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            self._next(proto)
            return

    async def _sweep_timeouts(self) -> None:
        timeout = self.args.timeout
        while True:
            await asyncio.sleep(0.25)
            now = self.loop.time()
            for conn in list(self.busy):
                if conn.op is not None and now - conn.op.at > timeout:
                    conn._fail("timeout")
            # Requests still waiting for a connection past the timeout are failures too.
            while self.backlog and now - self.backlog[0].at > timeout:
                self.on_failure(self.backlog.popleft(), "timeout")

    # -- requests ---------------------------------------------------------------------------
    def _auth(self, client_id: str) -> bytes:
        return self.auth_lines.get(client_id, self.auth_any)

    def _request(self, op: Op) -> tuple[bytes, str, Resting | None]:
        if op.kind in ("cancel", "modify"):
            target = self.book.take()
            if target is not None:
                path = b"%s/orders/%s" % (self.prefix, target.order_id.encode())
                auth = self._auth(target.client_id)
                if op.kind == "cancel":
                    return (b"DELETE %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n%s"
                            b"Content-Length: 0\r\n\r\n" % (path, self.host_header, auth)), "cancel", target
                away = -op.modify_ticks if target.side == "buy" else op.modify_ticks
                target.price_ticks = max(1, target.price_ticks + away)
                body = orjson.dumps({"price": ticks_str(target.price_ticks)})
                return (b"PATCH %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n%s"
                        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (path, self.host_header, auth, len(body), body)), "modify", target
        assert op.body is not None
        body = orjson.dumps(op.body)
        return (self.place_head + self._auth(op.body["client_id"]) + b"Content-Length: %d\r\n\r\n%s"
                % (len(body), body), "market" if op.kind == "market" else "limit", None)

    def _learn(self, kind: str, payload: bytes, target: Resting | None) -> None:
        if self.args.endpoint == "test" or kind in ("cancel", "market"):
            return
        if b'"status":"open"' not in payload and b'"status":"partially_filled"' not in payload:
            return
        if kind == "modify":
            if target is not None:
                self.book.add(target)
            return
        order = orjson.loads(payload)
        if order.get("status") in RESTING:
            self.book.add(Resting(order["order_id"], order["side"], int(order["price"].replace(".", "")),
                                  order["client_id"]))

    @staticmethod
    def _expected_refusal(payload: bytes) -> bool:
        try:
            code = orjson.loads(payload).get("code", "")
        except (orjson.JSONDecodeError, AttributeError):
            return False
        return code.encode() in EXPECTED_REFUSALS


def report(r: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    mix = ",".join(f"{k}={v:g}" for k, v in r["mix"].items())
    lines = [
        f"target      {r['url']}  endpoint={r['endpoint']}  mix={mix}  connections={r['connections']}  "
        f"seed={r['seed']}",
        f"offered     {r['offered_rate']:.0f} req/s for {r['duration_s']:g} s (after {r['warmup_s']:g} s warm-up)",
        f"completed   {r['completed_rate']:.0f} req/s  ({r['completed']} ok of {r['requests']} measured)",
        f"statuses    {' '.join(f'{k}:{v}' for k, v in r['statuses'].items()) or '-'}",
        f"kinds       {' '.join(f'{k}:{v}' for k, v in r['kinds'].items()) or '-'}",
        f"errors      {r['errors']}  {r['error_kinds'] or ''}  (cancel/modify refused as already "
        f"filled/cancelled: {r['refused']}; warm-up errors: {r['warmup_errors']})",
        f"latency ms  p50 {ms(r['p50_ms'])}  p95 {ms(r['p95_ms'])}  p99 {ms(r['p99_ms'])}  max {ms(r['max_ms'])}  "
        f"(from scheduled send time)",
        f"queue       max waiting for a connection {r['max_queued']}, max in flight {r['max_in_flight']}, "
        f"resent after a keep-alive close {r['retries']}",
        f"generator   CPU {r['generator_cpu_pct']:.1f}% of one core  "
        f"({r['generator_cpu_us_per_req']:.0f} us/request, {r['loop']} loop)",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("PGBOURSE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--rate", type=float, default=2000.0, help="offered requests per second (default 2000)")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds (default 60)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds sent first and not measured (default 5)")
    p.add_argument("--connections", type=int, default=128, help="keep-alive connections (default 128)")
    p.add_argument("--endpoint", choices=("orders", "test"), default="orders",
                   help="orders: the durable path; test: POST /orders/test, validate only")
    p.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                   help=f"kind=percent list over {', '.join(KINDS)} (default {DEFAULT_MIX})")
    p.add_argument("--instrument", default="BTC-USD")
    p.add_argument("--mid", type=float, default=30000.0, help="starting mid price (default 30000)")
    p.add_argument("--clients", type=int, default=50, help="distinct client_id values (default 50)")
    p.add_argument("--keys", metavar="FILE", default=os.environ.get("PGBOURSE_API_KEYS", ""),
                   help="JSON {client_id: API key} (env PGBOURSE_API_KEYS): each request with its client's key")
    p.add_argument("--api-key", default=os.environ.get("PGBOURSE_API_KEY", ""),
                   help="one API key for every request (env PGBOURSE_API_KEY), e.g. an admin key")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run-id", default="", help="idempotency-key prefix (default: from the clock, unique per run)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds (default 10)")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if there were errors")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop even if uvloop is installed")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    p.add_argument("--verbose", action="store_true", help="print the first bodies of each error status")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.connections <= 0:
        raise SystemExit("--rate, --duration and --connections must be positive")
    # Enough file descriptors for the connections (the default soft limit may be 1024).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.connections + 64))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    run = LoadRun(args)
    if args.no_uvloop:
        result = asyncio.run(run.run())
    else:
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(run.run())
        else:
            result = uvloop.run(run.run())
    result["mix"] = args.mix
    print(report(result), flush=True)
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 1 if result["errors"] and not args.allow_errors else 0


if __name__ == "__main__":
    sys.exit(main())
