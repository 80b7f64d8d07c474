"""`manage.py replay` against the live record: a varied history (every order type, modifies,
cancels, WebSocket orders, a halt with an order refused through the inbox, a cancel-all, a
kill -9 of the worker) replays exactly; a corrupted row does not."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from typing import Any

import pytest

from exchange_project.processes import ROOT
from tests.http import call
from tests.marketdata.streams import body, session

from .helpers import order_body, staff_session, wait_status


def manage(ex: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=ex.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def history(ex: Any, sym: str, seed: int = 11, n: int = 120) -> None:
    rng = random.Random(seed)
    resting: list[str] = []
    for k in range(n):
        side = rng.choice(["buy", "sell"])
        roll = rng.random()
        extra: dict[str, Any] = {"stp": rng.choice(["none", "cancel_taker", "cancel_maker", "cancel_both"])}
        if roll < 0.1:
            payload = order_body(sym, side=side, price=None, quantity=str(rng.randint(1, 20) / 10), **extra)
        else:
            offset = rng.randint(-3, 6) * (1 if side == "sell" else -1)
            extra["time_in_force"] = rng.choice(["GTC"] * 6 + ["IOC", "FOK"])
            if extra["time_in_force"] == "GTC" and rng.random() < 0.1:
                extra["post_only"] = True
            payload = order_body(sym, side=side, price=f"{100 + offset}.00", quantity=str(rng.randint(1, 20) / 10),
                                 client_id=f"c{k % 4}", **extra)
        status, answer = call(ex.http, "POST", "/orders", payload)
        assert status == 201, answer
        if answer["status"] in ("open", "partially_filled"):
            resting.append(answer["order_id"])
        if resting and rng.random() < 0.25:
            oid = resting.pop(rng.randrange(len(resting)))
            if rng.random() < 0.5:
                call(ex.http, "DELETE", f"/orders/{oid}")
            else:
                change = rng.choice([{"price": f"{100 + rng.randint(-4, 4)}.00"},
                                     {"quantity": str(rng.randint(1, 30) / 10)}])
                if call(ex.http, "PATCH", f"/orders/{oid}", change)[1].get("status") in ("open", "partially_filled"):
                    resting.append(oid)


@pytest.fixture
def worker_restored(exchange: Any) -> Any:
    yield
    exchange.kill_worker()
    exchange.start_worker()


def test_the_stored_commands_replay_to_exactly_the_stored_record(exchange: Any, worker_restored: Any) -> None:
    sym = exchange.make_instrument()
    op = staff_session(exchange)
    history(exchange, sym, seed=11)

    async def over_ws() -> None:
        async with session(exchange.ws) as ws:
            await ws.send({"op": "orders", "orders": [body(sym, "buy", f"{95 + n}.00", "0.3", client_id="ws")
                                                      for n in range(8)]})
            await ws.next(timeout=20)

    asyncio.run(over_ws())
    # a halt, and an order stored while no worker runs, refused when one does
    assert op.request("POST", f"/admin/instruments/{sym}/halt")[0] == 200
    exchange.kill_worker()
    status, pending = call(exchange.http, "POST", "/orders", order_body(sym, price="99.00"))
    assert status == 202
    exchange.start_worker()
    assert wait_status(exchange, pending["order_id"], {"rejected"})["reason"] == "instrument_halted"
    assert op.request("POST", f"/admin/instruments/{sym}/resume")[0] == 200
    history(exchange, sym, seed=12, n=60)
    assert op.request("POST", "/admin/cancel-all", {"client_id": "c1"})[0] == 200
    exchange.kill_worker()  # kill -9: the journal must not care
    exchange.start_worker()
    history(exchange, sym, seed=13, n=40)

    # when the instrument is replayed, whole and up to a command
    whole = manage(exchange, "replay", "--instrument", sym)
    assert whole.returncode == 0, whole.stderr
    assert "exactly the stored events, trades and order states" in whole.stdout
    partial = manage(exchange, "replay", "--instrument", sym, "--to-seq", "100")
    assert partial.returncode == 0 and "(1..100 of" in partial.stdout, partial.stderr

    # then a trade changed by one tick is found
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_trade SET price = price + 0.01 WHERE instrument_id = "
                     "(SELECT id FROM orders_instrument WHERE symbol = %s) AND trade_id = 3", (sym,))
    broken = manage(exchange, "replay", "--instrument", sym)
    assert broken.returncode == 1 and "trade 3: stored" in broken.stderr
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_trade SET price = price - 0.01 WHERE instrument_id = "
                     "(SELECT id FROM orders_instrument WHERE symbol = %s) AND trade_id = 3", (sym,))
        # and so is an order whose stored state is not what its commands made it
        (oid,) = conn.execute("SELECT order_id FROM orders_order o JOIN orders_instrument i ON i.id = o.instrument_id "
                              "WHERE i.symbol = %s AND o.status = 'cancelled' LIMIT 1", (sym,)).fetchone()
        conn.execute("UPDATE orders_order SET status = 'open' WHERE order_id = %s", (oid,))
    broken = manage(exchange, "replay", "--instrument", sym)
    assert broken.returncode == 1 and f"order {oid}: stored" in broken.stderr
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_order SET status = 'cancelled' WHERE order_id = %s", (oid,))
        # and a command lost from the journal
        conn.execute("DELETE FROM orders_orderevent WHERE command_seq = 50 AND instrument_id = "
                     "(SELECT id FROM orders_instrument WHERE symbol = %s)", (sym,))
    broken = manage(exchange, "replay", "--instrument", sym)
    assert broken.returncode == 1 and "command 50: missing from the journal" in broken.stderr
    assert manage(exchange, "replay", "--instrument", "NOPE-" + uuid.uuid4().hex[:4]).returncode == 1
