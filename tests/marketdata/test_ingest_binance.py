"""The Binance ingester against a local server speaking Binance's format: trades become market
orders with the taker's side, scaled quantities and trade-id idempotency keys; a dropped
connection is reconnected and the trades it sees again are not placed twice."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from marketdata.management.commands.ingest_binance import decode, parse_trade, scaled_quantity
from tests.marketdata.fake_binance import FakeBinance, agg_trade, trade
from tests.orders.helpers import place

ROOT = Path(__file__).resolve().parents[2]


def ingest(exchange: Any, *args: str) -> dict[str, int]:
    proc = subprocess.run([sys.executable, str(ROOT / "manage.py"), "ingest_binance", *args, "--log-every", "1"],
                          env=exchange.env, cwd=ROOT, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


def orders_of(exchange: Any, instrument: str, client_id: str) -> dict[str, tuple[str, str, Decimal]]:
    with exchange.connect() as conn:
        rows = conn.execute(
            "SELECT o.idempotency_key, o.side, o.type, o.quantity FROM orders_order o "
            "JOIN orders_instrument i ON i.id = o.instrument_id WHERE i.symbol = %s AND o.client_id = %s",
            (instrument, client_id)).fetchall()
    return {key: (side, kind, qty) for key, side, kind, qty in rows}


def test_parse_and_scale_follow_binance_semantics() -> None:
    t = parse_trade(trade(5, "30000.10", "0.01234", buyer_is_maker=True))
    assert t is not None and (t.taker_side, t.trade_key, t.quantity) == ("sell", "5", Decimal("0.01234"))
    a = parse_trade({"stream": "btcusdt@aggTrade", "data": agg_trade(9, "30000.10", "2", buyer_is_maker=False)})
    assert a is not None and (a.taker_side, a.trade_key) == ("buy", "agg9")
    assert parse_trade({"result": None, "id": 1}) is None
    assert scaled_quantity(Decimal("0.01234"), Decimal("10"), Decimal("0.0001")) == Decimal("0.1234")
    assert scaled_quantity(Decimal("0.00005"), Decimal("1"), Decimal("0.0001")) == 0


def test_numeric_prices_are_read_exactly_and_floats_refused() -> None:
    # A recording may carry numbers instead of Binance's strings: read exactly, never via float.
    raw = (b'{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":30000.123456789012345,"q":0.10000000000000001,'
           b'"T":1,"m":false,"M":true}')
    t = parse_trade(decode(raw))
    assert t is not None and t.price == Decimal("30000.123456789012345")
    assert t.quantity == Decimal("0.10000000000000001")
    as_float = {**trade(8, "1", "1", buyer_is_maker=False), "p": 30000.1}
    assert parse_trade(as_float) is None
    assert decode(b"{not json") is None


def test_trades_become_market_orders_and_a_reconnect_never_duplicates(exchange: Any) -> None:
    sym = exchange.make_instrument()
    # Liquidity on both sides so the market orders trade.
    place(exchange, sym, side="sell", price="101.00", quantity="100", client_id="mm")
    place(exchange, sym, side="buy", price="99.00", quantity="100", client_id="mm")
    trades = [trade(t, "30000.00", "0.000009" if t == 7 else f"0.{t:04d}", buyer_is_maker=t % 3 == 0)
              for t in range(1, 21)]
    # First connection: trades 1-10, then dropped. Second: 6-20 (6-10 seen again).
    with FakeBinance([trades[:10], trades[5:]]) as server:
        counts = ingest(exchange, "--url", server.url, "--instrument", sym, "--scale", "10",
                        "--max-messages", "25", "--duration", "30")
        assert server.connections >= 2

    assert counts["messages"] == 25
    assert counts["skipped_zero_quantity"] == 2  # trade 7, on both connections: 0.000009 x 10 < 1 lot
    assert counts["placed"] == 19 and counts["duplicates"] == 4
    orders = orders_of(exchange, sym, "binance")
    expected = {f"binance-BTCUSDT-{t}": ("sell" if t % 3 == 0 else "buy", "market", Decimal(f"0.{t:04d}") * 10)
                for t in range(1, 21) if t != 7}
    assert orders == expected


def test_replays_a_json_lines_recording_of_aggregate_trades(exchange: Any, tmp_path: Path) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="101.00", quantity="100", client_id="mm")
    recording = tmp_path / "aggtrades.jsonl"
    lines = [orjson.dumps(agg_trade(a, "30000.00", "0.5", buyer_is_maker=False)) for a in range(1, 6)]
    recording.write_bytes(b"\n".join([b'{"result":null,"id":1}', *lines]) + b"\n")

    counts = ingest(exchange, "--file", str(recording), "--instrument", sym, "--client-id", "replay")
    again = ingest(exchange, "--file", str(recording), "--instrument", sym, "--client-id", "replay")

    assert (counts["messages"], counts["placed"], counts["status_filled"]) == (5, 5, 5)
    assert (again.get("placed", 0), again["duplicates"]) == (0, 5)
    assert set(orders_of(exchange, sym, "replay")) == {f"binance-BTCUSDT-agg{a}" for a in range(1, 6)}
