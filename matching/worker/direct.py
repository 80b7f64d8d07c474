"""Orders straight from the web processes: a TCP server beside the PostgreSQL inbox.

Through the inbox a web process stores each order as a pending row, the worker reads it back,
matches it, updates it and NOTIFYs the outcome: four trips through PostgreSQL per order, and
the order row written twice. On this path a web process sends its validated commands to the
worker over one TCP connection (the client is orders.direct); the worker decides duplicates,
matches, writes each new order once with its outcome in the batch's transaction, and only then
answers. Nothing is acknowledged before that commit, as on the inbox path. No broker: the
worker is the only peer.

Finding the worker: once it holds the ownership lock and has rebuilt its books, the worker
names its committing session ``contract.advertisement(address, token)`` (application_name). A
web process reads that from pg_stat_activity; the session, and with it the name, ends with the
worker, so a stale address is never advertised for long. The token (random per start) is the
first frame a client sends, so only a peer that can read the database's sessions can place
orders here.

Frames (matching.contract): ``Hello``, then ``Request``s; the worker answers each with a
``Response`` carrying one answer per command, in order. Every command that arrived while the
previous batch was being matched goes into the next batch, whatever connection it came on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from matching.contract import (
    Answer,
    Command,
    DecodeError,
    Request,
    Response,
    advertisement,
    decode_hello,
    decode_request,
    frame,
    read_frame,
)

log = logging.getLogger("matching.worker.direct")

# Matches a batch and returns the task that commits it and answers (MatchingWorker.match_direct).
Handler = Callable[[list[Command]], Awaitable["asyncio.Task[list[Answer]]"]]
MAX_BATCH_COMMANDS = 2000
# Batches matched and not yet committed: the next batch is matched while one commits.
MAX_UNCOMMITTED = 2


class DirectServer:
    def __init__(self, handle: Handler, on_failure: Callable[[BaseException], None]) -> None:
        self._handle = handle
        self._on_failure = on_failure
        self._queue: list[tuple[asyncio.StreamWriter, Request]] = []
        self._wake = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._uncommitted = asyncio.Semaphore(MAX_UNCOMMITTED)
        self._writers: set[asyncio.StreamWriter] = set()
        self.token = secrets.token_hex(8)
        self.address = ""

    async def start(self, host: str, port: int, advertise: str | None = None) -> str:
        """Listen; the session name to advertise (``advertise``: the address web processes
        should use, when it is not the bound one)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.address = advertise or f"{bound_host}:{bound_port}"
        self._batcher = asyncio.get_running_loop().create_task(self._run(), name="pgbourse-direct")
        return advertisement(self.address, self.token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if decode_hello(await read_frame(reader)).token != self.token:
                log.warning("direct connection with a wrong token refused")
                return
            while True:
                self._queue.append((writer, decode_request(await read_frame(reader))))
                self._wake.set()
        except DecodeError as exc:
            # Only another version of the web side sends what this one cannot read.
            log.error("direct connection closed: a frame does not match the contract (%s)", exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._uncommitted.acquire()
                taken: list[tuple[asyncio.StreamWriter, Request]] = []
                size = 0
                while self._queue and size < MAX_BATCH_COMMANDS:
                    entry = self._queue.pop(0)
                    taken.append(entry)
                    size += len(entry[1].commands)
                try:
                    committing = await self._handle([cmd for _, request in taken for cmd in request.commands])
                except BaseException as exc:
                    self._on_failure(exc)
                    raise
                asyncio.get_running_loop().create_task(self._answer(taken, committing))

    async def _answer(self, taken: list[tuple[asyncio.StreamWriter, Request]],
                      committing: asyncio.Task[list[Answer]]) -> None:
        try:
            answers = await committing
        except BaseException as exc:
            self._on_failure(exc)
            raise
        finally:
            self._uncommitted.release()
        start = 0
        for writer, request in taken:
            count = len(request.commands)
            if not writer.is_closing():
                writer.write(frame(Response(request_id=request.request_id, answers=answers[start:start + count])))
            start += count

    async def close(self) -> None:
        """Stop: no new connection, nothing more matched, and every connection closed, so that
        each web process learns at once that its unanswered commands are to be settled."""
        if self._batcher is not None:
            self._batcher.cancel()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._queue.clear()
