"""manage.py simulate against the live exchange: a short bounded run and one stopped with
Ctrl-C; what it says it did is what PostgreSQL holds, and it leaves no quote behind."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from exchange_project.processes import ROOT
from tests.http import call
from tests.marketdata.simulation.helpers import db_counts, manage, read_json


def check_against_database(exchange: Any, sym: str, summary: dict[str, Any]) -> dict[str, Any]:
    held = db_counts(exchange, sym, client_prefix="sim-")
    outcomes = summary["outcomes"]
    assert summary["rejected_by_code"] == {}
    assert outcomes["placed"] == held["orders"]
    assert summary["trades"] == held["trades"] > 0
    assert outcomes.get("cancelled", 0) + outcomes.get("cancelled_at_exit", 0) == held["cancelled_by_user"]
    # A clean exit: nothing the simulator placed still rests.
    assert held["statuses"].get("open", 0) == held["statuses"].get("partially_filled", 0) == 0
    assert "pending" not in held["statuses"]
    status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}")
    assert status == 200 and book["bids"] == [] and book["asks"] == []
    return held


def test_a_short_run_over_http_quotes_takes_cancels_and_modifies(exchange: Any, tmp_path: Path) -> None:
    sym = exchange.make_instrument()
    out = tmp_path / "summary.json"
    manage(exchange, "simulate", "--instrument", sym, "--rate", "150", "--duration", "3", "--seed", "3",
           "--url", exchange.http, "--mid", "100.00", "--json", str(out))
    summary = read_json(out)
    check_against_database(exchange, sym, summary)
    assert 110 <= summary["events_per_s"] <= 190  # Poisson at 150/s for 3 s
    assert {"cancel", "modify", "place_quote", "place_take"} <= set(summary["sent"])
    assert summary["outcomes"]["modified"] > 0 and summary["outcomes"]["cancelled"] > 0
    assert summary["mid"]["start"] == "100.00" and summary["mid"]["end"] != "100.00"


def test_ctrl_c_stops_a_run_over_the_websocket_cleanly(exchange: Any, tmp_path: Path) -> None:
    sym = exchange.make_instrument()
    out = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "simulate", "--instrument", sym, "--rate",
                             "100", "--seed", "8", "--via", "ws", "--url", exchange.ws, "--mid", "250.00",
                             "--json", str(out)], env=exchange.env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while db_counts(exchange, sym, "sim-")["trades"] < 20 and time.monotonic() < deadline:
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = read_json(out)
    assert "modify" not in summary["sent"]  # WS /stream has no modify: cancel and replace
    check_against_database(exchange, sym, summary)
    assert f"trades           {summary['trades']:,}" in stdout
