"""ASGI entry: HTTP (Django, with a lean path for POST /orders), WebSocket (Channels) and the
matching worker's channel (Channels' runworker)."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Static files (admin, browsable API) straight from the apps, no collectstatic step: only the
# admin and the browsable API use them, so the handler's simplicity beats a CDN-grade server.
django_http = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402

from marketdata.routing import websocket_application  # noqa: E402
from matching.consumer import MatchingConsumer  # noqa: E402
from orders.fastpath import http_application  # noqa: E402

application = ProtocolTypeRouter({
    "http": http_application(django_http),
    "websocket": websocket_application(),
    "channel": ChannelNameRouter({"matching": MatchingConsumer.as_asgi()}),
})
