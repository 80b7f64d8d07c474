"""The audit trail of admin actions: who did what to what, and when (orders.models.AuditEntry).

``record`` is called inside the transaction of the action it records where there is one, so an
entry exists exactly when the action happened: keys created and revoked (orders.auth), orders
cancelled from the admin (orders.admin).
"""
from __future__ import annotations

import getpass
from typing import Any

from .models import AuditEntry


def actor_label(actor: Any) -> str:
    """Who: a Django user ("user:alice"), an API key's caller ("key:pgb_1a2b3c4d (ops)"), or a
    label given as is ("command:create_api_key")."""
    if isinstance(actor, str):
        return actor[:200]
    prefix = getattr(actor, "prefix", "")
    if getattr(actor, "key_id", None) is not None and prefix:
        return f"key:{prefix} ({getattr(actor, 'client_id', '')})"[:200]
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
    return AuditEntry.objects.create(actor=actor_label(actor), action=action, target=str(target)[:200],
                                     detail=detail or {})
