"""The trading page: one HTML page, plain JavaScript modules under static/trading/js/ (no build step),
driven by the public REST API and WS /stream like any other client."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def trading_page(request: HttpRequest) -> HttpResponse:
    # api_key: what every request of the page will carry as `Authorization: Bearer <key>` (and
    # the socket as an `auth` message). Empty until API keys exist; orders name a client_id.
    config = {"apiKey": "", "instrument": request.GET.get("instrument", ""), "streamPath": "/stream"}
    return render(request, "trading/trading.html", {"config": config})
