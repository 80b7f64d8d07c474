"""The audit trail: who did what to the exchange, and when. Every admin action records itself
here, through this one function (the admin's, the REST endpoints', management commands')."""
from __future__ import annotations

from typing import Any

from .models import AuditEntry


def record(actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> AuditEntry:
    """Store one entry. ``actor``: who (a username, or "manage.py"); ``action``: what (halt,
    resume, cancel_all, snapshot); ``target``: on what (an instrument, a client); ``detail``:
    the outcome, as JSON."""
    return AuditEntry.objects.create(actor=actor[:150], action=action[:32], target=target[:200], detail=detail or {})
