"""How orders, fills and trades look on the wire; one place, used by the REST views (reading
from PostgreSQL) and by the matching worker (publishing what it just committed), so both
render byte-identical JSON. Decimals are strings quantized to the instrument's tick/lot."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

_EXP_CACHE: dict[Decimal, Decimal] = {}


def quantum(step: Decimal) -> Decimal:
    q = _EXP_CACHE.get(step)
    if q is None:
        exponent = step.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        q = _EXP_CACHE[step] = Decimal(1).scaleb(min(exponent, 0))
    return q


def fmt(value: Decimal | None, step: Decimal) -> str | None:
    # Fixed-point always: str() of a small Decimal would say "5E-8".
    return None if value is None else format(value.quantize(quantum(step)), "f")


def fmt_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def from_ns(ts_ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ts_ns // 1000)


def order_json(*, order_id: str, client_id: str, instrument: str, side: str, type: str, time_in_force: str,
               post_only: bool, stp: str, price: str | None, quantity: str, filled_quantity: str,
               remaining_quantity: str, status: str, reason: str | None, idempotency_key: str,
               created_at: str, updated_at: str, fills: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "order_id": order_id, "client_id": client_id, "instrument": instrument, "side": side, "type": type,
        "time_in_force": time_in_force, "post_only": post_only, "stp": stp, "price": price,
        "quantity": quantity, "filled_quantity": filled_quantity, "remaining_quantity": remaining_quantity,
        "status": status, "reason": reason, "idempotency_key": idempotency_key,
        "created_at": created_at, "updated_at": updated_at, "fills": fills,
    }


def fill_json(*, trade_id: int, price: str, quantity: str, role: str, seq: int, executed_at: str) -> dict[str, Any]:
    return {"trade_id": trade_id, "price": price, "quantity": quantity, "role": role, "seq": seq,
            "executed_at": executed_at}


def trade_json(*, trade_id: int, instrument: str, price: str, quantity: str, aggressor_side: str,
               buy_order_id: str, sell_order_id: str, maker_order_id: str, taker_order_id: str,
               seq: int, executed_at: str) -> dict[str, Any]:
    return {"trade_id": trade_id, "instrument": instrument, "price": price, "quantity": quantity,
            "aggressor_side": aggressor_side, "buy_order_id": buy_order_id, "sell_order_id": sell_order_id,
            "maker_order_id": maker_order_id, "taker_order_id": taker_order_id, "seq": seq,
            "executed_at": executed_at}
