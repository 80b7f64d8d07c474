"""The Postman collection (docs/postman) against the live exchange: newman runs every request of
it with no failure, it covers every path and method of the OpenAPI schema and the health
endpoints, and its JSON files are what docs/postman/collection.py writes.

With PGBOURSE_POSTMAN_WRITE=1 the run is of the collection as collection.py defines it, and its
answers are saved as the requests' examples (docs/postman/README.md)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from exchange_project.processes import ROOT
from orders.health import PATHS as HEALTH_PATHS
from tests.http import call

POSTMAN = ROOT / "docs" / "postman"
NEWMAN_DIR = ROOT / "var" / "newman"
WRITE = os.environ.get("PGBOURSE_POSTMAN_WRITE") == "1"


def _collection_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pgbourse_postman_collection", POSTMAN / "collection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


collection = _collection_module()


def newman() -> Path:
    """newman as docs/postman/package-lock.json pins it, installed under var/newman on first use
    (and again when the lock changes)."""
    binary = NEWMAN_DIR / "node_modules" / ".bin" / "newman"
    installed_lock = NEWMAN_DIR / "package-lock.json"
    if binary.exists() and installed_lock.exists() and \
            installed_lock.read_bytes() == (POSTMAN / "package-lock.json").read_bytes():
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (.ci/run installs them with apt): the Postman collection "
                    "cannot be run with newman")
    NEWMAN_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(POSTMAN / name, NEWMAN_DIR / name)
    done = subprocess.run([npm, "ci", "--prefix", str(NEWMAN_DIR), "--no-audit", "--no-fund"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"npm ci --prefix var/newman failed:\n{done.stdout}\n{done.stderr}"
    return binary


def pending_admin_command(ex: Any, admin_key: str, symbol: str) -> str:
    """A real admin command that went through the inbox: sent while no worker runs (202
    pending), carried out by the next worker. Its id, for GET /admin/commands/{id}."""
    ex.kill_worker()
    try:
        status, answer = call(ex.http, "POST", "/admin/snapshot", {"instrument": symbol}, key=admin_key)
        assert status == 202 and answer["status"] == "pending", (status, answer)
    finally:
        ex.start_worker()
    command_id = str(answer["command_id"])
    deadline = time.monotonic() + 15
    while not call(ex.http, "GET", f"/admin/commands/{command_id}", key=admin_key)[1]["processed"]:
        assert time.monotonic() < deadline, "the worker did not carry out the stored command"
        time.sleep(0.1)
    return command_id


@pytest.fixture(scope="module")
def newman_run(exchange: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One newman run of the collection against the live exchange, on an instrument of its own:
    its JSON report."""
    binary = newman()
    work = tmp_path_factory.mktemp("postman")
    symbol = exchange.make_instrument()
    # Keys with their roles' budgets (as `make run`'s are), so that the examples show those.
    roles = {"orders_rate": "", "commands_rate": "", "reads_rate": ""}
    admin = exchange.keys.create(role="admin", **roles)
    values = {"baseUrl": exchange.http, "apiKey": exchange.keys.create(f"postman-{uuid.uuid4().hex[:8]}", **roles),
              "adminKey": admin, "instrument": symbol, "takerClient": f"postman-taker-{uuid.uuid4().hex[:8]}",
              "limitedKey": exchange.keys.create(role="read_only", reads_rate="1/d"),
              "adminCommandId": pending_admin_command(exchange, admin, symbol)}
    environment = collection.environment()
    for entry in environment["values"]:
        entry["value"] = values.get(entry["key"], entry["value"])
    (work / "environment.json").write_text(json.dumps(environment))
    if WRITE:
        source = work / "collection.json"
        source.write_text(collection.dumps(collection.build()))
    else:
        source = collection.COLLECTION_FILE
    report = work / "report.json"
    done = subprocess.run([str(binary), "run", str(source), "--environment", str(work / "environment.json"),
                           "--reporters", "cli,json", "--reporter-json-export", str(report), "--color", "off",
                           "--timeout-request", "15000"], capture_output=True, text=True, timeout=300, cwd=POSTMAN)
    assert report.exists(), f"newman wrote no report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["cli"] = done.stdout
    result["returncode"] = done.returncode
    return result


def test_newman_runs_every_request_of_the_collection_with_no_failure(newman_run: dict[str, Any]) -> None:
    run = newman_run["run"]
    failures = [f"{f['source'].get('name', '?')}: {f['error'].get('test') or f['error'].get('name')}: "
                f"{f['error'].get('message')}" for f in run["failures"]]
    assert failures == [] and newman_run["returncode"] == 0, "\n".join(failures) + "\n" + newman_run["cli"][-6000:]
    # every request ran (none skipped: the run has a limited key and an admin command), each with
    # assertions, and they all held
    executed = {e["item"]["name"] for e in run["executions"] if e.get("response") is not None}
    assert executed == {req.name for req in collection.every_request()}
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["assertions"]["total"] >= 2 * len(executed)
    if WRITE:
        collection.write(collection.examples_from_report(newman_run))


def _template_of(method: str, segments: list[str], operations: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The schema operation a request is (a {param} takes any one segment; literal segments
    decide between templates, as the URL patterns do)."""
    best: tuple[int, tuple[str, str]] | None = None
    for op_method, template in operations:
        parts = template.strip("/").split("/")
        if op_method != method or len(parts) != len(segments):
            continue
        if all(p == s or (p.startswith("{") and p.endswith("}")) for p, s in zip(parts, segments)):
            literal = sum(p == s for p, s in zip(parts, segments))
            if best is None or literal > best[0]:
                best = (literal, (op_method, template))
    return None if best is None else best[1]


def test_the_collection_covers_every_operation_of_the_schema_and_the_health_endpoints(exchange: Any) -> None:
    status, schema = call(exchange.http, "GET", "/schema?format=json", key=None)
    assert status == 200
    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item
                  if method in ("get", "put", "post", "delete", "patch")}
    saved = json.loads(collection.COLLECTION_FILE.read_text())
    requests = [(item["request"]["method"], item["request"]["url"]["path"]) for folder in saved["item"]
                for item in folder["item"]]
    covered = {_template_of(method, path, operations) for method, path in requests}
    missing = sorted(operations - covered)
    assert missing == [], f"operations without a request in docs/postman/collection.py: {missing}"
    assert {("GET", "/" + "/".join(path)) for method, path in requests if method == "GET"} >= \
        {("GET", path) for path in HEALTH_PATHS}


def test_every_request_has_tests_and_saved_examples() -> None:
    saved = json.loads(collection.COLLECTION_FILE.read_text())
    for folder in saved["item"]:
        for item in folder["item"]:
            tests = "\n".join(line for e in item["event"] if e["listen"] == "test" for line in e["script"]["exec"])
            assert re.search(r"\bpm\.test\(", tests), item["name"]
            assert item["response"], f"{item['name']}: no saved example (PGBOURSE_POSTMAN_WRITE=1 writes them)"
            assert all(example["originalRequest"]["url"]["raw"].startswith("{{baseUrl}}")
                       for example in item["response"])


def test_the_json_files_are_what_collection_py_writes() -> None:
    assert collection.check() == [], "docs/postman/*.json differ from collection.py: " \
        "PGBOURSE_POSTMAN_WRITE=1 .venv/bin/python -m pytest tests/docs/test_postman.py"
