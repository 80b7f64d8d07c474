"""Real HTTP for the tests: a blocking client (http.client) and an asyncio one for many
concurrent requests, both speaking plain HTTP/1.1 to the live server. Both send an API key
chosen by tests.keys unless ``key=`` says which (None: none); ``source`` is the local address to
connect from (any of 127.0.0.0/8), for tests of what is counted per address."""
from __future__ import annotations

import asyncio
import http.client
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tests.keys import AUTO, auth_headers, choose


def _dumps(body: Any) -> bytes:
    return json.dumps(body, default=str).encode()


def call(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10, key: Any = AUTO,
         source: str | None = None) -> tuple[int, Any]:
    status, _, data = call_full(base, method, path, body, raw, headers, timeout, key, source)
    return status, data


def call_full(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 10, key: Any = AUTO,
              source: str | None = None) -> tuple[int, dict[str, str], Any]:
    """``call``, with the answer's headers (names lowercased)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    payload = raw if raw is not None else (None if body is None else _dumps(body))
    hdrs = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    if not any(h.lower() in ("authorization", "x-api-key") for h in hdrs):
        hdrs.update(auth_headers(choose(base, key, body if raw is None else None)))
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        answer_headers = {name.lower(): value for name, value in resp.getheaders()}
    finally:
        conn.close()
    try:
        return resp.status, answer_headers, json.loads(data, parse_float=Decimal) if data else None
    except ValueError:
        return resp.status, answer_headers, data.decode(errors="replace")


async def acall(base: str, method: str, path: str, body: Any = None, timeout: float = 30,
                raw: bytes | None = None, key: Any = AUTO) -> tuple[int, Any]:
    parts = urlsplit(base)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    payload = raw if raw is not None else b"" if body is None else _dumps(body)
    chosen = choose(base, key, body if raw is None else None)
    auth = f"Authorization: Bearer {chosen}\r\n" if chosen else ""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\n{auth}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
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


class Browser:
    """Someone in a browser, over real HTTP: cookies kept, and Django's CSRF token sent back
    with every form (the admin site)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        import http.cookies
        import urllib.parse

        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        hdrs = {"Accept": "text/html", **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        payload = None
        if form is not None:
            form = {**form, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            payload = urllib.parse.urlencode(form, doseq=True).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            answer = {name.lower(): value for name, value in resp.getheaders()}
            answer["set-cookie"] = "\n".join(v for n, v in resp.getheaders() if n.lower() == "set-cookie")
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    for morsel in http.cookies.SimpleCookie(value).values():
                        self.cookies[morsel.key] = morsel.value
        finally:
            conn.close()
        return resp.status, answer, text

    def login(self, username: str, password: str) -> None:
        self.request("GET", "/admin/login/")
        status, headers, text = self.request("POST", "/admin/login/?next=/admin/",
                                             {"username": username, "password": password, "next": "/admin/"})
        assert status == 302 and headers["location"] == "/admin/", (status, text[:500])
