"""The flat entry (``Engine.place_values``, ``cancel_values``, ``modify_values``) and the
command objects (``Engine.place(Place)``, ...) are one API: the same values give the same
events, byte for byte, and both builds (compiled and interpreted) accept and refuse the
same values the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path
from random import Random
from typing import Any

import pytest

import matching.engine
from matching.engine.codec import event_to_dict, snapshot_dumps
from matching.engine.engine import Engine
from matching.engine.types import (
    STP,
    Cancel,
    InstrumentSpec,
    Modify,
    OrderType,
    Place,
    Reason,
    Rejected,
    Side,
    TimeInForce,
)
from tests.matching.reference import Reference, make_stream

ROOT = Path(__file__).resolve().parents[2]
SPEC = InstrumentSpec("TEST-USD", D("1"), D("1"), D("1"), D("1000"), D("10000"))


def encode(events: list) -> bytes:
    return json.dumps([event_to_dict(e) for e in events], sort_keys=True, separators=(",", ":")).encode()


def plain(value: Any, rng: Random) -> Any:
    """An enum member as itself or as its plain string, at random; anything else unchanged."""
    if isinstance(value, (Side, OrderType, TimeInForce, STP)) and rng.random() < 0.5:
        return value.value
    return value


def flat_apply(engine: Engine, cmd: Place | Cancel | Modify, rng: Random) -> list:
    """The command's fields as plain values, through the flat entry."""
    if type(cmd) is Place:
        return engine.place_values(
            cmd.order_id, cmd.client_id, plain(cmd.side, rng), plain(cmd.order_type, rng), cmd.price_ticks,
            cmd.qty_lots, plain(cmd.tif, rng), cmd.post_only, plain(cmd.stp, rng), cmd.ts_ns,
        )
    if type(cmd) is Cancel:
        return engine.cancel_values(cmd.order_id, cmd.ts_ns)
    assert type(cmd) is Modify
    return engine.modify_values(cmd.order_id, cmd.price_ticks, cmd.qty_lots, cmd.ts_ns)


@pytest.mark.parametrize("first_seed", range(0, 600, 100))
def test_flat_entry_gives_byte_identical_events_on_the_seeded_streams(first_seed: int) -> None:
    for seed in range(first_seed, first_seed + 100):
        # given a seeded stream (steered by the reference model towards live ids)
        spec, gen, counters = make_stream(seed)
        ref = Reference(spec, **counters)
        by_object = Engine(spec, **counters)
        by_values = Engine(spec, **counters)
        rng = Random(seed)
        for i in range(80):
            cmd = gen.next([o.order_id for o in ref.book])
            ref.apply(cmd)
            # when each command goes in as an object to one engine and as plain values
            # (enum fields as members or plain strings) to the other
            want = by_object.apply(cmd)
            got = flat_apply(by_values, cmd, rng)
            # then the events are the same bytes, and both books stay sound
            assert encode(got) == encode(want), f"seed={seed} op={i} cmd={cmd}"
            assert [type(e) for e in got] == [type(e) for e in want]
            by_values.check_invariants()
        assert snapshot_dumps(by_values.snapshot()) == snapshot_dumps(by_object.snapshot()), f"seed={seed}"


# ---------------------------------------------------------------------------
# What each entry accepts and refuses, in either build
# ---------------------------------------------------------------------------


class StrSub(str):
    pass


class IntSub(int):
    pass


PLACE = ("x", "c", "buy", "limit", 100, 1, "GTC", False, "cancel_taker", 5)
PLACE_VARIANTS: dict[int, list[Any]] = {
    0: ["s1", 5, None, b"x", StrSub("x")],
    1: ["d", 5, None, StrSub("c")],
    2: [Side.BUY, "sell", "BUY", "sideways", "", 5, None, [], b"buy", StrSub("buy")],
    3: [OrderType.MARKET, "market", "LIMIT", 1, None],
    4: [200, 0, -1, None, D("100"), 100.0, True, 10**30, "100", 10_001],
    5: [0, True, D("1"), 1.0, 10**30, "1", None, 1001],
    6: ["IOC", "FOK", "gtc", TimeInForce.IOC, None, 0],
    7: [True, 1, 0, None, "yes"],
    8: ["none", "cancel_both", "NONE", None, STP.CANCEL_MAKER],
    9: [0, True, 1.5, "5", None, 2**70, -1, IntSub(5)],
}
PLACE_COMBOS: list[tuple[Any, ...]] = [
    ("s1", "c", "sideways", "limit", 100, 1, "GTC", False, "cancel_taker", 5),  # garbage side, duplicate id
    ("s1", "c", "sideways", OrderType.LIMIT, 100, 1, TimeInForce.GTC, False, STP.CANCEL_TAKER, 5),
    ("x", "c", "sideways", "limit", 0, 1, "GTC", False, "cancel_taker", 5),  # garbage side, bad price
    (5, "c", "sideways", "limit", 100, 1, "GTC", False, "cancel_taker", 5),  # bad id and garbage side
    ("x", "c", "buy", "market", None, 4, "GTC", False, "cancel_taker", 5),  # sweeps the asks
    ("x", "c", "buy", "limit", 200, 1, "GTC", True, "cancel_taker", 5),  # post-only that would take
    ("x", "c", "buy", "market", None, 1, "IOC", True, "none", 5),  # post-only market
    ("x", "d", "sell", "limit", 90, 1, "FOK", False, "cancel_both", 5),  # own bid: STP
]
CANCELS: list[tuple[Any, ...]] = [
    ("s1", 5), ("nope", 5), (5, 5), (None, 5), (StrSub("s1"), 5), ("s1", True), ("s1", "1"), ("s1", 1.5), ("s1", 2**70),
]
MODIFIES: list[tuple[Any, ...]] = [
    ("s1", 201, None, 5), ("s1", None, 2, 5), ("s1", None, 9, 5), ("s1", None, None, 5), ("s1", D("201"), None, 5),
    ("s1", True, None, 5), ("s1", None, 2.0, 5), ("s1", 80, None, 5), ("s1", 10_001, None, 5), ("nope", 201, None, 5),
    (5, 201, None, 5), ("s1", None, 2, "5"), ("s1", None, 2, True), ("s1", 201, None, 2**70), (StrSub("s1"), 201, None, 5),
]


def _book() -> Engine:
    engine = Engine(SPEC)
    engine.place(Place("s1", "c", Side.SELL, OrderType.LIMIT, 200, 3, ts_ns=1))
    engine.place(Place("b1", "d", Side.BUY, OrderType.LIMIT, 90, 2, ts_ns=2))
    return engine


def _outcome(call: Any) -> str:
    engine = _book()
    try:
        events = call(engine)
    except Exception as exc:  # the outcome under test is which exception, if any
        return f"raises {type(exc).__name__}"
    return f"{encode(events).decode()} {snapshot_dumps(engine.snapshot()).decode()}"


def case_key(kind: str, values: tuple[Any, ...]) -> str:
    # With the types: StrSub("x") and "x" look alike.
    return f"{kind}{values!r} {'/'.join(type(v).__name__ for v in values)}"


def entry_outcomes() -> dict[str, list[str]]:
    """Every case: [outcome through the flat entry, outcome through the command object]."""
    cases: list[tuple[str, Any, Any]] = []
    places = [PLACE] + [PLACE[:i] + (v,) + PLACE[i + 1:] for i, vs in PLACE_VARIANTS.items() for v in vs]
    for values in places + PLACE_COMBOS:
        cases.append(("place", values, (lambda v: (lambda e: e.place_values(*v), lambda e: e.place(Place(*v))))(values)))
    for values in CANCELS:
        cases.append(("cancel", values, (lambda v: (lambda e: e.cancel_values(*v), lambda e: e.cancel(Cancel(*v))))(values)))
    for values in MODIFIES:
        cases.append(("modify", values, (lambda v: (lambda e: e.modify_values(*v), lambda e: e.modify(Modify(*v))))(values)))
    out: dict[str, list[str]] = {}
    for kind, values, (flat, by_object) in cases:
        key = case_key(kind, values)
        assert key not in out, key
        out[key] = [_outcome(flat), _outcome(by_object)]
    return out


def test_flat_entry_and_command_objects_accept_and_refuse_the_same_values() -> None:
    # given the values of every case / when passed flat and as a command object / then alike
    for key, (flat, by_object) in entry_outcomes().items():
        assert flat == by_object, key


def test_what_the_entry_accepts_and_refuses() -> None:
    outcomes = {k: v[0] for k, v in entry_outcomes().items()}

    def place(i: int, value: Any) -> str:
        return outcomes[case_key("place", PLACE[:i] + (value,) + PLACE[i + 1:])]

    # plain strings are their members; garbage (a wrong spelling, a non-str) is a ValueError
    assert place(2, Side.BUY) == outcomes[case_key("place", PLACE)] and '"type":"Accepted"' in outcomes[case_key("place", PLACE)]
    assert place(3, "market").startswith('[{"order_id":"x","reason":"price_not_allowed"')
    for i, value in ((2, "BUY"), (2, "sideways"), (2, 5), (2, None), (2, []), (3, "LIMIT"), (6, "gtc"), (8, "NONE")):
        assert place(i, value) == "raises ValueError", (i, value)
    # a wrong number is a reason, never an exception
    assert place(4, D("100")).startswith('[{"order_id":"x","reason":"invalid_price"')
    assert place(5, True).startswith('[{"order_id":"x","reason":"invalid_quantity"')
    # ids, post_only and the timestamp must have exactly their types
    for i, value in ((0, 5), (0, StrSub("x")), (1, None), (7, 1), (7, None), (9, True), (9, 1.5), (9, IntSub(5))):
        assert place(i, value) == "raises TypeError", (i, value)
    # a garbage side is refused even when the id is a duplicate
    assert outcomes[case_key("place", PLACE_COMBOS[0])] == outcomes[case_key("place", PLACE_COMBOS[1])] == "raises ValueError"
    assert outcomes[case_key("cancel", ("s1", True))] == outcomes[case_key("cancel", (5, 5))] == "raises TypeError"
    assert outcomes[case_key("modify", ("s1", D("201"), None, 5))].startswith('[{"order_id":"s1","reason":"invalid_price"')
    assert _book().place_values(*PLACE[:4], 0, 1) == [Rejected("x", Reason.INVALID_PRICE, 0)]  # Place's defaults


def _outcomes_in(build: str) -> dict[str, list[str]] | None:
    env = {**os.environ, "PGBOURSE_ENGINE": build}
    code = ("import json, matching.engine as m; from tests.matching.test_matching_flat import entry_outcomes; "
            "print(m.ENGINE_BUILD); print(json.dumps(entry_outcomes()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if build == "compiled" and "no compiled engine for these sources" in proc.stderr:
        return None
    assert proc.returncode == 0, proc.stderr
    reported, data = proc.stdout.splitlines()
    assert reported.startswith("interpreted" if build == "python" else "compiled"), reported
    result: dict[str, list[str]] = json.loads(data)
    return result


def test_both_builds_accept_and_refuse_the_same_values() -> None:
    # given the same cases / when run by the interpreted and by the compiled engine / then
    # every outcome (events and book, or the exception raised) is the same
    interpreted = _outcomes_in("python")
    compiled = _outcomes_in("compiled")
    if compiled is None:
        pytest.skip(f"no compiled engine for these sources ({matching.engine.ENGINE_BUILD})")
    assert interpreted is not None
    assert interpreted.keys() == compiled.keys()
    for key in interpreted:
        assert interpreted[key] == compiled[key], key
