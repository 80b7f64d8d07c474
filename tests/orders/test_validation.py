"""orders/validation.py on its own: what every entry point (the lean HTTP path, the DRF views,
the WebSocket) accepts and refuses, exactly, with no server and no database."""
from __future__ import annotations

import uuid
from decimal import Decimal as D
from typing import Any

import pytest

from matching.contract import PlaceOrder
from matching.engine.types import STP, InstrumentSpec, OrderType, Side, TimeInForce
from orders.errors import ApiError
from orders.instruments import CachedInstrument
from orders.validation import bad_text_path, loads_exact, modify_request, parse_json, place_request

BTC = CachedInstrument(id=1, symbol="BTC-USD", is_active=True,
                       spec=InstrumentSpec("BTC-USD", D("0.01"), D("0.0001"), D("0.0001"), D("1000"), D("10000000")))


def body(**extra: Any) -> dict[str, Any]:
    return {"idempotency_key": "k1", "client_id": "alice", "instrument": "BTC-USD", "side": "buy",
            "price": "30000.00", "quantity": "0.5", **extra}


def refusal(data: Any, instrument: CachedInstrument | None = BTC) -> tuple[str, dict[str, Any]]:
    with pytest.raises(ApiError) as exc:
        place_request(data, instrument)
    assert exc.value.status_code == 400
    return exc.value.code, exc.value.fields


def test_a_good_body_becomes_the_contracts_order_on_the_grid() -> None:
    order = place_request(body(quantity=D("0.50"), price=30000), BTC)
    assert isinstance(order, PlaceOrder)
    assert (order.price, order.quantity, order.side, order.type, order.time_in_force, order.stp) == \
        ("30000.00", "0.5000", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, STP.CANCEL_TAKER)
    assert order.instrument_id == 1 and not order.order_id_supplied
    assert uuid.UUID(order.order_id).version == 7


def test_the_same_order_written_differently_has_the_same_request_hash() -> None:
    a = place_request(body(price="30000", quantity="0.5000", side="BUY"), BTC)
    b = place_request(body(price=D("30000.000"), quantity=D("0.5")), BTC)
    c = place_request(body(price="30000.01"), BTC)
    assert a.request_hash == b.request_hash != c.request_hash
    assert a.order_id != b.order_id  # each request draws its own id


def test_a_client_chosen_order_id_is_kept_and_flagged() -> None:
    oid = "0192b6a0-1111-7222-8333-444455556666"
    order = place_request(body(order_id=oid), BTC)
    assert order.order_id == oid and order.order_id_supplied


@pytest.mark.parametrize("data,code,field", [
    (body(price="30000.001"), "price_too_many_decimals", "price"),
    (body(quantity="0"), "invalid_quantity", "quantity"),
    (body(quantity="１"), "invalid_number", "quantity"),
    (body(quantity="1" + "0" * 70), "invalid_number", "quantity"),
    (body(quantity=D("1." + "0" * 70)), "invalid_number", "quantity"),
    (body(quantity=10**80), "invalid_number", "quantity"),
    (body(side="up"), "invalid_choice", "side"),
    (body(client_id="a\x00"), "invalid_string", "client_id"),
    (body(idempotency_key="s\ud800"), "invalid_string", "idempotency_key"),
    (body(qty="1"), "unknown_field", "qty"),
    (body(type="market"), "price_not_allowed", "price"),
    (body(post_only=True, time_in_force="IOC"), "post_only_not_allowed", "post_only"),
    ({"side": "buy"}, "required", "idempotency_key"),
])
def test_every_bad_field_is_refused_with_its_code(data: dict[str, Any], code: str, field: str) -> None:
    got, fields = refusal(data)
    assert got == code and field in fields


def test_a_hostile_field_name_is_refused_without_being_echoed() -> None:
    code, fields = refusal({**body(), "\x00bad": 1})
    assert code == "invalid_string" and list(fields) == ["(a field name)"]


def test_unknown_and_inactive_instruments() -> None:
    assert refusal(body(), None)[0] == "unknown_instrument"
    halted = CachedInstrument(id=2, symbol="BTC-USD", spec=BTC.spec, is_active=False)
    assert refusal(body(), halted)[0] == "instrument_inactive"


def test_json_numbers_are_read_exactly_and_hostile_documents_refused() -> None:
    assert loads_exact(b'{"p": 0.1, "q": 30000.123456789}') == {"p": D("0.1"), "q": D("30000.123456789")}
    assert loads_exact(b'{"q": 1e400}') == {"q": D("1E+400")}
    assert isinstance(loads_exact(b'{"q": 1' + b"0" * 5000 + b"}")["q"], D)  # no int past 4,300 digits
    with pytest.raises(ApiError) as exc:
        parse_json(b'{"a": NaN}')
    assert exc.value.code == "invalid_json"
    with pytest.raises(ApiError) as exc:
        parse_json(b'{"client_id": "x\\u0000"}')
    assert exc.value.code == "invalid_string" and "client_id" in exc.value.fields
    with pytest.raises(ApiError) as exc:
        parse_json(b"{}" + b" " * 70_000)
    assert exc.value.status_code == 413


def test_bad_text_is_found_wherever_it_is() -> None:
    assert bad_text_path({"orders": [{"a": "ok"}, {"b": "x\ud83d"}]}) == "orders[1].b"
    assert bad_text_path({"ok": ["fine", "\u00e9t\u00e9", "\U0001f600"]}) is None
    assert bad_text_path({"a": 1, "b": [None, True, {"c\x00": 1}]}) == "b[2].(a field name)"
    assert bad_text_path(["ok", 2, "a\x00"]) == "[2]"
    assert bad_text_path({"a": "ok", "b": {"c": "x\x00"}}) == "b.c"


def test_a_modify_is_put_on_the_orders_grid_or_refused() -> None:
    change = modify_request({"price": 30000, "quantity": "1.5"}, BTC, "o-1")
    assert (change.order_id, change.price, change.quantity) == ("o-1", "30000.00", "1.5000")
    for data, code in [({}, "modify_nothing"), ({"price": "1.001"}, "price_too_many_decimals"),
                       ({"side": "sell"}, "unknown_field")]:
        with pytest.raises(ApiError) as exc:
            modify_request(data, BTC, "o-1")
        assert exc.value.code == code
