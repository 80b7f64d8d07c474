"""Falling behind and losing the feed: a slow client is told to resync without slowing the
others; a web process that loses its LISTEN connection tells its clients to resync."""
from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
import websockets

from tests.marketdata.streams import assert_client_matches_rest, following, place_all, random_orders


async def stalled_socket(url: str) -> Any:
    """A WebSocket client that reads nothing: a tiny receive buffer, and websockets' own queue
    stops reading from the socket after one frame."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    return await websockets.connect(url, sock=sock, max_queue=1, max_size=2**24)


def test_a_slow_client_gets_resync_required_and_never_slows_the_others(exchange: Any) -> None:
    sym = exchange.make_instrument()
    # Enough events to overflow what the server and the kernel buffer for a socket before the
    # server's send() waits (granian: about 3 MB with this client), plus the outbox itself.
    orders = random_orders(sym, 14000, seed=99)

    async def scenario() -> None:
        slow = await stalled_socket(exchange.ws)
        await slow.send(orjson.dumps({"op": "subscribe", "instrument": sym, "channels": ["book", "trades", "ticker"]}))
        async with following(exchange.ws, sym, strict=True) as fast:
            await place_all(exchange.ws, orders)
            book = await assert_client_matches_rest(fast, exchange.http, sym)
        assert fast.resyncs == {}

        # Now the slow client reads what it was sent: somewhere it was told it missed events.
        seen: list[dict[str, Any]] = []
        closed_with = None
        try:
            while True:
                frame = orjson.loads(await asyncio.wait_for(slow.recv(), 5))
                seen.append(frame)
                if frame.get("event") == "resync_required":
                    break
        except websockets.ConnectionClosed as exc:
            closed_with = exc.rcvd.code if exc.rcvd else None
        await slow.close()
        resync = [e for e in seen if e.get("event") == "resync_required"]
        assert resync or closed_with == 4008, f"{len(seen)} frames, closed with {closed_with}"
        if resync:
            assert resync[0]["reason"] == "slow_consumer" and resync[0]["instruments"] == [sym]
            seqs = [e["seq"] for e in seen if e.get("event") in ("new_trade", "book_delta")]
            assert seqs == sorted(seqs) and seqs[-1] < book["seq"], "events were dropped, visibly"

    asyncio.run(scenario())


def kill_listen_connections(exchange: Any) -> int:
    with exchange.connect() as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND application_name = 'pgbourse-web-listen'").fetchall()
    return len(rows)


def test_a_lost_listen_connection_makes_clients_resync_and_they_end_up_right(exchange: Any) -> None:
    sym = exchange.make_instrument()
    orders = random_orders(sym, 3000, seed=5)
    killed: list[int] = []

    async def scenario() -> None:
        async with following(exchange.ws, sym, record=True) as client:
            placing = asyncio.create_task(place_all(exchange.ws, orders, chunk=100, window=2))
            await client.wait_seq(500, timeout=30)
            # Terminate the web process's LISTEN connection from PostgreSQL's side, mid-stream.
            killed.append(await asyncio.to_thread(kill_listen_connections, exchange))
            acks = await placing
            assert len(acks) == 3000
            await assert_client_matches_rest(client, exchange.http, sym)
        assert killed == [1]
        reasons = [e["reason"] for e in client.events if e.get("event") == "resync_required"]
        assert reasons == ["feed_reconnected"]
        assert client.resyncs.get("server") == 1
        snapshots = [e for e in client.events if e.get("event") == "book_snapshot"]
        assert len(snapshots) == 2 and snapshots[1]["seq"] > 500

    asyncio.run(scenario())
