"""GET /positions/{client_id}: average cost through real orders, marked at the last trade."""
from __future__ import annotations

from typing import Any

from tests.http import call

from .helpers import place


def _position(exchange: Any, client: str, sym: str) -> dict[str, Any]:
    status, body = call(exchange.http, "GET", f"/positions/{client}?instrument={sym}")
    assert status == 200, body
    (pos,) = body["positions"]
    return pos


def test_average_cost_through_real_orders_and_the_counterparty_mirrors_it(exchange: Any) -> None:
    sym = exchange.make_instrument()
    # given alice buys 1 @ 100.00 and 1 @ 110.00 from bob
    for price in ("100.00", "110.00"):
        place(exchange, sym, side="sell", price=price, quantity="1", client_id="p-bob")
        place(exchange, sym, side="buy", price=price, quantity="1", client_id="p-alice")
    pos = _position(exchange, "p-alice", sym)
    assert (pos["net_quantity"], pos["average_entry_price"], pos["realized_pnl"]) == ("2.0000", "105.00", "0.000000")
    # when she sells 1.5 @ 120.00 to carol
    place(exchange, sym, side="buy", price="120.00", quantity="1.5", client_id="p-carol")
    place(exchange, sym, side="sell", price="120.00", quantity="1.5", client_id="p-alice")
    pos = _position(exchange, "p-alice", sym)
    # then 22.50 is realized on the 1.5 closed at an average of 105.00, and the 0.5 left is
    # marked at the last price: 0.5 x (120 - 105)
    assert (pos["net_quantity"], pos["average_entry_price"], pos["cost_basis"], pos["realized_pnl"],
            pos["unrealized_pnl"], pos["last_price"]) == \
        ("0.5000", "105.00", "52.500000", "22.500000", "7.500000", "120.00")
    assert (pos["bought_quantity"], pos["sold_quantity"], pos["quote_cash_flow"], pos["trade_count"]) == \
        ("2.0000", "1.5000", "-30.000000", 3)
    # and bob is short 2 at 105.00, carol long 1.5 at 120.00: the nets sum to zero
    bob, carol = _position(exchange, "p-bob", sym), _position(exchange, "p-carol", sym)
    assert (bob["net_quantity"], bob["average_entry_price"], bob["unrealized_pnl"]) == ("-2.0000", "105.00",
                                                                                      "-30.000000")
    assert (carol["net_quantity"], carol["average_entry_price"], carol["unrealized_pnl"]) == ("1.5000", "120.00",
                                                                                            "0.000000")
    # when she sells 1 @ 130.00: 0.5 closes, 0.5 opens short at 130.00
    place(exchange, sym, side="buy", price="130.00", quantity="1", client_id="p-carol")
    place(exchange, sym, side="sell", price="130.00", quantity="1", client_id="p-alice")
    pos = _position(exchange, "p-alice", sym)
    assert (pos["net_quantity"], pos["average_entry_price"], pos["realized_pnl"], pos["unrealized_pnl"]) == \
        ("-0.5000", "130.00", "35.000000", "0.000000")


def test_a_self_trade_counts_on_both_sides_and_nets_to_nothing(exchange: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="10.00", quantity="1", client_id="p-self")
    place(exchange, sym, side="buy", price="10.00", quantity="1", client_id="p-self", stp="none")
    pos = _position(exchange, "p-self", sym)
    assert (pos["net_quantity"], pos["bought_quantity"], pos["sold_quantity"], pos["realized_pnl"],
            pos["average_entry_price"], pos["trade_count"]) == ("0.0000", "1.0000", "1.0000", "0.000000", None, 2)


def test_positions_of_a_client_without_trades_and_bad_parameters(exchange: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="10.00", quantity="1", client_id="p-resting")  # no trade
    assert call(exchange.http, "GET", "/positions/p-resting") == (200, {"client_id": "p-resting", "positions": []})
    status, body = call(exchange.http, "GET", "/positions/p-resting?instrument=NOPE-USD")
    assert status == 400 and body["code"] == "unknown_instrument" and set(body) == {"code", "detail", "fields"}


def test_a_traders_key_reads_its_own_positions_and_settlements_only(exchange: Any) -> None:
    sym = exchange.make_instrument()
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="pk-bob")
    place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="pk-alice")
    alice = exchange.keys.trader("pk-alice")
    # its own client's: yes
    status, body = call(exchange.http, "GET", f"/positions/pk-alice?instrument={sym}", key=alice)
    assert status == 200 and body["positions"][0]["net_quantity"] == "1.0000"
    # another client's: refused, and nothing of it shown
    status, err = call(exchange.http, "GET", f"/positions/pk-bob?instrument={sym}", key=alice)
    assert (status, err["code"]) == (403, "client_mismatch") and "positions" not in err
    status, err = call(exchange.http, "GET", "/settlements?client_id=pk-bob", key=alice)
    assert (status, err["code"]) == (403, "client_mismatch")
    # settlements without a client: its own only (an admin's key: every client's)
    status, rows = call(exchange.http, "GET", "/settlements", key=alice)
    assert status == 200 and {r["client_id"] for r in rows} <= {"pk-alice"}
    # and without a key, nobody's
    assert call(exchange.http, "GET", "/positions/pk-alice", key=None)[1]["code"] == "authentication_required"
