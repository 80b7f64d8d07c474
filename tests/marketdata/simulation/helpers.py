"""Running the simulation commands as a user runs them: subprocesses against the live exchange."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from exchange_project.processes import ROOT

GEN_ORDERS = ROOT / "fixtures" / "gen_orders.py"


def manage(exchange: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=exchange.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def gen_orders(out: Path, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, str(GEN_ORDERS), "--out", str(out), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out.read_text().splitlines()


def db_counts(exchange: Any, symbol: str, client_prefix: str = "") -> dict[str, Any]:
    """What PostgreSQL holds for an instrument: orders by status, trades, cancels by the user."""
    with exchange.connect() as conn:
        (iid,) = conn.execute("SELECT id FROM orders_instrument WHERE symbol = %s", (symbol,)).fetchone()
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM orders_order WHERE instrument_id = %s AND client_id LIKE %s "
            "GROUP BY status", (iid, client_prefix + "%")).fetchall())
        (trades,) = conn.execute("SELECT count(*) FROM orders_trade WHERE instrument_id = %s", (iid,)).fetchone()
        (user_cancels,) = conn.execute(
            "SELECT count(*) FROM orders_order WHERE instrument_id = %s AND client_id LIKE %s "
            "AND reason = 'cancelled_by_user'", (iid, client_prefix + "%")).fetchone()
    return {"statuses": statuses, "orders": sum(statuses.values()), "trades": trades,
            "cancelled_by_user": user_cancels}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
