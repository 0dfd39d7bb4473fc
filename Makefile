# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_VENV ?= .venv-bench

.PHONY: demo test lint test-quick bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ziggurat execute recipes/hillshade.yaml --overwrite

# lint and type checks first (seconds), then the whole suite; CI runs exactly this
test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src processes tests bench
	$(VENV)/bin/mypy

# the quick loop while developing: no clusters, no kill -9 runs
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# A separate environment, so mapchete (the comparison) never leaks into runtime or tests.
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_VENV)/.installed

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/run.py
	$(BENCH_VENV)/bin/python bench/pyramid.py
	$(BENCH_VENV)/bin/python bench/s3.py
	$(BENCH_VENV)/bin/python bench/ledger_keys.py
	$(BENCH_VENV)/bin/python bench/merge.py
	$(BENCH_VENV)/bin/python bench/faults.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) output bench/.cache .mypy_cache .ruff_cache
