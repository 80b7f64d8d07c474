"""The one contract between the web processes and the matching worker.

Every message that crosses between them is a named, typed, frozen struct here, and is encoded
and decoded here only: the commands a web process sends (``PlaceOrder``, ``CancelOrder``,
``ModifyOrder``), the worker's answers (``Placed``, ``Duplicate``, ``Refused``,
``CommandResult``, each carrying the committed ``OrderState``), and the NOTIFY payloads
(``PlaceOutcome``/``CommandOutcome`` on the outcome channel, ``MarketPayload`` on the market
one). The two transports carry the same messages: a direct connection to the worker (framed
``Request``/``Response``) and the PostgreSQL inbox (pending rows in, NOTIFYed outcomes out).
``Code`` is the one vocabulary of answer and error codes that REST, the WebSocket and the
worker share.

Rendering these as REST or WebSocket JSON is the web side's business (``orders/``); the
worker answers with these messages and market events only.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from enum import Enum
from typing import Any, Final

import msgspec

from matching.engine.types import STP, OrderType, Reason, Side, TimeInForce


class Code(str, Enum):
    """Every code an answer or an error carries, wherever it is produced. The engine's
    ``Reason`` values are all here too (a test checks), so an engine refusal travels as is."""

    OK = "ok"
    # -- the request itself (edge) --
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    VALIDATION_ERROR = "validation_error"
    INVALID_MESSAGE = "invalid_message"
    INVALID_STRING = "invalid_string"
    INVALID_TYPE = "invalid_type"
    INVALID_NUMBER = "invalid_number"
    INVALID_CHOICE = "invalid_choice"
    INVALID_UUID = "invalid_uuid"
    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    TOO_LONG = "too_long"
    OUT_OF_RANGE = "out_of_range"
    BODY_TOO_LARGE = "body_too_large"
    MESSAGE_TOO_LARGE = "message_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_ACCEPTABLE = "not_acceptable"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    INSTRUMENT_INACTIVE = "instrument_inactive"
    # -- the WebSocket protocol --
    UNKNOWN_OP = "unknown_op"
    UNKNOWN_CHANNEL = "unknown_channel"
    CLIENT_ID_REQUIRED = "client_id_required"
    TOO_MANY_ORDERS = "too_many_orders"
    TOO_MANY_INFLIGHT = "too_many_inflight"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    FEED_UNAVAILABLE = "feed_unavailable"
    # -- orders and commands --
    ORDER_NOT_FOUND = "order_not_found"
    ORDER_NOT_OPEN = "order_not_open"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    DUPLICATE = "duplicate"  # a place whose key or order_id is already on record
    DEFERRED = "deferred"  # the worker holds no such open order yet: the inbox orders the command
    # -- faults --
    DATABASE_UNAVAILABLE = "database_unavailable"
    OUTCOME_UNKNOWN = "outcome_unknown"
    OVERLOADED = "overloaded"
    REQUEST_TIMEOUT = "request_timeout"
    CSRF_FAILED = "csrf_failed"
    FORBIDDEN = "forbidden"
    SERVER_ERROR = "server_error"
    # -- the engine's reasons (matching.engine.enums.Reason), refusals and cancel reasons --
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
    UNKNOWN_ORDER = "unknown_order"
    MODIFY_QUANTITY_AT_OR_BELOW_FILLED = "modify_quantity_at_or_below_filled"
    MODIFY_NOTHING = "modify_nothing"
    CANCELLED_BY_USER = "cancelled_by_user"
    IOC_REMAINDER = "ioc_remainder"
    MARKET_NO_LIQUIDITY = "market_no_liquidity"
    FOK_NOT_FILLABLE = "fok_not_fillable"
    STP_CANCEL_TAKER = "stp_cancel_taker"
    STP_CANCEL_MAKER = "stp_cancel_maker"
    STP_CANCEL_BOTH = "stp_cancel_both"
    # -- operations: admin controls --
    INSTRUMENT_HALTED = "instrument_halted"
    # -- accounts and limits (orders.auth, orders.limits) --
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_API_KEY = "invalid_api_key"
    API_KEY_REVOKED = "api_key_revoked"
    CLIENT_MISMATCH = "client_mismatch"
    RATE_LIMITED = "rate_limited"
    # -- analytics, positions and settlement --
    INVALID_TIME = "invalid_time"  # a time that is neither Unix milliseconds nor ISO-8601
    INVALID_RANGE = "invalid_range"  # a time range that ends before it starts


def code_of(reason: Reason) -> Code:
    """The contract's code for an engine reason (the same string)."""
    return _CODE_OF_REASON[reason]


_CODE_OF_REASON: Final = {reason: Code(reason.value) for reason in Reason}


class OrderStatus(str, Enum):
    """An order's status in the record: the engine's statuses and ``pending`` (stored, not yet
    matched: the inbox path)."""

    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


OPEN_STATUSES: Final = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
FINAL_STATUSES: Final = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
# An order the worker must still act on: matched (pending) or resting.
LIVE_STATUSES: Final = frozenset({OrderStatus.PENDING, *OPEN_STATUSES})


class Transport(str, Enum):
    """How an order reached the matching worker: straight from a web process that took it over
    HTTP or a WebSocket, from a management command in-process (``local``), or as a pending row
    of the PostgreSQL inbox (whatever its origin)."""

    HTTP = "http"
    WS = "ws"
    LOCAL = "local"
    INBOX = "inbox"


class Role(str, Enum):
    MAKER = "maker"
    TAKER = "taker"


# --------------------------------------------------------------------------------------------
# What the worker commits and answers with
# --------------------------------------------------------------------------------------------


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: int
    price: str
    quantity: str
    role: Role
    seq: int
    executed_at: str


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """An order as committed, with every fill: what GET /orders/{id} shows."""

    order_id: str
    client_id: str
    instrument: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    stp: STP
    price: str | None
    quantity: str
    filled_quantity: str
    remaining_quantity: str
    status: OrderStatus
    reason: str | None
    idempotency_key: str
    created_at: str
    updated_at: str
    fills: list[Fill] = []


# --------------------------------------------------------------------------------------------
# Commands: web process -> worker
# --------------------------------------------------------------------------------------------


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True, tag="place", tag_field="kind"):
    """A validated order. Prices and quantities are exact decimal strings on the instrument's
    grid; ``order_id_supplied`` says the client chose the id (so it is checked as a key)."""

    order_id: str
    client_id: str
    idempotency_key: str
    request_hash: str
    instrument_id: int
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    stp: STP
    price: str | None
    quantity: str
    order_id_supplied: bool = False
    transport: Transport = Transport.HTTP


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True, tag="cancel", tag_field="kind"):
    """``client_id``: the client the command acts for; an order of another client is answered
    ``order_not_found`` and left alone. None: any client's (an operator)."""

    order_id: str
    client_id: str | None = None


class ModifyOrder(msgspec.Struct, frozen=True, kw_only=True, tag="modify", tag_field="kind"):
    """``quantity`` is the new TOTAL quantity, including what is already filled. ``client_id``
    as for CancelOrder."""

    order_id: str
    price: str | None = None
    quantity: str | None = None
    client_id: str | None = None


# -- Operations: commands that act on the live books (admin). Same transports as orders. --


class TakeSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag="take_snapshot", tag_field="kind"):
    """Persist a BookSnapshot of each live book (of ``instrument_id``, or all), as it stands
    after the commands before this one: stored once that state has committed."""

    instrument_id: int | None = None


class SetHalted(msgspec.Struct, frozen=True, kw_only=True, tag="set_halted", tag_field="kind"):
    """Halt (new orders and modifies refused with ``instrument_halted``, cancels still work)
    or resume an instrument. Stored with the instrument: it survives a restart."""

    instrument_id: int
    halted: bool


class CancelAll(msgspec.Struct, frozen=True, kw_only=True, tag="cancel_all", tag_field="kind"):
    """Cancel every open order of an instrument, of a client, or of a client on an instrument:
    one ordinary cancel (and OrderEvent) per order."""

    instrument_id: int | None = None
    client_id: str | None = None


class ReadWorkerState(msgspec.Struct, frozen=True, kw_only=True, tag="read_worker_state", tag_field="kind"):
    """What the worker holds: its books, counters and last batch (changes nothing)."""


AdminCommand = TakeSnapshot | SetHalted | CancelAll | ReadWorkerState
ADMIN_COMMANDS: Final = (TakeSnapshot, SetHalted, CancelAll, ReadWorkerState)

Command = PlaceOrder | CancelOrder | ModifyOrder | AdminCommand


# --------------------------------------------------------------------------------------------
# Answers: worker -> web process, one per command, in order
# --------------------------------------------------------------------------------------------


class Placed(msgspec.Struct, frozen=True, kw_only=True, tag="placed", tag_field="kind"):
    """A new order, committed with its outcome (which may be ``rejected`` by the engine)."""

    order: OrderState


class Duplicate(msgspec.Struct, frozen=True, kw_only=True, tag="duplicate", tag_field="kind"):
    """The key (client_id, idempotency_key), or the client-chosen order_id, is on record: the
    web process answers from PostgreSQL (the original order, or a 409)."""


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag="refused", tag_field="kind"):
    """The worker would not take the command at all (it changes nothing); ``code`` says why."""

    code: Code


class CommandResult(msgspec.Struct, frozen=True, kw_only=True, tag="result", tag_field="kind"):
    """A cancel's or modify's answer. ``code``: ``ok``, the engine's refusal, ``order_not_open``
    (finished; ``order`` as stored), ``order_not_found``, or ``deferred`` (no book holds the
    order open yet: it is still waiting in the inbox, which orders the command after it)."""

    code: Code
    order: OrderState | None = None


# -- Operations: the answers to the admin commands --


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A persisted BookSnapshot: at market ``seq`` and after the instrument's command
    ``command_seq`` (the journal position that replay and recovery start from)."""

    id: int
    instrument: str
    seq: int
    command_seq: int
    bid_levels: int
    ask_levels: int
    orders: int
    taken_at: str


class SnapshotsTaken(msgspec.Struct, frozen=True, kw_only=True, tag="snapshots_taken", tag_field="kind"):
    snapshots: list[SnapshotInfo]


class HaltSet(msgspec.Struct, frozen=True, kw_only=True, tag="halt_set", tag_field="kind"):
    """``changed`` is False when the instrument already was in that state."""

    instrument: str
    halted: bool
    changed: bool


class AllCancelled(msgspec.Struct, frozen=True, kw_only=True, tag="all_cancelled", tag_field="kind"):
    cancelled: int
    by_instrument: dict[str, int] = {}


class BookState(msgspec.Struct, frozen=True, kw_only=True):
    instrument: str
    open_orders: int
    bid_levels: int
    ask_levels: int
    seq: int
    command_seq: int
    halted: bool


class WorkerState(msgspec.Struct, frozen=True, kw_only=True, tag="worker_state", tag_field="kind"):
    owner: str
    direct_address: str | None
    uptime_s: float
    batches: int
    retries: int
    last_batch_age_s: float | None
    books: list[BookState]


AdminAnswer = SnapshotsTaken | HaltSet | AllCancelled | WorkerState | Refused

Answer = Placed | Duplicate | Refused | CommandResult | SnapshotsTaken | HaltSet | AllCancelled | WorkerState


# --------------------------------------------------------------------------------------------
# The direct transport: frames over one TCP connection per web process
# --------------------------------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, kw_only=True):
    """The first frame a web process sends: the token the worker advertised."""

    token: str


class Request(msgspec.Struct, frozen=True, kw_only=True):
    request_id: int
    commands: list[Command]


class Response(msgspec.Struct, frozen=True, kw_only=True):
    request_id: int
    answers: list[Answer]


APPLICATION_PREFIX: Final = "pgbourse-matching "
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")

_encoder = msgspec.json.Encoder()
_hello = msgspec.json.Decoder(Hello)
_request = msgspec.json.Decoder(Request)
_response = msgspec.json.Decoder(Response)

DecodeError = msgspec.DecodeError


def frame(message: Hello | Request | Response) -> bytes:
    """A frame: a 4-byte big-endian length, then the message as JSON."""
    payload = _encoder.encode(message)
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _LENGTH.unpack(await reader.readexactly(4))
    if size > MAX_FRAME_BYTES:
        raise ConnectionError(f"frame of {size} bytes refused")
    return await reader.readexactly(size)


def decode_hello(data: bytes) -> Hello:
    return _hello.decode(data)


def decode_request(data: bytes) -> Request:
    return _request.decode(data)


def decode_response(data: bytes) -> Response:
    return _response.decode(data)


def advertisement(address: str, token: str) -> str:
    """The worker's session name (``application_name``) that tells web processes where it is."""
    return f"{APPLICATION_PREFIX}{address} {token}"


def parse_advertisement(application_name: str) -> tuple[str, int, str] | None:
    """(host, port, token) from a worker's session name, or None."""
    if not application_name.startswith(APPLICATION_PREFIX):
        return None
    try:
        address, token = application_name[len(APPLICATION_PREFIX):].split(" ")
        host, port = address.rsplit(":", 1)
        return host, int(port), token
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# NOTIFY payloads
# --------------------------------------------------------------------------------------------

OUTCOME_CHANNEL: Final = "pgb_outcome"
MARKET_CHANNEL: Final = "pgb_market"
INBOX_CHANNEL: Final = "pgb_inbox"
# Operations told to every web process: GOING_AWAY, the exchange is stopping (its sockets then
# get their close frames before the server goes).
CONTROL_CHANNEL: Final = "pgb_control"
GOING_AWAY: Final = "going_away"
# An API key changed (revoked, its role or budgets edited): NOTIFYed by a trigger on the keys'
# table with the key's id as the payload, so each web process drops it from its cache.
API_KEY_CHANNEL: Final = "pgb_api_key"
# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; what we send stays under this.
NOTIFY_MAX_BYTES: Final = 7900


class PlaceOutcome(msgspec.Struct, frozen=True, kw_only=True, tag="place", tag_field="kind"):
    """An inbox order's outcome. ``order`` is None when it would not fit in a NOTIFY: the
    waiting web process then reads it from PostgreSQL."""

    order_id: str
    order: OrderState | None = None


class CommandOutcome(msgspec.Struct, frozen=True, kw_only=True, tag="command", tag_field="kind"):
    """An inbox cancel's or modify's result (``ok`` or the refusal)."""

    command_id: int
    code: Code


class AdminOutcome(msgspec.Struct, frozen=True, kw_only=True, tag="admin", tag_field="kind"):
    """An inbox admin command's answer (also stored as its row's result)."""

    command_id: int
    answer: AdminAnswer


Outcome = PlaceOutcome | CommandOutcome | AdminOutcome


class MarketPayload(msgspec.Struct, frozen=True, kw_only=True):
    """One instrument's market events of one committed batch (or part of them), in order.
    The events are the feed's wire events (marketdata.feed), each a JSON object."""

    instrument: str
    events: list[dict[str, Any]]


_outcomes = msgspec.json.Decoder(list[Outcome])
_market = msgspec.json.Decoder(MarketPayload)


def _split(blobs: Iterable[bytes], head: bytes, tail: bytes, limit: int) -> list[str]:
    """JSON texts ``head + blob,blob,... + tail``, each under ``limit`` bytes, in order."""
    payloads: list[str] = []
    chunk: list[bytes] = []
    size = len(head) + len(tail)
    for blob in blobs:
        if chunk and size + len(blob) + 1 > limit:
            payloads.append((head + b",".join(chunk) + tail).decode())
            chunk, size = [], len(head) + len(tail)
        chunk.append(blob)
        size += len(blob) + 1
    if chunk:
        payloads.append((head + b",".join(chunk) + tail).decode())
    return payloads


def outcome_payloads(outcomes: Iterable[Outcome], limit: int = NOTIFY_MAX_BYTES) -> list[str]:
    """NOTIFY payloads for the outcome channel. An outcome too large for one loses its order
    (the waiter reads PostgreSQL instead)."""
    blobs: list[bytes] = []
    room = limit - 2
    for outcome in outcomes:
        blob = _encoder.encode(outcome)
        if len(blob) > room and isinstance(outcome, PlaceOutcome):
            blob = _encoder.encode(PlaceOutcome(order_id=outcome.order_id))
        blobs.append(blob)
    return _split(blobs, b"[", b"]", limit)


def decode_outcomes(payload: str | bytes) -> list[Outcome]:
    return _outcomes.decode(payload)


def market_payloads(instrument: str, events: Iterable[dict[str, Any]],
                    limit: int = NOTIFY_MAX_BYTES) -> list[str]:
    """NOTIFY payloads for the market channel: ``MarketPayload``s of the events, in order,
    each under the limit (a single market event is small and bounded)."""
    head = b'{"instrument":' + _encoder.encode(instrument) + b',"events":['
    return _split((_encoder.encode(ev) for ev in events), head, b"]}", limit)


def decode_market(payload: str | bytes) -> MarketPayload:
    return _market.decode(payload)


def encode(message: Any) -> bytes:
    """JSON of any message of this contract (or of plain values)."""
    return _encoder.encode(message)


def to_builtins(message: Any) -> Any:
    """A message as plain dicts, lists and strings (enum members become their values)."""
    return msgspec.to_builtins(message)


# --------------------------------------------------------------------------------------------
# Operations: admin commands stored in the inbox (their rows carry the command as JSON)
# --------------------------------------------------------------------------------------------

_admin_command = msgspec.json.Decoder(AdminCommand)
_admin_answer = msgspec.json.Decoder(AdminAnswer)


def decode_admin_command(data: str | bytes) -> AdminCommand:
    return _admin_command.decode(data)


def decode_admin_answer(data: str | bytes) -> AdminAnswer:
    return _admin_answer.decode(data)
