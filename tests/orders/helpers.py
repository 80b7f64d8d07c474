from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

from exchange_project import pgembed
from tests.http import call


def order_body(instrument: str, side: str = "buy", price: str | None = "100.00", quantity: str = "1",
               client_id: str = "alice", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"idempotency_key": uuid.uuid4().hex, "client_id": client_id, "instrument": instrument,
                            "side": side, "quantity": quantity}
    if price is not None:
        body["price"] = price
        body.setdefault("type", "limit")
    else:
        body["type"] = "market"
    body.update(extra)
    return body


def place(ex: Any, instrument: str, **kwargs: Any) -> dict[str, Any]:
    status, body = call(ex.http, "POST", "/orders", order_body(instrument, **kwargs))
    assert status == 201, (status, body)
    return body


def wait_status(ex: Any, order_id: str, statuses: set[str], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(ex.http, "GET", f"/orders/{order_id}")
        assert status == 200, body
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def count_rows(ex: Any, table: str, where: str = "true", params: tuple[Any, ...] = ()) -> int:
    with ex.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
    assert row is not None
    return int(row[0])


class Session:
    """A browser's session over real HTTP: cookies kept, the CSRF token sent with every write
    (what DRF's SessionAuthentication asks of a logged-in user)."""

    def __init__(self, ex: Any) -> None:
        self.ex = ex
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, Any, dict[str, str]]:
        import http.client
        import json
        from decimal import Decimal
        from urllib.parse import urlencode, urlsplit

        parts = urlsplit(self.ex.http)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        headers = {"Accept": "application/json", "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        payload: bytes | None = None
        if form is not None:
            payload = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Accept"] = "text/html"
        elif body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key] = rest.split(";", 1)[0]
            response_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data, parse_float=Decimal) if data else None, response_headers
        except ValueError:
            return resp.status, data.decode(errors="replace"), response_headers


def staff_session(ex: Any, username: str | None = None, staff: bool = True) -> Session:
    """A user created in the test database and logged in through the admin's login form."""
    import re

    from django.contrib.auth.hashers import make_password

    username = username or f"op-{uuid.uuid4().hex[:8]}"
    with ex.connect() as conn:
        conn.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
                      "is_active, date_joined) VALUES (%s, %s, %s, '', '', '', %s, true, now())",
                      (make_password("pw-for-tests"), staff, username, staff))
    session = Session(ex)
    status, page, _ = session.request("GET", "/admin/login/?next=/admin/")
    assert status == 200, page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    status, _, headers = session.request("POST", "/admin/login/?next=/admin/", form={
        "username": username, "password": "pw-for-tests", "csrfmiddlewaretoken": token.group(1), "next": "/admin/"})
    assert status == 302 and "sessionid" in session.cookies, (status, headers)
    session.username = username  # type: ignore[attr-defined]
    return session


def postgres_pids() -> list[int]:
    """The embedded PostgreSQL's processes: the postmaster first, then its children."""
    postmaster = int((pgembed.PGDATA / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]
