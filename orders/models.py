"""The record of truth. Every rule that must never break is a database constraint here.

Prices and quantities are NUMERIC(30, 12): wide enough for BTC prices with 8 decimals and
sizes in satoshis, exact, never float. The matching engine works in integer ticks/lots; the
instrument converts.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from matching.contract import OrderStatus
from matching.engine.types import InstrumentSpec
from matching.records import spec_from_row

MONEY = {"max_digits": 30, "decimal_places": 12}
INBOX_SEQUENCE = "orders_inbox_seq"


class NextVal(models.Func):
    """nextval() of the one inbox sequence shared by place and cancel/modify commands, so the
    worker can process them in arrival order across both tables."""

    template = f"nextval('{INBOX_SEQUENCE}')"
    output_field = models.BigIntegerField()


class Instrument(models.Model):
    symbol = models.CharField(max_length=32, unique=True)
    tick_size = models.DecimalField(**MONEY)
    lot_size = models.DecimalField(**MONEY)
    min_qty = models.DecimalField(**MONEY)
    max_qty = models.DecimalField(**MONEY)
    max_price = models.DecimalField(**MONEY)
    min_notional = models.DecimalField(**MONEY, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # Written only by the matching worker, inside its batch transaction.
    last_seq = models.BigIntegerField(default=0, editable=False)
    last_trade_id = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Operations: set by the matching worker (an admin command), in its batch transaction, so
    # that the halt survives a restart; and the instrument's last journal position (each command
    # that changed the record has one, on its OrderEvents: see OrderEvent.command_seq).
    halted = models.BooleanField(default=False, db_default=False, editable=False)
    last_command_seq = models.BigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_positive"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="instrument_lot_positive"),
            models.CheckConstraint(condition=Q(min_qty__gt=0) & Q(max_qty__gte=F("min_qty")),
                                   name="instrument_qty_bounds"),
            models.CheckConstraint(condition=Q(max_price__gt=0), name="instrument_max_price_positive"),
        ]

    def __str__(self) -> str:
        return self.symbol

    def spec(self) -> InstrumentSpec:
        return spec_from_row(self.symbol, self.tick_size, self.lot_size, self.min_qty, self.max_qty,
                             self.max_price, self.min_notional)


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class OrderType(models.TextChoices):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(models.TextChoices):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Stp(models.TextChoices):
    NONE = "none"
    CANCEL_TAKER = "cancel_taker"
    CANCEL_MAKER = "cancel_maker"
    CANCEL_BOTH = "cancel_both"


# The statuses are the contract's (matching.contract.OrderStatus), one definition for all.
Status = models.TextChoices("Status", [(s.name, s.value) for s in OrderStatus])  # type: ignore[misc]


class Order(models.Model):
    order_id = models.UUIDField(unique=True)
    client_id = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=128)
    # sha256 of the canonical request, so a reused key with a different body is a 409.
    request_hash = models.CharField(max_length=64)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=6, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = models.BooleanField(default=False)
    stp = models.CharField(max_length=12, choices=Stp.choices, default=Stp.CANCEL_TAKER)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    quantity = models.DecimalField(**MONEY)
    filled_quantity = models.DecimalField(**MONEY, default=Decimal(0))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=64, null=True, blank=True)
    # The engine's arrival sequence while the order rests: rebuilding a book sorts by it.
    priority = models.BigIntegerField(null=True, blank=True)
    inbox_seq = models.BigIntegerField(db_default=NextVal(), editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["client_id", "idempotency_key"], name="order_idempotency"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                                   name="order_filled_within_quantity"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gt=0), name="order_price_positive"),
            models.CheckConstraint(condition=Q(type="market", price__isnull=True)
                                   | Q(type="limit", price__isnull=False),
                                   name="order_price_matches_type"),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in Status]), name="order_status_valid"),
        ]
        indexes = [
            models.Index(fields=["inbox_seq"], condition=Q(status="pending"), name="order_pending_inbox"),
            models.Index(fields=["instrument", "priority"], condition=Q(status__in=["open", "partially_filled"]),
                         name="order_resting"),
            # GET /orders?client_id= lists newest first by id; unfiltered lists use the primary key.
            models.Index(fields=["client_id", "-id"], name="order_client_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.side} {self.quantity} {self.instrument_id} {self.status}"


class CommandKind(models.TextChoices):
    CANCEL = "cancel"
    MODIFY = "modify"


class OrderCommand(models.Model):
    """A cancel or modify waiting for (or answered by) the matching worker."""

    inbox_seq = models.BigIntegerField(db_default=NextVal(), editable=False)
    kind = models.CharField(max_length=8, choices=CommandKind.choices)
    order = models.ForeignKey(Order, to_field="order_id", db_column="order_id", on_delete=models.PROTECT,
                              related_name="commands")
    new_price = models.DecimalField(**MONEY, null=True, blank=True)
    new_quantity = models.DecimalField(**MONEY, null=True, blank=True)
    processed = models.BooleanField(default=False)
    result = models.CharField(max_length=64, null=True, blank=True)  # "ok" or a reject reason
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["inbox_seq"], condition=Q(processed=False), name="command_pending_inbox")]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id} {'processed: ' + str(self.result) if self.processed else 'pending'}"


class Trade(models.Model):
    # No index of its own: the (instrument, trade_id) and (instrument, seq) unique indexes lead
    # with it, and every index is one more write per trade.
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="trades", db_index=False)
    trade_id = models.BigIntegerField()
    seq = models.BigIntegerField()
    price = models.DecimalField(**MONEY)
    quantity = models.DecimalField(**MONEY)
    aggressor_side = models.CharField(max_length=4, choices=Side.choices)
    buy_order_id = models.UUIDField(db_index=True)
    sell_order_id = models.UUIDField(db_index=True)
    maker_order_id = models.UUIDField()
    taker_order_id = models.UUIDField()
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "trade_id"], name="trade_id_per_instrument"),
            models.UniqueConstraint(fields=["instrument", "seq"], name="trade_seq_per_instrument"),
            models.CheckConstraint(condition=Q(quantity__gt=0) & Q(price__gt=0), name="trade_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id}#{self.trade_id} {self.quantity}@{self.price}"


class OrderEvent(models.Model):
    """Append-only: one row for every state change of every order, in the order they happened."""

    order_id = models.UUIDField(db_index=True)
    # Events are read by order; an index on the instrument would only cost a write per event.
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    quantity = models.DecimalField(**MONEY)
    filled_quantity = models.DecimalField(**MONEY)
    reason = models.CharField(max_length=64, null=True, blank=True)
    trade_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    # The journal: the instrument's sequence number of the command that caused this event (every
    # event of one command carries it; the command's own order's event is its last). With the
    # order rows' fixed terms it is enough to replay the instrument (matching.journal).
    command_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.order_id} {self.status}"


# --------------------------------------------------------------------------------------------
# Operations: the worker's heartbeat, admin commands, the audit trail
# --------------------------------------------------------------------------------------------


class WorkerStatus(models.Model):
    """The matching worker's heartbeat: one row, refreshed every second by the worker that owns
    the books, from the session that holds the ownership lock (so a fresh row means that session
    is alive). Read by /readyz and the admin."""

    id = models.SmallIntegerField(primary_key=True, default=1)
    owner = models.CharField(max_length=128, help_text="host and pid of the worker")
    backend_pid = models.IntegerField(help_text="PostgreSQL pid of its lock-holding session")
    direct_address = models.CharField(max_length=128, null=True, blank=True)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    last_batch_at = models.DateTimeField(null=True, blank=True)
    batches = models.BigIntegerField(default=0)
    retries = models.BigIntegerField(default=0)
    books = models.JSONField(default=list, help_text="per instrument: open orders, levels, seq, halted")

    class Meta:
        verbose_name_plural = "worker status"

    def __str__(self) -> str:
        return f"matching worker {self.owner}"


class AdminCommand(models.Model):
    """An admin command for the matching worker (matching.contract: TakeSnapshot, SetHalted,
    CancelAll): queued here when the worker is not reachable directly (the inbox), and written
    by the worker itself for each halt/resume and cancel-all it carries out (a halt's
    ``command_seq`` is its place in the instrument's journal)."""

    inbox_seq = models.BigIntegerField(db_default=NextVal(), editable=False)
    kind = models.CharField(max_length=24)
    instrument = models.ForeignKey(Instrument, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    client_id = models.CharField(max_length=64, null=True, blank=True)
    command = models.JSONField(help_text="the contract message")
    processed = models.BooleanField(default=False)
    result = models.JSONField(null=True, blank=True, help_text="the worker's answer")
    command_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["inbox_seq"], condition=Q(processed=False), name="admin_pending_inbox"),
                   models.Index(fields=["instrument", "command_seq"], condition=Q(command_seq__isnull=False),
                                name="admin_journal")]

    def __str__(self) -> str:
        return f"{self.kind} {'processed' if self.processed else 'pending'}"


class AuditEntry(models.Model):
    """Append-only: who did what to the exchange, and when (orders.audit.record): every admin
    action (halts, cancels, snapshots, keys created and revoked)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["action", "-at"], name="audit_action_recent")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


# --------------------------------------------------------------------------------------------
# Accounts and limits (orders.auth, orders.limits, orders.audit; docs/security.md)
# --------------------------------------------------------------------------------------------


class KeyRole(models.TextChoices):
    TRADER = "trader"
    READ_ONLY = "read_only"
    ADMIN = "admin"


def validate_rate(value: str) -> None:
    from django.conf import settings
    from django.core.exceptions import ValidationError

    if value and settings.RATE_SYNTAX.fullmatch(value) is None:
        raise ValidationError("a budget such as 200/2s, 100/s or 6000/m (requests per period)")


class ApiKey(models.Model):
    """An API key: who its holder is (``client_id``: the client whose orders it places, sees
    and cancels) and what it may do (``role``). The key itself is never stored: ``key_hash`` is
    the SHA-256 of it (its 32 random bytes make a slow password hash pointless, and a lookup
    must cost microseconds), ``prefix`` its first characters, for people to tell keys apart.
    A client has at most one live key; a revoked one stays for the record."""

    client_id = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=KeyRole.choices, default=KeyRole.TRADER)
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # Budgets of this key, overriding its role's (settings.RATE_LIMITS); blank: the role's.
    orders_rate = models.CharField(max_length=24, blank=True, validators=[validate_rate],
                                   help_text="orders placed, e.g. 200/2s (blank: the role's)")
    commands_rate = models.CharField(max_length=24, blank=True, validators=[validate_rate],
                                     help_text="cancels and modifies, e.g. 200/2s (blank: the role's)")
    reads_rate = models.CharField(max_length=24, blank=True, validators=[validate_rate],
                                  help_text="reads, e.g. 100/2s (blank: the role's)")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["client_id", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["client_id"], condition=Q(revoked_at__isnull=True),
                                    name="apikey_one_live_key_per_client"),
            models.CheckConstraint(condition=Q(role__in=[r.value for r in KeyRole]), name="apikey_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix} {self.client_id} ({self.role}{', revoked' if self.revoked_at else ''})"


class RateCounter(models.Model):
    """PGBOURSE_RATE_LIMIT_STORE=postgres: one row per budget and window (the key is
    django-ratelimit's). UNLOGGED (see the migration): a counter lost in a crash costs nothing."""

    key = models.CharField(max_length=128, primary_key=True)
    count = models.BigIntegerField(default=0)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
# Positions and settlements
# --------------------------------------------------------------------------------------------

# A quote amount (price x quantity) has the decimals of the tick and of the lot together.
QUOTE = {"max_digits": 50, "decimal_places": 24}


class Position(models.Model):
    """One client's position in one instrument, by average cost (matching.aggregates.Position).
    Written only by the matching worker, in the transaction of the batch whose fills it folds,
    so it never disagrees with the trades committed (``manage.py analytics_check`` recomputes
    it from them). ``cost_basis`` is signed like ``net_quantity``."""

    client_id = models.CharField(max_length=64)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+", db_index=False)
    net_quantity = models.DecimalField(**MONEY)
    cost_basis = models.DecimalField(**QUOTE)
    bought_quantity = models.DecimalField(**MONEY)
    sold_quantity = models.DecimalField(**MONEY)
    bought_quote = models.DecimalField(**QUOTE)
    sold_quote = models.DecimalField(**QUOTE)
    realized_pnl = models.DecimalField(**QUOTE)
    trade_count = models.BigIntegerField()
    last_seq = models.BigIntegerField(help_text="the seq of its last fill")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["client_id", "instrument"]
        constraints = [
            models.UniqueConstraint(fields=["client_id", "instrument"], name="position_per_client"),
            models.CheckConstraint(condition=Q(net_quantity=F("bought_quantity") - F("sold_quantity")),
                                   name="position_net_is_bought_minus_sold"),
            # Average cost moves PnL between realized and the cost basis, never creates any.
            models.CheckConstraint(condition=Q(realized_pnl=F("cost_basis") + F("sold_quote") - F("bought_quote")),
                                   name="position_pnl_is_cash_flow"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} {self.net_quantity} {self.instrument_id}"


class Settlement(models.Model):
    """One client's trades of one UTC day in one instrument, netted (``manage.py settle``)."""

    date = models.DateField()
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+", db_index=False)
    client_id = models.CharField(max_length=64)
    bought_quantity = models.DecimalField(**MONEY)
    sold_quantity = models.DecimalField(**MONEY)
    net_quantity = models.DecimalField(**MONEY)
    bought_quote = models.DecimalField(**QUOTE)
    sold_quote = models.DecimalField(**QUOTE)
    net_quote = models.DecimalField(**QUOTE, help_text="quote received minus quote paid")
    buy_vwap = models.DecimalField(**MONEY, null=True, blank=True)
    sell_vwap = models.DecimalField(**MONEY, null=True, blank=True)
    trade_count = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date", "instrument", "client_id"]
        constraints = [
            # Settling a day twice cannot make a second row.
            models.UniqueConstraint(fields=["date", "instrument", "client_id"], name="settlement_per_day"),
            models.CheckConstraint(condition=Q(net_quantity=F("bought_quantity") - F("sold_quantity")),
                                   name="settlement_net_quantity"),
            models.CheckConstraint(condition=Q(net_quote=F("sold_quote") - F("bought_quote")),
                                   name="settlement_net_quote"),
        ]
        indexes = [models.Index(fields=["client_id", "-date"], name="settlement_client_recent")]

    def __str__(self) -> str:
        return f"{self.date} {self.client_id} {self.instrument_id} {self.net_quantity}"
