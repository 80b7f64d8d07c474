"""The engine's enumerations (str-valued: a member equals its plain string value).

Pure: stdlib only. ``matching.engine.types`` re-exports all of them; import them from there.
"""

from __future__ import annotations

from enum import Enum


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(str, Enum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(str, Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class STP(str, Enum):
    """Self-trade prevention mode; the TAKER's mode decides (as on Binance)."""

    NONE = "none"
    CANCEL_TAKER = "cancel_taker"
    CANCEL_MAKER = "cancel_maker"
    CANCEL_BOTH = "cancel_both"


class Status(str, Enum):
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    # Never carried by an engine OrderUpdate: a rejected place emits exactly one
    # ``Rejected`` event; the worker/REST edge records this status from it.
    REJECTED = "rejected"


class Reason(str, Enum):
    # -- input validation (place, modify, and the REST edge) --
    INVALID_PRICE = "invalid_price"
    PRICE_OFF_TICK = "price_off_tick"
    PRICE_TOO_MANY_DECIMALS = "price_too_many_decimals"
    PRICE_TOO_HIGH = "price_too_high"
    PRICE_REQUIRED = "price_required"
    PRICE_NOT_ALLOWED = "price_not_allowed"
    INVALID_QUANTITY = "invalid_quantity"
    QUANTITY_OFF_LOT = "quantity_off_lot"
    QUANTITY_TOO_MANY_DECIMALS = "quantity_too_many_decimals"
    QUANTITY_TOO_SMALL = "quantity_too_small"
    QUANTITY_TOO_LARGE = "quantity_too_large"
    NOTIONAL_TOO_SMALL = "notional_too_small"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    POST_ONLY_NOT_ALLOWED = "post_only_not_allowed"
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    # -- cancel / modify refusals --
    UNKNOWN_ORDER = "unknown_order"
    # The engine forgets finished orders (memory stays bounded and a restored
    # engine behaves exactly like the original), so it reports UNKNOWN_ORDER
    # for them too. ORDER_NOT_OPEN is for the edge, which has the database.
    ORDER_NOT_OPEN = "order_not_open"
    MODIFY_QUANTITY_AT_OR_BELOW_FILLED = "modify_quantity_at_or_below_filled"
    MODIFY_NOTHING = "modify_nothing"
    # -- why an accepted order ended cancelled --
    CANCELLED_BY_USER = "cancelled_by_user"
    IOC_REMAINDER = "ioc_remainder"
    MARKET_NO_LIQUIDITY = "market_no_liquidity"
    FOK_NOT_FILLABLE = "fok_not_fillable"
    STP_CANCEL_TAKER = "stp_cancel_taker"
    STP_CANCEL_MAKER = "stp_cancel_maker"
    STP_CANCEL_BOTH = "stp_cancel_both"
    # -- never emitted by the engine: the worker refuses the orders of a halted instrument
    # (an order already stored, from the inbox, is recorded rejected with this reason) --
    INSTRUMENT_HALTED = "instrument_halted"
