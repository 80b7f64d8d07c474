#!/usr/bin/env python3
"""Throughput and latency of the pure matching engine (stdlib + matching/ only).

    python load-test/bench_engine.py --ops 1000000 --seed 1 --resting 10000

What it does
1. Pre-populates ~``--resting`` resting orders spread over ~``--levels`` price
   levels (half bids, half asks) around 30000.00 (tick 0.01, lot 0.0001).
2. An untimed generator engine builds the command stream in batches of
   ``--chunk``, steered by its book: 60% limit near the touch (mostly passive,
   some crossing, 30% of the crossing ones IOC), 15% market, 20% cancel of a
   random resting order, 5% modify (qty down/up or a price move) of a random
   resting order. Aggressiveness (share of crossing limits, market size) is
   steered by the book size so the book stays near ``--resting`` orders on a
   few hundred levels however long the run.
3. Each batch is applied to two more engines with the same pre-population:
   one with ``time.perf_counter_ns`` around every ``engine.apply`` (latency
   percentiles), one in a bare loop timed per batch (ops/s). The engine is
   deterministic, so all three do the same work; their final snapshots are
   compared.
4. ``--build-in-loop`` also keeps the batches and, after the run, replays the
   whole stream on one fresh engine per entry, alone, as the worker runs its one
   engine: pre-built commands through ``engine.apply``; a ``Place``/``Cancel``/
   ``Modify`` built in the timed loop from plain values (a kind, then ints, strs,
   bools and None; enum fields as their plain strings "buy", "limit", "GTC",
   "cancel_taker") and passed to ``engine.place/cancel/modify``; the plain values
   passed as they are to the flat ``engine.place_values/cancel_values/
   modify_values``. Each batch's input is made anew just before it is timed (fresh
   commands, fresh tuples of values), as a caller has it when it has just read it.
   (Alone, because interleaved per batch with the bench's other engines, each
   engine's book is evicted from the CPU caches by theirs, which no worker does.)
5. ``--cold`` also replays the whole stream pre-built in one list (each
   command then comes cold from memory: a worst case, not a worker's).

GC: by default ``gc.freeze()`` is called after pre-population (what a
long-running worker does after bootstrap: the resting book is not rescanned by
every collection). ``--no-gc-freeze`` measures without it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import CpuTimes, cpu_model, load_average, usage  # load-test/machine.py

from matching.engine import ENGINE_BUILD
from matching.engine.engine import Engine
from matching.engine.types import (
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


PLACE, CANCEL, MODIFY = 0, 1, 2


def plain_values(cmds: list[Place | Cancel | Modify]) -> list[tuple[int, tuple]]:
    """Each command as a caller holds it: a kind, then its fields as plain values, in order."""
    out: list[tuple[int, tuple]] = []
    for c in cmds:
        if type(c) is Place:
            out.append((PLACE, (c.order_id, c.client_id, c.side.value, c.order_type.value, c.price_ticks,
                                c.qty_lots, c.tif.value, c.post_only, c.stp.value, c.ts_ns)))
        elif type(c) is Cancel:
            out.append((CANCEL, (c.order_id, c.ts_ns)))
        else:
            out.append((MODIFY, (c.order_id, c.price_ticks, c.qty_lots, c.ts_ns)))
    return out


def run_dataclasses(engine: Engine, values: list[tuple[int, tuple]]) -> None:
    """Build each command object from its plain values and pass it to the engine."""
    place, cancel, modify = engine.place, engine.cancel, engine.modify
    for kind, v in values:
        if kind == PLACE:
            place(Place(*v))
        elif kind == CANCEL:
            cancel(Cancel(*v))
        else:
            modify(Modify(*v))


def run_flat(engine: Engine, values: list[tuple[int, tuple]]) -> None:
    """Call the engine's flat API with the plain values (no command object)."""
    place, cancel, modify = engine.place_values, engine.cancel_values, engine.modify_values
    for kind, v in values:
        if kind == PLACE:
            place(*v)
        elif kind == CANCEL:
            cancel(*v)
        else:
            modify(*v)


def run_prebuilt(engine: Engine, cmds: list[Place | Cancel | Modify]) -> None:
    apply = engine.apply
    for cmd in cmds:
        apply(cmd)


def fresh_commands(cmds: list[Place | Cancel | Modify]) -> list[Place | Cancel | Modify]:
    return [replace(c) for c in cmds]


def replay_entries(
    pre: list[Place], kept: list[list[Place | Cancel | Modify]], final_snapshot: dict, args: argparse.Namespace
) -> dict[str, float]:
    """The whole stream through each entry, each on its own fresh engine run alone.

    Before each batch (untimed) its input is made anew, as a caller has it when it has just
    read it: fresh command objects for ``apply``, fresh tuples of plain values for the others.
    """
    flat = hasattr(Engine, "place_values")
    entries = [
        ("pre-built commands, engine.apply(cmd)", fresh_commands, run_prebuilt),
        ("Place/Cancel/Modify(*values) built in the loop, engine.place/cancel/modify", plain_values, run_dataclasses),
    ]
    if flat:
        entries.append(("plain values, engine.place_values/cancel_values/modify_values(*values)", plain_values, run_flat))
    print(f"replayed alone, one fresh engine per entry, {args.ops} commands in batches of {args.chunk}:")
    measured: dict[str, float] = {}
    cpu_start = CpuTimes.now()
    pc = time.perf_counter_ns
    for name, prepare, run in entries:
        engine, _ = fresh_engine(pre)
        gc.collect()
        if not args.no_gc_freeze:
            gc.freeze()
        elapsed_ns = 0
        for cmds in kept:
            batch = prepare(cmds)
            t0 = pc()
            run(engine, batch)
            elapsed_ns += pc() - t0
        assert engine.snapshot() == final_snapshot, f"{name}: the engine diverged"
        print(f"  {name}: {args.ops / (elapsed_ns / 1e9):,.0f} ops/s wall")
        measured[run.__name__.removeprefix("run_")] = args.ops / (elapsed_ns / 1e9)
    if not flat:
        print("  engine.place_values: not in this engine")
    busy, steal = usage(cpu_start, CpuTimes.now())
    print(f"machine over the replays: {busy:.0f}% busy, {steal:.1f}% steal (all cpus)")
    return measured | {"machine_busy_pct": busy, "steal_pct": steal}


def pct(sorted_ns: list[int], p: float) -> float:
    i = min(len(sorted_ns) - 1, max(0, int(round(p / 100 * len(sorted_ns))) - 1))
    return sorted_ns[i] / 1_000


def generate(pre: list[Place], seed_rng: random.Random, ops: int, target: int, chunk: int):
    """Yield the command stream in chunks, steered by a generator-owned engine."""
    engine, live = fresh_engine(pre)
    gen = MixGen(seed_rng, engine, live, target)
    stats = {"limit": 0, "market": 0, "cancel": 0, "modify": 0, "events": 0, "trades": 0}
    done = 0
    while done < ops:
        cmds: list[Place | Cancel | Modify] = []
        for _ in range(min(chunk, ops - done)):
            cmd = gen.next()
            cmds.append(cmd)
            evs = engine.apply(cmd)
            stats["events"] += len(evs)
            track(evs, live)
            if type(cmd) is Place:
                stats["market" if cmd.price_ticks is None else "limit"] += 1
                stats["trades"] += sum(1 for e in evs if type(e) is Trade)
            else:
                stats["cancel" if type(cmd) is Cancel else "modify"] += 1
        done += len(cmds)
        yield cmds, engine, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resting", type=int, default=10_000)
    ap.add_argument("--levels", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=1_000, help="commands generated per batch (fresh, cache-warm)")
    ap.add_argument("--build-in-loop", action="store_true",
                    help="also run each batch from plain values, building the commands inside the timed loop")
    ap.add_argument("--cold", action="store_true", help="also replay all commands pre-built in one big list")
    ap.add_argument("--no-gc-freeze", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = ap.parse_args()
    load_before = load_average()

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on {cpu_model()}, "
        f"{os.cpu_count()} cpus, load average {load_average()}"
    )
    print(f"engine: {ENGINE_BUILD} ({sys.modules[Engine.__module__].__file__})")
    pre = prepopulate(random.Random(args.seed), args.resting, args.levels)
    timed_engine, _ = fresh_engine(pre)
    bare_engine, _ = fresh_engine(pre)
    depth = timed_engine.depth(100_000)
    print(
        f"start book: {timed_engine.open_order_count} resting orders on {len(depth.bids)} bid + "
        f"{len(depth.asks)} ask levels; ops={args.ops} seed={args.seed} "
        f"gc.freeze={'no' if args.no_gc_freeze else 'yes'}"
    )
    gc.collect()
    if not args.no_gc_freeze:
        # The pre-populated books are long-lived: keep them out of every
        # collection, as a worker does after bootstrap.
        gc.freeze()

    # Commands come in batches freshly built by the (untimed) generator, as a
    # worker's commands are freshly built from its input. Each batch is run on
    # two engines: one with perf_counter_ns around every call (latency), one in
    # a bare loop timed per batch (throughput).
    pc = time.perf_counter_ns
    timed_apply = timed_engine.apply
    bare_apply = bare_engine.apply
    lat: list[int] = []
    bare_ns = 0
    bare_cpu = 0.0
    kept: list[list[Place | Cancel | Modify]] = []
    cpu_start = CpuTimes.now()
    gen_engine = None
    stats: dict[str, int] = {}
    # (gen_engine and stats: the last batch's are reported below)
    for cmds, gen_engine, stats in generate(pre, random.Random(args.seed + 1_000), args.ops, args.resting, args.chunk):  # noqa: B007
        for cmd in cmds:
            t0 = pc()
            timed_apply(cmd)
            lat.append(pc() - t0)
        c0 = time.process_time()
        t0 = pc()
        for cmd in cmds:
            bare_apply(cmd)
        bare_ns += pc() - t0
        bare_cpu += time.process_time() - c0
        if args.build_in_loop:
            kept.append(cmds)
    busy, steal = usage(cpu_start, CpuTimes.now())
    assert gen_engine is not None
    gen_engine.check_invariants()
    final_snapshot = gen_engine.snapshot()
    assert timed_engine.snapshot() == final_snapshot == bare_engine.snapshot(), "engines diverged: not deterministic"

    mix = ", ".join(f"{k} {100 * stats[k] / args.ops:.1f}%" for k in ("limit", "market", "cancel", "modify"))
    print(f"mix: {mix}; {stats['events'] / args.ops:.2f} events/op, {stats['trades'] / args.ops:.2f} trades/op")
    end_depth = gen_engine.depth(100_000)
    print(
        f"end book: {gen_engine.open_order_count} resting orders on {len(end_depth.bids)} bid + "
        f"{len(end_depth.asks)} ask levels"
    )
    total_ns = sum(lat)
    lat.sort()
    print(
        f"latency (perf_counter_ns around each call): p50 {pct(lat, 50):.2f} us  p99 {pct(lat, 99):.2f} us  "
        f"p99.9 {pct(lat, 99.9):.2f} us  max {lat[-1] / 1000:.1f} us; {args.ops / (total_ns / 1e9):,.0f} ops/s summed"
    )
    print(
        f"throughput (bare loop): {args.ops / (bare_ns / 1e9):,.0f} ops/s wall, "
        f"{args.ops / bare_cpu:,.0f} ops/s per CPU-second"
    )
    print(f"machine over the timed runs: {busy:.0f}% busy, {steal:.1f}% steal (all cpus)")
    figures: dict[str, object] = {
        "command": [Path(sys.executable).name, *sys.argv], "engine": ENGINE_BUILD, "ops": args.ops,
        "seed": args.seed, "resting": args.resting, "gc_freeze": not args.no_gc_freeze,
        "events_per_op": stats["events"] / args.ops, "trades_per_op": stats["trades"] / args.ops,
        "bare_ops_per_s": args.ops / (bare_ns / 1e9), "bare_ops_per_cpu_s": args.ops / bare_cpu,
        "latency_us": {"p50": pct(lat, 50), "p99": pct(lat, 99), "p99.9": pct(lat, 99.9), "max": lat[-1] / 1000},
        "machine_busy_pct": busy, "steal_pct": steal, "load_average_before": load_before,
    }
    del lat

    if args.build_in_loop:
        figures["replayed_ops_per_s"] = replay_entries(pre, kept, final_snapshot, args)
        del kept

    if args.cold:
        # The same stream pre-built in one list of --ops commands and replayed:
        # every command is cold in the CPU cache (worst case, not a worker's).
        cmds_all = [c for chunk, _, _ in generate(pre, random.Random(args.seed + 1_000), args.ops, args.resting, 10_000) for c in chunk]
        engine, _ = fresh_engine(pre)
        gc.collect()
        if not args.no_gc_freeze:
            gc.freeze()
        apply = engine.apply
        t0 = pc()
        for cmd in cmds_all:
            apply(cmd)
        elapsed_ns = pc() - t0
        assert engine.snapshot() == final_snapshot
        print(f"cold replay of {args.ops} pre-built commands: {args.ops / (elapsed_ns / 1e9):,.0f} ops/s wall")
        figures["cold_ops_per_s"] = args.ops / (elapsed_ns / 1e9)
    print(f"load average at the end: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
