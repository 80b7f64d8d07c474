#!/usr/bin/env python3
"""Throughput and latency of the pure matching engine (stdlib + matching/ only).

    python load-test/bench_engine.py --ops 1000000 --seed 1 --resting 10000

What it does
1. Pre-populates ~``--resting`` resting orders spread over ~``--levels`` price
   levels (half bids, half asks) around 30000.00 (tick 0.01, lot 0.0001).
2. Generates the command stream (untimed) against a live engine, steered by
   its book: 60% limit near the touch (mostly passive, some crossing, 30% of
   the crossing ones IOC), 15% market, 20% cancel of a random resting order,
   5% modify (qty down/up or a price move) of a random resting order.
3. "timed": replays the stream on a fresh engine with the same
   pre-population, wrapping each ``engine.apply`` in ``time.perf_counter_ns``.
4. "replay": replays it again in a bare loop, no per-op timing: the ops/s
   figure without measurement overhead. The engine is deterministic, so all
   three runs do exactly the same work (checked by comparing snapshots).

Aggressiveness (share of crossing limits, market size) is steered by a simple
feedback on the book size so the book stays near ``--resting`` orders for the
whole run, whatever ``--ops`` is.

GC: by default ``gc.freeze()`` is called after pre-population (what a
long-running worker does after bootstrap: the resting book is not rescanned by
every collection). ``--no-gc-freeze`` measures without it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matching.engine import Engine  # noqa: E402
from matching.types import (  # noqa: E402
    STP,
    Cancel,
    InstrumentSpec,
    Modify,
    OrderType,
    OrderUpdate,
    Place,
    Side,
    TimeInForce,
    Trade,
)

SPEC = InstrumentSpec(
    symbol="BTC-USD",
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.0001"),
    min_qty=Decimal("0.0001"),
    max_qty=Decimal("1000"),
    max_price=Decimal("1000000.00"),
)
MID_TICKS = 3_000_000  # 30000.00


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    # Other processes on this machine share the cores; say how busy it was.
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


class LiveSet:
    """Resting order ids with O(1) add, remove and uniform random pick."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, oid: str) -> None:
        if oid not in self.pos:
            self.pos[oid] = len(self.ids)
            self.ids.append(oid)

    def remove(self, oid: str) -> None:
        i = self.pos.pop(oid, None)
        if i is None:
            return
        last = self.ids.pop()
        if i < len(self.ids):
            self.ids[i] = last
            self.pos[last] = i

    def __len__(self) -> int:
        return len(self.ids)


def track(events: list, live: LiveSet) -> None:
    for ev in events:
        if type(ev) is OrderUpdate:
            if ev.priority is None:
                live.remove(ev.order_id)
            else:
                live.add(ev.order_id)


def prepopulate(rng: random.Random, resting: int, levels: int) -> list[Place]:
    per_side = max(1, levels // 2)
    cmds = []
    for i in range(resting):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        # Triangular-ish: more orders near the touch, as on a real book.
        offset = 1 + min(int(rng.expovariate(1 / (per_side / 3))), per_side - 1)
        price = MID_TICKS - offset if side is Side.BUY else MID_TICKS + offset
        cmds.append(
            Place(f"p{i}", f"c{rng.randrange(500)}", side, OrderType.LIMIT, price, rng.randint(1, 5_000), ts_ns=i)
        )
    return cmds


def fresh_engine(pre: list[Place]) -> tuple[Engine, LiveSet]:
    engine = Engine(SPEC)
    live = LiveSet()
    for cmd in pre:
        track(engine.place(cmd), live)
    return engine, live


class MixGen:
    def __init__(self, rng: random.Random, engine: Engine, live: LiveSet, target: int, max_offset: int = 150) -> None:
        self.rng = rng
        self.max_offset = max_offset
        self.engine = engine
        self.live = live
        self.target = target
        self.n = 0

    def next(self) -> Place | Cancel | Modify:
        rng = self.rng
        self.n += 1
        ts = 1_000_000 + self.n
        r = rng.random()
        live = self.live
        if r < 0.20 and len(live):
            return Cancel(live.ids[rng.randrange(len(live))], ts)
        if r < 0.25 and len(live):
            oid = live.ids[rng.randrange(len(live))]
            state = self.engine.get_order(oid)
            assert state is not None
            k = rng.random()
            if k < 0.5:
                return Modify(oid, None, max(state.filled_lots + 1, state.qty_lots - rng.randint(1, 1_000)), ts_ns=ts)
            if k < 0.75:
                return Modify(oid, None, state.qty_lots + rng.randint(1, 1_000), ts_ns=ts)
            move = rng.choice((-3, -2, -1, 1, 2, 3))
            return Modify(oid, max(1, state.price_ticks + move), None, ts_ns=ts)  # type: ignore[operator]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        client = f"c{rng.randrange(500)}"
        # Feedback: above target the flow gets more aggressive, below it more passive.
        excess = (len(live) - self.target) / self.target
        if r < 0.40:
            qty = max(1, int(rng.randint(1, 4_000) * (1 + 3 * max(0.0, excess))))
            return Place(f"m{self.n}", client, side, OrderType.MARKET, None, qty, ts_ns=ts)
        bid = self.engine.best_bid()
        ask = self.engine.best_ask()
        p_cross = min(0.6, max(0.02, 0.12 + excess))
        if rng.random() < p_cross:
            # Crossing limit: through the touch by a few ticks.
            ref = ask[0] if side is Side.BUY and ask else bid[0] if side is Side.SELL and bid else MID_TICKS
            price = ref + rng.randint(0, 3) if side is Side.BUY else ref - rng.randint(0, 3)
            tif = TimeInForce.IOC if rng.random() < 0.3 else TimeInForce.GTC
        else:
            # Passive: at or behind our own touch, mostly within a few ticks but
            # with a tail that keeps a few hundred levels populated.
            ref = bid[0] if side is Side.BUY and bid else ask[0] if side is Side.SELL and ask else MID_TICKS
            offset = min(int(rng.expovariate(1 / 30)), self.max_offset)
            price = ref - offset if side is Side.BUY else ref + offset
            tif = TimeInForce.GTC
        return Place(f"l{self.n}", client, side, OrderType.LIMIT, max(1, price), rng.randint(1, 5_000), tif, False, STP.CANCEL_TAKER, ts)


def pct(sorted_ns: list[int], p: float) -> float:
    i = min(len(sorted_ns) - 1, max(0, int(round(p / 100 * len(sorted_ns))) - 1))
    return sorted_ns[i] / 1_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resting", type=int, default=10_000)
    ap.add_argument("--levels", type=int, default=300)
    ap.add_argument("--no-gc-freeze", action="store_true")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    pre = prepopulate(rng, args.resting, args.levels)
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on {cpu_model()}, "
        f"{os.cpu_count()} cpus, load average {load_average()}"
    )

    # Phase 0: generate the command stream against a live engine (untimed).
    gen_engine, live = fresh_engine(pre)
    depth = gen_engine.depth(100_000)
    print(
        f"start book: {gen_engine.open_order_count} resting orders on {len(depth.bids)} bid + "
        f"{len(depth.asks)} ask levels; ops={args.ops} seed={args.seed} gc.freeze={'no' if args.no_gc_freeze else 'yes'}"
    )
    gen = MixGen(rng, gen_engine, live, args.resting)
    cmds: list[Place | Cancel | Modify] = []
    kinds = {"limit": 0, "market": 0, "cancel": 0, "modify": 0}
    events = trades = 0
    for _ in range(args.ops):
        cmd = gen.next()
        cmds.append(cmd)
        evs = gen_engine.apply(cmd)
        events += len(evs)
        track(evs, live)
        if type(cmd) is Place:
            kinds["market" if cmd.price_ticks is None else "limit"] += 1
            trades += sum(1 for e in evs if type(e) is Trade)
        else:
            kinds["cancel" if type(cmd) is Cancel else "modify"] += 1
    gen_engine.check_invariants()
    end_depth = gen_engine.depth(100_000)
    mix = ", ".join(f"{k} {100 * v / args.ops:.1f}%" for k, v in kinds.items())
    print(f"mix: {mix}; {events / args.ops:.2f} events/op, {trades / args.ops:.2f} trades/op")
    print(
        f"end book: {gen_engine.open_order_count} resting orders on {len(end_depth.bids)} bid + "
        f"{len(end_depth.asks)} ask levels"
    )
    final_snapshot = gen_engine.snapshot()
    del gen_engine, gen, live

    def ready_engine() -> Engine:
        engine, _ = fresh_engine(pre)
        gc.collect()
        if not args.no_gc_freeze:
            # Commands and the pre-populated book are long-lived: keep them out
            # of every collection, as a worker does after bootstrap.
            gc.freeze()
        return engine

    # Phase 1: per-op latency (only the engine call is inside the timer).
    engine = ready_engine()
    apply = engine.apply
    pc = time.perf_counter_ns
    lat = [0] * args.ops
    i = 0
    for cmd in cmds:
        t0 = pc()
        apply(cmd)
        lat[i] = pc() - t0
        i += 1
    assert engine.snapshot() == final_snapshot, "timed run diverged: engine is not deterministic"
    total_ns = sum(lat)
    lat.sort()
    print(
        f"timed:  {args.ops / (total_ns / 1e9):>9,.0f} ops/s (sum of per-op times); latency us: "
        f"p50 {pct(lat, 50):.2f}  p99 {pct(lat, 99):.2f}  p99.9 {pct(lat, 99.9):.2f}  max {lat[-1] / 1000:.1f}"
    )
    del lat, engine, apply
    gc.unfreeze()

    # Phase 2: bare replay, no per-op timing.
    engine = ready_engine()
    apply = engine.apply
    c0 = time.process_time()
    t0 = time.perf_counter()
    for cmd in cmds:
        apply(cmd)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert engine.snapshot() == final_snapshot, "replay diverged: engine is not deterministic"
    print(
        f"replay: {args.ops / elapsed:>9,.0f} ops/s wall ({args.ops} ops in {elapsed:.3f} s, no per-op timing); "
        f"{args.ops / cpu:,.0f} ops/s per CPU-second"
    )
    print(f"load average during the run: {load_average()}")


if __name__ == "__main__":
    main()
