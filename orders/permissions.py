"""Who may use the operations endpoints (/admin/...): one rule, in one place, for every view
that acts on the exchange as an operator. Today: staff, by their Django session (the admin's
login). The accounts work replaces the body of ``is_operator`` with its role check."""
from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission


def is_operator(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


def actor_of(user: Any) -> str:
    """The name the audit trail records for this operator."""
    return str(user.get_username()) if user is not None and hasattr(user, "get_username") else "unknown"


class OperatorOnly(BasePermission):
    message = "Operators only: log in to the admin as a staff user."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_operator(request.user)
