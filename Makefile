# pgbourse: `make run` starts the exchange, `make test` runs the test suite. Nothing else needed
# but Python 3.12+ and make: the virtualenv, pinned dependencies and an embedded PostgreSQL
# (under var/, when DATABASE_URL is unset) are set up on first use.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# First Python >= 3.12 found: $PYTHON, then python3.13/python3.12/python3 on PATH, then pyenv's.
PYTHON ?= $(shell for c in python3.13 python3.12 python3 $$HOME/.pyenv/versions/3.13*/bin/python3 $$HOME/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3; do \
	  p=$$(command -v $$c 2>/dev/null) || continue; \
	  $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null && { echo $$p; break; }; \
	done)

.PHONY: run test lint simulate venv engine db-start db-stop db-wipe lock bench-engine bench-http bench-ws report clean

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found; set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

venv: $(VENV)/.installed engine

# The matching engine compiled by mypyc from its own pure-Python source (matching/_native.py):
# built on first use and after any edit (the build is keyed by a hash of the sources, and a
# build for other sources is never loaded). Without a C compiler it warns and the interpreted
# engine runs. PGBOURSE_ENGINE=python skips it.
engine: $(VENV)/.installed
ifeq ($(PGBOURSE_ENGINE),python)
	@echo "PGBOURSE_ENGINE=python: the matching engine runs interpreted (not compiled)"
else
	@PGBOURSE_ENGINE=python $(PY) -m matching.engine._build
endif

run: venv
	$(PY) manage.py runexchange

# A living market on the exchange that `make run` serves (same PORT): market makers and takers
# through the real order path until Ctrl-C. SIMULATE_ARGS="--rate 50 --seed 7 --via ws" to vary it.
simulate: venv
	$(PY) manage.py simulate --url http://127.0.0.1:$(or $(PORT),8000) $(SIMULATE_ARGS)

# ruff over the project; mypy --strict over the pure engine, the contract and what is pure beside them
# (the record, the log lines, a batch, the journal, the trade aggregates, the feed's events).
lint: venv
	$(PY) -m ruff check --quiet .
	$(PY) -m mypy --strict --no-error-summary matching/engine matching/contract.py matching/records.py \
	  matching/loglines.py matching/worker/batch.py matching/journal.py matching/aggregates.py marketdata/analytics.py marketdata/feed.py

test: venv lint
	$(PY) -m pytest
	@# The engine's own tests again on the interpreted fallback, when the first run was compiled.
	@if $(PY) -c 'import matching.engine, sys; sys.exit(0 if matching.engine.ENGINE_BUILD.startswith("compiled") else 1)' 2>/dev/null; then \
	  echo "tests/matching again with the interpreted engine (PGBOURSE_ENGINE=python):"; \
	  PGBOURSE_ENGINE=python $(PY) -m pytest tests/matching -q -p no:cacheprovider; \
	fi

db-start: venv
	$(PY) -m exchange_project.pgembed start

db-stop: venv
	$(PY) -m exchange_project.pgembed stop

# Removes the embedded PostgreSQL's data (var/pgdata): every order, trade and snapshot.
db-wipe: venv
	$(PY) -m exchange_project.pgembed wipe

# Re-resolve requirements.in into the fully pinned requirements.txt.
lock: venv
	$(PY) -m pip install --quiet -r requirements.in
	$(PY) -m pip freeze --exclude-editable | grep -v '^pkg_resources' > requirements.txt

bench-engine: venv
	$(PY) load-test/bench_engine.py

bench-http: venv
	$(PY) load-test/http_load.py

bench-ws: venv
	$(PY) load-test/ws_bench.py

# The standard benchmarks (~25 min here), their raw results kept in docs/performance/results/,
# then docs/performance.md, its plots and the README's headline table written from them.
# REPORT_ARGS="--quick" for a smoke test; `load-test/report.py --help` says what runs.
report: venv
	$(PY) load-test/report.py run $(REPORT_ARGS)
	$(PY) load-test/report.py render

clean:
	rm -rf $(VENV) build/engine
