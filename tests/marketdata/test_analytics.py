"""marketdata/analytics.py: the worker's per-instrument aggregates, batch by batch (the rows it
writes, the candles it announces closed, the 24 h window, a restart from stored rows)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from marketdata.analytics import InstrumentAnalytics
from matching.aggregates import INTERVALS, MINUTE_MS, Scale, window_bounds
from matching.engine.types import InstrumentSpec, Side, Trade

SPEC = InstrumentSpec("TST-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                      Decimal("10000000"))
SCALE = Scale(SPEC)
T0_MS = 1_764_676_800_000  # 2025-12-02T12:00:00Z, a day boundary + 12 h


def _trade(seq: int, ts_ms: int, price: int, qty: int, buys: bool = True) -> Trade:
    return Trade(seq, seq, price, qty, Side.BUY if buys else Side.SELL, f"m{seq}", f"t{seq}", f"b{seq}", f"s{seq}",
                 ts_ms * 1_000_000)


def test_the_workers_aggregates_write_each_batchs_trades_once_and_announce_closed_candles() -> None:
    agg = InstrumentAnalytics(SPEC, [], [], T0_MS * 1_000_000)
    # given a batch with two trades in the first minute
    agg.trade(_trade(1, T0_MS + 1_000, 10_000, 10_000), "alice", "bob")
    agg.trade(_trade(2, T0_MS + 2_000, 10_100, 5_000, buys=False), "carol", "alice")
    rows, positions, events = agg.flush(T0_MS * 1_000_000 + 2_000_000_000)
    # then one delta row per interval, each with both trades, and the positions of all three
    assert sorted(r["interval"] for r in rows) == sorted(INTERVALS)
    assert {(r["trade_count"], r["volume"], r["quote_volume"], r["open"], r["close"]) for r in rows} == \
        {(2, "1.5000", "150.500000", "100.00", "101.00")}
    assert [p["client_id"] for p in positions] == ["alice", "bob", "carol"]
    assert positions[0]["net_quantity"] == "0.5000" and positions[0]["realized_pnl"] == "0.500000"
    assert [e["event"] for e in events] == ["candle"] * 5 + ["ticker_24h"]
    assert all(e["closed"] is False and e["seq"] == 2 for e in events[:5])
    assert events[-1]["volume"] == "1.5000" and events[-1]["vwap"] == "100.33"
    # when nothing more trades, the flush is empty; when the clock passes the minute, the 1m
    # candle is announced closed once
    assert agg.flush(T0_MS * 1_000_000 + 3_000_000_000) == ([], [], [])
    assert agg.due((T0_MS + 59_999) * 1_000_000) == []
    closed = agg.due((T0_MS + 60_000) * 1_000_000)
    assert [(e["interval"], e["closed"]) for e in closed] == [("1m", True)]
    assert agg.due((T0_MS + 61_000) * 1_000_000) == []
    # when the next trade lands 6 minutes later, the 5m candle closes first, then the new ones
    agg.trade(_trade(3, T0_MS + 6 * MINUTE_MS, 9_900, 10_000), "bob", "carol")
    rows, _, events = agg.flush((T0_MS + 6 * MINUTE_MS) * 1_000_000)
    assert [(e["event"], e.get("interval"), e.get("closed")) for e in events] == [
        ("candle", "5m", True), ("candle", "1m", False), ("candle", "5m", False), ("candle", "15m", False),
        ("candle", "1h", False), ("candle", "1d", False), ("ticker_24h", None, None)]
    hour = next(e for e in events if e.get("interval") == "1h")
    assert (hour["trade_count"], hour["open"], hour["close"], hour["low"]) == (3, "100.00", "99.00", "99.00")
    assert {r["trade_count"] for r in rows} == {1}  # deltas: the batch's own trade only


def test_the_24h_window_drops_minutes_as_they_leave_it() -> None:
    agg = InstrumentAnalytics(SPEC, [], [], T0_MS * 1_000_000)
    agg.trade(_trade(1, T0_MS, 20_000, 10_000), "a", "b")  # the high, early
    agg.flush(T0_MS * 1_000_000)
    later = T0_MS + 3 * INTERVALS["1h"]
    agg.trade(_trade(2, later, 10_000, 10_000), "a", "b")
    _, _, events = agg.flush(later * 1_000_000)
    assert (events[-1]["high"], events[-1]["open"], events[-1]["trade_count"]) == ("200.00", "200.00", 2)
    # when the first minute leaves the window, its trade leaves the statistics
    first, _ = window_bounds(T0_MS + INTERVALS["1d"])
    assert first == T0_MS + MINUTE_MS
    events = agg.due((T0_MS + INTERVALS["1d"]) * 1_000_000)
    ticker = [e for e in events if e["event"] == "ticker_24h"]
    assert len(ticker) == 1
    assert (ticker[0]["high"], ticker[0]["open"], ticker[0]["trade_count"], ticker[0]["volume"]) == \
        ("100.00", "100.00", 1, "1.0000")
    assert agg.due((T0_MS + INTERVALS["1d"] + 1_000) * 1_000_000) == []


def test_the_aggregates_restart_from_stored_rows_where_they_left_off() -> None:
    agg = InstrumentAnalytics(SPEC, [], [], T0_MS * 1_000_000)
    agg.trade(_trade(1, T0_MS + 5_000, 10_000, 10_000), "alice", "bob")
    rows, positions, _ = agg.flush((T0_MS + 5_000) * 1_000_000)
    stored = [{**r, "open_time": dt.datetime.fromisoformat(r["open_time"].replace("Z", "+00:00")),
               **{k: Decimal(r[k]) for k in ("open", "high", "low", "close", "volume", "quote_volume",
                                             "taker_buy_volume", "taker_buy_quote_volume")}} for r in rows]
    held = [{**p, **{k: Decimal(v) for k, v in p.items() if k not in ("client_id", "trade_count", "last_seq")}}
            for p in positions]
    again = InstrumentAnalytics(SPEC, stored, held, (T0_MS + 10_000) * 1_000_000)
    assert again.positions == agg.positions and again.current == agg.current
    assert again.window.stats() == agg.window.stats()
    again.trade(_trade(2, T0_MS + 20_000, 10_200, 10_000), "bob", "alice")
    _, positions, events = again.flush((T0_MS + 20_000) * 1_000_000)
    assert {p["client_id"]: p["realized_pnl"] for p in positions} == {"alice": "2.000000", "bob": "-2.000000"}
    assert events[0]["trade_count"] == 2 and events[-1]["trade_count"] == 2
