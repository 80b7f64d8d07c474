"""Locust scenario for interactive use: the same order mix as http_load.py, with Locust's web UI.

    locust -f load-test/locustfile.py --host http://127.0.0.1:8000            # then open :8089
    locust -f load-test/locustfile.py --host http://127.0.0.1:8000 --headless -u 200 -r 50 -t 60s

Each simulated user places, cancels and modifies orders at a fixed pace (``PGBOURSE_USER_RATE``
operations per second per user, default 10) drawn from http_load.Mix, seeded per user, so a
run with N users offers about 10*N operations/s. Cancels and modifies target orders this user saw
acknowledged as resting; a 409 "already filled/cancelled" on them is the expected race, not a
failure.

Locust is a closed-loop tool (a user waits for its answer before the next request), so under
overload it slows down with the server instead of measuring the backlog; use it to explore and
watch, and http_load.py (open loop) for the numbers in docs/performance.md. ``PGBOURSE_ENDPOINT=test``
sends places to POST /orders/test instead.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import orjson
from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import DEFAULT_MIX, Book, Mix, Resting, parse_mix, ticks_str

USER_RATE = float(os.environ.get("PGBOURSE_USER_RATE", "10"))
# API keys as for http_load.py: PGBOURSE_API_KEYS (a JSON file {client_id: key}) or PGBOURSE_API_KEY.
_KEYS: dict[str, str] = {}
if os.environ.get("PGBOURSE_API_KEYS"):
    with open(os.environ["PGBOURSE_API_KEYS"]) as _f:
        _KEYS = orjson.loads(_f.read())


def _headers(client_id: str) -> dict[str, str]:
    key = _KEYS.get(client_id) or os.environ.get("PGBOURSE_API_KEY")
    return {**JSON, "Authorization": f"Bearer {key}"} if key else JSON
ENDPOINT = os.environ.get("PGBOURSE_ENDPOINT", "orders")
MIX = parse_mix(os.environ.get("PGBOURSE_MIX", DEFAULT_MIX))
RUN_ID = f"lc{int(time.time() * 1000):x}"
_user_numbers = itertools.count()
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Trader(FastHttpUser):
    wait_time = constant_throughput(USER_RATE)

    def on_start(self) -> None:
        n = next(_user_numbers)
        self.mix = Mix(MIX, seed=1000 + n, instrument=os.environ.get("PGBOURSE_INSTRUMENT", "BTC-USD"),
                       clients=50, run_id=f"{RUN_ID}-u{n}", mid_ticks=3_000_000, test_endpoint=ENDPOINT == "test")
        self.book = Book(1000 + n)
        self.seq = 0

    @task
    def trade(self) -> None:
        op = self.mix.next(self.seq, time.monotonic())
        self.seq += 1
        target = self.book.take() if op.kind in ("cancel", "modify") else None
        if target is not None and op.kind == "cancel":
            self._command("DELETE", target, None, "DELETE /orders/{id}")
        elif target is not None:
            away = -op.modify_ticks if target.side == "buy" else op.modify_ticks
            target.price_ticks = max(1, target.price_ticks + away)
            self._command("PATCH", target, {"price": ticks_str(target.price_ticks)}, "PATCH /orders/{id}")
        else:
            # A cancel/modify with no known resting order places its drawn limit order instead.
            body = op.body or {}
            self._place(body, str(body.get("type", "limit")))

    def _place(self, body: dict[str, object], kind: str) -> None:
        path = "/orders/test" if ENDPOINT == "test" else "/orders"
        with self.client.post(path, data=orjson.dumps(body), headers=_headers(str(body.get("client_id"))),
                              name=f"POST {path} ({kind})",
                              catch_response=True) as resp:
            if resp.status_code not in (200, 201, 202):
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
            resp.success()
            if ENDPOINT != "test" and kind == "limit":
                order = orjson.loads(resp.content or b"{}")
                if order.get("status") in ("open", "partially_filled"):
                    self.book.add(Resting(order["order_id"], order["side"], int(order["price"].replace(".", "")),
                                          order["client_id"]))

    def _command(self, method: str, target: Resting, body: dict[str, object] | None, name: str) -> None:
        data = orjson.dumps(body) if body is not None else None
        with self.client.request(method, f"/orders/{target.order_id}", data=data, headers=_headers(target.client_id),
                                 name=name,
                                 catch_response=True) as resp:
            if resp.status_code in (200, 202):
                resp.success()
                if method == "PATCH" and b'"status":"open"' in (resp.content or b""):
                    self.book.add(target)
            elif resp.status_code == 409 and b'"code":"order_not_open"' in (resp.content or b""):
                resp.success()  # filled or cancelled since it was acknowledged: the expected race
            else:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
