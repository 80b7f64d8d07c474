"""exchange_project/settings.py: a secure default. Development is defined, a SECRET_KEY is
required outside it, DEBUG is off unless asked, keys cannot be turned off in production, the
HTML pages carry the security headers, and /readyz says loudly when keys are off."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from exchange_project.processes import ROOT
from tests.http import Browser, call, call_full
from tests.marketdata.streams import session
from tests.orders.helpers import order_body

PROBE = ("import django, json; django.setup(); from django.conf import settings as s; "
         "print(json.dumps([s.DEVELOPMENT, s.DEBUG, s.AUTH_REQUIRED, s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS]))")
SECRET = "x" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"


def settings_with(**env: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PGBOURSE_", "DJANGO_", "DATABASE_URL",
                                                                      "ALLOWED_HOSTS", "CSRF_"))}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, "DJANGO_SETTINGS_MODULE": "exchange_project.settings", **env})
    return done.returncode, done.stdout.strip() or done.stderr.strip().splitlines()[-1]


PRODUCTION_DB = {"DATABASE_URL": "postgresql://u:p@db.example:5432/pgbourse"}


@pytest.mark.parametrize("env,ok,says", [
    ({}, True, "[true, false, true"),  # the embedded PostgreSQL: development, DEBUG off, keys required
    (PRODUCTION_DB, False, "DJANGO_SECRET_KEY must be set"),
    ({**PRODUCTION_DB, "DJANGO_SECRET_KEY": "short"}, False, "DJANGO_SECRET_KEY must be set"),
    ({**PRODUCTION_DB, "DJANGO_SECRET_KEY": "dev-only-not-secret-pgbourse"}, False, "DJANGO_SECRET_KEY must be set"),
    ({"PGBOURSE_ENV": "production"}, False, "DJANGO_SECRET_KEY must be set"),
    ({**PRODUCTION_DB, "DJANGO_SECRET_KEY": SECRET}, True, "[false, false, true"),
    ({**PRODUCTION_DB, "DJANGO_SECRET_KEY": SECRET, "PGBOURSE_AUTH": "off"}, False, "PGBOURSE_AUTH=off is for local"),
    ({"PGBOURSE_AUTH": "off"}, True, "[true, false, false"),
    ({"DJANGO_DEBUG": "1"}, True, "[true, true, true"),
    ({"PGBOURSE_RATE_TRADER_ORDERS": "lots"}, False, "PGBOURSE_RATE_TRADER_ORDERS must be a budget"),
    ({"CSRF_TRUSTED_ORIGINS": "exchange.example"}, False, "need a scheme"),
    ({"ALLOWED_HOSTS": "exchange.example", "CSRF_TRUSTED_ORIGINS": "https://exchange.example"}, True,
     '["exchange.example"], ["https://exchange.example"]]'),
], ids=["development", "production without a key", "a short key", "the development key", "said production",
        "production with a key", "keys off in production", "keys off in development", "debug asked for",
        "a bad budget", "an origin without scheme", "hosts and origins"])
def test_settings_fail_fast_outside_a_secure_default(env: dict[str, str], ok: bool, says: str) -> None:
    code, out = settings_with(**env)
    assert (code == 0) is ok and says in out, out


def test_html_pages_carry_the_security_headers(exchange: Any) -> None:
    for path in ("/admin/login/", "/docs", "/api-auth/login/"):
        status, headers, page = call_full(exchange.http, "GET", path, headers={"Accept": "text/html"}, key=None)
        assert status == 200, path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in \
            csp.split("script-src")[1].split(";")[0]
        # no inline script on a page the policy would break
        assert "<script>" not in page, path


def test_readyz_tells_whether_keys_are_checked(exchange: Any) -> None:
    sym = exchange.make_instrument()
    status, ready = call(exchange.http, "GET", "/readyz", key=None)
    assert status == 200 and ready["auth"] == "required" and ready["warnings"] == []
    base = exchange.start_extra_server("server-auth-off", {"PGBOURSE_AUTH": "off"})
    try:
        status, ready = call(base, "GET", "/readyz", key=None)
        assert status == 200 and ready["auth"] == "off" and "PGBOURSE_AUTH=off" in ready["warnings"][0]
        # and then, as before keys: any client, no key, over HTTP and the WebSocket
        status, _ = call(base, "GET", "/orders", key=None)
        assert status == 200
        assert call(base, "POST", "/orders", order_body(sym, client_id="anyone"), key=None)[0] == 201

        async def ws_order() -> dict[str, Any]:
            async with session(base.replace("http://", "ws://") + "/stream", key=None) as ws:
                return await ws.request({"op": "order", **order_body(sym, client_id="anyone")})

        assert asyncio.run(ws_order())["status"] == 201
    finally:
        exchange.stop_extra_server("server-auth-off")


def test_the_admin_login_page_is_not_cached_and_the_session_cookie_is_http_only(exchange: Any) -> None:
    username, password = exchange.make_staff_user()
    browser = Browser(exchange.http)
    status, headers, _ = browser.request("GET", "/admin/login/")
    assert status == 200 and "no-store" in headers.get("cache-control", "")
    browser.request("GET", "/admin/login/")
    status, headers, _ = browser.request("POST", "/admin/login/?next=/admin/",
                                         {"username": username, "password": password, "next": "/admin/"})
    session = [c for c in headers["set-cookie"].splitlines() if c.startswith("sessionid=")]
    assert status == 302 and len(session) == 1 and "HttpOnly" in session[0] and "SameSite=Lax" in session[0]
