"""How orders and trades look on the wire (REST and WebSocket), from the contract's messages:
whether an order comes from the matching worker's answer or from PostgreSQL, it is one
``OrderState`` rendered here, so both give byte-identical JSON."""
from __future__ import annotations

from typing import Any

from matching.contract import OrderState, to_builtins


def order_body(state: OrderState) -> dict[str, Any]:
    """The REST body of an order: every decimal a fixed-point string, every fill with it."""
    body: dict[str, Any] = to_builtins(state)
    return body


def trade_json(*, trade_id: int, instrument: str, price: str, quantity: str, aggressor_side: str,
               buy_order_id: str, sell_order_id: str, maker_order_id: str, taker_order_id: str,
               seq: int, executed_at: str) -> dict[str, Any]:
    return {"trade_id": trade_id, "instrument": instrument, "price": price, "quantity": quantity,
            "aggressor_side": aggressor_side, "buy_order_id": buy_order_id, "sell_order_id": sell_order_id,
            "maker_order_id": maker_order_id, "taker_order_id": taker_order_id, "seq": seq,
            "executed_at": executed_at}
