"""Who is asking (``Caller``), as every part that decides on it sees it: orders.auth makes
callers from keys and sessions, orders.limits counts each caller's budget. Nothing here looks
anything up."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from .models import KeyRole

TRADER, READ_ONLY, ADMIN = KeyRole.TRADER.value, KeyRole.READ_ONLY.value, KeyRole.ADMIN.value


def ip_identity(host: str | None) -> str:
    """The address a budget counts by: IPv4 as is, IPv6 by its /64 (one host's usual share)."""
    if not host:
        return "unknown"
    if ":" in host:
        try:
            return str(ipaddress.ip_network(f"{host}/64", strict=False).network_address)
        except ValueError:
            return host
    return host


def client_ip(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return ip_identity(client[0] if client else None)


@dataclass(frozen=True, slots=True)
class Caller:
    """The one answer to "who is asking". ``client_id``: the key's client (None for a staff
    session, anonymous, or auth off). ``rates``: the key's own budgets by action."""

    role: str | None
    ip: str
    client_id: str | None = None
    key_id: int | None = None
    key_hash: str = ""
    prefix: str = ""
    rates: dict[str, str] = field(default_factory=dict)
    user: str = ""

    @property
    def is_authenticated(self) -> bool:  # DRF's and Django's "user" protocol
        return self.role is not None

    @property
    def limited_to(self) -> str | None:
        """The only client whose orders this caller may touch, or None: any (an admin)."""
        return self.client_id if self.role in (TRADER, READ_ONLY) else None

    @property
    def identity(self) -> str:
        """Whose budget a request spends."""
        if self.key_id is not None:
            return f"key:{self.key_id}"
        if self.user:
            return f"user:{self.user}"
        return f"ip:{self.ip}"

    def __str__(self) -> str:
        if self.key_id is not None:
            return f"{self.prefix} ({self.client_id}, {self.role})"
        return f"{self.user} (staff)" if self.user else f"anonymous {self.ip}"


def anonymous(ip: str) -> Caller:
    return Caller(role=None, ip=ip)


def open_caller(ip: str) -> Caller:
    """PGBOURSE_AUTH=off: an admin without a key, its budgets counted by address."""
    return Caller(role=ADMIN, ip=ip)


def staff_caller(user: Any, ip: str) -> Caller:
    return Caller(role=ADMIN, ip=ip, user=str(user.get_username()))



def drf_caller(request: Any) -> Caller:
    """The caller of a DRF request, which DRF has authenticated already (orders.auth's
    authentication classes): the caller they found, or nobody they know."""
    user = getattr(request, "user", None)
    if isinstance(user, Caller):
        return user
    ip = ip_identity(request.META.get("REMOTE_ADDR"))
    return open_caller(ip) if not settings.AUTH_REQUIRED else anonymous(ip)
