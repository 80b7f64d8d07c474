"""Turns a request body into a validated order command, or an ApiError listing every bad field.

Used by every entry point (fast REST path, DRF views, WebSocket order entry) so they accept and
refuse exactly the same things. Numbers may arrive as JSON numbers or strings; they become
Decimal exactly (never through float) and then integer ticks/lots, refusing instead of rounding.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from matching.contract import Code, ModifyOrder, PlaceOrder, Transport
from matching.engine.types import (
    STP,
    InstrumentSpec,
    InvalidNumber,
    OrderType,
    Reason,
    Side,
    TimeInForce,
    check_order_limits,
    limits_of,
)

from . import logs, metrics
from .errors import ApiError, invalid
from .instruments import CachedInstrument

MAX_BODY_BYTES = 64 * 1024
# A number, as a string or a JSON number, has at most this many digits: any price or quantity an
# instrument can hold fits, and nothing past it is ever converted (Python refuses to turn more
# than 4,300 digits into an int, and a long one costs time to read).
MAX_NUMBER_DIGITS = 64
_INT_BOUND = 10**MAX_NUMBER_DIGITS
# ASCII digits only: Decimal() also reads "١٠٠" and "０.００１", which no client means as a price.
DECIMAL_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"
_NUMBER = re.compile(DECIMAL_PATTERN.strip("^$"), re.ASCII)
# NUL cannot be stored in a PostgreSQL text column, and a lone surrogate cannot be encoded as
# UTF-8 at all: a string holding either is refused wherever it appears.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
BAD_TEXT_DETAIL = "must not contain NUL (U+0000) or an unpaired surrogate"

PLACE_FIELDS = frozenset({"idempotency_key", "client_id", "instrument", "side", "type", "price", "quantity",
                          "order_id", "time_in_force", "post_only", "stp"})
SIDES = {"buy": "buy", "sell": "sell", "BUY": "buy", "SELL": "sell"}
_SIDE = {s.value: s for s in Side}
_TYPE = {t.value: t for t in OrderType}
_TIF = {t.value: t for t in TimeInForce}
_STP = {s.value: s for s in STP}
TYPES = {"limit": "limit", "market": "market", "LIMIT": "limit", "MARKET": "market"}
TIFS = {t.value: t.value for t in TimeInForce} | {t.value.lower(): t.value for t in TimeInForce}
STPS = {s.value: s.value for s in STP}

# Which request field an engine reason code is about.
REASON_FIELD = {
    Reason.INVALID_PRICE: "price", Reason.PRICE_OFF_TICK: "price", Reason.PRICE_TOO_MANY_DECIMALS: "price",
    Reason.PRICE_TOO_HIGH: "price", Reason.PRICE_REQUIRED: "price", Reason.PRICE_NOT_ALLOWED: "price",
    Reason.INVALID_QUANTITY: "quantity", Reason.QUANTITY_OFF_LOT: "quantity",
    Reason.QUANTITY_TOO_MANY_DECIMALS: "quantity", Reason.QUANTITY_TOO_SMALL: "quantity",
    Reason.QUANTITY_TOO_LARGE: "quantity", Reason.NOTIONAL_TOO_SMALL: "quantity",
    Reason.POST_ONLY_NOT_ALLOWED: "post_only",
}
REASON_TEXT = {
    Reason.INVALID_PRICE: "must be a positive decimal number",
    Reason.PRICE_OFF_TICK: "is not a multiple of the tick size",
    Reason.PRICE_TOO_MANY_DECIMALS: "has more decimals than the tick size allows",
    Reason.PRICE_TOO_HIGH: "is above the instrument's maximum price",
    Reason.PRICE_REQUIRED: "is required for a limit order",
    Reason.PRICE_NOT_ALLOWED: "must not be given for a market order",
    Reason.INVALID_QUANTITY: "must be a positive decimal number",
    Reason.QUANTITY_OFF_LOT: "is not a multiple of the lot size",
    Reason.QUANTITY_TOO_MANY_DECIMALS: "has more decimals than the lot size allows",
    Reason.QUANTITY_TOO_SMALL: "is below the instrument's minimum quantity",
    Reason.QUANTITY_TOO_LARGE: "is above the instrument's maximum quantity",
    Reason.NOTIONAL_TOO_SMALL: "price x quantity is below the instrument's minimum notional",
    Reason.POST_ONLY_NOT_ALLOWED: "post-only needs a GTC limit order",
}


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, list[dict[str, str]]] = {}

    def add(self, field: str, code: Code | str, detail: str) -> None:
        self.fields.setdefault(field, []).append({"code": code.value if isinstance(code, Code) else code,
                                                  "detail": detail})

    def raise_if_any(self) -> None:
        if self.fields:
            field, problems = next(iter(self.fields.items()))
            raise ApiError(400, problems[0]["code"], f"{field}: {problems[0]['detail']}", self.fields)


class InvalidJson(ValueError):
    pass


def loads_exact(text: bytes | str) -> Any:
    """JSON whose numbers with a fraction or exponent come back as exact Decimal, never float.
    Raises InvalidJson. Shared by the HTTP body parser and the WebSocket message parser.
    Strings may still hold NUL or lone surrogates (JSON allows both): see bad_text_path. A
    member named twice in one object is refused (parsers disagree on which one counts)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson refuses numbers beyond float range and lone surrogates; the stdlib parser
        # reads both (the surrogates are refused by the validation, by field).
        try:
            return _loads_stdlib(text)
        except (ValueError, RecursionError):
            raise InvalidJson(str(exc)) from None
    members = _members_unless_float(data)
    if members < 0:
        # orjson made floats; re-read so 0.1 stays exactly 0.1 (and 30000.123456789 stays itself).
        return _loads_stdlib(text)
    if members != _names(text):
        # Fewer members than names in the text: one was named twice (or a string value holds
        # '":', a false alarm): the exact parser decides.
        return _loads_stdlib(text)
    return data


def _loads_stdlib(text: bytes | str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_int=_integer, parse_constant=_reject_constant,
                          object_pairs_hook=_unique_members)
    except DuplicateMember as exc:
        raise InvalidJson(str(exc)) from None


class DuplicateMember(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        names = [name for name, _ in pairs]
        twice = next(name for name in names if names.count(name) > 1)
        raise DuplicateMember(f"member {twice!r} appears twice in one object")
    return out


_NAME_BYTES = re.compile(rb'"\s*:')
_NAME_TEXT = re.compile(r'"\s*:')


def _names(text: bytes | str) -> int:
    """How many member names the text holds, as far as a scan can tell: a string followed by a
    colon (a string value holding '":' counts too: a false alarm only). Counting '":' is enough
    unless the text puts white space before a colon."""
    if isinstance(text, bytes):
        if b" :" in text or b"\n:" in text or b"\t:" in text or b"\r:" in text:
            return len(_NAME_BYTES.findall(text))
        return text.count(b'":')
    if " :" in text or "\n:" in text or "\t:" in text or "\r:" in text:
        return len(_NAME_TEXT.findall(text))
    return text.count('":')


def _members_unless_float(data: Any) -> int:
    """The number of object members in a parsed document, or -1 if it holds a float. (A member
    name in the text is a string followed by a colon: a document with fewer members than
    that had a name twice in one object.)"""
    kind = type(data)
    if kind is dict:
        count = len(data)
        values = data.values()
    elif kind is list:
        count = 0
        values = data
    else:
        return -1 if kind is float else 0
    for value in values:
        kind = type(value)
        if kind is float:
            return -1
        if kind is dict or kind is list:
            inner = _members_unless_float(value)
            if inner < 0:
                return -1
            count += inner
    return count


def _integer(digits: str) -> int | Decimal:
    # Beyond MAX_NUMBER_DIGITS an integer stays a Decimal, which the validation refuses as too
    # long (int() itself refuses more than 4,300 digits).
    return int(digits) if len(digits) <= MAX_NUMBER_DIGITS + 1 else Decimal(digits)


def bad_text_path(value: Any, path: str = "") -> str | None:
    """Where in a parsed document the first string (a field name or a value) holding a NUL or a
    lone surrogate is, as "field", "orders[3].client_id" or "(a field name)"; None if nowhere."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return None
        return path if _BAD_TEXT.search(value) else None
    # A clean ASCII string or a scalar is passed over in place: an order is a flat object, and
    # descending into each of its fields (and naming its path) cost more than the check itself.
    if isinstance(value, dict):
        for key, item in value.items():
            if not (type(key) is str and key.isascii() and "\x00" not in key) and bad_text_path(key) is not None:
                return f"{path}.(a field name)" if path else "(a field name)"
            if type(item) is str and item.isascii() and "\x00" not in item or not isinstance(item, (str, dict, list)):
                continue
            found = bad_text_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if type(item) is str and item.isascii() and "\x00" not in item or not isinstance(item, (str, dict, list)):
                continue
            found = bad_text_path(item, f"{path}[{n}]")
            if found is not None:
                return found
    return None


def refuse_bad_text(value: Any) -> None:
    """ApiError(400, Code.INVALID_STRING) naming the first string of ``value`` that holds a NUL or
    a lone surrogate. Run before anything reads, stores or echoes a client's strings."""
    where = bad_text_path(value)
    if where is not None:
        raise invalid(where or "body", Code.INVALID_STRING, BAD_TEXT_DETAIL)


def parse_json(body: bytes) -> Any:
    """Parse a request body (loads_exact), refusing oversized and invalid ones with a 4xx."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, Code.BODY_TOO_LARGE, f"Request body exceeds {MAX_BODY_BYTES} bytes.")
    try:
        data = loads_exact(body)
    except InvalidJson as exc:
        raise ApiError(400, Code.INVALID_JSON, f"Request body is not valid JSON: {exc}") from None
    # A NUL or a lone surrogate reaches a parsed string only through a \u escape or, a surrogate,
    # as its 3-byte encoding (0xED 0xA0-0xBF ..., which the stdlib parser passes through); an
    # unescaped NUL is a control character both parsers refuse. A body with neither (nearly
    # every order) needs no walk.
    if b"\\u" in body or b"\xed" in body:
        refuse_bad_text(data)
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _decimal(value: Any, field: str, errors: _Errors) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        errors.add(field, Code.INVALID_TYPE, "must be a decimal number or a string holding one")
        return None
    if isinstance(value, int):
        if -_INT_BOUND < value < _INT_BOUND:
            return Decimal(value)
    elif isinstance(value, Decimal):
        if len(value.as_tuple().digits) <= MAX_NUMBER_DIGITS:
            return value
    elif isinstance(value, str) and len(value) <= MAX_NUMBER_DIGITS and _NUMBER.fullmatch(value):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    errors.add(field, Code.INVALID_NUMBER,
               f"must be a decimal number or a string holding one, of at most {MAX_NUMBER_DIGITS} digits")
    return None


def _string(data: dict[str, Any], field: str, errors: _Errors, max_len: int, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            errors.add(field, Code.REQUIRED, "this field is required")
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add(field, Code.INVALID_TYPE, "must be a non-empty string")
        return None
    if len(value) > max_len:
        errors.add(field, Code.TOO_LONG, f"must be at most {max_len} characters")
        return None
    if bad_text_path(value) is not None:
        errors.add(field, Code.INVALID_STRING, BAD_TEXT_DETAIL)
        return None
    return value


def _choice(data: dict[str, Any], field: str, choices: dict[str, str], default: str | None,
            errors: _Errors) -> str | None:
    value = data.get(field, default)
    if value is None:
        errors.add(field, Code.REQUIRED, "this field is required")
        return None
    if not isinstance(value, str) or value not in choices:
        allowed = sorted(set(choices.values()))
        errors.add(field, Code.INVALID_CHOICE, f"must be one of {', '.join(allowed)}")
        return None
    return choices[value]


def _boolean(data: dict[str, Any], field: str, errors: _Errors) -> bool:
    value = data.get(field, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "on", "off"}:
        return value.lower() in {"true", "1", "on"}
    errors.add(field, Code.INVALID_TYPE, "must be true or false")
    return False


def _reason(errors: _Errors, reason: Reason) -> None:
    errors.add(REASON_FIELD.get(reason, "non_field"), reason.value, REASON_TEXT.get(reason, reason.value))


def instrument_symbol(data: Any) -> str | None:
    """The instrument named by a body, if it is a plausible symbol (for the cache lookup)."""
    if isinstance(data, dict):
        value = data.get("instrument")
        if isinstance(value, str) and 0 < len(value) <= 32 and bad_text_path(value) is None:
            return value
    return None


_GridMemo = dict[Decimal, tuple[int, Decimal, str]]
_GRID_MEMOS: dict[int, tuple[InstrumentSpec, _GridMemo, _GridMemo, Any]] = {}
_GRID_MEMO_MAX = 10_000


def _grid_memo(spec: InstrumentSpec) -> tuple[_GridMemo, _GridMemo, Any]:
    """Per instrument spec: prices and quantities already converted (orders repeat them, and
    the exact conversion both ways is one of the order path's larger costs), and the engine's
    integer limits of the spec. Keyed by the spec object itself, so a changed instrument starts
    afresh."""
    found = _GRID_MEMOS.get(id(spec))
    if found is None or found[0] is not spec:
        found = _GRID_MEMOS[id(spec)] = (spec, {}, {}, limits_of(spec))
    return found[1], found[2], found[3]


def _on_grid(memo: _GridMemo, value: Decimal, to_steps: Any, from_steps: Any) -> tuple[int, Decimal, str]:
    """(steps, normalised value, its fixed-point text); InvalidNumber for a value off the grid
    (never memoised)."""
    found = memo.get(value) if value.is_finite() else None
    if found is None:
        steps = to_steps(value)
        if len(memo) >= _GRID_MEMO_MAX:
            memo.clear()
        normal = from_steps(steps)
        found = memo[value] = (steps, normal, format(normal, "f"))
    return found


def new_order_id() -> uuid.UUID:
    """A server-assigned order id: a UUID version 7 (RFC 9562), whose first 48 bits are the
    Unix time in milliseconds and the rest random. Time-ordered ids make the B-tree indexes on
    order ids (orders, their events, trades' buy and sell sides) grow at their right edge instead
    of touching a random page per row."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 12 bits rand_a, 62 bits rand_b (RFC 9562, 5.7)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
                     | (rand & ((1 << 62) - 1)))


def place_request(data: Any, instrument: CachedInstrument | None,
                  transport: Transport = Transport.HTTP) -> PlaceOrder:
    """The contract's PlaceOrder for a request body, its order id drawn here unless the client
    chose one; ApiError(400) naming every bad field. Every entry refuses orders here, so this is
    where a refusal is counted and logged (orders_rejected_total, "order rejected")."""
    try:
        return _place_request(data, instrument, transport)
    except ApiError as exc:
        symbol = None if instrument is None else instrument.symbol
        metrics.order_refused(symbol, exc.code)
        logs.order_refused(symbol, data.get("client_id") if isinstance(data, dict) else None, exc.code,
                           transport.value)
        raise


def _place_request(data: Any, instrument: CachedInstrument | None, transport: Transport) -> PlaceOrder:
    if not isinstance(data, dict):
        raise ApiError(400, Code.INVALID_BODY, "The request body must be a JSON object.")
    refuse_bad_text(data)
    errors = _Errors()
    for field in data:
        if field not in PLACE_FIELDS:
            errors.add(str(field), Code.UNKNOWN_FIELD, "is not a field of an order")
    key = _string(data, "idempotency_key", errors, 128)
    client_id = _string(data, "client_id", errors, 64)
    symbol = _string(data, "instrument", errors, 32)
    side = _choice(data, "side", SIDES, None, errors)
    order_type = _choice(data, "type", TYPES, "limit", errors)
    tif = _choice(data, "time_in_force", TIFS, "GTC", errors)
    stp = _choice(data, "stp", STPS, STP.CANCEL_TAKER.value, errors)
    post_only = _boolean(data, "post_only", errors)
    order_id: uuid.UUID | None = None
    if data.get("order_id") is not None:
        try:
            order_id = uuid.UUID(str(data["order_id"]))
        except ValueError:
            errors.add("order_id", Code.INVALID_UUID, "must be a UUID")
    if symbol is not None and instrument is None:
        errors.add("instrument", Code.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}")
    elif instrument is not None and not instrument.is_active:
        errors.add("instrument", Code.INSTRUMENT_INACTIVE, f"{symbol} is not trading")
    quantity = _decimal(data["quantity"], "quantity", errors) if "quantity" in data else None
    if "quantity" not in data:
        errors.add("quantity", Code.REQUIRED, "this field is required")
    raw_price = data.get("price")
    price = None if raw_price is None else _decimal(raw_price, "price", errors)
    if order_type == "market" and raw_price is not None:
        _reason(errors, Reason.PRICE_NOT_ALLOWED)
    elif order_type == "limit" and raw_price is None:
        _reason(errors, Reason.PRICE_REQUIRED)
    errors.raise_if_any()
    assert instrument is not None and quantity is not None and side and order_type and tif and stp
    spec = instrument.spec
    prices, quantities, limits = _grid_memo(spec)
    price_ticks: int | None = None
    norm_price: Decimal | None = None
    price_text: str | None = None
    qty_lots = 0
    if price is not None:
        try:
            price_ticks, norm_price, price_text = _on_grid(prices, price, spec.price_to_ticks, spec.ticks_to_price)
        except InvalidNumber as exc:
            _reason(errors, exc.reason)
    try:
        qty_lots, norm_qty, qty_text = _on_grid(quantities, quantity, spec.qty_to_lots, spec.lots_to_qty)
    except InvalidNumber as exc:
        _reason(errors, exc.reason)
    errors.raise_if_any()
    # The engine's own checks (spec.check_order), on the limits kept above and the plain strings
    # of its str enums.
    problem = check_order_limits(limits, order_type, price_ticks, qty_lots, tif, post_only)  # type: ignore[arg-type]
    if problem is not None:
        _reason(errors, problem)
        errors.raise_if_any()
    # The request's identity for idempotency: a repeat of the same key with another body is a 409.
    canonical = "|".join([client_id or "", instrument.symbol, side, order_type, str(norm_price), str(norm_qty),
                          tif, str(post_only), stp, str(order_id or "")])
    return PlaceOrder(order_id=str(order_id or new_order_id()), client_id=client_id or "",
                      idempotency_key=key or "", request_hash=hashlib.sha256(canonical.encode()).hexdigest(),
                      instrument_id=instrument.id, side=_SIDE[side], type=_TYPE[order_type],
                      time_in_force=_TIF[tif], post_only=post_only, stp=_STP[stp], price=price_text,
                      quantity=qty_text, order_id_supplied=order_id is not None, transport=transport)


def modify_request(data: Any, instrument: CachedInstrument, order_id: str) -> ModifyOrder:
    """The contract's ModifyOrder for a PATCH/PUT body, on the order's instrument's grid."""
    if not isinstance(data, dict):
        raise ApiError(400, Code.INVALID_BODY, "The request body must be a JSON object.")
    refuse_bad_text(data)
    errors = _Errors()
    for field in data:
        if field not in {"price", "quantity"}:
            errors.add(str(field), Code.UNKNOWN_FIELD, "only price and quantity can be modified")
    price = None if data.get("price") is None else _decimal(data["price"], "price", errors)
    quantity = None if data.get("quantity") is None else _decimal(data["quantity"], "quantity", errors)
    if not errors.fields and price is None and quantity is None:
        errors.add("non_field", Reason.MODIFY_NOTHING.value, "give a new price and/or a new quantity")
    errors.raise_if_any()
    spec = instrument.spec
    try:
        price = None if price is None else spec.ticks_to_price(spec.price_to_ticks(price))
    except InvalidNumber as exc:
        _reason(errors, exc.reason)
    try:
        quantity = None if quantity is None else spec.lots_to_qty(spec.qty_to_lots(quantity))
    except InvalidNumber as exc:
        _reason(errors, exc.reason)
    errors.raise_if_any()
    return ModifyOrder(order_id=order_id, price=None if price is None else format(price, "f"),
                       quantity=None if quantity is None else format(quantity, "f"))


def tested_order(order: PlaceOrder, instrument: CachedInstrument | None) -> dict[str, Any]:
    """POST /orders/test's answer: the order as it would be placed (nothing is stored)."""
    assert instrument is not None  # place_request refused the order otherwise
    return {"instrument": instrument.symbol, "side": order.side.value, "type": order.type.value,
            "price": order.price, "quantity": order.quantity, "time_in_force": order.time_in_force.value,
            "post_only": order.post_only, "stp": order.stp.value, "client_id": order.client_id,
            "idempotency_key": order.idempotency_key, "valid": True}
