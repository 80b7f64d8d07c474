"""orders/auth.py over real HTTP: who may do what with which key, on the lean path and the DRF
views alike; revocation within a second; the admin site; the audit trail; no secret leaks."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from exchange_project.processes import ROOT
from orders.auth import key_from_headers, new_key
from tests.http import Browser, call, call_full
from tests.keys import fresh_window, wait_for_web_processes

from .helpers import order_body


@pytest.fixture
def sym(exchange: Any) -> str:
    return exchange.make_instrument()


def form(body: dict[str, Any]) -> bytes:
    import urllib.parse

    return urllib.parse.urlencode({k: v for k, v in body.items() if v is not None}).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- the key: its shape, where it is read from ------------------------------------------------

def test_a_key_is_a_readable_prefix_and_32_random_bytes_and_only_its_hash_is_kept() -> None:
    key, prefix, digest = new_key()
    assert re.fullmatch(r"pgb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key) and key.startswith(prefix + "_")
    assert len(digest) == 64 and key not in digest and new_key()[0] != key
    assert key_from_headers(f"Bearer {key}", None) == key == key_from_headers(None, key)
    assert key_from_headers(b"bearer " + key.encode(), b"other") == key  # Authorization first
    assert key_from_headers("Basic dXNlcjpwYXNz", None) is None  # not ours


def test_the_key_in_x_api_key_works_as_in_authorization(exchange: Any, sym: str) -> None:
    key = exchange.keys.create()
    status, body = call(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=None,
                        headers={"X-API-Key": key})
    assert status == 201, body


# -- 401 and 403, each code, on the lean path and the DRF views -------------------------------

WRITES = [("POST", "/orders"), ("POST", "/orders/test"), ("DELETE", f"/orders/{uuid.uuid4()}"),
          ("POST", f"/orders/{uuid.uuid4()}/cancel"), ("PATCH", f"/orders/{uuid.uuid4()}")]
READS = [("GET", "/orders"), ("GET", f"/orders/{uuid.uuid4()}")]


@pytest.mark.parametrize("method,path", WRITES + READS)
def test_no_key_is_401_authentication_required_and_changes_nothing(exchange: Any, sym: str, method: str,
                                                                   path: str) -> None:
    body = order_body(sym) if method == "POST" and path.startswith("/orders") and "cancel" not in path else None
    status, headers, err = call_full(exchange.http, method, path, body, key=None)
    assert (status, err["code"]) == (401, "authentication_required"), err
    assert set(err) >= {"code", "detail", "fields"} and headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path,raw,headers", [("/orders", None, {}), ("/orders", b"", FORM)],
                         ids=["lean path", "DRF form"])
def test_an_unknown_key_is_401_invalid_api_key(exchange: Any, sym: str, path: str, raw: bytes | None,
                                               headers: dict[str, str]) -> None:
    body = order_body(sym)
    unknown, _, _ = new_key()
    status, err = call(exchange.http, "POST", path, body if raw is None else None,
                       raw=None if raw is None else form(body), headers=headers, key=unknown, source="127.0.0.21")
    assert (status, err["code"]) == (401, "invalid_api_key")
    assert unknown not in str(err)
    status, err = call(exchange.http, "GET", "/orders", key="not-even-a-key", source="127.0.0.21")
    assert (status, err["code"]) == (401, "invalid_api_key")


def test_a_revoked_key_is_401_api_key_revoked_on_every_path(exchange: Any, sym: str) -> None:
    key = exchange.keys.create()
    assert call(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=key)[0] == 201
    with exchange.connect() as conn:
        conn.execute("UPDATE orders_apikey SET revoked_at = now() WHERE key_hash = encode(sha256(%s), 'hex')",
                     (key.encode(),))
    time.sleep(0.3)
    for method, path, body, raw, headers in [("POST", "/orders", order_body(sym, client_id=None), None, {}),
                                             ("POST", "/orders", None, form(order_body(sym, client_id=None)), FORM),
                                             ("GET", "/orders", None, None, {}),
                                             ("GET", f"/orderbook?instrument={sym}", None, None, {})]:
        status, err = call(exchange.http, method, path, body, raw=raw, headers=headers, key=key, source="127.0.0.22")
        assert (status, err["code"]) == (401, "api_key_revoked"), (method, path, err)


def test_account_says_whom_a_key_acts_for_and_its_budgets(exchange: Any) -> None:
    client = f"acc-{uuid.uuid4().hex[:8]}"
    trader = exchange.keys.create(client, orders_rate="7/2s")
    # a trader's key: its client, its role, its prefix, its own budget where it has one
    status, account = call(exchange.http, "GET", "/account", key=trader)
    assert status == 200 and account == {"client_id": client, "role": "trader", "key_prefix": trader[:12],
                                         "rate_limits": {"orders": "7/2s", "commands": "1000000/s",
                                                         "reads": "1000000/s"}}
    # a read-only key has no write budgets; an admin's acts for any client
    reader = exchange.keys.create(role="read_only", reads_rate="")
    status, account = call(exchange.http, "GET", "/account", key=reader)
    assert status == 200 and account["role"] == "read_only" and account["rate_limits"] == {"reads": "40/2s"}
    status, account = call(exchange.http, "GET", "/account", key=exchange.keys.admin())
    assert status == 200 and (account["client_id"], account["role"]) == (None, "admin")
    # and without a key there is nobody to describe
    status, err = call(exchange.http, "GET", "/account", key=None)
    assert (status, err["code"]) == (401, "authentication_required")


def test_a_read_only_key_reads_its_own_orders_and_never_writes(exchange: Any, sym: str) -> None:
    client = f"ro-{uuid.uuid4().hex[:8]}"
    reader = exchange.keys.create(client, "read_only")
    # given an order of its client (placed by an admin) and one of another client
    admin = exchange.keys.admin()
    mine = call(exchange.http, "POST", "/orders", order_body(sym, client_id=client), key=admin)[1]
    other = call(exchange.http, "POST", "/orders", order_body(sym, client_id="someone-else"), key=admin)[1]
    status, got = call(exchange.http, "GET", f"/orders/{mine['order_id']}", key=reader)
    assert status == 200 and got["order_id"] == mine["order_id"] and got["fills"] == []
    status, page = call(exchange.http, "GET", "/orders", key=reader)
    assert status == 200 and {o["client_id"] for o in page["results"]} == {client}
    assert call(exchange.http, "GET", f"/orders/{other['order_id']}", key=reader)[1]["code"] == "order_not_found"
    for method, path, body in [("POST", "/orders", order_body(sym, client_id=client)),
                               ("POST", "/orders/test", order_body(sym, client_id=client)),
                               ("DELETE", f"/orders/{mine['order_id']}", None),
                               ("PATCH", f"/orders/{mine['order_id']}", {"price": "99.00"})]:
        status, err = call(exchange.http, method, path, body, key=reader)
        assert (status, err["code"]) == (403, "forbidden"), (method, path, err)
    status, err = call(exchange.http, "POST", "/orders", raw=form(order_body(sym, client_id=client)), headers=FORM,
                       key=reader)
    assert (status, err["code"]) == (403, "forbidden")
    assert call(exchange.http, "GET", f"/orders/{mine['order_id']}")[1]["status"] == "open"


# -- the key decides the client ----------------------------------------------------------------

def test_a_trader_keys_orders_are_its_clients_and_naming_another_is_403(exchange: Any, sym: str) -> None:
    client = f"t-{uuid.uuid4().hex[:8]}"
    key = exchange.keys.trader(client)
    # no client_id: the key's
    status, order = call(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=key)
    assert status == 201 and order["client_id"] == client
    status, order = call(exchange.http, "POST", "/orders", raw=form(order_body(sym, client_id=None)), headers=FORM,
                         key=key)
    assert status == 201 and order["client_id"] == client
    # another client's: 403 client_mismatch, nothing stored
    for raw, headers in [(None, {}), (form(order_body(sym, client_id="mallory")), FORM)]:
        body = order_body(sym, client_id="mallory")
        status, err = call(exchange.http, "POST", "/orders", body if raw is None else None, raw=raw,
                           headers=headers, key=key)
        assert (status, err["code"]) == (403, "client_mismatch") and "client_id" in err["fields"]
    status, err = call(exchange.http, "POST", "/orders/test", order_body(sym, client_id="mallory"), key=key)
    assert (status, err["code"]) == (403, "client_mismatch")
    status, err = call(exchange.http, "GET", "/orders?client_id=mallory", key=key)
    assert (status, err["code"]) == (403, "client_mismatch")
    with exchange.connect() as conn:
        assert conn.execute("SELECT count(*) FROM orders_order WHERE client_id = 'mallory'").fetchone()[0] == 0


def test_one_client_can_neither_see_nor_cancel_nor_modify_anothers_order(exchange: Any, sym: str) -> None:
    alice, bob = (exchange.keys.trader(f"{n}-{uuid.uuid4().hex[:8]}") for n in ("alice", "bob"))
    resting = call(exchange.http, "POST", "/orders", order_body(sym, client_id=None, price="90.00"), key=alice)[1]
    filled_maker = call(exchange.http, "POST", "/orders", order_body(sym, client_id=None, side="sell", price="95.00",
                                                                   quantity="1"), key=alice)[1]
    call(exchange.http, "POST", "/orders", order_body(sym, client_id=None, side="buy", price="95.00", quantity="1"),
         key=bob)
    for oid in (resting["order_id"], filled_maker["order_id"]):  # open, and finished
        for method, path, body, raw, headers in [
                ("GET", f"/orders/{oid}", None, None, {}),
                ("DELETE", f"/orders/{oid}", None, None, {}),
                ("POST", f"/orders/{oid}/cancel", None, None, {}),
                ("PATCH", f"/orders/{oid}", {"price": "91.00"}, None, {}),
                ("PUT", f"/orders/{oid}", {"quantity": "2"}, None, {}),
                ("POST", f"/orders/{oid}/cancel", None, b"", FORM),  # DRF
                ("PATCH", f"/orders/{oid}", None, form({"price": "91.00"}), FORM)]:  # DRF
            status, err = call(exchange.http, method, path, body, raw=raw, headers=headers, key=bob)
            assert (status, err["code"]) == (404, "order_not_found"), (method, path, err)
            assert alice.split("_")[1] not in str(err) and "client_id" not in str(err)
    status, page = call(exchange.http, "GET", "/orders", key=bob)
    assert status == 200 and resting["order_id"] not in str(page)
    # and the order is as it was: untouched, still alice's to cancel
    status, now = call(exchange.http, "GET", f"/orders/{resting['order_id']}", key=alice)
    assert (status, now["status"], now["price"]) == (200, "open", "90.00")
    assert call(exchange.http, "DELETE", f"/orders/{resting['order_id']}", key=alice)[1]["status"] == "cancelled"


def test_an_admin_key_acts_for_any_client_it_names(exchange: Any, sym: str) -> None:
    admin = exchange.keys.admin()
    status, order = call(exchange.http, "POST", "/orders", order_body(sym, client_id="carol"), key=admin)
    assert status == 201 and order["client_id"] == "carol"
    status, err = call(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=admin)
    assert (status, err["code"]) == (400, "required") and "client_id" in err["fields"]
    status, page = call(exchange.http, "GET", "/orders?client_id=carol", key=admin)
    assert status == 200 and order["order_id"] in str(page)
    assert call(exchange.http, "DELETE", f"/orders/{order['order_id']}", key=admin)[1]["status"] == "cancelled"


def test_public_market_data_needs_no_key(exchange: Any, sym: str) -> None:
    for path in (f"/orderbook?instrument={sym}", f"/trades?instrument={sym}", "/instruments", "/readyz"):
        status, body = call(exchange.http, "GET", path, key=None, source="127.0.0.23")
        assert status == 200, (path, body)


# -- revocation, everywhere, within a second ---------------------------------------------------

def revoked_within(exchange: Any, key: str, revoke: Any, sym: str) -> float:
    """Revoke with ``revoke()`` while asking with the key; seconds from the end of ``revoke``
    until both the lean path and a DRF view refuse it."""
    assert call(exchange.http, "POST", "/orders/test", order_body(sym, client_id=None), key=key)[0] == 200
    assert call(exchange.http, "GET", "/orders", key=key)[0] == 200
    revoke()
    done = time.monotonic()
    while True:
        lean = call(exchange.http, "POST", "/orders/test", order_body(sym, client_id=None), key=key)
        drf = call(exchange.http, "GET", "/orders", key=key)
        if lean[0] == drf[0] == 401:
            assert lean[1]["code"] == drf[1]["code"] == "api_key_revoked"
            return time.monotonic() - done
        assert time.monotonic() - done < 5, (lean, drf)
        time.sleep(0.02)


def test_a_key_revoked_in_the_admin_stops_working_within_a_second_and_is_audited(exchange: Any, sym: str) -> None:
    username, password = exchange.make_staff_user()
    browser = Browser(exchange.http)
    browser.login(username, password)
    client = f"adm-{uuid.uuid4().hex[:8]}"
    # created in the admin: the key is shown once, on the page after saving, not cached
    status, headers, page = browser.request("POST", "/admin/orders/apikey/add/", {
        "client_id": client, "role": "trader", "name": "desk", "orders_rate": "", "commands_rate": "",
        "reads_rate": "", "_save": "Save"})
    assert status == 200 and "no-store" in headers["cache-control"], page[:2000]
    key = re.search(r'<code id="api-key"[^>]*>([^<]+)</code>', page).group(1)  # type: ignore[union-attr]
    assert status == 200 and key.startswith("pgb_")
    status, _, listing = browser.request("GET", "/admin/orders/apikey/")
    assert client in listing and key not in listing
    assert call(exchange.http, "POST", "/orders", order_body(sym, client_id=None), key=key)[1]["client_id"] == client
    with exchange.connect() as conn:
        (key_id,) = conn.execute("SELECT id FROM orders_apikey WHERE client_id = %s", (client,)).fetchone()

    def revoke() -> None:
        status, headers, _ = browser.request("POST", "/admin/orders/apikey/", {
            "action": "revoke_keys", "_selected_action": str(key_id), "index": "0", "select_across": "0"})
        assert status == 302

    assert revoked_within(exchange, key, revoke, sym) < 1.0
    with exchange.connect() as conn:
        rows = conn.execute("SELECT actor, action, target FROM orders_auditentry WHERE target LIKE %s ORDER BY id",
                            (f"% ({client})",)).fetchall()
    assert [(actor, action) for actor, action, _ in rows] == [(f"user:{username}", "api_key_created"),
                                                             (f"user:{username}", "api_key_revoked")]


def test_create_and_revoke_with_the_commands_printing_the_key_once(exchange: Any, sym: str) -> None:
    client = f"cmd-{uuid.uuid4().hex[:8]}"

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=exchange.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = manage("create_api_key", "--client", client, "--role", "trader", "--orders-rate", "50/s")
    key = out.split()[0]
    assert key.startswith("pgb_") and "shown once" in out
    again = subprocess.run([sys.executable, str(ROOT / "manage.py"), "create_api_key", "--client", client],
                           env=exchange.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already has a live key" in again.stderr
    status, headers, _ = call_full(exchange.http, "POST", "/orders/test", order_body(sym, client_id=None), key=key)
    assert status == 200 and headers["x-ratelimit-limit"] == "50"
    assert revoked_within(exchange, key, lambda: manage("revoke_api_key", "--client", client), sym) < 1.0
    with exchange.connect() as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM orders_auditentry WHERE target LIKE %s ORDER BY id",
                                              (f"% ({client})",))]
    assert actions == ["api_key_created", "api_key_revoked"]


# -- the admin site ----------------------------------------------------------------------------

def test_the_admin_site_needs_a_staff_login_even_with_an_admin_key(exchange: Any) -> None:
    status, headers, _ = call_full(exchange.http, "GET", "/admin/", headers={"Accept": "text/html"},
                                   key=exchange.keys.admin())
    assert status == 302 and headers["location"].startswith("/admin/login/")
    status, headers, page = call_full(exchange.http, "GET", "/admin/orders/apikey/", headers={"Accept": "text/html"},
                                      key=None)
    assert status == 302 and headers["location"].startswith("/admin/login/")


def test_a_staff_session_is_an_admin_in_the_browsable_api_with_csrf(exchange: Any, sym: str) -> None:
    username, password = exchange.make_staff_user()
    browser = Browser(exchange.http)
    browser.login(username, password)
    status, _, page = browser.request("GET", "/orders")
    assert status == 200 and "Django REST framework" in page
    status, _, text = browser.request("POST", "/orders", order_body(sym, client_id="web"))
    assert status == 201 and '"client_id":"web"' in text.replace(" ", "").replace("&quot;", '"'), text[:500]
    # without the CSRF token the session is not enough
    browser.cookies.pop("csrftoken")
    status, _, text = browser.request("POST", "/orders", order_body(sym, client_id="web"))
    assert status == 403


# -- the failure budget ------------------------------------------------------------------------

def test_repeated_invalid_keys_from_one_address_are_refused_with_429_and_known_keys_still_work(
        exchange: Any, sym: str) -> None:
    source = "127.0.0.31"
    wait_for_web_processes([exchange.http], 1)  # the failure budget is counted in this one process
    known = exchange.keys.create()
    assert call(exchange.http, "GET", "/orders", key=known, source=source)[0] == 200  # known to the process now
    fresh_window(f"ip:{source}", 60, 10)
    codes = [call(exchange.http, "GET", "/orders", key=new_key()[0], source=source)[1]["code"] for _ in range(21)]
    assert codes == ["invalid_api_key"] * 20 + ["rate_limited"]
    status, headers, err = call_full(exchange.http, "POST", "/orders", order_body(sym), key=new_key()[0],
                                     source=source)
    assert (status, err["code"]) == (429, "rate_limited") and int(headers["retry-after"]) >= 1
    # a key this process knows is not slowed down; another address is not either
    assert call(exchange.http, "GET", "/orders", key=known, source=source)[0] == 200
    assert call(exchange.http, "GET", "/orders", key=new_key()[0], source="127.0.0.32")[1]["code"] == "invalid_api_key"


# -- no secret anywhere ------------------------------------------------------------------------

def test_no_key_appears_in_a_log_line_or_an_error_body(exchange: Any, sym: str) -> None:
    good = exchange.keys.create()
    bad = new_key()[0]
    bodies = []
    for key in (good, bad):
        for method, path, body in [("POST", "/orders", order_body(sym, client_id="x")), ("GET", "/orders", None),
                                   ("POST", "/orders", {"broken": True}), ("GET", "/orders/nope", None)]:
            bodies.append(str(call(exchange.http, method, path, body, key=key, source="127.0.0.41")[1]))
    time.sleep(0.5)
    logs = "\n".join(exchange.log_text(name) for name in ("server", "worker"))
    for key in (good, bad):
        secret = key.split("_", 2)[2]
        assert secret not in logs and all(secret not in b for b in bodies)


def test_admin_endpoints_need_an_admin_key_or_a_staff_session(exchange: Any) -> None:
    client = f"aud-{uuid.uuid4().hex[:8]}"
    trader = exchange.keys.trader(client)
    assert call(exchange.http, "GET", "/admin/audit", key=None)[1]["code"] == "authentication_required"
    status, err = call(exchange.http, "GET", "/admin/audit", key=trader)
    assert (status, err["code"]) == (403, "forbidden")
    status, entries = call(exchange.http, "GET", "/admin/audit?limit=5", key=exchange.keys.admin())
    assert status == 200 and isinstance(entries, list) and len(entries) <= 5
    username, password = exchange.make_staff_user()
    browser = Browser(exchange.http)
    browser.login(username, password)
    browser.request("POST", "/admin/orders/apikey/add/", {"client_id": client + "-2", "role": "read_only",
                                                         "name": "", "_save": "Save"})
    status, _, text = browser.request("GET", "/admin/audit?action=api_key_created", headers={"Accept": "application/json"})
    assert status == 200 and f"({client}-2)" in text and f"user:{username}" in text
