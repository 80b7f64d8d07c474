"""Orders straight to the matching worker: a socket beside the PostgreSQL inbox.

The inbox (matching.inbox) makes a web process store each order as a pending row, the worker
read it back, match it, UPDATE it, and NOTIFY the outcome, which the web process parses: four
trips through PostgreSQL for one order, and the order row written twice. On this path a web
process sends the validated order to the worker over a plain TCP connection; the worker decides
duplicates (PostgreSQL's unique constraints stay the last word), matches, writes the order once
with its outcome in the batch's SERIALIZABLE transaction, and only then answers. Nothing is
acknowledged before that commit, as on the inbox path. No broker: the worker is the only peer.

Finding the worker: once it holds the ownership lock and has rebuilt its books, the worker
names its PostgreSQL session `pgbourse-matching <host:port> <token>` (application_name). A web
process reads that from pg_stat_activity; the session, and with it the name, ends with the
worker, so a stale address is never advertised for long. The token (random per start) is the
first frame a client sends, so only a peer that can read the database's sessions can place
orders here.

Failure: a web process that cannot reach a worker uses the inbox; one that loses its answer
(connection dropped, or no answer within ORDER_ACK_TIMEOUT_S) stores the order as pending with
the same order id, so it is matched exactly once either way (orders.direct).

Frames: a 4-byte big-endian length, then JSON. Client to worker: the token (a JSON string),
then `[request_id, [order fields (matching.worker.DIRECT_FIELDS)...]]`. Worker to client:
`[request_id, [answer...]]`, an answer being the order's REST body or "duplicate".
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

log = logging.getLogger("matching.direct")

APPLICATION_PREFIX = "pgbourse-matching "
MAX_FRAME = 64 * 1024 * 1024
MAX_BATCH_ORDERS = 2000
DUPLICATE = "duplicate"  # a direct order's answer when its key or order_id is already taken
_LENGTH = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _LENGTH.unpack(await reader.readexactly(4))
    if size > MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes refused")
    return await reader.readexactly(size)


def parse_advertisement(application_name: str) -> tuple[str, int, str] | None:
    """(host, port, token) from a worker's session name, or None."""
    if not application_name.startswith(APPLICATION_PREFIX):
        return None
    try:
        address, token = application_name[len(APPLICATION_PREFIX):].split(" ")
        host, port = address.rsplit(":", 1)
        return host, int(port), token
    except ValueError:
        return None


def bind_address() -> tuple[str, int] | None:
    """Where the worker listens: MATCHING_DIRECT_BIND (host:port, port 0 = any free one);
    MATCHING_DIRECT=0 turns the direct path off (every order then goes through the inbox)."""
    if os.environ.get("MATCHING_DIRECT", "1") == "0":
        return None
    host, port = os.environ.get("MATCHING_DIRECT_BIND", "127.0.0.1:0").rsplit(":", 1)
    return host, int(port)


# Matches a batch and returns the task that commits it and answers (MatchingWorker.match_direct).
Handler = Callable[[list[list[Any]]], Awaitable["asyncio.Task[list[Any]]"]]
# Batches matched and not yet committed: the next batch is matched while one commits.
MAX_UNCOMMITTED = 2


class DirectServer:
    """Accepts web processes' connections; every order that arrived while the previous batch
    was being matched and committed goes into the next batch, whatever connection it came on."""

    def __init__(self, handle: Handler, on_failure: Callable[[BaseException], None]) -> None:
        self._handle = handle
        self._on_failure = on_failure
        self._queue: list[tuple[asyncio.StreamWriter, Any, list[list[Any]]]] = []
        self._wake = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._uncommitted = asyncio.Semaphore(MAX_UNCOMMITTED)
        self.token = secrets.token_hex(8)
        self.address = ""

    async def start(self, host: str, port: int) -> str:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        advertised = os.environ.get("MATCHING_DIRECT_ADVERTISE") or f"{bound_host}:{bound_port}"
        self.address = advertised
        self._batcher = asyncio.get_running_loop().create_task(self._run(), name="pgbourse-direct")
        return f"{APPLICATION_PREFIX}{advertised} {self.token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if orjson.loads(await read_frame(reader)) != self.token:
                log.warning("direct connection with a wrong token refused")
                return
            while True:
                request_id, orders = orjson.loads(await read_frame(reader))
                self._queue.append((writer, request_id, orders))
                self._wake.set()
        except (asyncio.IncompleteReadError, ConnectionError, orjson.JSONDecodeError, ValueError, TypeError):
            pass
        finally:
            writer.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._uncommitted.acquire()
                taken: list[tuple[asyncio.StreamWriter, Any, list[list[Any]]]] = []
                size = 0
                while self._queue and size < MAX_BATCH_ORDERS:
                    entry = self._queue.pop(0)
                    taken.append(entry)
                    size += len(entry[2])
                try:
                    committing = await self._handle([order for _, _, orders in taken for order in orders])
                except BaseException as exc:  # noqa: BLE001 - memory may be ahead of PostgreSQL
                    self._on_failure(exc)
                    raise
                asyncio.get_running_loop().create_task(self._answer(taken, committing))

    async def _answer(self, taken: list[tuple[asyncio.StreamWriter, Any, list[list[Any]]]],
                      committing: "asyncio.Task[list[Any]]") -> None:
        try:
            answers = await committing
        except BaseException as exc:  # noqa: BLE001 - the batch did not commit; memory is ahead
            self._on_failure(exc)
            raise
        finally:
            self._uncommitted.release()
        start = 0
        for writer, request_id, orders in taken:
            if not writer.is_closing():
                writer.write(frame(orjson.dumps([request_id, answers[start:start + len(orders)]])))
            start += len(orders)

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
        if self._server is not None:
            self._server.close()
