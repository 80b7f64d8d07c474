"""load-test/report.py: measures briefly (its --quick engine and HTTP runs, real programs against a
real exchange), then renders the page, the plots and the README block from what was measured."""
from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from exchange_project.processes import ROOT

REPORT = ROOT / "load-test" / "report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "load-test"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "load-test" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_per_second_samples_and_the_histogram_count_every_sample() -> None:
    series = load("series")
    # given answers at 0.1 s, 0.5 s and 2.2 s (none in second 1), the first of 3 items
    samples = [(0.1, 0.010, 3), (0.5, 0.030, 1), (2.2, 0.200, 1)]
    # when they are grouped by second and counted on bins
    per = series.per_second(samples)
    hist = series.histogram([lat for _, lat, _ in samples])
    # then every second is there, with what completed in it and its latencies
    assert [s["t"] for s in per] == [0, 1, 2]
    assert [s["completed"] for s in per] == [4, 0, 1]
    assert per[0]["p50_ms"] == 30.0 and per[0]["max_ms"] == 30.0 and per[1]["p50_ms"] is None
    assert sum(hist["counts"]) == 3 and len(hist["edges_ms"]) == len(hist["counts"]) + 1
    assert hist["edges_ms"][0] <= 10.0 < hist["edges_ms"][1] and hist["edges_ms"][-2] <= 200.0 < hist["edges_ms"][-1]


def test_a_quick_run_renders_a_page_plots_and_readme_block_of_what_it_measured(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # given the quick engine and HTTP benchmarks, just measured
    done = subprocess.run([sys.executable, str(REPORT), "run", "--quick", "--only", "engine,http_2000",
                           "--results", str(results), "--port", str(free_port())],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    engine = json.loads((results / "engine.json").read_text())
    http = json.loads((results / "http_2000.json").read_text())
    run = http["result"]["runs"][0]
    assert engine["quick"] and engine["result"]["bare_ops_per_s"] > 0
    assert run["timeseries"] and sum(run["latency_histogram"]["counts"]) == run["completed"]
    assert "--json" not in http["command"]
    readme = tmp_path / "README.md"
    readme.write_text("# pgbourse\n\nbefore\n<!-- performance:begin -->\nold table\n<!-- performance:end -->\nafter\n")
    without = tmp_path / "OTHER.md"
    without.write_text("# no markers here\n")
    page = tmp_path / "docs" / "performance.md"

    # when the page is rendered from them, into a README with the markers and one without
    for target in (readme, without):
        done = subprocess.run([sys.executable, str(REPORT), "render", "--results", str(results), "--out", str(page),
                               "--readme", str(target)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # then the page carries the measured values, each beside its command, and shows the plots
    text = page.read_text()
    report = load("report")
    assert report.num(engine["result"]["bare_ops_per_s"]) + " ops/s" in text
    assert f"completed **{report.num(run['completed_rate'])}/s**" in text
    assert f"p50 **{report.ms(run['p50_ms'])}**" in text and f"p99 {report.ms(run['p99_ms'])}" in text
    assert f"`{http['command']}`" in text and "quick run" in text
    assert engine["commit"] in text
    rate = int(run["offered_rate"])
    for png in (f"http_{rate}_over_time.png", f"http_{rate}_histogram.png"):
        path = page.parent / "performance" / png
        assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000
        assert f"(performance/{png})" in text
    # the README's block is the headline table, the rest of it as it was; no markers, no change
    new = readme.read_text()
    assert new.startswith("# pgbourse\n\nbefore\n<!-- performance:begin -->") and new.endswith(
        "<!-- performance:end -->\nafter\n")
    assert "old table" not in new and f"p50 {report.ms(run['p50_ms'])}" in new
    assert "(docs/performance.md)" in new
    assert without.read_text() == "# no markers here\n"
