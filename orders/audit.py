"""The audit trail: who did what to the exchange, and when (orders.models.AuditEntry). Every
admin action records itself through ``record``: the admin's, the operations endpoints',
management commands' (keys created and revoked, halts, cancels, snapshots).

``record`` is called inside the transaction of the action it records where there is one, so an
entry exists exactly when the action happened.
"""
from __future__ import annotations

import getpass
from typing import Any

from .models import AuditEntry


def actor_label(actor: Any) -> str:
    """Who: an API key's caller ("key:pgb_1a2b3c4d (ops)"), a staff user ("user:alice"), or a
    label given as is ("command:create_api_key (root)")."""
    if isinstance(actor, str):
        return actor[:200]
    prefix = getattr(actor, "prefix", "")
    if getattr(actor, "key_id", None) is not None and prefix:
        return f"key:{prefix} ({getattr(actor, 'client_id', '')})"[:200]
    user = getattr(actor, "user", None)
    if isinstance(user, str) and user:  # a staff session's caller (orders.callers.Caller)
        return f"user:{user}"[:200]
    username = getattr(actor, "get_username", None)
    if callable(username):
        return f"user:{username()}"[:200]
    return str(actor)[:200]


def command_actor(command: str) -> str:
    """A management command's actor: the command and the operating-system user who ran it."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):
        who = "unknown"
    return f"command:{command} ({who})"


def record(actor: Any, action: str, target: str, detail: dict[str, Any] | None = None) -> AuditEntry:
    """Store one entry. ``actor``: who (see ``actor_label``); ``action``: what (halt, resume,
    cancel_all, snapshot, api_key_created...); ``target``: on what (an instrument, a client, a
    key); ``detail``: the outcome, as JSON."""
    return AuditEntry.objects.create(actor=actor_label(actor), action=action[:64], target=str(target)[:200],
                                     detail=detail or {})
