"""Engine vs naive reference, op by op, on thousands of seeded random streams.

Given a seeded stream of mixed commands (limit/market/IOC/FOK/post-only,
cancel, modify, invalid input, duplicate ids, all STP modes, narrow and wide
bands, integer and fractional lots),
when each command is applied to both the engine and the reference model,
then the events are identical, the invariants hold after every command, and
the queries (BBO, depth, open count, snapshot) agree.
"""

from __future__ import annotations

import pytest

from matching.engine.engine import Engine
from matching.engine.types import Side
from tests.matching.reference import Reference, make_stream

STREAMS = 2000
OPS_PER_STREAM = 80
BATCH = 100  # seeds per test case: keeps failure reports readable and the run fast


def typed(events: list) -> list[tuple]:
    # NamedTuples compare as plain tuples: pair each with its type.
    return [(type(e), e) for e in events]


def top(levels: list) -> tuple[int, int] | None:
    return (levels[0].price_ticks, levels[0].qty_lots) if levels else None


def run_stream(seed: int, ops: int) -> int:
    spec, gen, counters = make_stream(seed)
    engine = Engine(spec, **counters)
    ref = Reference(spec, **counters)
    events_seen = 0
    for i in range(ops):
        cmd = gen.next([o.order_id for o in ref.book])
        got = engine.apply(cmd)
        want = ref.apply(cmd)
        assert typed(got) == typed(want), f"seed={seed} op={i} cmd={cmd}"
        events_seen += len(got)
        engine.check_invariants()
        assert engine.open_order_count == len(ref.book)
        assert (engine.seq, engine.next_trade_id, engine.next_priority) == (ref.seq, ref.next_trade_id, ref.next_priority)
        if i % 10 == 9:
            bids, asks = ref.levels(Side.BUY), ref.levels(Side.SELL)
            assert (engine.best_bid(), engine.best_ask()) == (top(bids), top(asks))
            depth = engine.depth(1_000)
            assert depth.bids == bids, f"seed={seed} op={i}"
            assert depth.asks == asks, f"seed={seed} op={i}"
            assert engine.snapshot() == ref.snapshot(), f"seed={seed} op={i}"
    return events_seen


@pytest.mark.parametrize("first_seed", range(0, STREAMS, BATCH))
def test_engine_matches_reference_on_seeded_streams(first_seed: int) -> None:
    total = 0
    for seed in range(first_seed, first_seed + BATCH):
        total += run_stream(seed, OPS_PER_STREAM)
    assert total > BATCH * OPS_PER_STREAM  # the streams really produce events


def test_long_stream_with_deep_book() -> None:
    # A few long streams so books get deep and old priorities matter.
    for seed in (10_001, 10_002, 10_003, 10_004):
        run_stream(seed, 2_000)
