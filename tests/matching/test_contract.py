"""matching/contract.py: one vocabulary of codes, messages that survive their encoding exactly,
and NOTIFY payloads that always fit."""
from __future__ import annotations

import orjson

from matching.contract import (
    NOTIFY_MAX_BYTES,
    CancelOrder,
    Code,
    CommandOutcome,
    CommandResult,
    Duplicate,
    Fill,
    Hello,
    ModifyOrder,
    OrderState,
    OrderStatus,
    Placed,
    PlaceOrder,
    PlaceOutcome,
    Refused,
    Request,
    Response,
    Role,
    advertisement,
    code_of,
    decode_hello,
    decode_market,
    decode_outcomes,
    decode_request,
    decode_response,
    frame,
    market_payloads,
    outcome_payloads,
    parse_advertisement,
)
from matching.engine.types import STP, OrderType, Reason, Side, TimeInForce


def state(oid: str = "o-1", fills: int = 0) -> OrderState:
    return OrderState(order_id=oid, client_id="alice", instrument="BTC-USD", side=Side.BUY, type=OrderType.LIMIT,
                      time_in_force=TimeInForce.GTC, post_only=False, stp=STP.CANCEL_TAKER, price="100.00",
                      quantity="1.0000", filled_quantity="0.0000", remaining_quantity="1.0000",
                      status=OrderStatus.OPEN, reason=None, idempotency_key="k", created_at="2026-12-02T00:00:00Z",
                      updated_at="2026-12-02T00:00:00Z",
                      fills=[Fill(trade_id=n, price="100.00", quantity="0.0001", role=Role.MAKER, seq=n,
                                  executed_at="2026-12-02T00:00:00Z") for n in range(fills)])


def test_every_engine_reason_is_a_code_of_the_same_name() -> None:
    for reason in Reason:
        assert code_of(reason).value == reason.value


def test_a_request_and_its_response_survive_the_frame_exactly() -> None:
    commands = [PlaceOrder(order_id="o-1", client_id="c", idempotency_key="k", request_hash="h", instrument_id=3,
                           side=Side.SELL, type=OrderType.MARKET, time_in_force=TimeInForce.IOC, post_only=False,
                           stp=STP.NONE, price=None, quantity="0.5000", order_id_supplied=True),
                CancelOrder(order_id="o-2"), ModifyOrder(order_id="o-3", price="1.00")]
    request = Request(request_id=9, commands=commands)
    assert decode_request(frame(request)[4:]) == request
    answers = [Placed(order=state(fills=2)), Duplicate(), Refused(code=Code.INVALID_UUID),
               CommandResult(code=Code.DEFERRED), CommandResult(code=Code.OK, order=state("o-3"))]
    response = Response(request_id=9, answers=answers)
    decoded = decode_response(frame(response)[4:])
    assert decoded == response and decoded.answers[0].order.side is Side.BUY  # type: ignore[union-attr]
    assert decode_hello(frame(Hello(token="t0k"))[4:]).token == "t0k"
    # and the wire names every field: no positions
    assert b'"kind":"place"' in frame(request) and b'"idempotency_key":"k"' in frame(request)


def test_the_advertisement_names_the_address_and_token() -> None:
    assert parse_advertisement(advertisement("10.0.0.5:7001", "ab12")) == ("10.0.0.5", 7001, "ab12")
    assert parse_advertisement("psql") is None and parse_advertisement("pgbourse-matching nonsense") is None


def test_notify_payloads_stay_under_the_limit_in_order_and_an_outsized_order_is_left_to_the_record() -> None:
    outcomes = [PlaceOutcome(order_id=f"o-{n}", order=state(f"o-{n}")) for n in range(60)]
    outcomes.insert(10, PlaceOutcome(order_id="big", order=state("big", fills=200)))
    outcomes.append(CommandOutcome(command_id=5, code=Code.OK))
    payloads = outcome_payloads(outcomes)
    assert all(len(p.encode()) < NOTIFY_MAX_BYTES for p in payloads) and len(payloads) > 1
    decoded = [o for p in payloads for o in decode_outcomes(p)]
    assert [getattr(o, "order_id", None) for o in decoded] == [getattr(o, "order_id", None) for o in outcomes]
    big = decoded[10]
    assert isinstance(big, PlaceOutcome) and big.order is None  # the waiter reads PostgreSQL
    assert decoded[-1] == CommandOutcome(command_id=5, code=Code.OK)


def test_market_payloads_carry_the_events_in_order_under_the_limit() -> None:
    events = [{"event": "book_delta", "instrument": "X", "seq": n, "price": "1.00", "pad": "x" * 100}
              for n in range(500)]
    payloads = market_payloads("X", events)
    assert all(len(p.encode()) < NOTIFY_MAX_BYTES for p in payloads)
    back = [decode_market(p) for p in payloads]
    assert {m.instrument for m in back} == {"X"}
    assert [e["seq"] for m in back for e in m.events] == list(range(500))
    assert orjson.loads(payloads[0])["events"][0] == events[0]
