"""The Postman collection (pgbourse.postman_collection.json) and its environment, written from
the definitions here: every request with its tests, its saved examples the responses of a real
run (tests/docs/test_postman.py runs the collection with newman against a live exchange and,
with PGBOURSE_POSTMAN_WRITE=1, saves what each request got back as its examples).

    .venv/bin/python docs/postman/collection.py --check    # the JSON files are what this writes
    PGBOURSE_POSTMAN_WRITE=1 .venv/bin/python -m pytest tests/docs/test_postman.py   # rewrite them

Requests run in order and chain through collection variables: the market data folder reads the
instrument's grid and book and plans this run's prices (a resting buy at half the best bid, the
trade inside the spread), the orders folder places, reads, modifies and cancels one order, then
trades, and the later folders read what that trade left. Idempotency keys are fresh for every
run, so the collection runs again and again on the same database.

The test scripts are JavaScript; the helpers they call (``HELPERS``) are written into each
script that names them, since Postman gives every script a scope of its own.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLLECTION_FILE = HERE / "pgbourse.postman_collection.json"
ENVIRONMENT_FILE = HERE / "pgbourse.postman_environment.json"
SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "pgbourse:docs/postman")  # the items' ids, from their names

# An example keeps the headers a client acts on; a body past this many characters is cut (the
# OpenAPI schema and /metrics are tens of kilobytes), saying so.
EXAMPLE_HEADERS = ("content-type", "allow", "retry-after", "www-authenticate", "x-ratelimit-limit",
                   "x-ratelimit-remaining", "x-ratelimit-reset")
EXAMPLE_BODY_MAX = 6000

# The environment: what a user sets (the keys `make run` prints; var/demo-keys.json keeps them).
ENVIRONMENT = [
    ("baseUrl", "http://127.0.0.1:8000", "default", "The exchange's base URL (make run: port 8000, or PORT)."),
    ("apiKey", "", "secret", "A trader key: the `demo` key make run prints."),
    ("adminKey", "", "secret", "An admin key: the `admin` key make run prints."),
    ("instrument", "BTC-USD", "default", "The instrument the run trades (make run creates BTC-USD)."),
    ("takerClient", "postman-taker", "default", "The client the admin key buys for in the trade."),
    ("limitedKey", "", "secret", "Optional: a key with a tiny reads budget, for the 429 request "
     "(manage.py create_api_key --client postman-limited --role read_only --reads-rate 1/d)."),
    ("adminCommandId", "", "default", "Optional: the id of an admin command that went through the inbox "
     "(a 202 pending answer's command_id), for GET /admin/commands/{id}."),
]

# Set by the scripts as the run goes (their defaults are what a single request sent by hand uses).
COLLECTION_VARIABLES = [
    ("tickSize", "0.01"), ("lotSize", "0.0001"), ("minQty", "0.0001"), ("minNotional", ""), ("maxPrice", "10000000"),
    ("restPrice", "100.00"), ("modifyPrice", "99.99"), ("sellPrice", "101.00"), ("sellAlone", "true"),
    ("qty", "0.0100"), ("modifyQty", "0.0200"), ("offGridPrice", "100.005"),
    ("clientId", "demo"), ("adminKeyPrefix", ""),
    ("idempotencyKey", ""), ("orderId", ""), ("orderCreatedAt", ""), ("makerOrderId", ""), ("makerFilled", ""),
    ("takerOrderId", ""), ("tradeAttempt", "1"), ("firstPageOrderId", ""), ("firstPageCreatedAt", ""),
    ("cursor", ""), ("snapshotId", ""),
]

# -- the test scripts' helpers ---------------------------------------------------------------------

HELPERS: dict[str, str] = {
    "FIXED": "const FIXED = /^-?[0-9]+(\\.[0-9]+)?$/; // a decimal on the wire: a fixed-point string",
    "UUID": "const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;",
    "ORDER_KEYS": "const ORDER_KEYS = ['order_id', 'client_id', 'instrument', 'side', 'type', 'time_in_force', "
                  "'post_only', 'stp', 'price', 'quantity', 'filled_quantity', 'remaining_quantity', 'status', "
                  "'reason', 'idempotency_key', 'created_at', 'updated_at', 'fills'];",
    "expectStatus": """function expectStatus(status) {
  pm.test(`status ${status}`, () => pm.response.to.have.status(status));
}""",
    "expectFixed": """function expectFixed(obj, names, nullable = []) {
  names.forEach((name) => {
    if (nullable.includes(name) && obj[name] === null) return;
    pm.expect(obj[name], `${name}: a fixed-point string`).to.be.a('string').and.match(FIXED);
  });
}""",
    "expectError": """function expectError(status, code) {
  pm.test(`${status} ${code}, in the one error body`, () => {
    pm.response.to.have.status(status);
    const answer = pm.response.json();
    pm.expect(answer).to.include.all.keys('code', 'detail', 'fields');
    pm.expect(answer.code).to.eql(code);
    pm.expect(answer.detail).to.be.a('string').and.not.be.empty;
    pm.expect(answer.fields).to.be.an('object');
  });
}""",
    "expectField": """function expectField(name, code) {
  pm.test(`fields.${name} says ${code}`, () => {
    const problems = pm.response.json().fields[name];
    pm.expect(problems, `fields.${name}`).to.be.an('array').that.is.not.empty;
    pm.expect(problems.map((p) => p.code)).to.include(code);
  });
}""",
    "expectOrder": """function expectOrder(o) {
  pm.expect(o, 'an order').to.be.an('object').that.includes.all.keys(ORDER_KEYS);
  pm.expect(o.order_id).to.match(UUID);
  expectFixed(o, ['quantity', 'filled_quantity', 'remaining_quantity']);
  if (o.type === 'limit') expectFixed(o, ['price']); else pm.expect(o.price).to.be.null;
  pm.expect(o.fills).to.be.an('array');
  o.fills.forEach((f) => {
    pm.expect(f).to.include.all.keys('trade_id', 'price', 'quantity', 'role', 'seq', 'executed_at');
    pm.expect(f.trade_id).to.be.a('number');
    pm.expect(f.role).to.be.oneOf(['maker', 'taker']);
    expectFixed(f, ['price', 'quantity']);
  });
}""",
    "expectRateHeaders": """function expectRateHeaders() {
  pm.test('the budget left, in X-RateLimit-*', () => {
    ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'].forEach((name) => {
      pm.expect(pm.response.headers.get(name), name).to.match(/^[0-9]+$/);
    });
  });
}""",
    "skipUnless": """function skipUnless(name) {
  if (!pm.variables.get(name)) {
    console.log(`${pm.info.requestName}: skipped, set ${name} to run it (docs/postman/README.md)`);
    pm.execution.skipRequest();
    return false;
  }
  return true;
}""",
    "dec": """// Decimals as exact integers (never floats): "100.25" -> {m: 10025n, e: 2}.
function dec(s) {
  const neg = s[0] === '-';
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.');
  return { m: BigInt((neg ? '-' : '') + (i || '0') + f), e: f.length };
}""",
    "pow10": "function pow10(e) { return 10n ** BigInt(e); }",
    "ceilDiv": "function ceilDiv(a, b) { return (a + b - 1n) / b; }",
    "toSteps": """// How many steps (ticks, lots) a positive value is, rounded down.
function toSteps(value, step) {
  const v = dec(value), t = dec(step);
  return (v.m * pow10(t.e)) / (t.m * pow10(v.e));
}""",
    "fromSteps": """// A number of steps as the wire writes it: fixed-point, the step's decimals.
function fromSteps(n, step) {
  const t = dec(step);
  const units = (n * t.m).toString().padStart(t.e + 1, '0');
  return t.e ? `${units.slice(0, -t.e)}.${units.slice(-t.e)}` : units;
}""",
    "planSell": """// The trade's sell price: inside the spread when it has room (alone at its level, so that the
// buy meets it and nothing else), else at the best ask; always above every bid.
function planSell(book) {
  const tick = pm.collectionVariables.get('tickSize');
  const bid = book.bids.length ? toSteps(book.bids[0].price, tick) : null;
  const ask = book.asks.length ? toSteps(book.asks[0].price, tick) : null;
  let sell = ask === null ? (bid === null ? 10100n : bid + 100n) : ask;
  if (ask !== null && ask - 1n > (bid === null ? 0n : bid)) sell = ask - 1n;
  pm.collectionVariables.set('sellPrice', fromSteps(sell, tick));
  pm.collectionVariables.set('sellAlone', String(ask === null || sell < ask));
}""",
}
HELPER_NEEDS = {"expectFixed": ["FIXED"], "expectOrder": ["expectFixed", "UUID", "ORDER_KEYS"],
                "toSteps": ["dec", "pow10"], "fromSteps": ["dec"],
                "planSell": ["toSteps", "fromSteps"]}


def _needed(script: str) -> list[str]:
    found: list[str] = []

    def add(name: str) -> None:
        for need in HELPER_NEEDS.get(name, []):
            add(need)
        if name not in found:
            found.append(name)

    for name in HELPERS:
        if re.search(rf"\b{name}\b", script):
            add(name)
    return [name for name in HELPERS if name in found]  # in HELPERS' order: constants first


def script_lines(script: str) -> list[str]:
    """A script as Postman keeps it (lines), the helpers it names written first."""
    body = script.strip("\n")
    helpers = "\n".join(HELPERS[name] for name in _needed(body))
    return (helpers + "\n\n" + body if helpers else body).split("\n")


# Every response: a refusal is the API's one error body.
COLLECTION_TEST = """// Every refusal (4xx/5xx with JSON) is the one error body: {"code", "detail", "fields"}.
const type = pm.response.headers.get('Content-Type') || '';
if (pm.response.code >= 400 && type.startsWith('application/json')) {
  pm.test('a refusal is {code, detail, fields}', () => {
    const answer = pm.response.json();
    pm.expect(answer).to.include.all.keys('code', 'detail', 'fields');
    pm.expect(answer.code).to.match(/^[a-z_]+$/);
  });
}"""

# -- the requests ----------------------------------------------------------------------------------

AUTH = {
    "trader": None,  # the collection's: Bearer {{apiKey}}
    "admin": "{{adminKey}}",
    "limited": "{{limitedKey}}",
    "invalid": "pgb_00000000_this-is-not-a-key",
    "none": "",
}


@dataclass(frozen=True)
class Req:
    """One request: ``path`` and ``query`` may name {{variables}}; ``example_on``: the name of
    the request whose saved examples this one's answer also joins (an endpoint's main request
    shows every answer the endpoint gave in the run)."""

    name: str
    method: str
    path: str
    tests: str
    query: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None  # JSON (a dict, a list) or raw text
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    auth: str = "trader"
    prerequest: str = ""
    description: str = ""
    example_on: str | None = None


def _json_body(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2)


PLACE_BODY = {"idempotency_key": "{{idempotencyKey}}", "instrument": "{{instrument}}", "side": "buy",
              "type": "limit", "price": "{{restPrice}}", "quantity": "{{qty}}", "time_in_force": "GTC"}
NEW_KEY = "pm.collectionVariables.set('idempotencyKey', `postman-${pm.variables.replaceIn('{{$guid}}')}`);"
FRESH_KEY = "pm.variables.set('freshKey', `postman-${pm.variables.replaceIn('{{$guid}}')}`);"

HEALTH = [
    Req("Liveness", "GET", "/healthz", auth="none", description="Liveness: no I/O, `{\"status\": \"ok\"}` while "
        "the process serves.", tests="""
expectStatus(200);
pm.test('{"status": "ok"}', () => pm.expect(pm.response.json()).to.eql({ status: 'ok' }));
"""),
    Req("Readiness", "GET", "/readyz", auth="none", description="Readiness (the same as `/healthz?full=1`): each "
        "check with its figure; 503 naming the failing ones.", tests="""
expectStatus(200);
pm.test('every check passes, each with its figures', () => {
  const answer = pm.response.json();
  pm.expect(answer.status).to.eql('ok');
  pm.expect(answer.checks).to.include.all.keys('database', 'matching_worker', 'inbox', 'last_batch', 'listen_hub');
  Object.entries(answer.checks).forEach(([name, check]) => pm.expect(check.ok, name).to.be.true);
  pm.expect(answer.checks.database.round_trip_ms).to.be.a('number');
  pm.expect(answer.auth).to.eql('required');
  pm.expect(answer.rate_limits.web_processes).to.be.at.least(1);
});
"""),
    Req("Metrics", "GET", "/metrics", auth="none", description="Prometheus text: every process's metrics and the "
        "readiness figures as gauges.", tests="""
expectStatus(200);
pm.test('Prometheus text, PostgreSQL up', () => {
  pm.expect(pm.response.headers.get('Content-Type')).to.include('text/plain');
  const text = pm.response.text();
  pm.expect(text).to.match(/^# TYPE database_up gauge$/m);
  pm.expect(text).to.match(/^database_up 1\\.0$/m);
});
"""),
    Req("Liveness: POST is 405", "POST", "/healthz", auth="none", example_on="Liveness", tests="""
expectError(405, 'method_not_allowed');
pm.test('Allow: GET, HEAD', () => pm.expect(pm.response.headers.get('Allow')).to.eql('GET, HEAD'));
"""),
]
MARKET_DATA = [
    Req("Instruments", "GET", "/instruments", auth="none",
        description="Tradable instruments and their grids (public: no key needed, limited per address). "
                    "The run keeps {{instrument}}'s grid for the prices it plans.", tests="""
expectStatus(200);
const instruments = pm.response.json();
const mine = instruments.find((i) => i.symbol === pm.variables.get('instrument'));
pm.test('a list of instruments, the run\\'s among them, grids in fixed-point strings', () => {
  pm.expect(instruments).to.be.an('array');
  instruments.forEach((i) => {
    pm.expect(i).to.include.all.keys('symbol', 'tick_size', 'lot_size', 'min_qty', 'max_qty', 'max_price',
      'min_notional', 'is_active', 'halted');
    expectFixed(i, ['tick_size', 'lot_size', 'min_qty', 'max_qty', 'max_price', 'min_notional'], ['min_notional']);
  });
  pm.expect(mine, pm.variables.get('instrument')).to.be.an('object');
  pm.expect(mine.is_active).to.be.true;
  pm.expect(mine.halted, 'halted (POST /admin/instruments/{symbol}/resume)').to.be.false;
});
if (mine) {
  pm.collectionVariables.set('tickSize', mine.tick_size);
  pm.collectionVariables.set('lotSize', mine.lot_size);
  pm.collectionVariables.set('minQty', mine.min_qty);
  pm.collectionVariables.set('minNotional', mine.min_notional || '');
  pm.collectionVariables.set('maxPrice', mine.max_price);
}
"""),
    Req("Order book", "GET", "/orderbook", query=[("instrument", "{{instrument}}"), ("levels", "5")], auth="none",
        description="Bids high to low, asks low to high, with the sequence the book reflects. The run plans its "
                    "prices from it: a resting buy 100 ticks below the best bid (never crossing), and a trade "
                    "inside the spread (or at the best ask when the spread is one tick).", tests="""
expectStatus(200);
const book = pm.response.json();
pm.test('the book: levels in order, decimals in fixed-point strings', () => {
  pm.expect(book).to.include.all.keys('instrument', 'seq', 'bids', 'asks', 'bid_total_quantity',
    'ask_total_quantity', 'bid_level_count', 'ask_level_count');
  pm.expect(book.instrument).to.eql(pm.variables.get('instrument'));
  pm.expect(book.seq).to.be.a('number');
  [...book.bids, ...book.asks].forEach((level) => {
    expectFixed(level, ['price', 'quantity', 'cumulative_quantity']);
    pm.expect(level.order_count).to.be.at.least(1);
  });
  expectFixed(book, ['bid_total_quantity', 'ask_total_quantity']);
  const tick = pm.collectionVariables.get('tickSize');
  const bids = book.bids.map((l) => toSteps(l.price, tick)), asks = book.asks.map((l) => toSteps(l.price, tick));
  bids.slice(1).forEach((p, n) => pm.expect(p < bids[n], 'bids high to low').to.be.true);
  asks.slice(1).forEach((p, n) => pm.expect(p > asks[n], 'asks low to high').to.be.true);
});

// This run's prices, in ticks, from the book as it is now: the resting buy at half the best bid
// (or ask), which no market reaches in a run; the sell of the trade planned again just before it.
const tick = pm.collectionVariables.get('tickSize'), lot = pm.collectionVariables.get('lotSize');
const bid = book.bids.length ? toSteps(book.bids[0].price, tick) : null;
const ask = book.asks.length ? toSteps(book.asks[0].price, tick) : null;
const top = toSteps(pm.collectionVariables.get('maxPrice'), tick);
let rest = bid !== null ? bid / 2n : ask !== null ? ask / 2n : 10000n;
if (rest > top / 2n) rest = top / 2n;
if (rest < 2n) rest = 2n; // the modify moves it down one tick
// The smallest quantity on the lot grid at or above min_qty whose notional passes at the lowest price.
const L = dec(lot), T = dec(tick), Q = dec(pm.collectionVariables.get('minQty'));
let lots = ceilDiv(Q.m * pow10(L.e), L.m * pow10(Q.e));
const minNotional = pm.collectionVariables.get('minNotional');
if (minNotional) {
  const N = dec(minNotional);
  const need = ceilDiv(N.m * pow10(L.e + T.e), L.m * (rest - 1n) * T.m * pow10(N.e));
  if (need > lots) lots = need;
}
pm.collectionVariables.set('restPrice', fromSteps(rest, tick));
pm.collectionVariables.set('modifyPrice', fromSteps(rest - 1n, tick));
pm.collectionVariables.set('qty', fromSteps(lots, lot));
pm.collectionVariables.set('modifyQty', fromSteps(2n * lots, lot));
pm.collectionVariables.set('offGridPrice', fromSteps(rest, tick) + (tick.includes('.') ? '5' : '.5'));
pm.collectionVariables.set('tradeAttempt', '1');
planSell(book);
pm.test(`the plan: rest ${fromSteps(rest, tick)}, quantity ${fromSteps(lots, lot)}`, () => {
  pm.expect(ask === null || rest < ask, 'a resting buy below the best ask').to.be.true;
  pm.expect(bid === null || rest < bid, 'below the best bid').to.be.true;
});
"""),
    Req("Order book: instrument missing", "GET", "/orderbook", auth="none", example_on="Order book", tests="""
expectError(400, 'required');
expectField('instrument', 'required');
"""),
    Req("Order book: unknown instrument", "GET", "/orderbook", query=[("instrument", "NO-SUCH-PAIR")], auth="none",
        example_on="Order book", tests="""
expectError(400, 'unknown_instrument');
expectField('instrument', 'unknown_instrument');
"""),
    Req("Order book: levels out of range", "GET", "/orderbook", query=[("instrument", "{{instrument}}"),
        ("levels", "0")], auth="none", example_on="Order book", tests="""
expectError(400, 'out_of_range');
expectField('levels', 'out_of_range');
"""),
    Req("Order book: DELETE is 405", "DELETE", "/orderbook", query=[("instrument", "{{instrument}}")], auth="none",
        example_on="Order book", tests="""
expectError(405, 'method_not_allowed');
"""),
    Req("Trades", "GET", "/trades", query=[("instrument", "{{instrument}}"), ("limit", "5")], auth="none",
        description="Recent trades, newest first (limit 1..1000, default 50).", tests="""
expectStatus(200);
pm.test('trades, newest first, decimals in fixed-point strings', () => {
  const trades = pm.response.json();
  pm.expect(trades).to.be.an('array').with.length.at.most(5);
  trades.forEach((t) => {
    pm.expect(t).to.include.all.keys('trade_id', 'instrument', 'price', 'quantity', 'aggressor_side',
      'buy_order_id', 'sell_order_id', 'maker_order_id', 'taker_order_id', 'seq', 'executed_at');
    expectFixed(t, ['price', 'quantity']);
  });
  trades.slice(1).forEach((t, n) => pm.expect(t.seq).to.be.below(trades[n].seq));
});
"""),
    Req("Trades: limit not a number", "GET", "/trades", query=[("instrument", "{{instrument}}"), ("limit", "many")],
        auth="none", example_on="Trades", tests="""
expectError(400, 'out_of_range');
expectField('limit', 'out_of_range');
"""),
    Req("OpenAPI schema", "GET", "/schema", query=[("format", "json")], auth="none",
        description="The OpenAPI 3 schema of every endpoint (YAML without `format=json`); Swagger UI at /docs.",
        tests="""
expectStatus(200);
pm.test('OpenAPI 3, the orders endpoints in it', () => {
  const schema = pm.response.json();
  pm.expect(schema.openapi).to.match(/^3\\./);
  pm.expect(schema.paths).to.include.all.keys('/orders', '/orders/{order_id}', '/orderbook');
});
"""),
    Req("Swagger UI", "GET", "/docs", auth="none", description="The schema, browsable (HTML).", tests="""
expectStatus(200);
pm.test('an HTML page with Swagger UI', () => {
  pm.expect(pm.response.headers.get('Content-Type')).to.include('text/html');
  pm.expect(pm.response.text()).to.include('swagger-ui');
});
"""),
]

ACCOUNTS = [
    Req("Account (trader key)", "GET", "/account", description="Who the key is: the client it acts for, its role, "
        "its prefix and its budgets.", tests="""
expectStatus(200);
const me = pm.response.json();
pm.test('a trader key, bound to one client, with its budgets', () => {
  pm.expect(me).to.have.all.keys('client_id', 'role', 'key_prefix', 'rate_limits');
  pm.expect(me.role).to.eql('trader');
  pm.expect(me.client_id).to.be.a('string').and.not.be.empty;
  pm.expect(pm.variables.get('apiKey').startsWith(me.key_prefix)).to.be.true;
  Object.values(me.rate_limits).forEach((budget) => pm.expect(budget).to.match(/^[0-9]+\\/[0-9]*[smhd]$/));
});
expectRateHeaders();
pm.collectionVariables.set('clientId', me.client_id);
"""),
    Req("Account (admin key)", "GET", "/account", auth="admin", example_on="Account (trader key)", tests="""
expectStatus(200);
const me = pm.response.json();
pm.test('an admin key acts for any client (client_id null)', () => {
  pm.expect(me.role).to.eql('admin');
  pm.expect(me.client_id).to.be.null;
});
pm.collectionVariables.set('adminKeyPrefix', me.key_prefix);
"""),
    Req("Account: no key", "GET", "/account", auth="none", example_on="Account (trader key)", tests="""
expectError(401, 'authentication_required');
pm.test('WWW-Authenticate: Bearer', () => pm.expect(pm.response.headers.get('WWW-Authenticate')).to.match(/^Bearer/));
"""),
    Req("Account: invalid key", "GET", "/account", auth="invalid", example_on="Account (trader key)", tests="""
expectError(401, 'invalid_api_key');
"""),
    Req("Account: rate limited", "GET", "/account", auth="limited", example_on="Account (trader key)",
        description="429 once a budget is spent, with Retry-After. Needs {{limitedKey}}, a key with a tiny reads "
                    "budget (skipped without one): the script spends it first.", prerequest="""
if (skipUnless('limitedKey')) {
  // Spend the key's budget (one read), so that this request is over it.
  pm.sendRequest({ url: pm.variables.replaceIn('{{baseUrl}}/account'),
                   header: { Authorization: `Bearer ${pm.variables.get('limitedKey')}` } }, () => {});
}
""", tests="""
expectError(429, 'rate_limited');
pm.test('Retry-After and the budget left (none)', () => {
  pm.expect(pm.response.headers.get('Retry-After')).to.match(/^[1-9][0-9]*$/);
  pm.expect(pm.response.headers.get('X-RateLimit-Remaining')).to.eql('0');
});
"""),
]

ORDERS = [
    Req("Validate an order", "POST", "/orders/test", body=PLACE_BODY, prerequest=NEW_KEY,
        description="Validates an order exactly as POST /orders would, and stores nothing.", tests="""
expectStatus(200);
pm.test('the order as it would be placed, on the grid', () => {
  const o = pm.response.json();
  pm.expect(o.valid).to.be.true;
  pm.expect(o.price).to.eql(pm.variables.get('restPrice'));
  pm.expect(o.quantity).to.eql(pm.variables.get('qty'));
  pm.expect(o.client_id).to.eql(pm.variables.get('clientId'));
  expectFixed(o, ['price', 'quantity']);
});
"""),
    Req("Validate an order: price off the grid", "POST", "/orders/test",
        body={**PLACE_BODY, "price": "{{offGridPrice}}"}, example_on="Validate an order", tests="""
expectError(400, 'price_too_many_decimals');
expectField('price', 'price_too_many_decimals');
"""),
    Req("Place an order", "POST", "/orders", body=PLACE_BODY, prerequest=NEW_KEY,
        description="201: placed, its outcome committed (fills included). The same idempotency_key and body "
                    "again: 200 and the original order; the key with another body: 409. A trader key's orders are "
                    "its client's (client_id may be left out).", tests="""
expectStatus(201);
const o = pm.response.json();
pm.test('an open order resting on the book, as asked', () => {
  expectOrder(o);
  pm.expect(o.status).to.eql('open');
  pm.expect(o.price).to.eql(pm.variables.get('restPrice'));
  pm.expect(o.quantity).to.eql(pm.variables.get('qty'));
  pm.expect(o.remaining_quantity).to.eql(o.quantity);
  pm.expect(o.fills).to.be.empty;
  pm.expect(o.idempotency_key).to.eql(pm.variables.get('idempotencyKey'));
});
expectRateHeaders();
pm.collectionVariables.set('orderId', o.order_id);
pm.collectionVariables.set('orderCreatedAt', o.created_at);
"""),
    Req("Place an order: the same request again", "POST", "/orders", body=PLACE_BODY, example_on="Place an order",
        description="A retry with the same idempotency_key and body: the original order, 200, placed once.",
        tests="""
expectStatus(200);
pm.test('the same order comes back', () => {
  const o = pm.response.json();
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('orderId'));
  pm.expect(o.created_at).to.eql(pm.variables.get('orderCreatedAt'));
  pm.expect(o.idempotency_key).to.eql(pm.variables.get('idempotencyKey'));
});
"""),
    Req("Place an order: the key with another body", "POST", "/orders",
        body={**PLACE_BODY, "quantity": "{{modifyQty}}"}, example_on="Place an order", tests="""
expectError(409, 'idempotency_key_reused');
expectField('idempotency_key', 'idempotency_key_reused');
pm.test('the order the key placed comes with the refusal', () => {
  pm.expect(pm.response.json().order.order_id).to.eql(pm.variables.get('orderId'));
});
"""),
    Req("Place an order: order_id taken", "POST", "/orders", prerequest=FRESH_KEY, example_on="Place an order",
        body={**PLACE_BODY, "idempotency_key": "{{freshKey}}", "order_id": "{{orderId}}"}, tests="""
expectError(409, 'duplicate_order_id');
expectField('order_id', 'duplicate_order_id');
"""),
    Req("Place an order: invalid fields", "POST", "/orders", example_on="Place an order",
        body={"idempotency_key": "postman-invalid", "instrument": "{{instrument}}", "side": "up",
              "price": "{{restPrice}}", "colour": "blue"}, tests="""
expectError(400, 'unknown_field');
pm.test('every bad field is named, each with its code', () => {
  const fields = pm.response.json().fields;
  pm.expect(fields.colour[0].code).to.eql('unknown_field');
  pm.expect(fields.side[0].code).to.eql('invalid_choice');
  pm.expect(fields.quantity[0].code).to.eql('required');
});
"""),
    Req("Place an order: price off the grid", "POST", "/orders", prerequest=FRESH_KEY, example_on="Place an order",
        body={**PLACE_BODY, "idempotency_key": "{{freshKey}}", "price": "{{offGridPrice}}"}, tests="""
expectError(400, 'price_too_many_decimals');
expectField('price', 'price_too_many_decimals');
"""),
    Req("Place an order: not JSON", "POST", "/orders", body='{"side": "buy",', content_type="application/json",
        example_on="Place an order", tests="""
expectError(400, 'invalid_json');
"""),
    Req("Place an order: not sent as JSON", "POST", "/orders", body="side=buy&quantity=1", content_type="text/plain",
        example_on="Place an order", tests="""
expectError(415, 'unsupported_media_type');
"""),
    Req("Place an order: too large", "POST", "/orders", body="{{largeBody}}", content_type="application/json",
        example_on="Place an order", description="A body over 64 KiB is refused before it is read whole.",
        prerequest="""
pm.variables.set('largeBody', JSON.stringify({ instrument: pm.variables.get('instrument'), note: 'x'.repeat(70000) }));
""", tests="""
expectError(413, 'body_too_large');
"""),
    Req("Place an order: another client's", "POST", "/orders", prerequest=FRESH_KEY, example_on="Place an order",
        body={**PLACE_BODY, "idempotency_key": "{{freshKey}}", "client_id": "{{clientId}}-someone-else"}, tests="""
expectError(403, 'client_mismatch');
expectField('client_id', 'client_mismatch');
"""),
    Req("Place an order: admin names no client", "POST", "/orders", auth="admin", prerequest=FRESH_KEY,
        example_on="Place an order", body={**PLACE_BODY, "idempotency_key": "{{freshKey}}"},
        description="An admin key places for any client, so it must name one.", tests="""
expectError(400, 'required');
expectField('client_id', 'required');
"""),
    Req("Place an order: no key", "POST", "/orders", auth="none", body=PLACE_BODY, example_on="Place an order",
        tests="""
expectError(401, 'authentication_required');
"""),
    Req("Get an order", "GET", "/orders/{{orderId}}", description="One order with all its fills. Another client's "
        "order is 404 to a trader key.", tests="""
expectStatus(200);
pm.test('the order placed, still open', () => {
  const o = pm.response.json();
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('orderId'));
  pm.expect(o.status).to.eql('open');
});
"""),
    Req("Get an order: unknown", "GET", "/orders/{{unknownId}}", example_on="Get an order",
        prerequest="pm.variables.set('unknownId', pm.variables.replaceIn('{{$guid}}'));", tests="""
expectError(404, 'order_not_found');
"""),
    Req("Get an order: not an order id", "GET", "/orders/not-an-order-id", example_on="Get an order", tests="""
expectError(404, 'order_not_found');
"""),
    Req("Modify an order (PATCH)", "PATCH", "/orders/{{orderId}}", body={"price": "{{modifyPrice}}"},
        description="A new price and/or a new total quantity (PATCH and PUT alike); the answer is the order as "
                    "modified.", tests="""
expectStatus(200);
pm.test('the same order, at its new price', () => {
  const o = pm.response.json();
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('orderId'));
  pm.expect(o.price).to.eql(pm.variables.get('modifyPrice'));
  pm.expect(o.status).to.eql('open');
});
"""),
    Req("Modify an order (PUT)", "PUT", "/orders/{{orderId}}", body={"quantity": "{{modifyQty}}"},
        description="The quantity is the new total (filled included).", tests="""
expectStatus(200);
pm.test('the same order, with its new total quantity', () => {
  const o = pm.response.json();
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('orderId'));
  pm.expect(o.quantity).to.eql(pm.variables.get('modifyQty'));
  pm.expect(o.price).to.eql(pm.variables.get('modifyPrice'));
});
"""),
    Req("Modify an order: nothing to change", "PATCH", "/orders/{{orderId}}", body={},
        example_on="Modify an order (PATCH)", tests="""
expectError(400, 'modify_nothing');
"""),
    Req("Modify an order: a field that cannot change", "PUT", "/orders/{{orderId}}", body={"side": "sell"},
        example_on="Modify an order (PUT)", tests="""
expectError(400, 'unknown_field');
expectField('side', 'unknown_field');
"""),
    Req("Modify an order: unknown", "PATCH", "/orders/{{unknownId}}", body={"price": "{{modifyPrice}}"},
        example_on="Modify an order (PATCH)",
        prerequest="pm.variables.set('unknownId', pm.variables.replaceIn('{{$guid}}'));", tests="""
expectError(404, 'order_not_found');
"""),
    Req("Cancel an order", "POST", "/orders/{{orderId}}/cancel", description="The answer is the order's final state.",
        tests="""
expectStatus(200);
pm.test('cancelled, its remaining quantity kept', () => {
  const o = pm.response.json();
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('orderId'));
  pm.expect(o.status).to.eql('cancelled');
  pm.expect(o.reason).to.eql('cancelled_by_user');
  pm.expect(o.remaining_quantity).to.eql(pm.variables.get('modifyQty'));
});
"""),
    Req("Cancel an order (DELETE): already cancelled", "DELETE", "/orders/{{orderId}}",
        description="DELETE cancels as POST .../cancel does; an order no longer open is 409, with its state.",
        tests="""
expectError(409, 'order_not_open');
pm.test('the order comes with the refusal', () => pm.expect(pm.response.json().order.status).to.eql('cancelled'));
"""),
    Req("Cancel an order: unknown", "POST", "/orders/{{unknownId}}/cancel", example_on="Cancel an order",
        prerequest="pm.variables.set('unknownId', pm.variables.replaceIn('{{$guid}}'));", tests="""
expectError(404, 'order_not_found');
"""),
    Req("Modify an order: no longer open", "PATCH", "/orders/{{orderId}}", body={"price": "{{restPrice}}"},
        example_on="Modify an order (PATCH)", tests="""
expectError(409, 'order_not_open');
"""),
    Req("Trade: a resting sell", "POST", "/orders", prerequest=NEW_KEY + """
// The sell price from the book as it is now (planSell): others may have traded since the plan.
pm.sendRequest(pm.variables.replaceIn('{{baseUrl}}/orderbook?instrument={{instrument}}&levels=1'),
               (error, answer) => { if (!error && answer.code === 200) planSell(answer.json()); });
""", example_on="Place an order",
        body={**PLACE_BODY, "side": "sell", "price": "{{sellPrice}}"},
        description="The trader sells at the planned price (inside the spread: alone at its level)...", tests="""
expectStatus(201);
const o = pm.response.json();
pm.test('resting, above every bid', () => {
  expectOrder(o);
  pm.expect(o.status).to.eql('open');
  pm.expect(o.price).to.eql(pm.variables.get('sellPrice'));
});
pm.collectionVariables.set('makerOrderId', o.order_id);
"""),
    Req("Trade: an IOC buy for another client", "POST", "/orders", auth="admin", prerequest=NEW_KEY,
        example_on="Place an order",
        body={**PLACE_BODY, "client_id": "{{takerClient}}", "price": "{{sellPrice}}", "time_in_force": "IOC"},
        description="...and the admin key buys as much for {{takerClient}}: filled at once, its fills in the "
                    "answer. (Should another client's buy take the sell first, in a market that trades meanwhile, "
                    "the script trades again, twice at most.)", tests="""
const o = pm.response.json();
const attempt = Number(pm.collectionVariables.get('tradeAttempt') || '1');
if (pm.response.code === 201 && o.status === 'cancelled' && o.fills.length === 0 && attempt < 3) {
  // Another client's buy met the sell first (a market that trades meanwhile): trade again.
  console.log(`the sell was taken before this buy came (attempt ${attempt}): trading again`);
  pm.collectionVariables.set('tradeAttempt', String(attempt + 1));
  pm.execution.setNextRequest('Trade: a resting sell');
} else {
  expectStatus(201);
  pm.test('filled, each fill at or below the limit', () => {
    expectOrder(o);
    pm.expect(o.client_id).to.eql(pm.variables.get('takerClient'));
    pm.expect(o.status).to.eql('filled');
    pm.expect(o.remaining_quantity).to.match(/^0(\\.0+)?$/);
    pm.expect(o.fills).to.not.be.empty;
    const tick = pm.collectionVariables.get('tickSize');
    o.fills.forEach((f) => {
      pm.expect(f.role).to.eql('taker');
      pm.expect(toSteps(f.price, tick) <= toSteps(o.price, tick)).to.be.true;
    });
  });
  pm.collectionVariables.set('takerOrderId', o.order_id);
}
"""),
    Req("Trade: the sell, filled", "GET", "/orders/{{makerOrderId}}", example_on="Get an order",
        description="Filled by the buy when it rested alone at its price; when the spread was one tick it queued "
                    "behind others, and what is left is cancelled here.", tests="""
expectStatus(200);
const o = pm.response.json();
pm.test('the sell, a maker in the trade', () => {
  expectOrder(o);
  pm.expect(o.order_id).to.eql(pm.variables.get('makerOrderId'));
  if (pm.variables.get('sellAlone') === 'true') {
    pm.expect(o.status).to.eql('filled');
    pm.expect(o.fills.map((f) => f.role)).to.eql(['maker']);
  }
});
pm.collectionVariables.set('makerFilled', String(o.status === 'filled'));
if (o.status === 'open' || o.status === 'partially_filled') {
  pm.sendRequest({ url: pm.variables.replaceIn('{{baseUrl}}/orders/{{makerOrderId}}/cancel'), method: 'POST',
                   header: { Authorization: `Bearer ${pm.variables.get('apiKey')}` } }, () => {});
}
"""),
    Req("Trades: the trade", "GET", "/trades", query=[("instrument", "{{instrument}}"), ("limit", "20")],
        auth="none", example_on="Trades", tests="""
expectStatus(200);
pm.test('the buy took liquidity: its trades are the newest', () => {
  const mine = pm.response.json().filter((t) => t.taker_order_id === pm.variables.get('takerOrderId'));
  pm.expect(mine).to.not.be.empty;
  mine.forEach((t) => pm.expect(t.aggressor_side).to.eql('buy'));
  if (pm.variables.get('makerFilled') === 'true') {
    pm.expect(mine.map((t) => t.maker_order_id)).to.include(pm.variables.get('makerOrderId'));
  }
});
"""),
    Req("List orders", "GET", "/orders", query=[("instrument", "{{instrument}}"), ("limit", "1")],
        description="Newest first, cursor-paginated (next/previous are links); a trader key sees its client's "
                    "orders only. Filters: client_id, status, instrument.", tests="""
expectStatus(200);
const page = pm.response.json();
pm.test('one order, its client\\'s, and a link to older ones', () => {
  pm.expect(page).to.have.all.keys('next', 'previous', 'results');
  pm.expect(page.results).to.have.length(1);
  page.results.forEach(expectOrder);
  pm.expect(page.results[0].client_id).to.eql(pm.variables.get('clientId'));
  pm.expect(page.next).to.be.a('string').and.match(/[?&]cursor=/);
});
pm.collectionVariables.set('firstPageOrderId', page.results[0].order_id);
pm.collectionVariables.set('firstPageCreatedAt', page.results[0].created_at);
pm.collectionVariables.set('cursor', decodeURIComponent((page.next || '').match(/[?&]cursor=([^&]*)/)[1]));
"""),
    Req("List orders: the next page", "GET", "/orders",
        query=[("instrument", "{{instrument}}"), ("limit", "1"), ("cursor", "{{cursor}}")], example_on="List orders",
        tests="""
expectStatus(200);
pm.test('an older order, and a link back', () => {
  const page = pm.response.json();
  pm.expect(page.results).to.have.length(1);
  pm.expect(page.results[0].order_id).to.not.eql(pm.variables.get('firstPageOrderId'));
  pm.expect(page.results[0].created_at <= pm.variables.get('firstPageCreatedAt'), 'older').to.be.true;
  pm.expect(page.previous).to.be.a('string');
});
"""),
    Req("List orders: open, with X-API-Key", "GET", "/orders", query=[("status", "open"), ("limit", "50")],
        auth="none", headers=[("X-API-Key", "{{apiKey}}")], example_on="List orders",
        description="The key may come as X-API-Key instead of Authorization: Bearer.", tests="""
expectStatus(200);
pm.test('open orders only, none of this run\\'s left', () => {
  const page = pm.response.json();
  page.results.forEach((o) => pm.expect(o.status).to.be.oneOf(['open', 'partially_filled']));
  const ids = page.results.map((o) => o.order_id);
  pm.expect(ids).to.not.include(pm.variables.get('orderId'));
});
"""),
    Req("List orders: unknown status", "GET", "/orders", query=[("status", "resting")], example_on="List orders",
        tests="""
expectError(400, 'invalid_choice');
expectField('status', 'invalid_choice');
"""),
    Req("List orders: another client's", "GET", "/orders", query=[("client_id", "{{clientId}}-someone-else")],
        example_on="List orders", tests="""
expectError(403, 'client_mismatch');
"""),
    Req("List orders: no key", "GET", "/orders", auth="none", example_on="List orders", tests="""
expectError(401, 'authentication_required');
"""),
]

ANALYTICS = [
    Req("Klines", "GET", "/klines", query=[("instrument", "{{instrument}}"), ("interval", "1m"), ("limit", "5")],
        auth="none", description="Candles, oldest first, in Binance's order of fields; intervals 1m, 5m, 15m, 1h, "
        "1d; start/end in Unix ms or ISO-8601; fill=previous carries the close over empty intervals.", tests="""
expectStatus(200);
pm.test('candles up to now, the run\\'s trade in the last', () => {
  const klines = pm.response.json();
  pm.expect(klines).to.be.an('array').that.is.not.empty;
  klines.forEach((k) => {
    pm.expect(k).to.include.all.keys('open_time', 'open', 'high', 'low', 'close', 'volume', 'close_time',
      'quote_volume', 'trade_count', 'taker_buy_volume', 'taker_buy_quote_volume', 'vwap', 'seq');
    pm.expect(k.open_time).to.be.a('number');
    expectFixed(k, ['open', 'high', 'low', 'close', 'volume', 'quote_volume', 'taker_buy_volume',
      'taker_buy_quote_volume', 'vwap']);
  });
  klines.slice(1).forEach((k, n) => pm.expect(k.open_time).to.be.above(klines[n].open_time));
  pm.expect(klines[klines.length - 1].close_time).to.be.at.least(Date.now() - 120000);
});
"""),
    Req("Klines: unknown interval", "GET", "/klines", query=[("instrument", "{{instrument}}"), ("interval", "2m")],
        auth="none", example_on="Klines", tests="""
expectError(400, 'invalid_choice');
expectField('interval', 'invalid_choice');
"""),
    Req("Klines: end before start", "GET", "/klines", query=[("instrument", "{{instrument}}"), ("interval", "1m"),
        ("start", "2026-12-02T12:00:00Z"), ("end", "2026-12-01T12:00:00Z")], auth="none", example_on="Klines",
        tests="""
expectError(400, 'invalid_range');
expectField('end', 'invalid_range');
"""),
    Req("24 h ticker", "GET", "/ticker/24h", query=[("instrument", "{{instrument}}")], auth="none",
        description="Rolling 24 h statistics with the touch of the book.", tests="""
expectStatus(200);
pm.test('the day\\'s figures in fixed-point strings, the run\\'s trade counted', () => {
  const t = pm.response.json();
  pm.expect(t).to.include.all.keys('instrument', 'open_time', 'close_time', 'open', 'high', 'low', 'last', 'change',
    'change_percent', 'volume', 'quote_volume', 'vwap', 'trade_count', 'seq', 'best_bid', 'best_bid_size',
    'best_ask', 'best_ask_size', 'time');
  pm.expect(t.trade_count).to.be.at.least(1);
  expectFixed(t, ['open', 'high', 'low', 'last', 'change', 'change_percent', 'volume', 'quote_volume', 'vwap']);
  expectFixed(t, ['best_bid', 'best_bid_size', 'best_ask', 'best_ask_size'],
    ['best_bid', 'best_bid_size', 'best_ask', 'best_ask_size']);
});
"""),
    Req("24 h ticker: unknown instrument", "GET", "/ticker/24h", query=[("instrument", "NO-SUCH-PAIR")], auth="none",
        example_on="24 h ticker", tests="""
expectError(400, 'unknown_instrument');
"""),
    Req("VWAP", "GET", "/analytics/vwap", query=[("instrument", "{{instrument}}"), ("window", "1h")], auth="none",
        description="VWAP and statistics of the trades in [from, to), or the last `window` (15m, 1h, 24h, 7d...): "
                    "exact, rounded half-even to the tick.", tests="""
expectStatus(200);
pm.test('the last hour\\'s VWAP, the run\\'s trade in it', () => {
  const v = pm.response.json();
  pm.expect(v).to.include.all.keys('instrument', 'from', 'to', 'vwap', 'volume', 'notional', 'trade_count', 'high',
    'low', 'first', 'last', 'first_seq', 'last_seq');
  pm.expect(v.trade_count).to.be.at.least(1);
  expectFixed(v, ['vwap', 'volume', 'notional', 'high', 'low', 'first', 'last']);
});
"""),
    Req("VWAP: no range", "GET", "/analytics/vwap", query=[("instrument", "{{instrument}}")], auth="none",
        example_on="VWAP", tests="""
expectError(400, 'required');
expectField('from', 'required');
"""),
    Req("VWAP: not a time", "GET", "/analytics/vwap", query=[("instrument", "{{instrument}}"), ("from", "yesterday")],
        auth="none", example_on="VWAP", tests="""
expectError(400, 'invalid_time');
expectField('from', 'invalid_time');
"""),
    Req("Positions", "GET", "/positions/{{clientId}}", query=[("instrument", "{{instrument}}")],
        description="A client's positions: net quantity, average entry price, realized and unrealized PnL. A "
                    "trader key reads its own client's; an admin key any client's.", tests="""
expectStatus(200);
pm.test('the client\\'s position in the instrument, in fixed-point strings', () => {
  const p = pm.response.json();
  pm.expect(p).to.have.all.keys('client_id', 'positions');
  pm.expect(p.client_id).to.eql(pm.variables.get('clientId'));
  if (pm.variables.get('makerFilled') === 'true') pm.expect(p.positions).to.have.length(1);
  p.positions.forEach((x) => {
    pm.expect(x.instrument).to.eql(pm.variables.get('instrument'));
    expectFixed(x, ['net_quantity', 'quote_cash_flow', 'average_entry_price', 'cost_basis', 'realized_pnl',
      'unrealized_pnl', 'last_price', 'bought_quantity', 'sold_quantity', 'bought_quote', 'sold_quote'],
      ['average_entry_price', 'unrealized_pnl', 'last_price']);
    pm.expect(x.trade_count).to.be.at.least(1);
  });
});
"""),
    Req("Positions: the taker's, by the admin key", "GET", "/positions/{{takerClient}}",
        query=[("instrument", "{{instrument}}")], auth="admin", example_on="Positions", tests="""
expectStatus(200);
pm.test('long what it bought', () => {
  const p = pm.response.json();
  pm.expect(p.client_id).to.eql(pm.variables.get('takerClient'));
  pm.expect(p.positions).to.have.length(1);
  expectFixed(p.positions[0], ['net_quantity', 'bought_quantity']);
});
"""),
    Req("Positions: another client's", "GET", "/positions/{{clientId}}-someone-else", example_on="Positions",
        tests="""
expectError(403, 'client_mismatch');
"""),
    Req("Settlements", "GET", "/settlements", query=[("limit", "10")],
        description="End-of-day settlements (manage.py settle), newest day first: a trader key's own client's.",
        tests="""
expectStatus(200);
pm.test('settled days, in fixed-point strings', () => {
  const days = pm.response.json();
  pm.expect(days).to.be.an('array').with.length.at.most(10);
  days.forEach((d) => {
    pm.expect(d.client_id).to.eql(pm.variables.get('clientId'));
    pm.expect(d.date).to.match(/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/);
    expectFixed(d, ['bought_quantity', 'sold_quantity', 'net_quantity', 'bought_quote', 'sold_quote', 'net_quote',
      'buy_vwap', 'sell_vwap'], ['buy_vwap', 'sell_vwap']);
  });
});
"""),
    Req("Settlements: not a date", "GET", "/settlements", query=[("date", "02/12/2026")], example_on="Settlements",
        tests="""
expectError(400, 'invalid_time');
expectField('date', 'invalid_time');
"""),
]

OPERATIONS = [
    Req("Worker state", "GET", "/admin/worker", auth="admin", description="The matching worker's own account: its "
        "books, counters and last batch.", tests="""
expectStatus(200);
pm.test('the worker, and its book of the instrument', () => {
  const w = pm.response.json();
  pm.expect(w).to.include.all.keys('owner', 'direct_address', 'uptime_s', 'batches', 'retries', 'last_batch_age_s',
    'books');
  const book = w.books.find((b) => b.instrument === pm.variables.get('instrument'));
  pm.expect(book).to.include.all.keys('open_orders', 'bid_levels', 'ask_levels', 'seq', 'command_seq', 'halted');
  pm.expect(book.halted).to.be.false;
});
"""),
    Req("Worker state: trader key", "GET", "/admin/worker", example_on="Worker state", tests="""
expectError(403, 'forbidden');
"""),
    Req("Worker state: no key", "GET", "/admin/worker", auth="none", example_on="Worker state", tests="""
expectError(401, 'authentication_required');
"""),
    Req("Take a snapshot", "POST", "/admin/snapshot", auth="admin", body={"instrument": "{{instrument}}"},
        description="Persists a snapshot of the live book (`instrument`, or every instrument without one).",
        tests="""
expectStatus(201);
const s = pm.response.json();
pm.test('a snapshot of the instrument at a committed sequence', () => {
  pm.expect(s).to.include.all.keys('id', 'instrument', 'seq', 'command_seq', 'bid_levels', 'ask_levels', 'orders',
    'taken_at');
  pm.expect(s.instrument).to.eql(pm.variables.get('instrument'));
});
pm.collectionVariables.set('snapshotId', s.id);
"""),
    Req("Take a snapshot: unknown field", "POST", "/admin/snapshot", auth="admin", body={"symbol": "{{instrument}}"},
        example_on="Take a snapshot", tests="""
expectError(400, 'unknown_field');
expectField('symbol', 'unknown_field');
"""),
    Req("Snapshots", "GET", "/admin/snapshots", query=[("instrument", "{{instrument}}"), ("limit", "5")],
        auth="admin", description="Persisted snapshots, newest first.", tests="""
expectStatus(200);
pm.test('newest first: the one just taken', () => {
  const list = pm.response.json().snapshots;
  pm.expect(list).to.be.an('array').that.is.not.empty;
  pm.expect(String(list[0].id)).to.eql(pm.variables.get('snapshotId'));
  pm.expect(list[0]).to.include.all.keys('instrument', 'seq', 'command_seq', 'source', 'taken_at');
});
"""),
    Req("Snapshots: trader key", "GET", "/admin/snapshots", example_on="Snapshots", tests="""
expectError(403, 'forbidden');
"""),
    Req("Halt an instrument", "POST", "/admin/instruments/{{instrument}}/halt", auth="admin",
        description="While halted, new orders and modifies are refused with 409 instrument_halted; cancels still "
                    "work; it survives a restart. (The run resumes it two requests later.)", tests="""
expectStatus(200);
pm.test('halted', () => pm.expect(pm.response.json()).to.include({ instrument: pm.variables.get('instrument'),
                                                                  halted: true }));
"""),
    Req("Place an order: instrument halted", "POST", "/orders", body=PLACE_BODY, prerequest=NEW_KEY,
        example_on="Place an order", tests="""
expectError(409, 'instrument_halted');
"""),
    Req("Resume an instrument", "POST", "/admin/instruments/{{instrument}}/resume", auth="admin", tests="""
expectStatus(200);
pm.test('trading again', () => pm.expect(pm.response.json()).to.eql({ instrument: pm.variables.get('instrument'),
                                                                     halted: false, changed: true }));
"""),
    Req("Halt an instrument: unknown", "POST", "/admin/instruments/NO-SUCH-PAIR/halt", auth="admin",
        example_on="Halt an instrument", tests="""
expectError(400, 'unknown_instrument');
"""),
    Req("Cancel all orders", "POST", "/admin/cancel-all", auth="admin",
        body={"instrument": "{{instrument}}", "client_id": "{{takerClient}}"},
        description="Cancels every open order of an `instrument`, of a `client_id`, or of both together (here: "
                    "the taker's on {{instrument}}: its IOC left none).", tests="""
expectStatus(200);
pm.test('how many were cancelled, by instrument', () => {
  const answer = pm.response.json();
  pm.expect(answer).to.have.all.keys('cancelled', 'by_instrument');
  pm.expect(answer.cancelled).to.eql(0);
  pm.expect(answer.by_instrument).to.eql({});
});
"""),
    Req("Cancel all orders: nothing named", "POST", "/admin/cancel-all", auth="admin", body={},
        example_on="Cancel all orders", tests="""
expectError(400, 'required');
expectField('instrument', 'required');
"""),
    Req("Cancel all orders: trader key", "POST", "/admin/cancel-all", body={"client_id": "{{clientId}}"},
        example_on="Cancel all orders", tests="""
expectError(403, 'forbidden');
"""),
    Req("Audit trail", "GET", "/admin/audit", query=[("limit", "20")], auth="admin",
        description="The newest entries: who did what to what (operations, keys made and revoked).", tests="""
expectStatus(200);
pm.test('this run\\'s halt and resume, by the admin key', () => {
  const entries = pm.response.json();
  entries.forEach((e) => pm.expect(e).to.have.all.keys('time', 'actor', 'action', 'target', 'detail'));
  const instrument = pm.variables.get('instrument');
  const actions = entries.filter((e) => e.target === instrument).map((e) => e.action);
  pm.expect(actions).to.include.members(['halt', 'resume', 'snapshot']);
  const resume = entries.find((e) => e.action === 'resume' && e.target === instrument);
  pm.expect(resume.actor).to.include(pm.variables.get('adminKeyPrefix'));
});
"""),
    Req("Audit trail: limit out of range", "GET", "/admin/audit", query=[("limit", "0")], auth="admin",
        example_on="Audit trail", tests="""
expectError(400, 'out_of_range');
"""),
    Req("Admin command", "GET", "/admin/commands/{{adminCommandId}}", auth="admin",
        description="An admin command stored in the inbox (answered 202 pending, no worker running): whether it "
                    "was carried out, and its answer. Needs {{adminCommandId}} (skipped without one).",
        prerequest="skipUnless('adminCommandId');", tests="""
expectStatus(200);
pm.test('the command, carried out', () => {
  const c = pm.response.json();
  pm.expect(c).to.have.all.keys('command_id', 'kind', 'command', 'processed', 'result', 'created_at',
    'processed_at');
  pm.expect(c.command_id).to.eql(pm.variables.get('adminCommandId'));
  pm.expect(c.processed).to.be.true;
  pm.expect(c.processed_at).to.be.a('string');
});
"""),
    Req("Admin command: unknown", "GET", "/admin/commands/999999999999", auth="admin", example_on="Admin command",
        tests="""
expectError(404, 'not_found');
"""),
]

FOLDERS = [
    ("Health", "Liveness, readiness and metrics: outside the API's schema, no key.", HEALTH),
    ("Market data", "Public: no key needed (limited per address). Reads the grid and the book, and plans the "
                    "run's prices.", MARKET_DATA),
    ("Accounts", "The key: who it acts for, its role and budgets; the refusals of keys.", ACCOUNTS),
    ("Orders", "Place, replay, read, modify and cancel one order; the refusals; a trade; the order list.", ORDERS),
    ("Analytics and positions", "Candles, the 24 h ticker, VWAP, positions and settlements, after the run's trade.",
     ANALYTICS),
    ("Operations (admin)", "Admin keys only: the worker, snapshots, halt and resume, cancel-all, the audit trail, "
                           "admin commands.", OPERATIONS),
]

# -- the JSON --------------------------------------------------------------------------------------


def item_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def _url(req: Req) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in req.query)
    url: dict[str, Any] = {"raw": "{{baseUrl}}" + req.path + (f"?{query}" if query else ""), "host": ["{{baseUrl}}"],
                           "path": req.path.strip("/").split("/")}
    if req.query:
        url["query"] = [{"key": k, "value": v} for k, v in req.query]
    return url


def _auth(kind: str) -> dict[str, Any] | None:
    token = AUTH[kind]
    if token is None:
        return None
    if token == "":
        return {"type": "noauth"}
    return {"type": "bearer", "bearer": [{"key": "token", "value": token, "type": "string"}]}


def request_json(req: Req) -> dict[str, Any]:
    headers = [{"key": k, "value": v} for k, v in req.headers]
    out: dict[str, Any] = {"method": req.method, "header": headers}
    if req.body is not None:
        headers.append({"key": "Content-Type", "value": req.content_type or "application/json"})
        out["body"] = {"mode": "raw", "raw": _json_body(req.body)}
        if (req.content_type or "application/json") == "application/json":
            out["body"]["options"] = {"raw": {"language": "json"}}
    out["url"] = _url(req)
    auth = _auth(req.auth)
    if auth is not None:
        out["auth"] = auth
    if req.description:
        out["description"] = req.description
    return out


def _events(req: Req) -> list[dict[str, Any]]:
    events = []
    if req.prerequest:
        events.append({"listen": "prerequest", "script": {"type": "text/javascript",
                                                          "exec": script_lines(req.prerequest)}})
    events.append({"listen": "test", "script": {"type": "text/javascript", "exec": script_lines(req.tests)}})
    return events


def every_request() -> list[Req]:
    return [req for _, _, reqs in FOLDERS for req in reqs]


def build(examples: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The collection; ``examples``: the saved responses of each request, by name."""
    names = [req.name for req in every_request()]
    assert len(set(names)) == len(names), "request names must be unique (they name the items' ids)"
    assert all(req.example_on in names for req in every_request() if req.example_on), "example_on names a request"
    examples = examples or {}
    folders = []
    for folder, description, reqs in FOLDERS:
        folders.append({"name": folder, "description": description, "item": [
            {"id": item_id(req.name), "name": req.name, "event": _events(req), "request": request_json(req),
             "response": examples.get(req.name, [])} for req in reqs]})
    return {
        "info": {"_postman_id": item_id("collection"), "name": "pgbourse",
                 "description": "Every REST endpoint of pgbourse, with tests and real example answers. Set the "
                                "environment's baseUrl, apiKey and adminKey (docs/postman/README.md) and run the "
                                "collection in order.",
                 "schema": SCHEMA_URL},
        "item": folders,
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}]},
        "event": [{"listen": "test", "script": {"type": "text/javascript", "exec": COLLECTION_TEST.split("\n")}}],
        "variable": [{"key": k, "value": v, "type": "string"} for k, v in COLLECTION_VARIABLES],
    }


def environment() -> dict[str, Any]:
    return {"id": item_id("environment"), "name": "pgbourse (make run)",
            "values": [{"key": k, "value": v, "type": t, "enabled": True, "description": d}
                       for k, v, t, d in ENVIRONMENT],
            "_postman_variable_scope": "environment"}


# -- examples from a newman run --------------------------------------------------------------------

STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
               413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests"}


def examples_from_report(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each request's answer in a newman JSON report as a saved example, on the request itself
    and on the request it is an example of (``Req.example_on``)."""
    by_id = {item_id(req.name): req for req in every_request()}
    out: dict[str, list[dict[str, Any]]] = {}
    last = {execution["item"]["id"]: execution for execution in report["run"]["executions"]}  # a retried trade
    for execution in last.values():
        req = by_id[execution["item"]["id"]]
        response = execution.get("response")
        if response is None:  # skipped
            continue
        body = bytes(response["stream"]["data"]).decode("utf-8", errors="replace")
        if len(body) > EXAMPLE_BODY_MAX:
            body = body[:EXAMPLE_BODY_MAX] + f"\n... (cut here: {len(body)} characters in all)"
        headers = [{"key": h["key"], "value": h["value"]} for h in response["header"]
                   if h["key"].lower() in EXAMPLE_HEADERS]
        content_type = next((h["value"] for h in headers if h["key"].lower() == "content-type"), "")
        code = int(response["code"])
        label = req.name.split(": ", 1)[1] if ": " in req.name else req.name
        example = {"name": f"{code} {label}", "originalRequest": request_json(req),
                   "status": STATUS_TEXT.get(code, response["status"]), "code": code,
                   "_postman_previewlanguage": "json" if "json" in content_type else "text",
                   "header": headers, "cookie": [], "body": body}
        out.setdefault(req.name, []).append(example)
        if req.example_on is not None:
            out.setdefault(req.example_on, []).append(example)
    return out


def strip_examples(collection: dict[str, Any]) -> dict[str, Any]:
    """The collection without its saved examples (what ``build()`` writes before a run)."""
    copy: dict[str, Any] = json.loads(json.dumps(collection))
    for folder in copy["item"]:
        for item in folder["item"]:
            item["response"] = []
    return copy


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(examples: dict[str, list[dict[str, Any]]]) -> None:
    COLLECTION_FILE.write_text(dumps(build(examples)))
    ENVIRONMENT_FILE.write_text(dumps(environment()))


def check() -> list[str]:
    """What differs between the JSON files and what this module writes (examples aside)."""
    problems = []
    saved = json.loads(COLLECTION_FILE.read_text())
    if strip_examples(saved) != build():
        problems.append(f"{COLLECTION_FILE.name} is not what collection.py writes")
    if json.loads(ENVIRONMENT_FILE.read_text()) != environment():
        problems.append(f"{ENVIRONMENT_FILE.name} is not what collection.py writes")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON files differ from the definitions")
    parser.add_argument("--report", type=Path, help="a newman JSON report: write its answers as the examples")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("rewrite them: PGBOURSE_POSTMAN_WRITE=1 .venv/bin/python -m pytest tests/docs/test_postman.py",
                  file=sys.stderr)
        return 1 if problems else 0
    if args.report is None:
        parser.error("give --check, or --report with a newman JSON report")
    write(examples_from_report(json.loads(args.report.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
