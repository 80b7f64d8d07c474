"""The checksum on each book_delta is the checksum of the book a client holds after applying
that delta: FeedBuilder (which keeps the top levels' digits between deltas) against the
checksum computed from scratch, over random deltas at and below the top 10 levels."""
from __future__ import annotations

import random
from decimal import Decimal

from marketdata.checksum import book_checksum
from marketdata.feed import FeedBuilder
from matching.engine.grid import GridFormat
from matching.engine.types import BookDelta, InstrumentSpec, Side

SPEC = InstrumentSpec(symbol="T-USD", tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"),
                      min_qty=Decimal("0.0001"), max_qty=Decimal("1000"), max_price=Decimal("1000000"))


def test_every_delta_carries_the_checksum_of_the_book_it_leaves() -> None:
    grid = GridFormat(SPEC)
    feed = FeedBuilder(SPEC, [("buy", 999_990, 5), ("sell", 1_000_010, 7)])
    book = {Side.BUY: {999_990: 5}, Side.SELL: {1_000_010: 7}}
    rng = random.Random(11)
    for seq in range(1, 5001):
        side = rng.choice((Side.BUY, Side.SELL))
        # Mostly near the top, often deep enough to be below the top 10 levels.
        offset = rng.randint(1, 40)
        price = 1_000_000 - offset if side is Side.BUY else 1_000_000 + offset
        levels = book[side]
        qty = 0 if price in levels and rng.random() < 0.4 else rng.randint(1, 50_000)
        if qty:
            levels[price] = qty
        else:
            levels.pop(price, None)
        (event,) = feed.events([BookDelta(seq, side, price, qty, 1)])[:1]
        bids = [(grid.price(p), grid.qty(q)) for p, q in sorted(book[Side.BUY].items(), reverse=True)]
        asks = [(grid.price(p), grid.qty(q)) for p, q in sorted(book[Side.SELL].items())]
        assert event["seq"] == seq
        assert event["checksum"] == book_checksum(asks, bids), seq
