"""manage.py load_orders: a generated file replayed through each transport against the live
exchange, the printed summary checked against what PostgreSQL holds."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from marketdata.simulation.orderfile import CSV_FIELDS
from tests.marketdata.simulation.helpers import db_counts, gen_orders, manage, read_json


def order_file(tmp_path: Path, ext: str, seed: int) -> tuple[Path, int]:
    """400 generated orders around 100.00 (crossing ones and a sweep make trades), then a
    repeat, a key reused with another body, and two bodies POST /orders refuses."""
    path = tmp_path / f"orders.{ext}"
    lines = gen_orders(path, "--orders", "400", "--seed", str(seed), "--mid", "100.00", "--median-distance",
                       "0.005", "--cross-share", "0.1", "--clients", "40")
    first = json.loads(lines[1]) if ext == "jsonl" else dict(zip(CSV_FIELDS, lines[1].split(",")))
    reused = dict(first, quantity="9.9999")
    off_tick = dict(first, idempotency_key=f"{first['idempotency_key']}-x", price="100.005")
    if ext == "jsonl":
        extra = [json.dumps(first), json.dumps(reused), json.dumps(off_tick),
                 json.dumps(dict(first, idempotency_key="unknown-field", colour="red"))]
        count = len(lines) + len(extra)
    else:
        extra = [",".join(str(b.get(f, "")) for f in CSV_FIELDS) for b in (first, reused, off_tick)]
        count = len(lines) - 1 + len(extra)  # the header is no order
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path, count


@pytest.mark.parametrize(("via", "ext"), [("ws", "jsonl"), ("http", "csv"), ("direct", "jsonl")])
def test_a_file_is_replayed_and_the_summary_is_what_the_database_holds(exchange: Any, tmp_path: Path, via: str,
                                                                         ext: str) -> None:
    sym = exchange.make_instrument()
    path, count = order_file(tmp_path, ext, seed={"ws": 1, "http": 2, "direct": 3}[via])
    out = tmp_path / "summary.json"
    done = manage(exchange, "load_orders", str(path), "--via", via, "--url", exchange.http, "--instrument", sym,
                  "--json", str(out))
    summary = read_json(out)
    held = db_counts(exchange, sym)

    assert summary["orders"] == count
    assert summary["accepted"] == held["orders"] == count - 3 - (ext == "jsonl")
    assert summary["duplicates"] == 1 and summary["pending"] == 0
    expected = {"idempotency_key_reused": 1, "price_too_many_decimals": 1}
    if ext == "jsonl":
        expected["unknown_field"] = 1
    assert summary["rejected_by_code"] == expected
    assert summary["trades"] == held["trades"] > 0
    assert "pending" not in held["statuses"]
    assert summary["latency_ms"]["p50"] is not None and summary["orders_per_s"] > 0
    assert f"trades           {held['trades']:,}" in done.stdout


def test_the_rate_paces_the_replay(exchange: Any, tmp_path: Path) -> None:
    sym = exchange.make_instrument()
    path = tmp_path / "orders.jsonl"
    gen_orders(path, "--orders", "300", "--seed", "9", "--mid", "100.00", "--sweep-share", "0")
    out = tmp_path / "summary.json"
    started = time.monotonic()
    manage(exchange, "load_orders", str(path), "--via", "ws", "--url", exchange.ws, "--instrument", sym,
           "--rate", "300", "--json", str(out))
    summary = read_json(out)
    assert summary["accepted"] == 300
    # 300 orders at 300/s: the last is due after ~1 s, however fast the exchange answers.
    assert 0.95 <= summary["elapsed_s"] < time.monotonic() - started
    assert summary["orders_per_s"] <= 320


def test_a_file_loaded_twice_is_answered_from_idempotency_unless_rekeyed(exchange: Any, tmp_path: Path) -> None:
    sym = exchange.make_instrument()
    path = tmp_path / "orders.jsonl"
    gen_orders(path, "--orders", "200", "--seed", "4", "--mid", "100.00", "--sweep-share", "0")
    first, second, third = (tmp_path / f"{n}.json" for n in ("first", "second", "third"))
    manage(exchange, "load_orders", str(path), "--via", "ws", "--url", exchange.http, "--instrument", sym,
           "--json", str(first))
    manage(exchange, "load_orders", str(path), "--via", "ws", "--url", exchange.http, "--instrument", sym,
           "--json", str(second))
    manage(exchange, "load_orders", str(path), "--via", "ws", "--url", exchange.http, "--instrument", sym,
           "--rekey", "--json", str(third))
    assert read_json(first)["accepted"] == 200
    assert (read_json(second)["accepted"], read_json(second)["duplicates"]) == (0, 200)
    assert read_json(third)["accepted"] == 200
    assert db_counts(exchange, sym)["orders"] == 400
