from __future__ import annotations

import time
import uuid
from typing import Any

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
