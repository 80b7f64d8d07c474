"""Who gets what: orders-channel isolation, the 1-second snapshot, tickers."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from tests.http import call
from tests.marketdata.streams import body, session


def test_orders_channel_carries_only_the_named_clients_updates(exchange: Any) -> None:
    sym = exchange.make_instrument()
    other = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as alice, session(exchange.ws) as bob, \
                session(exchange.ws) as elsewhere, session(exchange.ws) as trader:
            for ws, cid, inst in ((alice, "alice", sym), (bob, "bob", sym), (elsewhere, "alice", other)):
                ok = await ws.request({"op": "subscribe", "instrument": inst, "channels": ["orders"],
                                       "client_id": cid})
                assert ok["event"] == "subscribed" and ok["client_id"] == cid
            a1 = await trader.request({"op": "order", **body(sym, "sell", "100.00", "1", client_id="alice")})
            b1 = await trader.request({"op": "order", **body(sym, "buy", "100.00", "0.4", client_id="bob")})
            a2 = await trader.request({"op": "order", **body(sym, "buy", "90.00", "1", client_id="alice")})
            await trader.request({"op": "order", **body(sym, "buy", "100.00", "0.6", client_id="carol")})

            a_ids = {a1["order"]["order_id"], a2["order"]["order_id"]}
            seen_a = [await alice.next() for _ in range(4)]  # a1 open, a1 partial, a2 open, a1 filled
            seen_b = [await bob.next() for _ in range(1)]
            assert {e["event"] for e in seen_a + seen_b} == {"order_update"}
            assert {e["client_id"] for e in seen_a} == {"alice"} and {e["order_id"] for e in seen_a} == a_ids
            assert [e["status"] for e in seen_a if e["order_id"] == a1["order"]["order_id"]] == \
                ["open", "partially_filled", "filled"]
            assert [(e["order_id"], e["status"]) for e in seen_b] == [(b1["order"]["order_id"], "filled")]
            assert seen_b[0]["filled_quantity"] == "0.4000" and seen_b[0]["remaining_quantity"] == "0.0000"
            # Nothing else for either of them, nothing for alice on the other instrument.
            for ws in (alice, bob, elsewhere):
                assert (await ws.request({"op": "ping"}))["event"] == "pong"
                assert ws.pending == []

    asyncio.run(scenario())


def test_snapshot_every_second_with_the_top_5_levels(exchange: Any) -> None:
    sym = exchange.make_instrument()
    for n in range(7):
        assert call(exchange.http, "POST", "/orders", body(sym, "buy", f"{90 + n}.00", "1"))[0] == 201
        assert call(exchange.http, "POST", "/orders", body(sym, "sell", f"{110 - n}.00", "2"))[0] == 201

    async def scenario() -> list[tuple[float, dict[str, Any]]]:
        async with session(exchange.ws) as ws:
            await ws.request({"op": "subscribe", "instrument": sym, "channels": ["snapshot"]})
            got = []
            for _ in range(4):
                snap = await ws.until(lambda e: e["event"] == "snapshot", timeout=3)
                got.append((asyncio.get_running_loop().time(), snap))
            return got

    snaps = asyncio.run(scenario())
    stamps = [dt.datetime.fromisoformat(s["time"].replace("Z", "+00:00")) for _, s in snaps]
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    arrivals = [b - a for (a, _), (b, _) in zip(snaps, snaps[1:])]
    assert all(0.9 <= g <= 1.3 for g in gaps), gaps
    assert all(0.7 <= g <= 1.5 for g in arrivals), arrivals
    last = snaps[-1][1]
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=5")
    assert status == 200 and last["seq"] == book["seq"]
    assert last["bids"] == [[lv["price"], lv["quantity"]] for lv in book["bids"]]
    assert last["asks"] == [[lv["price"], lv["quantity"]] for lv in book["asks"]]
    assert [p for p, _ in last["bids"]] == ["96.00", "95.00", "94.00", "93.00", "92.00"]


def test_ticker_follows_every_change_of_the_top_of_book(exchange: Any) -> None:
    sym = exchange.make_instrument()

    async def scenario() -> None:
        async with session(exchange.ws) as ws, session(exchange.ws) as trader:
            await ws.request({"op": "subscribe", "instrument": sym, "channels": ["ticker"]})
            await trader.request({"op": "order", **body(sym, "buy", "99.00", "1")})
            t1 = await ws.until(lambda e: e["event"] == "ticker")
            await trader.request({"op": "order", **body(sym, "sell", "99.00", "0.25", client_id="bob")})
            t2 = await ws.until(lambda e: e["event"] == "ticker")
            assert (t1["best_bid"], t1["best_bid_size"], t1["best_ask"], t1["last_price"]) == \
                ("99.00", "1.0000", None, None)
            assert (t2["best_bid"], t2["best_bid_size"], t2["last_price"]) == ("99.00", "0.7500", "99.00")

    asyncio.run(scenario())


def test_many_subscribers_get_every_event_in_order_through_the_flush_tick(exchange: Any) -> None:
    # From FLUSH_MIN_SOCKETS sockets on an instrument, market events go out on the fan-out's
    # tick, several committed batches to a frame: still every event, once, in commit order.
    from marketdata.fanout import FLUSH_MIN_SOCKETS

    sym = exchange.make_instrument()
    count = FLUSH_MIN_SOCKETS + 6

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            subscribers = [await stack.enter_async_context(session(exchange.ws, batch=True)) for _ in range(count)]
            for ws in subscribers:
                assert (await ws.request({"op": "subscribe", "instrument": sym,
                                          "channels": ["trades", "book"]}))["event"] == "subscribed"
            trader = await stack.enter_async_context(session(exchange.ws))
            bodies = [body(sym, "sell" if n % 2 else "buy", f"{100 + n % 3}.00", "0.5", client_id=f"c{n % 4}")
                      for n in range(40)]
            acks = await trader.request({"op": "orders", "orders": bodies})
            assert all(a["status"] == 201 for a in acks["acks"])
            _, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
            streams = []
            for ws in subscribers:
                seqs: list[int] = []
                while not seqs or seqs[-1] < book["seq"]:
                    event = await ws.next()
                    if event["event"] in ("book_delta", "new_trade"):
                        seqs.append(event["seq"])
                streams.append(seqs)
            # gap-free from 1 to the book's seq, and the same for every subscriber
            assert streams[0] == list(range(1, book["seq"] + 1))
            assert all(s == streams[0] for s in streams)

    asyncio.run(scenario())
