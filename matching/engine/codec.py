"""Serialization of events and snapshots: plain JSON, canonical, no floats.

Pure: stdlib ``json`` only. Enum members become their string values, so a
dict from here is exactly what the worker stores and the feeds send.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from matching.engine.types import Event


def event_to_dict(ev: Event) -> dict[str, Any]:
    """``{"type": "Trade", "seq": 7, ...}`` with enums as their values."""
    out: dict[str, Any] = {"type": type(ev).__name__}
    for name in ev._fields:
        value = getattr(ev, name)
        out[name] = value.value if isinstance(value, Enum) else value
    return out


def snapshot_dumps(snap: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces): equal snapshots give equal bytes."""
    return json.dumps(snap, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def snapshot_loads(data: bytes) -> dict[str, Any]:
    snap = json.loads(data)
    if not isinstance(snap, dict):
        raise ValueError("snapshot must be a JSON object")
    return snap
