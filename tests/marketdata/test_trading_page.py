"""The trading page in a real browser (headless Chromium) against the live exchange: orders from
the form reach the ladder, the tape and "my orders"; errors sit next to their fields; modify and
cancel work; the page's book is the exchange's after a burst; a lost feed is resynced visibly; the
24 h statistics and the candle chart follow the trades live."""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exchange_project.processes import ROOT
from marketdata.simulation.transport import WsTransport
from tests.http import call
from tests.marketdata.streams import body

ARTIFACTS = ROOT / "var" / "test-artifacts"
FORM = "#order-form"


@contextlib.contextmanager
def trading_page(browser: Any, exchange: Any, sym: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{exchange.http}/?instrument={sym}")
        page.wait_for_function("() => window.pgbourse && window.pgbourse.state().synced", timeout=20_000)
        yield page
    finally:
        context.close()
    assert errors == []


def set_client(page: Any, exchange: Any, client_id: str) -> None:
    """Paste the trader key of ``client_id`` into the page, as its user would: the page reloads
    with it, and acts for that client."""
    page.fill("#api-key", exchange.keys.trader(client_id))
    page.dispatch_event("#api-key", "change")
    page.wait_for_function(f"() => document.querySelector('#client-id').value === {client_id!r} "
                           "&& document.querySelector('#client-id').readOnly")
    page.wait_for_function("() => window.pgbourse && window.pgbourse.state().synced", timeout=20_000)
    page.wait_for_function("() => document.querySelector('#my-orders caption').textContent.length > 0")


def place(page: Any, side: str, type_: str, quantity: str, price: str = "", via: str = "rest", tif: str = "GTC",
          post_only: bool = False) -> tuple[str, str | None]:
    """Fill the form, send it, and return the result line's status and order id."""
    page.check(f"{FORM} input[name=side][value={side}]")
    page.select_option(f"{FORM} select[name=type]", type_)
    if type_ == "limit":
        page.fill(f"{FORM} input[name=price]", price)
    page.fill(f"{FORM} input[name=quantity]", quantity)
    page.select_option(f"{FORM} select[name=time_in_force]", tif)
    page.set_checked(f"{FORM} input[name=post_only]", post_only)
    page.check(f"{FORM} input[name=via][value={via}]")
    page.click(f"{FORM} button[type=submit]")
    page.wait_for_function("() => document.querySelector('[data-result]').dataset.status !== 'sending'")
    return page.get_attribute("[data-result]", "data-status"), page.get_attribute("[data-result]", "data-order-id")


def ladder(page: Any) -> dict[str, list[list[str]]]:
    """The rendered ladder, best first on both sides."""
    rows = page.eval_on_selector_all("#ladder tr.ask, #ladder tr.bid",
                                     "rows => rows.map(r => [r.classList[0], r.dataset.price, r.dataset.qty])")
    return {"asks": [[p, q] for side, p, q in reversed(rows) if side == "ask"],
            "bids": [[p, q] for side, p, q in rows if side == "bid"]}


def level(page: Any, side: str, price: str, qty: str) -> str:
    return f"#ladder tr.{side}[data-price='{price}'][data-qty='{qty}']"


def rest_levels(book: dict[str, Any], side: str) -> list[list[str]]:
    return [[lv["price"], lv["quantity"]] for lv in book[side]]


def test_orders_from_the_form_reach_the_ladder_the_tape_and_my_orders(browser: Any, exchange: Any) -> None:
    sym = exchange.make_instrument()
    with trading_page(browser, exchange, sym) as page:
        set_client(page, exchange, "web-alice")
        assert call(exchange.http, "POST", "/orders", body(sym, "sell", "100.00", "0.7", client_id="bob"))[0] == 201
        page.wait_for_selector(level(page, "ask", "100.00", "0.7000"))
        assert page.text_content("#my-orders caption") == "0 open, 0 in all"  # bob's order is not ours

        status, ask_id = place(page, "sell", "limit", "1.5", "101.00")
        assert status == "open"
        page.wait_for_selector(level(page, "ask", "101.00", "1.5000") + ".own")
        page.wait_for_selector(f"#my-orders tr[data-order-id='{ask_id}'][data-status='open']")
        status, bid_id = place(page, "buy", "limit", "2", "99.00", via="ws")
        assert status == "open"
        page.wait_for_selector(level(page, "bid", "99.00", "2.0000"))
        assert page.text_content("#ticker [data-field=best_bid]") == "99.00 × 2.0000"

        # The server's error codes, next to the field they are about, over either door.
        assert place(page, "sell", "limit", "1", "100.005")[0] == "error"
        assert page.is_visible(f"{FORM} [data-error-for=price] .error[data-code=price_too_many_decimals]")
        assert place(page, "buy", "market", "1", via="ws", post_only=True)[0] == "error"
        assert page.is_visible(f"{FORM} [data-error-for=post_only] .error[data-code=post_only_not_allowed]")
        assert page.locator(f"{FORM} [data-error-for=price] .error").count() == 0

        # A crossing order trades with bob's (alice's own ask would be a self-trade, which the
        # exchange prevents): the tape, the last price and the ladder say so.
        assert place(page, "buy", "limit", "0.4", "100.00")[0] == "filled"
        page.wait_for_selector("#tape tr[data-trade-id] >> text=0.4000")
        assert page.text_content("#tape tr[data-trade-id] .price") == "100.00"
        page.wait_for_selector(level(page, "ask", "100.00", "0.3000"))
        assert place(page, "buy", "market", "0.1", via="ws")[0] == "filled"
        page.wait_for_selector(level(page, "ask", "100.00", "0.2000"))
        assert page.text_content("#ticker [data-field=last_price]") == "100.00"
        assert page.locator("#tape tr[data-trade-id]").count() == 2

        # Modify from "my orders": a refused change shows its code in the row, a good one moves the level.
        row = f"#my-orders tr[data-order-id='{bid_id}']"
        page.click(f"{row} button.modify")
        page.fill(f"{row} input[name=quantity]", "2.00001")
        page.click(f"{row} button.save")
        page.wait_for_selector(f"{row} [data-error-for=quantity] .error[data-code=quantity_too_many_decimals]")
        page.fill(f"{row} input[name=quantity]", "2")
        page.fill(f"{row} input[name=price]", "98.50")
        page.click(f"{row} button.save")
        page.wait_for_selector(level(page, "bid", "98.50", "2.0000"))
        assert page.locator("#ladder tr.bid[data-price='99.00']").count() == 0
        assert page.text_content(f"{row} td.price") == "98.50"

        # Cancel from "my orders".
        page.click(f"#my-orders tr[data-order-id='{ask_id}'] button.cancel")
        page.wait_for_selector(f"#my-orders tr[data-order-id='{ask_id}'][data-status='cancelled']")
        page.wait_for_selector("#ladder tr.ask[data-price='101.00']", state="detached")
        assert ladder(page) == {"asks": [["100.00", "0.2000"]], "bids": [["98.50", "2.0000"]]}

        # What the page lists as mine is what the exchange holds.
        status, mine = call(exchange.http, "GET", f"/orders?client_id=web-alice&instrument={sym}")
        assert status == 200
        shown = dict(page.eval_on_selector_all("#my-orders tbody tr", "rows => rows.map(r => [r.dataset.orderId, "
                                                                       "r.dataset.status])"))
        assert shown == {o["order_id"]: o["status"] for o in mine["results"]}
        assert sorted(shown.values()) == ["cancelled", "filled", "filled", "open"]

        # The 24 h change and the candles show only once their endpoints exist.
        day = call(exchange.http, "GET", f"/ticker/24h?instrument={sym}")[0]
        klines = call(exchange.http, "GET", f"/klines?instrument={sym}&interval=1m&limit=500")[0]
        assert page.is_hidden("#ticker-24h") == (day != 200)
        assert page.is_hidden("#candles") == (klines != 200)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "trading-page.png"), full_page=True)


def test_what_is_typed_in_a_modify_box_survives_updates_arriving_meanwhile(browser: Any, exchange: Any) -> None:
    """The orders channel updates "my orders" at any moment; the row being edited is updated in
    place, so its inputs, the focus and the text typed so far stay, and the save sends it."""
    sym = exchange.make_instrument()
    with trading_page(browser, exchange, sym) as page:
        set_client(page, exchange, "web-dana")
        status, order_id = place(page, "buy", "limit", "1", "80.00")
        assert status == "open"
        row = f"#my-orders tr[data-order-id='{order_id}']"
        page.click(f"{row} button.modify")
        page.fill(f"{row} input[name=quantity]", "")
        page.type(f"{row} input[name=quantity]", "1.2")
        page.eval_on_selector(f"{row} input[name=quantity]", "input => { input.dataset.mark = 'typed-in'; }")

        # Dana's orders from elsewhere (another tab, a script), and a fill of one of them: each
        # reaches the page as an update and re-renders the list while the box has the focus.
        for price in ("89.00", "88.00", "87.00"):
            assert call(exchange.http, "POST", "/orders", body(sym, "buy", price, "0.5", client_id="web-dana"))[0] == 201
        assert call(exchange.http, "POST", "/orders", body(sym, "sell", "89.00", "0.5", client_id="erin"))[0] == 201
        page.wait_for_function("() => document.querySelector('#my-orders caption').textContent"
                               " === '3 open, 4 in all'")
        focused = page.evaluate("() => [document.activeElement.dataset.mark, document.activeElement.value]")
        assert focused == ["typed-in", "1.2"]

        page.keyboard.type("5")
        page.click(f"{row} button.save")
        page.wait_for_selector(f"{row} td.qty >> text=1.2500")
        page.wait_for_selector(level(page, "bid", "80.00", "1.2500"))
        assert page.locator(f"{row} .error").count() == 0


def burst(sym: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Limit orders on both sides of 100.00, a fifth of them through it, and some market orders."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        side = rng.choice(["buy", "sell"])
        qty = f"{rng.randint(1, 30_000) / 10_000:.4f}"
        if rng.random() < 0.05:
            out.append(body(sym, side, None, qty, client_id=f"burst-{rng.randrange(30)}"))
            continue
        away = rng.randint(-40, 400) if rng.random() < 0.2 else rng.randint(1, 400)
        ticks = 10_000 - away if side == "buy" else 10_000 + away
        out.append(body(sym, side, f"{ticks // 100}.{ticks % 100:02d}", qty, client_id=f"burst-{rng.randrange(30)}"))
    return out


def place_over_ws(exchange: Any, bodies: list[dict[str, Any]]) -> list[int]:
    """All the bodies in `orders` messages over one socket, with an admin's key (they are many
    clients' orders); the status of each, in order. (In a thread of its own: Playwright's
    synchronous API holds this thread's event loop.)"""
    async def send() -> list[int]:
        ws = await WsTransport(exchange.ws, api_key=exchange.keys.admin()).connect()
        try:
            return [status for status, _ in await ws.place(bodies)]
        finally:
            await ws.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, send()).result()


def test_the_page_book_equals_the_exchange_book_after_a_burst_of_1000_orders(browser: Any, exchange: Any) -> None:
    sym = exchange.make_instrument()
    with trading_page(browser, exchange, sym) as page:
        assert place_over_ws(exchange, burst(sym, 1000, seed=7)) == [201] * 1000
        status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=1000")
        assert status == 200 and book["bid_level_count"] > 100 and book["ask_level_count"] > 100
        page.wait_for_function(f"() => window.pgbourse.state().seq >= {book['seq']}", timeout=30_000)
        state = page.evaluate("window.pgbourse.state()")
        assert state["synced"] and state["seq"] == book["seq"]
        assert state["bids"] == rest_levels(book, "bids")
        assert state["asks"] == rest_levels(book, "asks")
        assert state["checksumsVerified"] > 1000
        # The page's CRC32 and ordering agree with the server's: never a mismatch or a gap (a
        # server-side resync, for a slow socket, would be legitimate).
        assert set(state["resyncs"]) <= {"server"}

        page.wait_for_function(f"() => document.querySelector('#book').dataset.seq === '{book['seq']}'")
        status, top = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=20")
        assert ladder(page) == {"asks": rest_levels(top, "asks"), "bids": rest_levels(top, "bids")}
        status, trades = call(exchange.http, "GET", f"/trades?instrument={sym}&limit=60")
        assert len(trades) == 60
        assert page.eval_on_selector_all("#tape tr[data-trade-id]", "rows => rows.map(r => +r.dataset.tradeId)") == \
            [t["trade_id"] for t in trades]
        assert page.text_content("#sync-status").startswith(f"live · seq {book['seq']} · ")


def test_a_lost_feed_is_resynced_and_the_page_says_so(browser: Any, exchange: Any) -> None:
    sym = exchange.make_instrument()
    with trading_page(browser, exchange, sym) as page:
        assert place_over_ws(exchange, burst(sym, 200, seed=3)) == [201] * 200
        with exchange.connect() as conn:
            killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                  "current_database() AND application_name = 'pgbourse-web-listen'").fetchall()
        assert len(killed) == 1
        page.wait_for_selector("#sync-log li.warn >> text=resync: server: feed_reconnected", timeout=20_000)
        page.wait_for_function("() => document.querySelector('#sync-status').dataset.state === 'live'",
                               timeout=20_000)
        assert "last: server: feed_reconnected" in page.text_content("#sync-status")
        assert page.evaluate("window.pgbourse.state().resyncs") == {"server": 1}

        # Synced again: what comes next lands on the same book as the exchange's.
        assert place_over_ws(exchange, burst(sym, 200, seed=4)) == [201] * 200
        status, book = call(exchange.http, "GET", f"/orderbook?instrument={sym}&levels=1000")
        page.wait_for_function(f"() => window.pgbourse.state().seq >= {book['seq']}", timeout=30_000)
        state = page.evaluate("window.pgbourse.state()")
        assert (state["bids"], state["asks"]) == (rest_levels(book, "bids"), rest_levels(book, "asks"))


def test_the_page_and_its_modules_are_served_as_they_are_with_no_build_step(exchange: Any) -> None:
    sym = exchange.make_instrument()
    status, html = call(exchange.http, "GET", f"/?instrument={sym}", headers={"Accept": "text/html"})
    assert status == 200
    assert '<script id="page-config" type="application/json">' in html
    config = json.loads(html.split('<script id="page-config" type="application/json">', 1)[1].split("</script>")[0])
    assert config["instrument"] == sym and set(config) == {"apiKey", "instrument", "streamPath"}
    # the key it starts with, if any (development's demo trader's), is one the exchange knows
    assert config["apiKey"] == "" or call(exchange.http, "GET", "/account", key=config["apiKey"])[0] == 200
    modules = ["main", "api", "book", "exact", "market", "orders", "analytics"]
    for name in modules:
        status, source = call(exchange.http, "GET", f"/static/trading/js/{name}.js", headers={"Accept": "*/*"})
        assert status == 200 and ("export" in source or "import" in source), name
    status, lib = call(exchange.http, "GET", "/static/vendor/lightweight-charts-5.2.1/"
                       "lightweight-charts.standalone.production.js", headers={"Accept": "*/*"})
    assert status == 200 and "TradingView Lightweight Charts™ v5.2.1" in lib
    assert "Apache License" in call(exchange.http, "GET", "/static/vendor/lightweight-charts-5.2.1/LICENSE",
                                    headers={"Accept": "*/*"})[1]


def test_the_24h_ticker_and_the_candle_chart_follow_the_trades_live(browser: Any, exchange: Any) -> None:
    sym = exchange.make_instrument()
    # given an instrument that traded once at 100.00 (and has no ask left)
    assert call(exchange.http, "POST", "/orders", body(sym, "sell", "100.00", "0.5", client_id="c-s"))[0] == 201
    assert call(exchange.http, "POST", "/orders", body(sym, "buy", "100.00", "0.5", client_id="c-b"))[0] == 201
    with trading_page(browser, exchange, sym) as page:
        # the page shows the day's statistics and draws the minute's candle, from REST
        page.wait_for_selector("#ticker-24h:not([hidden]) [data-field=volume] >> text=0.5000")
        page.wait_for_function("() => window.pgbourse.candles().bars === 1", timeout=10_000)
        assert page.is_visible("#candles .chart canvas")
        # when it trades again higher, both follow over the socket without a reload
        assert call(exchange.http, "POST", "/orders", body(sym, "sell", "104.00", "1", client_id="c-s"))[0] == 201
        assert call(exchange.http, "POST", "/orders", body(sym, "buy", "104.00", "0.25", client_id="c-b"))[0] == 201
        page.wait_for_selector("#ticker-24h [data-field=volume] >> text=0.7500")
        assert page.text_content("#ticker-24h [data-field=high]") == "104.00"
        assert page.text_content("#ticker-24h [data-field=change]") == "4.00"
        page.wait_for_function("() => window.pgbourse.candles().lastClose === 104", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "trading-page-analytics.png"))


def test_the_vendored_candle_chart_draws_offline(browser: Any, exchange: Any) -> None:
    """The chart the page loads once /klines exists: the vendored module, from this server only."""
    sym = exchange.make_instrument()
    with trading_page(browser, exchange, sym) as page:
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        drawn = page.evaluate("""async () => {
            const lib = await import('/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js');
            const box = document.createElement('div');
            box.style.cssText = 'width: 400px; height: 200px';
            document.body.append(box);
            const chart = lib.createChart(box, { width: 400, height: 200 });
            const series = chart.addSeries(lib.CandlestickSeries);
            series.setData([{ time: 1700000000, open: 100, high: 102, low: 99, close: 101 },
                            { time: 1700000060, open: 101, high: 103, low: 100, close: 100.5 }]);
            await new Promise(requestAnimationFrame);
            return { version: lib.version(), bars: series.data().length, canvases: box.querySelectorAll('canvas').length };
        }""")
        assert drawn["version"] == "5.2.1" and drawn["bars"] == 2 and drawn["canvases"] > 0
        assert all(url.startswith(exchange.http) for url in requested)
