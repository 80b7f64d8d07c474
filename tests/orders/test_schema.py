"""The OpenAPI schema is the server's contract: it validates, and every answer to a fuzzer
generating from it (valid orders that really place, and invalid ones) matches it: no 5xx but
the documented faults, every status documented, every body in its documented shape."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchange_project.processes import ROOT

# The instrument valid orders are placed on (a coarse grid, so that generated numbers land on it)
FUZZ_SYMBOL = "FUZZ-USD"


def test_the_schema_validates_without_a_warning() -> None:
    out = subprocess.run([sys.executable, "manage.py", "spectacular", "--format", "openapi-json", "--validate",
                          "--fail-on-warn"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    paths = json.loads(out.stdout)["paths"]
    assert {"/orders", "/orders/test", "/orders/{order_id}", "/orders/{order_id}/cancel", "/orderbook",
            "/trades", "/instruments"} <= set(paths)
    post = paths["/orders"]["post"]
    assert {"201", "200", "202", "400", "405", "409", "413", "415", "503", "504"} <= set(post["responses"])
    body = json.loads(out.stdout)["components"]["schemas"]["OrderCreate"]
    assert set(body["required"]) == {"idempotency_key", "client_id", "instrument", "side", "quantity"}
    assert "default" not in body["properties"]["instrument"]


def fuzz_instrument(exchange: Any) -> None:
    with exchange.connect() as conn:
        conn.execute("INSERT INTO orders_instrument (symbol, tick_size, lot_size, min_qty, max_qty, max_price, "
                     "is_active, last_seq, last_trade_id, created_at) VALUES (%s, 1, 1, 1, 1000000, 1000000000, "
                     "true, 0, 0, now()) ON CONFLICT (symbol) DO NOTHING", (FUZZ_SYMBOL,))


# Order ids the fuzzer's valid orders got: later operations on an order address one half the time.
PLACED: list[str] = []


def _half(value: Any) -> bool:
    return int(hashlib.sha256(repr(value).encode()).hexdigest(), 16) % 2 == 0


@schemathesis.hook
def map_query(context: Any, query: Any) -> Any:
    """Half of the reads name FUZZ-USD, so that they reach a book and its trades."""
    if isinstance(query, dict) and "instrument" in query and _half(sorted(query.items(), key=str)):
        return {**query, "instrument": FUZZ_SYMBOL}
    return query


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: Any) -> Any:
    if isinstance(path_parameters, dict) and "order_id" in path_parameters and PLACED \
            and _half(path_parameters["order_id"]):
        return {**path_parameters, "order_id": PLACED[hash(path_parameters["order_id"]) % len(PLACED)]}
    return path_parameters


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Half of the generated orders become valid ones on FUZZ-USD (same numbers, on its grid of
    whole units), so that the fuzzer reaches matching and not only validation."""
    if not isinstance(body, dict) or "side" not in body or "quantity" not in body:
        return body
    if not _half(sorted(body.items(), key=str)):
        return body
    def whole(value: Any, low: int, high: int) -> str:
        try:
            number = int(abs(Decimal(str(value))))
        except (ArithmeticError, ValueError):
            number = low
        return str(min(max(number, low), high))
    digest = hashlib.sha256(repr(sorted(body.items(), key=str)).encode()).hexdigest()
    valid = dict(body, instrument=FUZZ_SYMBOL, quantity=whole(body["quantity"], 1, 50),
                 idempotency_key=digest[:32], client_id=f"fuzz-{digest[:4]}")
    if valid.get("type", "limit") == "limit":
        valid["price"] = whole(valid.get("price", 100), 1, 1000)
    else:
        valid.pop("price", None)
    if valid.get("post_only"):
        valid["time_in_force"] = "GTC"
    valid.pop("order_id", None)
    return valid


def test_every_answer_to_the_fuzzer_is_documented_and_in_shape(exchange: Any) -> None:
    fuzz_instrument(exchange)
    schema = schemathesis.openapi.from_url(f"{exchange.http}/schema?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path != "/schema"]
    assert len(operations) >= 10
    placed = 0
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        # (each operation's own function: hypothesis runs it at once, in this iteration)
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            nonlocal placed
            response = case.call_and_validate(base_url=exchange.http, checks=[
                not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) >= {"code", "detail", "fields"}, body
            elif case.method.upper() == "POST" and case.path == "/orders":
                placed += 1
                PLACED.append(response.json()["order_id"])

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid input to send.
            assert mode is GenerationMode.NEGATIVE, operation.path
    # and the fuzzer's valid orders really were placed (matching reached, not only validation)
    assert placed > 0
