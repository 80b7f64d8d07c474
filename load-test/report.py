#!/usr/bin/env python3
"""docs/performance.md from measurements: `run` runs the standard benchmarks and keeps what each
measured, `render` writes the page, its plots and the README's headline table from that.

    make report                                            # run, then render
    .venv/bin/python load-test/report.py run               # every standard benchmark (~25 min here)
    .venv/bin/python load-test/report.py run --only http_2000,ws_entry
    .venv/bin/python load-test/report.py run --quick --results /tmp/r     # short versions: a smoke test
    .venv/bin/python load-test/report.py render            # docs/performance.md + docs/performance/*.png
    .venv/bin/python load-test/report.py render --results /tmp/r --out /tmp/r/performance.md --readme ''

run: each benchmark below as its own program, as anyone runs it, with --json; what it wrote is
kept as docs/performance/results/<name>.json (raw measured results, committed), wrapped with the
exact command, when it ran (UTC), the commit, the load average before it and how busy the whole
machine was meanwhile and how much of its CPU the host took (steal, load-test/machine.py). The
machine and the software (CPU, memory, kernel, Python, engine build, PostgreSQL, granian) go to
results/machine.json. A benchmark that fails is reported and the others still run (exit 1).
  engine      bench_engine.py --ops 300000 --seed 1 --resting 10000 --build-in-loop
  http_2000   run_http_bench.py --server granian --endpoints orders --rates 2000 --duration 60
              --connections 512 (its own worker and granian on a fresh database)
  ws_entry    ws_bench.py entry --batch 500 --window 8 --duration 60, against a worker and granian
              that this program starts on a fresh database (pgbourse_bench_report_ws)
  load_orders fixtures/gen_orders.py (its default file: 100,000 limit orders and a sweep), then
              manage.py load_orders FILE --via ws, --via http and --via direct, each against a
              fresh database (pgbourse_bench_report_load)
  restart     restart_bench.py --orders 1000000 --runs 3
  chaos       chaos.py (every scenario, each on an exchange and PostgreSQL of its own)
--quick runs each briefly (seconds, small files): it shows that the chain works, not how fast.
The exchange under test listens on --port and the next six ports (default 8730..8736).

render: reads results/*.json and writes --out (default docs/performance.md): a table of
figure | value | command, where each value is read from its result (with the machine's load
while it ran); per-second throughput and latency p50/p95/p99 of the HTTP run at 2,000/s and of
the WebSocket entry run, and a histogram of each one's latencies, as PNGs beside it (matplotlib,
Agg: no display); the machine, date and commit. Figures of long benchmarks that `run` does not
repeat (the 10-million-trade analytics) are a short hand-kept section, each with its command.
It also rewrites the block between the README's `<!-- performance:begin -->` and
`<!-- performance:end -->` lines with a small headline table (without the markers it says so
and leaves the README alone; --readme '' skips it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD_TEST = ROOT / "load-test"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(LOAD_TEST))

import machine  # load-test/machine.py

PY = sys.executable
RESULTS = ROOT / "docs" / "performance" / "results"
PAGE = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
BENCH_BUDGET = "1000000/s"  # the benchmark's own keys must never be what limits it
DEFAULT_PORT = 8730


# -- run -----------------------------------------------------------------------------------------

@dataclass
class Context:
    quick: bool
    port: int
    results: Path
    work: Path  # scratch files (the order file, logs)


def shown(cmd: list[str]) -> str:
    """A command as anyone types it from the checkout: python for this interpreter, paths relative,
    without the --json FILE that hands its figures to this program (it prints them too)."""
    out: list[str] = []
    for part in cmd:
        if out and out[-1] == "--json":
            out.pop()
        elif part == PY:
            out.append(".venv/bin/python")
        elif part.startswith(str(ROOT) + "/"):
            out.append(part[len(str(ROOT)) + 1:])
        else:
            out.append(part)
    return shlex.join(out)


def run_program(cmd: list[str], env: dict[str, str] | None = None, key: str = "") -> str:
    """Runs one benchmark program, its output shown as it comes (and returned); ``key``, an API
    key on its command line, is shown as KEY."""
    print(f"$ {shown([c if c != key else 'KEY' for c in cmd])}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"  {line}", end="", flush=True)
        lines.append(line)
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"{shown([c if c != key else 'KEY' for c in cmd])} exited with {code}")
    return "".join(lines)


def commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    # Results and pages are outputs: only a change elsewhere makes the measured code differ from the commit.
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/performance", ":!docs/performance.md")
    return {"commit": git("rev-parse", "--short=10", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "uncommitted_changes": bool(dirty)}


@contextmanager
def exchange(db: str, port: int) -> Iterator[tuple[dict[str, str], str]]:
    """The matching worker and granian on a fresh database ``db`` (as run_http_bench.py starts
    them), with an admin key whose budgets are far above any load here. Yields (the environment
    naming that database, the key)."""
    import run_http_bench as rhb

    from exchange_project import pgembed
    from exchange_project.processes import child_env, metrics_dir

    pgembed.ensure_running(quiet=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange_project.settings")  # server_command() reads them
    env = child_env({"DATABASE_URL": rhb.database_url(db)})
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir(f"report-{db}")
    rhb.prepare_database(db, True, env)
    done = subprocess.run([PY, str(ROOT / "manage.py"), "create_api_key", "--client", "report-admin", "--role",
                           "admin", "--rotate", "--json", "--name", "report.py", "--orders-rate", BENCH_BUDGET,
                           "--commands-rate", BENCH_BUDGET, "--reads-rate", BENCH_BUDGET],
                          env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    key = str(json.loads(done.stdout.strip().splitlines()[-1])["report-admin"])
    # A port whose last connections are in TIME_WAIT cannot be bound for up to a minute.
    deadline = time.monotonic() + 90
    while not rhb.port_is_free(port) and time.monotonic() < deadline:
        time.sleep(1)
    stack = rhb.Stack(argparse.Namespace(clients=0, port=port, server="granian", workers=1, variant="fast"), env)
    try:
        stack.start()
        rhb.checkpoint(db)  # what an earlier run left dirty is written out before this one
        yield env, key
    finally:
        stack.stop()


def bench_engine(ctx: Context, out: Path) -> list[str]:
    size = ["--ops", "20000", "--resting", "2000"] if ctx.quick else ["--ops", "300000", "--resting", "10000"]
    cmd = [PY, str(LOAD_TEST / "bench_engine.py"), *size, "--seed", "1", "--build-in-loop", "--json", str(out)]
    run_program(cmd)
    return cmd


def bench_http_2000(ctx: Context, out: Path) -> list[str]:
    shape = (["--rates", "300", "--duration", "4", "--warmup", "1", "--connections", "64"] if ctx.quick else
             ["--rates", "2000", "--duration", "60", "--connections", "512"])
    cmd = [PY, str(LOAD_TEST / "run_http_bench.py"), "--server", "granian", "--endpoints", "orders", *shape,
           "--port", str(ctx.port), "--db", "pgbourse_bench_report_http", "--json", str(out)]
    run_program(cmd)
    return cmd


def bench_ws_entry(ctx: Context, out: Path) -> list[str]:
    port = ctx.port + 1
    with exchange("pgbourse_bench_report_ws", port) as (env, key):
        cmd = [PY, str(LOAD_TEST / "ws_bench.py"), "--url", f"ws://127.0.0.1:{port}/stream", "--api-key", key,
               "entry", "--batch", "500", "--window", "8", "--duration", "5" if ctx.quick else "60",
               "--json", str(out)]
        run_program(cmd, env, key)
    return [c if c != key else "KEY" for c in cmd]  # the key is this run's, and no one else's business


def bench_fanout(ctx: Context, out: Path) -> list[str]:
    port = ctx.port + 6
    with exchange("pgbourse_bench_report_fanout", port) as (env, key):
        shape = (["--subscribers", "20", "--rate", "100", "--duration", "4"] if ctx.quick else
                 ["--subscribers", "500", "--rate", "1000", "--duration", "30"])
        cmd = [PY, str(LOAD_TEST / "ws_bench.py"), "--url", f"ws://127.0.0.1:{port}/stream", "--api-key", key,
               "fanout", *shape, "--json", str(out)]
        run_program(cmd, env, key)
    return [c if c != key else "KEY" for c in cmd]


def bench_load_orders(ctx: Context, out: Path) -> list[str]:
    port = ctx.port + 2  # and the next two
    orders = ctx.work / "orders.jsonl"
    gen = [PY, str(ROOT / "fixtures" / "gen_orders.py"), "--out", str(orders), *(["--orders", "5000"] if ctx.quick
                                                                                    else [])]
    started = time.monotonic()
    run_program(gen)
    figures: dict[str, Any] = {"gen_orders": {"command": shown(gen), "seconds": time.monotonic() - started,
                                              "orders": sum(1 for _ in orders.open())}}
    for n, via in enumerate(("ws", "http", "direct")):
        with exchange("pgbourse_bench_report_load", port + n) as (env, key):
            part = ctx.work / f"load_orders_{via}.json"
            cmd = [PY, str(ROOT / "manage.py"), "load_orders", str(orders), "--via", via, "--url",
                   f"http://127.0.0.1:{port + n}", "--key", key, "--json", str(part)]
            cpu0 = machine.CpuTimes.now()
            # Not a line per order from the in-process path (--via direct logs as the web processes do).
            run_program(cmd, {**env, "LOG_LEVEL": "WARNING"}, key)
            busy, steal = machine.usage(cpu0, machine.CpuTimes.now())
            figures[via] = {"command": shown([c if c != key else "KEY" for c in cmd]),
                            "machine_busy_pct": busy, "steal_pct": steal, **json.loads(part.read_text())}
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return gen


def bench_restart(ctx: Context, out: Path) -> list[str]:
    size = ["--orders", "20000", "--runs", "1"] if ctx.quick else ["--orders", "1000000", "--runs", "3"]
    cmd = [PY, str(LOAD_TEST / "restart_bench.py"), *size, "--db", "pgbourse_bench_report_restart",
           "--json", str(out)]
    run_program(cmd)
    return cmd


def bench_chaos(ctx: Context, out: Path) -> list[str]:
    what = ["--short", "db-stop", "worker-kill"] if ctx.quick else []
    cmd = [PY, str(LOAD_TEST / "chaos.py"), *what, "--port", str(ctx.port + 5), "--json", str(out)]
    run_program(cmd)
    return cmd


BENCHMARKS: dict[str, Callable[[Context, Path], list[str]]] = {
    "engine": bench_engine, "http_2000": bench_http_2000, "ws_entry": bench_ws_entry, "fanout": bench_fanout,
    "load_orders": bench_load_orders, "restart": bench_restart, "chaos": bench_chaos,
}


def software() -> dict[str, Any]:
    """The engine build, PostgreSQL's version and the servers' packages, as this checkout runs them."""
    from exchange_project import pgembed

    pgembed.ensure_running(quiet=True)
    import psycopg

    with psycopg.connect(**pgembed.connection_params("postgres")) as conn:  # type: ignore[arg-type]
        row = conn.execute("SHOW server_version").fetchone()
    engine = subprocess.run([PY, "-c", "import matching.engine as e; print(e.ENGINE_BUILD)"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    versions = {name: importlib.metadata.version(name) for name in ("granian", "uvloop", "Django", "psycopg")}
    return {"engine": engine, "postgres": row[0] if row else None, **versions}


def cmd_run(a: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if not a.only else [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    a.results.mkdir(parents=True, exist_ok=True)
    work = ROOT / "var" / "report"
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=a.quick, port=a.port, results=a.results, work=work)
    (a.results / "machine.json").write_text(json.dumps(
        {**machine.describe(), **software(), **commit(), "measured_at": now_utc()}, indent=2) + "\n")
    failed = []
    for name in names:
        print(f"\n== {name} ==", flush=True)
        raw = work / f"{name}.json"
        load1 = os.getloadavg()[0]
        started = now_utc()
        cpu0 = machine.CpuTimes.now()
        wall0 = time.monotonic()
        try:
            cmd = BENCHMARKS[name](ctx, raw)
        except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
            print(f"{name} FAILED: {exc}", flush=True)
            failed.append(name)
            continue
        busy, steal = machine.usage(cpu0, machine.CpuTimes.now())
        wrapped = {"name": name, "command": shown(cmd), "quick": a.quick, "started_at": started,
                   "seconds": round(time.monotonic() - wall0, 1), "load1_before": load1,
                   "machine_busy_pct": busy, "steal_pct": steal, **commit(),
                   "result": json.loads(raw.read_text())}
        (a.results / f"{name}.json").write_text(json.dumps(wrapped, indent=2) + "\n")
        print(f"{name}: kept in {a.results / (name + '.json')}", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)} (their earlier results, if any, are kept)")
    return 1 if failed else 0


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- render --------------------------------------------------------------------------------------

def load_results(path: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(path.glob("*.json"))}


def num(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"


def load_note(r: dict[str, Any]) -> str:
    return (f"machine {r['machine_busy_pct']:.0f}% busy, steal {r['steal_pct']:.0f}%, "
            f"load1 {r['load1_before']:.2f} before; {r['started_at']}")


def quick_note(r: dict[str, Any]) -> str:
    return " **(quick run: a smoke test, not a measurement to compare)**" if r.get("quick") else ""


@dataclass
class Row:
    figure: str
    value: str
    command: str
    headline: str = ""  # the figure's short form for the README, if it is a headline


def engine_rows(r: dict[str, Any]) -> list[Row]:
    e = r["result"]
    lat = e["latency_us"]
    rows = [Row(f"matching engine, realistic mix over ~{e['resting']:,} resting orders, one core ({e['engine']})",
                f"**{num(e['bare_ops_per_s'])} ops/s** (bare loop); per command p50 {lat['p50']:.2f} µs, "
                f"p99 {lat['p99']:.2f} µs, p99.9 {lat['p99.9']:.2f} µs; {e['events_per_op']:.2f} events/op "
                f"({load_note(r)}){quick_note(r)}", r["command"], f"{num(e['bare_ops_per_s'])} ops/s")]
    entries = e.get("replayed_ops_per_s")
    if entries:
        rows.append(Row("matching engine, the same stream through each entry, the commands built in the timed "
                        "loop from plain values",
                        f"flat `place_values(...)` **{num(entries.get('flat'))} commands/s**; `Place(...)` built in "
                        f"the loop {num(entries.get('dataclasses'))}; pre-built through `apply` "
                        f"{num(entries.get('prebuilt'))} (machine {entries['machine_busy_pct']:.0f}% busy, steal "
                        f"{entries['steal_pct']:.0f}%){quick_note(r)}", r["command"]))
    return rows


def http_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for run in r["result"]["runs"]:
        c = run["cpu_ms_per_req"]
        t = run["cpu"]
        # Per request only when most were answered: over a handful, it is the whole run's CPU.
        cpu = (f"CPU per request: server {c['server']:.2f}, worker {c['worker']:.2f}, PostgreSQL {c['postgres']:.2f}, "
               f"generator {c['generator']:.2f} ms" if run["completed_rate"] >= 0.5 * run["offered_rate"] else
               f"CPU over the run: server {t['server']:.1f}, worker {t['worker']:.1f}, PostgreSQL {t['postgres']:.1f}, "
               f"generator {t['generator']:.1f} s in {t['wall']:.0f} s")
        errors = f" {run['error_kinds']}" if run["errors"] else ""
        rows.append(Row(
            f"HTTP durable path (`POST /orders`, realistic mix: 201/200 after commit) at {run['offered_rate']:,.0f}/s "
            f"offered for {run['duration_s']:g} s, {run['connections']} connections",
            f"completed **{num(run['completed_rate'])}/s**, **{run['errors']:,} errors**{errors}, p50 "
            f"**{ms(run['p50_ms'])}**, p95 {ms(run['p95_ms'])}, p99 {ms(run['p99_ms'])}, max {ms(run['max_ms'])} "
            f"(from the scheduled send time); {run['refused']:,} cancels/modifies refused with 409 (the order had "
            f"filled first); {cpu} ({load_note(r)}){quick_note(r)}",
            r["command"],
            f"{num(run['completed_rate'])}/s, {run['errors']:,} errors, p50 {ms(run['p50_ms'])}, "
            f"p99 {ms(run['p99_ms'])}"))
    return rows


def ws_rows(r: dict[str, Any]) -> list[Row]:
    w = r["result"]
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(w["statuses"].items()))
    return [Row(f"WebSocket order entry, one pipelining client, {w['batch']}-order messages, {w['window']} in "
                f"flight, for {w['duration_s']:g} s",
                f"**{num(w['orders_per_s'])} orders/s** ({w['acked']:,} acknowledged in {w['elapsed_s']:.1f} s; "
                f"{statuses}); message → its acks p50 {ms(w['p50_ms'])}, p95 {ms(w['p95_ms'])}, p99 "
                f"{ms(w['p99_ms'])}, max {ms(w['max_ms'])} ({load_note(r)}){quick_note(r)}",
                f"{r['command']} (KEY: an admin key; against a worker and granian on an empty database, as "
                "`report.py run` starts them)",
                f"{num(w['orders_per_s'])} orders/s")]


def fanout_rows(r: dict[str, Any]) -> list[Row]:
    f = r["result"]
    lat = f.get("commit_to_client_ms")
    seen = (f"commit → client p50 **{ms(lat['p50'])}**, p99 **{ms(lat['p99'])}**, max {ms(lat['max'])}"
            if lat else "commit → client not measured")
    match = f.get("match_to_client_ms")
    if match:
        seen += f"; worker's match → client p99 {ms(match['p99'])}"
    return [Row(f"market data (trades, ticker, book) to {f['subscribers']:,} WebSocket subscribers while orders "
                f"arrive at {f['rate']:,.0f}/s, for {f['duration_s']:g} s",
                f"{seen}; {f.get('events_per_s', 0):,.0f} events/s to all clients in {f['frames']:,} frames, "
                f"resync_required {f['resync_required']}, {f['acked']:,} orders acked ({load_note(r)})"
                f"{quick_note(r)}",
                f"{r['command']} (KEY: an admin key; against a worker and granian on an empty database)",
                (f"p99 {ms(lat['p99'])} commit → client, {f['subscribers']:,} subscribers at {f['rate']:,.0f} orders/s"
                 if lat else "not measured"))]


def load_orders_rows(r: dict[str, Any]) -> list[Row]:
    lo = r["result"]
    gen = lo["gen_orders"]
    rows = [Row("`fixtures/gen_orders.py`: a seeded file of limit orders (log-normal distance from the mid, Pareto "
                "sizes, Zipf clients) and a sweep", f"{gen['orders']:,} orders written in {gen['seconds']:.1f} s"
                f"{quick_note(r)}", gen["command"])]
    for via in ("ws", "http", "direct"):
        if via not in lo:
            continue
        s = lo[via]
        lat = s["latency_ms"]
        rejected = f", rejected {s['rejected']:,} {s['rejected_by_code']}" if s["rejected"] else ", none rejected"
        rows.append(Row(f"that file replayed by `manage.py load_orders --via {via}` on an empty database",
                        f"**{s['orders']:,} orders in {s['elapsed_s']:.1f} s = {num(s['orders_per_s'])} orders/s**; "
                        f"accepted (201) {s['accepted']:,}, pending (202) {s['pending']:,}{rejected}; "
                        f"{s['trades']:,} trades; latency per {s['latency_of']}: p50 {ms(lat['p50'])}, p99 "
                        f"{ms(lat['p99'])}, max {ms(lat['max'])} (machine {s['machine_busy_pct']:.0f}% busy, steal "
                        f"{s['steal_pct']:.0f}%){quick_note(r)}",
                        f"{s['command']} (KEY: an admin key)",
                        f"{s['orders']:,} orders in {s['elapsed_s']:.1f} s" if via == "ws" else ""))
    return rows


def restart_rows(r: dict[str, Any]) -> list[Row]:
    x = r["result"]
    runs = x["runs"]
    walls = " / ".join(f"{run['wall_s']:.2f}" for run in runs)
    rss = max(run["rss_mb"] for run in runs)
    return [Row(f"matching worker restart to ready with {x['orders']:,} open orders (lock, every book rebuilt and "
                "checked, direct path advertised)",
                f"**{x['median_wall_s']:.2f} s** median from the process start ({walls} s in {len(runs)} starts), "
                f"{x['median_rebuild_s']:.2f} s of it rebuilding; RSS up to {rss:,.0f} MB ({load_note(r)})"
                f"{quick_note(r)}", r["command"], f"{x['median_wall_s']:.2f} s with {x['orders']:,} open orders")]


def chaos_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for s in r["result"]:
        holds = (s["lost"] == 0 and s["duplicated"] == 0 and s["failed_yet_executed"] == 0 and s["timed_out"] == 0
                 and s["book_check"])
        answered = ", ".join(f"{k}: {v:,}" for k, v in s["answered"].items())
        back = "-" if s["back_after_s"] is None else f"{s['back_after_s']:.2f} s"
        # From each request's schedule, the wait for one of the generator's connections included;
        # the exchange's own part runs from the request's writing.
        worst = f"{s['worst_latency_s']:.2f} s"
        if "worst_service_s" in s:
            worst += f" ({s['worst_service_s']:.2f} s from its writing)"
        rows.append(Row(f"fault under load: `{s['scenario']}` at {s['rate']:,.0f} requests/s",
                        f"**{'holds' if holds else 'BROKEN'}**: lost {s['lost']}, duplicated {s['duplicated']}, "
                        f"failed-yet-executed {s['failed_yet_executed']}, timed out {s['timed_out']}, book check "
                        f"{'ok' if s['book_check'] else 'FAILED'}; back {back} after the fault; worst latency "
                        f"{worst}; {s['offered']:,} offered ({answered}){quick_note(r)}",
                        f"{r['command']} (the scenario alone: `chaos.py {s['scenario']}`)"))
    if rows:
        rows[0].value += f" ({load_note(r)}, over all the scenarios)"
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "engine": engine_rows, "http_2000": http_rows, "ws_entry": ws_rows, "fanout": fanout_rows,
    "load_orders": load_orders_rows,
    "restart": restart_rows, "chaos": chaos_rows,
}
HEADLINES = {"engine": "matching engine, one core", "http_2000": "HTTP orders at 2,000/s for 60 s",
             "ws_entry": "WebSocket order entry", "fanout": "market data over the WebSocket",
             "load_orders": "100k-order file over the WebSocket",
             "restart": "restart to ready"}

# Long benchmarks that `run` does not repeat (the history alone takes ~9 minutes to build):
# their figures, kept by hand from their last run on this machine until they write JSON.
HAND_KEPT = """\
## Kept by hand: long benchmarks `make report` does not run

From their last runs on a 2-core host like the one above, while other work ran on it (`git log -p
docs/performance.md` has when); rerun the commands to refresh these rows.

| figure | value | command |
| --- | --- | --- |
| Analytics over 10,000,000 trades (10 days of BENCH-USD, 410,001 orders, 10,000 resting): 1 day of 1m klines (`/klines?interval=1m&start=<24 h ago>&limit=1500`, ~1,420 rows, 417 KB) | p50 21.2 ms, p95 39.5 ms, max 98.1 ms (goal < 50 ms) | `.venv/bin/python load-test/analytics_bench.py` (builds the history once, ~9 min, then measures 50 requests after 5 unmeasured over one keep-alive connection) |
| same history: 24 h ticker (`/ticker/24h`) | p50 15.2 ms, p95 34.0 ms, max 49.5 ms (goal < 50 ms) | the same |
| same history: VWAP of the last 24 h / of the whole 10 days (`/analytics/vwap?window=24h`, `from=0`) | p50 8.6 / 6.6 ms, p95 21.5 / 17.6 ms | the same |
| same history: 7 days of 1h klines / 1 day of 1m klines with `fill=previous` / a client's positions | p50 6.7 / 13.6 / 4.4 ms, p95 19.4 / 41.9 / 16.6 ms | the same |
| same history: the floor, `GET /instruments` (no analytics) | p50 3.6 ms, p95 9.0 ms, max 20.0 ms | the same |
| `manage.py analytics_check` over the 10,000,000 trades (one at a time through the pure folds) / with `--rebuild` | 316 s / 344 s | `.venv/bin/python load-test/analytics_bench.py --check` |
| matching engine, realistic mix over ~10,000 resting orders, bare loop: `e4fad18` (before the engine became its own package with a flat entry) / main (`0475dfd`), 3 alternating pairs on the Intel Xeon host, 2026-12-03 18:48 UTC | 1,086,411 / 1,134,964, 1,044,631 / 1,087,210, 1,089,865 / 1,139,801 ops/s: main / `e4fad18` median **1.045** (1.041-1.046), the same stream (4.37 events and 0.54 trades per command) | `.venv/bin/python load-test/bench_engine.py --ops 300000 --resting 10000 --seed 1` in a checkout of each commit, its engine compiled there (`make engine`) |
| the worker's pure part per order (match, rows, answers, market events; 0.44 trades per order), without / with the aggregates | 26.4 / 29.8 µs of CPU (7 rounds of 50,000 orders; the spread between rounds, 23-31 µs, is larger than the difference) | `.venv/bin/python load-test/bench_batch.py --rounds 9 --batches 400` |

## Before and after: alternating runs

`e4fad18` is main before the structure, operations, faults, security and analytics work; the
others are main (`7dc21ed`) with one setting changed. One command after the other, in turn,
each exchange on a wiped database (the HTTP runs start their own), 2026-12-03 06:40-07:30 UTC on
a 2 vCPU AMD EPYC host; the per-order lines' row, at `0ce0936`, on the Intel Xeon host above. Run to run, the same command varied by up to 30% on these hosts; the
ratios are of the runs made next to each other.

| comparison | WebSocket entry, orders/s | HTTP at 2,000/s: completed/s; p50; web CPU per request |
| --- | --- | --- |
| `e4fad18` / main (keys, limits, metrics on) | 7 pairs: median 8,403 / 8,780; main / `e4fad18` median **1.05** (0.90-1.14) | 3 pairs: 1,999 / 1,998-1,999 (all sustained); 13.5 / 20.5 ms; **0.30 / 0.35 ms** |
| main, `PGBOURSE_METRICS=off` / main | 6 pairs: main / off median **0.986** (0.95-1.08) | 2 pairs: 1,998 / 1,998; 21.5 / 20.5 ms; 0.35 / 0.355 ms |
| main, `PGBOURSE_AUTH=off PGBOURSE_RATE_LIMITS=off` / main | (on against `e4fad18`, which has no keys: above) | 2 pairs: 1,998-1,999 / 1,998; 21.0 / 20.5 ms; 0.335 / 0.355 ms (+6%) |
| main (`0ce0936`), `LOG_ORDER_LEVEL=INFO` / WARNING, 2026-12-03 17:43-18:31 UTC (`python load-test/ab_entry.py --a [LOG_FORMAT=json] LOG_ORDER_LEVEL=WARNING --b [LOG_FORMAT=json] LOG_ORDER_LEVEL=INFO --pairs 4 --duration 15`) | JSON, 4 pairs: median **0.967** (0.934-0.984); text, 8 pairs: median **0.945** (0.808-0.977); in process 2.5 µs (JSON) / 2.4 µs (text) of CPU per order (`python load-test/ops_cost.py --orders 600 --repeat 100`) | text and JSON, 4 pairs each: completed/s 1,997-1,999 at both levels (median of the pairs 1.00); p50 19.5 / 19.75 ms (text), 18.75 / 17.5 ms (JSON); web CPU per request 0.30-0.33 / 0.30-0.32 ms |

Met: the metrics cost about 1.5% (goal: within 3%), keys and limits 6% of the web process's CPU and
nothing of the throughput (within 10%), and the whole change keeps both benchmarks'
throughput. What it costs: 0.05 ms more web CPU per HTTP order (17%), and a higher HTTP p50 at
2,000/s (20 against 14 ms), with the same throughput. The per-order lines at INFO (goal: within
5%): within it in JSON on both benchmarks (0.967 on the WebSocket entry, no cost on the HTTP run),
just over it in text on the WebSocket entry (0.945 by the median of 8 pairs); WARNING, the default, stays what a busy venue should run
(docs/operations.md, "Logs").

Commands: `python load-test/ws_bench.py --url ws://127.0.0.1:8800/stream entry --batch 500
--window 8 --duration 30` against `manage.py runexchange --port 8800` (after `python -m
exchange_project.pgembed wipe`), and `python load-test/run_http_bench.py --server granian
--endpoints orders --rates 2000 --duration 30 --connections 512`, each in a checkout of the
commit, with the settings in the environment of both.
"""


def plot_run(name: str, title: str, series: list[dict[str, Any]], hist: dict[str, Any], unit: str,
             marks: dict[str, float | None], out_dir: Path) -> list[str]:
    """Two PNGs: per-second throughput and latency percentiles, and the latency histogram with
    the run's own percentiles (``marks``, ms) drawn on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axis import Axis
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    def plain_log(axis: Axis) -> None:
        # Ticks at 1, 2 and 5 of every decade, written 200, not 2 x 10^2: legible when a run's
        # latencies span less than one decade too.
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
        axis.set_minor_locator(NullLocator())

    files = []
    t = [s["t"] for s in series]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, constrained_layout=True)
    top.plot(t, [s["completed"] for s in series], color="tab:blue", linewidth=1.5)
    top.set_ylabel(f"{unit} per second")
    top.set_ylim(bottom=0)
    top.set_title(title)
    top.grid(alpha=0.3)
    for key, colour in (("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red")):
        pts = [(s["t"], s[key]) for s in series if s[key] is not None]
        bottom.plot([p[0] for p in pts], [p[1] for p in pts], label=key.removesuffix("_ms"), color=colour,
                    linewidth=1.2)
    bottom.set_yscale("log")
    plain_log(bottom.yaxis)
    bottom.set_ylabel("latency, ms (log scale)")
    bottom.set_xlabel("seconds into the measured run")
    bottom.legend(loc="best")
    bottom.grid(alpha=0.3, which="both")
    files.append(f"{name}_over_time.png")
    fig.savefig(out_dir / files[-1], dpi=100)
    plt.close(fig)

    edges, counts = hist["edges_ms"], hist["counts"]
    if counts:
        fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
        widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color="tab:blue", edgecolor="white", linewidth=0.3)
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        for (label, value), colour in zip(marks.items(), ("tab:green", "tab:orange", "tab:red"), strict=False):
            if value is not None:
                ax.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{label} {ms(value)}")
        ax.legend(loc="upper left")
        ax.set_xlabel("latency, ms (log scale)")
        ax.set_ylabel("count")
        ax.set_title(f"{title}: latency distribution ({sum(counts):,} samples)")
        ax.grid(alpha=0.3, which="both")
        files.append(f"{name}_histogram.png")
        fig.savefig(out_dir / files[-1], dpi=100)
        plt.close(fig)
    return files


def marks(summary: dict[str, Any]) -> dict[str, float | None]:
    return {"p50": summary["p50_ms"], "p95": summary["p95_ms"], "p99": summary["p99_ms"]}


def plots(results: dict[str, dict[str, Any]], out_dir: Path) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    if "http_2000" in results:
        for run in results["http_2000"]["result"]["runs"]:
            if run.get("timeseries"):
                title = f"HTTP POST /orders at {run['offered_rate']:,.0f}/s offered"
                out.append((title, plot_run(f"http_{int(run['offered_rate'])}", title, run["timeseries"],
                                            run["latency_histogram"], "requests answered", marks(run), out_dir)))
    if "ws_entry" in results and results["ws_entry"]["result"].get("timeseries"):
        w = results["ws_entry"]["result"]
        title = f"WebSocket order entry, {w['batch']}-order messages, {w['window']} in flight"
        out.append((title + " (latency: per message)",
                    plot_run("ws_entry", title, w["timeseries"], w["latency_histogram"], "orders acknowledged",
                             marks(w), out_dir)))
    return out


def table(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| figure | value | command |", "| --- | --- | --- |"]
    lines += [f"| {cell(r.figure)} | {cell(r.value)} | `{cell(r.command)}` |" for r in rows]
    return "\n".join(lines)


def machine_line(m: dict[str, Any]) -> str:
    mem = f", {m['memory_gib']:g} GiB" if m.get("memory_gib") else ""
    return (f"{m['cpus']} CPUs \"{m['cpu']}\"{mem}, {m['system']}; {m['python']}; engine {m.get('engine')}; "
            f"PostgreSQL {m.get('postgres')} (embedded); granian {m.get('granian')} with uvloop "
            f"{m.get('uvloop')}, Django {m.get('Django')}, psycopg {m.get('psycopg')}. Load average when the run "
            f"began: {m['load_average']}")


def render_page(results: dict[str, dict[str, Any]], out: Path, img_dir: Path) -> list[Row]:
    m = results.pop("machine", None)
    rows: list[Row] = []
    headlines: list[Row] = []
    for name, make in ROWS.items():
        if name in results:
            made = make(results[name])
            rows += made
            headlines += [Row(HEADLINES[name], r.headline, r.command) for r in made if r.headline]
    img_dir.mkdir(parents=True, exist_ok=True)
    figures = plots(results, img_dir)
    rel = os.path.relpath(img_dir, out.parent)
    commits = sorted({f"{r['commit']}{' (with uncommitted changes)' if r.get('uncommitted_changes') else ''}"
                      for r in results.values()})
    dates = sorted(r["started_at"] for r in results.values())
    parts = [
        "# Performance",
        "",
        "Written by `load-test/report.py render` from the raw results in `performance/results/` "
        "(`make report` measures them again and writes this page; `report.py --help` says how). Every value "
        "below is read from those results; the command beside it reproduces it.",
        "",
        f"- Machine: {machine_line(m) if m else 'not recorded'}.",
        f"- Measured: {dates[0]} to {dates[-1]}, at commit {', '.join(commits)}." if dates else "- Measured: -",
        "- Server, matching worker, PostgreSQL and the load generator share the machine's cores. Each value says "
        "how busy the whole machine was while it was measured and how much of its CPU the host took (steal, "
        "`load-test/machine.py`): on a shared machine other work shows there.",
        "",
        "## Figures",
        "",
        table(rows) if rows else "No results yet: `make report`.",
        "",
    ]
    for title, files in figures:
        parts += [f"## {title}", ""]
        parts += [f"![{title}: {f.removesuffix('.png').replace('_', ' ')}]({rel}/{f})" for f in files]
        parts += [""]
    if figures:
        parts += ["Per second of the measured window, by the time the answers came: what was answered, and the "
                  "p50, p95 and p99 of the latencies answered in that second (HTTP: each request from its "
                  "scheduled send time; WebSocket: each message from its sending to its acks).", ""]
    parts += [HAND_KEPT]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return headlines


def readme_block(headlines: list[Row], page: str) -> str:
    lines = [BEGIN, "", f"Measured by `make report` on a 2-core machine; every figure, its command, the machine "
             f"and the plots: [{page}]({page}).", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {r.figure} | {r.value} |" for r in headlines]
    return "\n".join([*lines, "", END])


def rewrite_readme(readme: Path, block: str) -> bool:
    text = readme.read_text()
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        print(f"{readme}: no {BEGIN} ... {END} block; left alone")
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + block + tail)
    return True


def cmd_render(a: argparse.Namespace) -> int:
    results = load_results(a.results)
    out = a.out
    img_dir = a.images or out.parent / "performance"
    headlines = render_page(results, out, img_dir)
    print(f"wrote {out} and its plots in {img_dir}")
    if a.readme:
        readme = Path(a.readme)
        rewrite_readme(readme, readme_block(headlines, os.path.relpath(out, readme.parent)))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the standard benchmarks, keep their results")
    r.add_argument("--quick", action="store_true", help="short versions (seconds): a smoke test")
    r.add_argument("--only", default="", help=f"comma list of {', '.join(BENCHMARKS)} (default all)")
    r.add_argument("--results", type=Path, default=RESULTS, help="where the results go (default %(default)s)")
    r.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="HTTP port of the exchange under test; the next six are used too (default %(default)s)")
    d = sub.add_parser("render", help="write docs/performance.md, its plots and the README block from the results")
    d.add_argument("--results", type=Path, default=RESULTS, help="default %(default)s")
    d.add_argument("--out", type=Path, default=PAGE, help="the page (default %(default)s)")
    d.add_argument("--images", type=Path, help="where the PNGs go (default: performance/ beside the page)")
    d.add_argument("--readme", default=str(README), help="README to put the headline table in ('' for none)")
    a = p.parse_args(argv)
    return cmd_run(a) if a.command == "run" else cmd_render(a)


if __name__ == "__main__":
    sys.exit(main())
