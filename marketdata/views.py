"""The trading page: one HTML page, plain JavaScript modules under static/trading/js/ (no build step),
driven by the public REST API and WS /stream like any other client."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from orders.auth import demo_key


def trading_page(request: HttpRequest) -> HttpResponse:
    # apiKey: the key the page starts with (the person using it may paste their own, which the
    # browser keeps): in development the demo trader's that `make run` made, else none. Every
    # request carries it as `Authorization: Bearer <key>`, every socket as an `auth` message.
    config = {"apiKey": demo_key("demo"), "instrument": request.GET.get("instrument", ""), "streamPath": "/stream"}
    return render(request, "trading/trading.html", {"config": config})
