"""The WebSocket side of the ASGI application: one endpoint, WS /stream."""
from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import re_path

from .consumers import StreamConsumer


def websocket_application() -> Any:
    return URLRouter([re_path(r"^stream/?$", StreamConsumer.as_asgi())])
