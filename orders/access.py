"""Who may read a client's own data (positions, settlements): ONE check, called by every view
that shows it.

Today there is no authentication (every client's data is readable, as every order is). Once API
keys exist, this is the one place to point at their helper: a key reads its own client only, an
admin any client; anything else is refused with the one error body.
"""
from __future__ import annotations

from typing import Any


def check_client_access(request: Any, client_id: str | None) -> None:
    """Raise ApiError (403) if ``request`` may not read ``client_id``'s data (None: every
    client's, which only an admin may once keys exist)."""
    return None
