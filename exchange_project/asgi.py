"""ASGI entry and composition root: HTTP (Django, with the lean path for order writes), the
WebSocket (Channels), and the matching worker's channel (Channels' runworker), which is given
here the market-data feed it publishes with (marketdata.feed) and the trade aggregates it keeps
(marketdata.analytics), so that nothing under matching/ imports the apps above it."""
from __future__ import annotations

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

# Static files (admin, browsable API) straight from the apps, no collectstatic step: only the
# admin and the browsable API use them, so the handler's simplicity beats a CDN-grade server.
django_http = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from marketdata.analytics import InstrumentAnalytics  # noqa: E402
from marketdata.feed import FeedBuilder  # noqa: E402
from marketdata.routing import websocket_application  # noqa: E402
from matching.worker.consumer import MatchingConsumer  # noqa: E402
from orders.fastpath import http_application  # noqa: E402
from orders.health import health_application  # noqa: E402

if not settings.AUTH_REQUIRED:
    import logging

    from orders.auth import OFF_WARNING

    logging.getLogger("orders.auth").warning(OFF_WARNING)

application = ProtocolTypeRouter({
    "http": health_application(http_application(django_http)),
    "websocket": websocket_application(),
    "channel": ChannelNameRouter({"matching": MatchingConsumer.as_asgi(feed_factory=FeedBuilder,
                                                                   analytics_factory=InstrumentAnalytics)}),
})

# Garbage collection, in the web processes and the matching worker alike (both load this module).
# CPython's young-generation threshold (2,000 net container allocations) is met every few
# milliseconds on the order path, and each collection that reaches the older generations walks
# every resting order the worker holds (docs/decisions.md). What exists once the modules are
# loaded is never garbage: freeze it out of every collection, and collect the young generation
# every 50,000 allocations.
gc.freeze()
gc.set_threshold(50_000, 20, 10)
