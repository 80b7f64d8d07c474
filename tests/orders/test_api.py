"""Every REST endpoint and every error the order-service issue names, over real HTTP."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest

from tests.http import acall, call, gather_limited

from .helpers import count_rows, order_body, place


@pytest.fixture
def sym(exchange):
    return exchange.make_instrument()


# -- placing -------------------------------------------------------------------------------

def test_limit_order_rests_and_is_returned_whole(exchange, sym):
    # given an empty book, when a limit buy arrives
    order = place(exchange, sym, side="buy", price="100.50", quantity="0.25")
    # then it is acknowledged as open, with strings for every decimal and no fills
    assert order["status"] == "open"
    assert order["price"] == "100.50" and order["quantity"] == "0.2500"
    assert order["filled_quantity"] == "0.0000" and order["remaining_quantity"] == "0.2500"
    assert order["fills"] == [] and order["instrument"] == sym
    uuid.UUID(order["order_id"])
    # and GET /orders/{id} returns the same state
    status, again = call(exchange.http, "GET", f"/orders/{order['order_id']}")
    assert status == 200 and again["status"] == "open" and again["price"] == "100.50"


def test_crossing_order_fills_at_maker_price_with_fills_in_ack(exchange, sym):
    maker = place(exchange, sym, side="sell", price="101.00", quantity="2", client_id="m")
    taker = place(exchange, sym, side="buy", price="105.00", quantity="0.5", client_id="t")
    assert taker["status"] == "filled"
    assert [(f["price"], f["quantity"], f["role"]) for f in taker["fills"]] == [("101.00", "0.5000", "taker")]
    status, maker_now = call(exchange.http, "GET", f"/orders/{maker['order_id']}")
    assert maker_now["status"] == "partially_filled" and maker_now["remaining_quantity"] == "1.5000"
    assert maker_now["fills"][0]["role"] == "maker"


def test_decimals_accepted_as_numbers_or_strings_exactly(exchange, sym):
    status, body = call(exchange.http, "POST", "/orders",
                        raw=('{"idempotency_key":"n1","client_id":"c","instrument":"' + sym + '","side":"buy",'
                             '"price":100.1,"quantity":0.3}').encode())
    assert status == 201, body
    assert body["price"] == "100.10" and body["quantity"] == "0.3000"


def test_market_order_without_liquidity_is_cancelled_with_remaining(exchange, sym):
    order = place(exchange, sym, side="buy", price=None, quantity="1")
    assert order["status"] == "cancelled" and order["reason"] == "market_no_liquidity"
    assert order["remaining_quantity"] == "1.0000"


def test_post_only_that_would_take_is_rejected_with_code(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="m")
    order = place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="t", post_only=True)
    assert order["status"] == "rejected" and order["reason"] == "post_only_would_take"


def test_ioc_and_fok(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="m")
    ioc = place(exchange, sym, side="buy", price="100.00", quantity="3", client_id="t", time_in_force="IOC")
    assert ioc["status"] == "cancelled" and ioc["filled_quantity"] == "1.0000" and ioc["reason"] == "ioc_remainder"
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="m")
    fok = place(exchange, sym, side="buy", price="100.00", quantity="3", client_id="t", time_in_force="FOK")
    assert fok["status"] == "cancelled" and fok["filled_quantity"] == "0.0000" and fok["reason"] == "fok_not_fillable"


def test_self_trade_prevention_default_cancels_taker(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="same")
    taker = place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="same")
    assert taker["status"] == "cancelled" and taker["reason"] == "stp_cancel_taker" and taker["fills"] == []


# -- idempotency ---------------------------------------------------------------------------

def test_same_key_returns_original_with_200_and_does_not_match_twice(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="5", client_id="m")
    body = order_body(sym, side="buy", price="100.00", quantity="1", client_id="t")
    first = call(exchange.http, "POST", "/orders", body)
    second = call(exchange.http, "POST", "/orders", body)
    assert first[0] == 201 and second[0] == 200
    assert second[1]["order_id"] == first[1]["order_id"] and second[1]["status"] == "filled"
    status, trades = call(exchange.http, "GET", f"/trades?instrument={sym}")
    assert len(trades) == 1


def test_same_key_with_different_body_is_409(exchange, sym):
    body = order_body(sym, side="buy", price="100.00", quantity="1")
    assert call(exchange.http, "POST", "/orders", body)[0] == 201
    status, err = call(exchange.http, "POST", "/orders", {**body, "quantity": "2"})
    assert status == 409 and err["code"] == "idempotency_key_reused"
    assert count_rows(exchange, "orders_order", "idempotency_key = %s", (body["idempotency_key"],)) == 1


def test_server_assigned_order_ids_are_time_ordered_uuid7(exchange, sym):
    before_ms = time.time_ns() // 1_000_000
    first = uuid.UUID(place(exchange, sym)["order_id"])
    time.sleep(0.002)
    second = uuid.UUID(place(exchange, sym)["order_id"])
    after_ms = time.time_ns() // 1_000_000
    # RFC 9562 version 7: the first 48 bits are the Unix time in milliseconds
    assert first.version == second.version == 7 and first.variant == uuid.RFC_4122
    assert before_ms <= first.int >> 80 < second.int >> 80 <= after_ms
    assert first < second


def test_client_supplied_order_id_and_its_reuse(exchange, sym):
    oid = str(uuid.uuid4())
    order = place(exchange, sym, order_id=oid)
    assert order["order_id"] == oid
    status, err = call(exchange.http, "POST", "/orders", order_body(sym, order_id=oid))
    assert status == 409 and err["code"] == "duplicate_order_id"


# -- bad input: 4xx with a code, never a 500, nothing stored -------------------------------

BAD = [
    ("invalid JSON", b'{"side": "buy",', 400, "invalid_json"),
    ("not an object", b'[1, 2]', 400, "invalid_body"),
    ("missing fields", b'{"client_id": "c"}', 400, "required"),
    ("wrong type quantity", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                            b'"price":"1.00","quantity":true}', 400, "invalid_type"),
    ("bad side", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"up","price":"1.00",'
                 b'"quantity":"1"}', 400, "invalid_choice"),
    ("zero quantity", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                      b'"quantity":"0"}', 400, "invalid_quantity"),
    ("negative quantity", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                          b'"price":"1.00","quantity":-1}', 400, "invalid_quantity"),
    ("off-tick price", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.005",'
                       b'"quantity":"1"}', 400, "price_too_many_decimals"),
    ("too many decimals qty", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                              b'"price":"1.00","quantity":"0.00001"}', 400, "quantity_too_many_decimals"),
    ("price on market", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                        b'"type":"market","price":"1.00","quantity":"1"}', 400, "price_not_allowed"),
    ("limit without price", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                            b'"quantity":"1"}', 400, "price_required"),
    ("unknown instrument", b'{"idempotency_key":"k","client_id":"c","instrument":"NOPE-USD","side":"buy",'
                           b'"price":"1.00","quantity":"1"}', 400, "unknown_instrument"),
    ("absurd quantity", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                        b'"quantity":1e400}', 400, "quantity_too_large"),
    ("absurd price", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                     b'"price":"99999999999999999999999999999999999999","quantity":"1"}', 400, "price_too_high"),
    ("NaN", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"NaN",'
            b'"quantity":"1"}', 400, "invalid_number"),
    ("unknown field", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                      b'"quantity":"1","qty":"2"}', 400, "unknown_field"),
    ("post-only IOC", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                      b'"quantity":"1","post_only":true,"time_in_force":"IOC"}', 400, "post_only_not_allowed"),
    ("Arabic-Indic digits", '{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"١٠٠",'
                            '"quantity":"1"}'.encode(), 400, "invalid_number"),
    ("full-width digits", '{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                          '"quantity":"０.００１"}'.encode(), 400, "invalid_number"),
    ("5,000-digit number", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                           b'"quantity":1.' + b"0" * 5000 + b'1}', 400, "invalid_number"),
    ("5,000-digit integer", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy",'
                            b'"price":"1.00","quantity":1' + b"0" * 5000 + b'}', 400, "invalid_number"),
    ("bad order_id", b'{"idempotency_key":"k","client_id":"c","instrument":"SYM","side":"buy","price":"1.00",'
                     b'"quantity":"1","order_id":"xyz"}', 400, "invalid_uuid"),
]


HOSTILE = [
    ("NUL in client_id", {"client_id": "a\x00"}, "client_id"),
    ("NUL in idempotency_key", {"idempotency_key": "k\x00"}, "idempotency_key"),
    ("lone surrogate in idempotency_key", {"idempotency_key": "s\ud800"}, "idempotency_key"),
    ("lone surrogate in client_id", {"client_id": "s\udfff"}, "client_id"),
]


@pytest.mark.parametrize("name,bad,field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_string_is_refused_and_changes_no_other_order(exchange, sym, name, bad, field):
    # given 200 good orders sent at the same moment as one order with a NUL or a lone surrogate
    async def scenario():
        goods = [order_body(sym, side="buy" if n % 2 else "sell", price=f"{100 + n % 5}.00", client_id=f"c{n % 7}")
                 for n in range(200)]
        # (json.dumps escapes them as \u0000 and \ud800, as a client's JSON library would)
        raw = json.dumps({**order_body(sym), **bad}).encode()
        calls = [acall(exchange.http, "POST", "/orders", g) for g in goods]
        calls.insert(100, acall(exchange.http, "POST", "/orders", raw=raw))
        return await gather_limited(calls, limit=64)

    answers = asyncio.run(scenario())
    bad_status, bad_body = answers.pop(100)
    # then the hostile one is a 400 naming its field, and every good one is placed and answered 201
    assert (bad_status, bad_body["code"]) == (400, "invalid_string"), bad_body
    assert field in bad_body["fields"]
    assert [s for s, _ in answers] == [201] * 200, [b for s, b in answers if s != 201][:3]
    # and the matching worker is the one that started with the suite: it never went down
    assert exchange.procs["worker"].poll() is None
    assert exchange.log_text("worker").count("matching worker ready") == 1


@pytest.mark.parametrize("name,raw,status,code", BAD, ids=[b[0] for b in BAD])
def test_bad_order_is_refused_with_code_and_nothing_stored(exchange, sym, name, raw, status, code):
    before = count_rows(exchange, "orders_order")
    got, body = call(exchange.http, "POST", "/orders", raw=raw.replace(b"SYM", sym.encode()))
    assert (got, body["code"]) == (status, code), body
    assert set(body) >= {"code", "detail", "fields"}
    assert count_rows(exchange, "orders_order") == before


def test_min_notional_and_off_tick_grid(exchange):
    sym = exchange.make_instrument(tick_size="0.05", min_notional="10")
    got, body = call(exchange.http, "POST", "/orders", order_body(sym, price="1.03"))
    assert got == 400 and body["code"] == "price_off_tick" and "price" in body["fields"]
    got, body = call(exchange.http, "POST", "/orders", order_body(sym, price="1.05", quantity="1"))
    assert got == 400 and body["code"] == "notional_too_small"


def test_browsable_api_form_post_uses_same_rules(exchange, sym):
    # The DRF path (form-encoded, as the browsable API's HTML form sends) validates identically.
    import urllib.parse

    form = urllib.parse.urlencode({"idempotency_key": uuid.uuid4().hex, "client_id": "web", "instrument": sym,
                                   "side": "buy", "type": "limit", "price": "99.00", "quantity": "1",
                                   "time_in_force": "GTC", "stp": "cancel_taker"}).encode()
    status, body = call(exchange.http, "POST", "/orders", raw=form,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201 and body["status"] == "open" and body["price"] == "99.00"
    form_bad = form.replace(b"99.00", b"99.001")
    status, body = call(exchange.http, "POST", "/orders", raw=form_bad.replace(b"idempotency_key=", b"idempotency_key=x"),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and body["code"] == "price_too_many_decimals"


def test_browsable_api_renders_html(exchange, sym):
    status, body = call(exchange.http, "GET", "/orders", headers={"Accept": "text/html"})
    assert status == 200 and "Django REST framework" in body


def test_openapi_schema_lists_endpoints(exchange):
    status, body = call(exchange.http, "GET", "/schema", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert status == 200
    paths = body["paths"]
    assert {"/orders", "/orders/{order_id}", "/orders/{order_id}/cancel", "/trades", "/orderbook"} <= set(paths)


# -- cancel --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["POST", "DELETE"])
def test_cancel_returns_final_state_with_remaining(exchange, sym, how):
    place(exchange, sym, side="sell", price="100.00", quantity="0.4", client_id="t")
    order = place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="m")
    path = f"/orders/{order['order_id']}" + ("/cancel" if how == "POST" else "")
    status, body = call(exchange.http, how, path)
    assert status == 200, body
    assert body["status"] == "cancelled" and body["reason"] == "cancelled_by_user"
    assert body["filled_quantity"] == "0.4000" and body["remaining_quantity"] == "0.6000"
    # a cancelled order cannot be cancelled again: 409 with its current state
    status, body = call(exchange.http, how, path)
    assert status == 409 and body["code"] == "order_not_open" and body["order"]["status"] == "cancelled"


def test_cancel_filled_is_409_and_unknown_is_404(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="m")
    taker = place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="t")
    status, body = call(exchange.http, "POST", f"/orders/{taker['order_id']}/cancel")
    assert status == 409 and body["order"]["status"] == "filled"
    status, body = call(exchange.http, "POST", f"/orders/{uuid.uuid4()}/cancel")
    assert status == 404 and body["code"] == "order_not_found"
    status, body = call(exchange.http, "DELETE", "/orders/not-a-uuid")
    assert status == 404 and body["code"] == "order_not_found"
    status, body = call(exchange.http, "GET", f"/orders/{uuid.uuid4()}")
    assert status == 404


# -- modify --------------------------------------------------------------------------------

def book(exchange, sym, levels=20):
    status, body = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels={levels}")
    assert status == 200
    return body


def test_modify_decrease_keeps_priority_increase_loses_it(exchange, sym):
    a = place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="a")
    b = place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="b")
    status, body = call(exchange.http, "PATCH", f"/orders/{a['order_id']}", {"quantity": "0.5"})
    assert status == 200 and body["quantity"] == "0.5000"
    taker = place(exchange, sym, side="buy", price=None, quantity="0.5", client_id="t")
    assert taker["fills"][0]["quantity"] == "0.5000"
    status, a_now = call(exchange.http, "GET", f"/orders/{a['order_id']}")
    assert a_now["status"] == "filled"  # a kept its place at the front
    # b increases: goes behind a new order c
    c = place(exchange, sym, side="sell", price="100.00", quantity="1", client_id="c")
    status, body = call(exchange.http, "PUT", f"/orders/{b['order_id']}", {"quantity": "2"})
    assert status == 200 and body["quantity"] == "2.0000"
    place(exchange, sym, side="buy", price=None, quantity="1", client_id="t")
    assert call(exchange.http, "GET", f"/orders/{c['order_id']}")[1]["status"] == "filled"
    assert call(exchange.http, "GET", f"/orders/{b['order_id']}")[1]["status"] == "open"


def test_modify_price_that_crosses_matches_at_once(exchange, sym):
    place(exchange, sym, side="sell", price="101.00", quantity="1", client_id="m")
    bid = place(exchange, sym, side="buy", price="99.00", quantity="1", client_id="t")
    status, body = call(exchange.http, "PATCH", f"/orders/{bid['order_id']}", {"price": "101.00"})
    assert status == 200 and body["status"] == "filled" and body["price"] == "101.00"
    assert book(exchange, sym)["asks"] == []


def test_modify_errors(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="0.6", client_id="m")
    order = place(exchange, sym, side="buy", price="100.00", quantity="1", client_id="t")
    status, body = call(exchange.http, "PATCH", f"/orders/{order['order_id']}", {"quantity": "0.6"})
    assert status == 409 and body["code"] == "modify_quantity_at_or_below_filled"
    assert body["order"]["quantity"] == "1.0000"
    status, body = call(exchange.http, "PATCH", f"/orders/{order['order_id']}", {"price": "100.001"})
    assert status == 400 and body["code"] == "price_too_many_decimals"
    status, body = call(exchange.http, "PATCH", f"/orders/{order['order_id']}", {})
    assert status == 400 and body["code"] == "modify_nothing"
    status, body = call(exchange.http, "PATCH", f"/orders/{uuid.uuid4()}", {"price": "1.00"})
    assert status == 404 and body["code"] == "order_not_found"
    # a finished order: 409 with its state, whatever the body
    done = place(exchange, sym, side="sell", price="100.00", quantity="0.4", client_id="m")  # meets t's rest
    assert done["status"] == "filled"
    for change in ({"quantity": "2"}, {"price": "100.001"}):
        status, body = call(exchange.http, "PATCH", f"/orders/{done['order_id']}", change)
        assert status == 409 and body["code"] == "order_not_open", body
        assert body["order"] == call(exchange.http, "GET", f"/orders/{done['order_id']}")[1]


# -- reads ---------------------------------------------------------------------------------

def test_orderbook_levels_cumulative_totals_and_seq(exchange, sym):
    for price, qty in [("99.00", "1"), ("99.00", "2"), ("98.00", "1")]:
        place(exchange, sym, side="buy", price=price, quantity=qty, client_id="b")
    for price, qty in [("101.00", "1"), ("102.00", "0.5")]:
        place(exchange, sym, side="sell", price=price, quantity=qty, client_id="s")
    body = book(exchange, sym)
    assert [(lv["price"], lv["quantity"], lv["order_count"], lv["cumulative_quantity"]) for lv in body["bids"]] == [
        ("99.00", "3.0000", 2, "3.0000"), ("98.00", "1.0000", 1, "4.0000")]
    assert [(lv["price"], lv["cumulative_quantity"]) for lv in body["asks"]] == [("101.00", "1.0000"),
                                                                               ("102.00", "1.5000")]
    assert body["bid_total_quantity"] == "4.0000" and body["ask_total_quantity"] == "1.5000"
    assert body["seq"] == 5  # five book deltas so far, no trades
    assert len(book(exchange, sym, levels=1)["bids"]) == 1
    for bad in ("levels=0", "levels=1001", "levels=x"):
        status, err = call(exchange.http, "GET", f"/orderbook?instrument={sym}&{bad}")
        assert status == 400 and err["code"] == "out_of_range"
    status, err = call(exchange.http, "GET", "/orderbook?instrument=NOPE")
    assert status == 400 and err["code"] == "unknown_instrument"
    status, err = call(exchange.http, "GET", "/orderbook")
    assert status == 400 and err["code"] == "required"


def test_trades_newest_first_with_limit(exchange, sym):
    place(exchange, sym, side="sell", price="100.00", quantity="3", client_id="m")
    for _ in range(3):
        place(exchange, sym, side="buy", price=None, quantity="1", client_id="t")
    status, trades = call(exchange.http, "GET", f"/trades?instrument={sym}&limit=2")
    assert status == 200 and len(trades) == 2 and trades[0]["seq"] > trades[1]["seq"]
    assert trades[0]["aggressor_side"] == "buy" and trades[0]["price"] == "100.00"
    for bad in ("limit=0", "limit=1001"):
        assert call(exchange.http, "GET", f"/trades?instrument={sym}&{bad}")[0] == 400


def test_orders_list_filters_and_cursor_pagination(exchange, sym):
    client = f"lister-{uuid.uuid4().hex[:6]}"
    ids = [place(exchange, sym, side="buy", price="90.00", quantity="1", client_id=client)["order_id"]
           for _ in range(5)]
    status, page = call(exchange.http, "GET", f"/orders?client_id={client}&limit=2")
    assert status == 200 and [o["order_id"] for o in page["results"]] == ids[::-1][:2]
    seen = [o["order_id"] for o in page["results"]]
    while page["next"]:
        nxt = page["next"].split("/orders", 1)[1]
        status, page = call(exchange.http, "GET", "/orders" + nxt)
        seen += [o["order_id"] for o in page["results"]]
    assert seen == ids[::-1]
    status, page = call(exchange.http, "GET", f"/orders?client_id={client}&status=filled")
    assert page["results"] == []
    status, page = call(exchange.http, "GET", f"/orders?client_id={client}&status=open&instrument={sym}")
    assert len(page["results"]) == 5
    assert call(exchange.http, "GET", "/orders?status=bogus")[0] == 400


def test_quantities_exact_in_database(exchange, sym):
    order = place(exchange, sym, side="buy", price="123.45", quantity="0.0001")
    with exchange.connect() as conn:
        price, qty = conn.execute("SELECT price, quantity FROM orders_order WHERE order_id = %s",
                                  (order["order_id"],)).fetchone()
    assert price == Decimal("123.45") and qty == Decimal("0.0001")
