"""Real HTTP for the tests: a blocking client (http.client) and an asyncio one for many
concurrent requests, both speaking plain HTTP/1.1 to the live server."""
from __future__ import annotations

import asyncio
import http.client
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit


def _dumps(body: Any) -> bytes:
    return json.dumps(body, default=str).encode()


def call(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Any]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload = raw if raw is not None else (None if body is None else _dumps(body))
    hdrs = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data, parse_float=Decimal) if data else None
    except ValueError:
        return resp.status, data.decode(errors="replace")


async def acall(base: str, method: str, path: str, body: Any = None, timeout: float = 30,
                raw: bytes | None = None) -> tuple[int, Any]:
    parts = urlsplit(base)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    payload = raw if raw is not None else b"" if body is None else _dumps(body)
    head = (f"{method} {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head_bytes, _, body_bytes = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        body_bytes = _dechunk(body_bytes)
    return status, json.loads(body_bytes, parse_float=Decimal) if body_bytes else None


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


async def gather_limited(coros: list[Any], limit: int = 100) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def run(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
