"""`manage.py recover --verify` against the live record: the book from the latest snapshot
plus the journal after it equals the book rebuilt from the open orders and the worker's live
book; a corrupted open order, or a corrupted snapshot, is a difference and exit 1."""
from __future__ import annotations

from typing import Any

from tests.orders.helpers import place, staff_session
from tests.orders.test_replay import history, manage


def test_snapshot_plus_journal_open_orders_and_the_live_book_agree(exchange: Any) -> None:
    sym = exchange.make_instrument()
    op = staff_session(exchange)
    history(exchange, sym, seed=21, n=80)
    # given a snapshot in the middle of the history
    status, snap, _ = op.request("POST", "/admin/snapshot", {"instrument": sym})
    assert status == 201 and snap["command_seq"] > 0
    history(exchange, sym, seed=22, n=60)
    # when the books are verified
    ok = manage(exchange, "recover", "--verify", "--instrument", sym)
    # then all three agree
    assert ok.returncode == 0, ok.stderr
    assert f"snapshot #{snap['id']} (command {snap['command_seq']})" in ok.stdout
    assert ok.stdout.count(": same") == 2 and "live book (snapshot #" in ok.stdout
    # and an open order whose row was changed behind the worker's back is found
    resting = place(exchange, sym, side="buy", price="50.00", quantity="2", client_id="victim")
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_order SET quantity = 3 WHERE order_id = %s", (resting["order_id"],))
    broken = manage(exchange, "recover", "--verify", "--instrument", sym)
    assert broken.returncode == 1 and "vs the open orders" in broken.stderr and "DIFFERENT" in broken.stderr
    assert "only in open orders" in broken.stderr
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_order SET quantity = 2 WHERE order_id = %s", (resting["order_id"],))
        # and so is a snapshot (the latest: the live one verify stored) that does not hold what the
        # journal says the book held
        conn.execute("UPDATE marketdata_booksnapshot SET engine_snapshot = jsonb_set(engine_snapshot, '{orders}', "
                     "'[]'::jsonb) WHERE id = (SELECT max(s.id) FROM marketdata_booksnapshot s JOIN orders_instrument i "
                     "ON i.id = s.instrument_id WHERE i.symbol = %s)", (sym,))
    broken = manage(exchange, "recover", "--verify", "--instrument", sym, "--no-live")
    assert broken.returncode == 1 and "DIFFERENT" in broken.stderr
