"""The sync a client can rely on: over a random stream of 5,000 orders (and cancels), the
reference client's book, built from book_snapshot + deltas, equals GET /orderbook, every seq
arrives once and in order, and every checksum matches."""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from tests.marketdata.streams import assert_client_matches_rest, following, place_all, random_orders, session


def test_5000_random_orders_stream_gap_free_and_rebuild_the_rest_book(exchange: Any) -> None:
    sym = exchange.make_instrument()
    orders = random_orders(sym, 5000, seed=20240501)

    async def scenario() -> None:
        async with following(exchange.ws, sym, channels=("book", "trades", "ticker"), record=True,
                             strict=True) as client:
            started = time.monotonic()
            acks = await place_all(exchange.ws, orders)
            placed = time.monotonic() - started
            assert len(acks) == 5000
            assert {a["event"] for a in acks} == {"order_ack"}, [a for a in acks if a["event"] != "order_ack"][:3]
            assert {a["status"] for a in acks} <= {201, 202}

            # Cancel a random tenth of what still rests, pipelined, to remove levels too.
            resting = [a["order"]["order_id"] for a in acks if a["order"]["status"] in ("open", "partially_filled")]
            rng = random.Random(7)
            doomed = rng.sample(resting, len(resting) // 10)
            async with session(exchange.ws, batch=True) as ws:
                for oid in doomed:
                    await ws.send({"op": "cancel", "order_id": oid})
                answers = [await ws.until(lambda e: e.get("event") in ("cancel_ack", "error"), 30)
                           for _ in doomed]
            odd = [a for a in answers if a["event"] != "cancel_ack" and a["code"] != "order_not_open"]
            assert not odd, odd[:3]
            assert sum(a["event"] == "cancel_ack" for a in answers) > len(doomed) // 2

            cancelled = time.monotonic() - started - placed
            book = await assert_client_matches_rest(client, exchange.http, sym)

        # strict=True: any gap, checksum mismatch or resync would have raised.
        assert client.resyncs == {}
        seqs = [e["seq"] for e in client.events if e.get("event") in ("new_trade", "book_delta")]
        assert seqs == list(range(1, book["seq"] + 1)), "every seq exactly once, in order"
        deltas = sum(e["event"] == "book_delta" for e in client.events)
        assert client.checksums_verified == deltas > 5000
        trades = [e for e in client.events if e["event"] == "new_trade"]
        assert trades and all(t["aggressor_side"] in ("buy", "sell") for t in trades)
        tickers = [e for e in client.events if e["event"] == "ticker"]
        assert tickers and tickers[-1]["best_bid"] == book["bids"][0]["price"]
        print(f"placed 5000 orders in {placed:.2f}s, {len(doomed)} cancels in {cancelled:.2f}s; "
              f"{len(seqs)} sequenced events")

    asyncio.run(scenario())
