# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the demo needs the core only (no test, Dask, S3, Zarr extras)
CORE := $(VENV)/.installed-core
BENCH_VENV ?= .venv-bench
# odc-stac (the composite benchmark's peer) in an environment of its own
ODC_VENV ?= .venv-odc

.PHONY: demo test lint test-quick bench clean browser gdal screenshots bytecode

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(CORE)

$(STAMP): pyproject.toml $(CORE)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Bytecode for the editable sources: with PYTHONDONTWRITEBYTECODE set (as on these machines) every
# process would compile ziggurat from source (~0.3 s per run, forkserver and each worker start);
# compileall only recompiles what changed
bytecode: $(CORE)
	@$(PY) -m compileall -q src processes > /dev/null

demo: $(CORE) bytecode
	$(VENV)/bin/ziggurat execute recipes/hillshade.yaml --overwrite
	@echo "See it on a web map:  $(VENV)/bin/ziggurat serve output/hillshade   (then open http://127.0.0.1:8765/)"

# the browser test drives Debian's chromium; installed here where it can be (root, apt), else it skips
BROWSER := $(shell command -v chromium 2>/dev/null)
browser:
ifeq ($(BROWSER),)
	-@(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "chromium cannot be installed here: tests/test_serve.py's browser test will skip"
endif

# gdaldem, the reference the terrain kernels are tested against; installed where it can be, else
# those comparisons skip
GDALDEM := $(shell command -v gdaldem 2>/dev/null)
gdal:
ifeq ($(GDALDEM),)
	-@(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdal-bin) >/dev/null 2>&1 \
		|| echo "gdal-bin cannot be installed here: the gdaldem comparisons in tests/test_kernels.py will skip"
endif

# lint and type checks first (seconds), then the whole suite; CI runs exactly this
test: lint browser gdal bytecode
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src processes tests bench
	$(VENV)/bin/mypy

# docs/preview-*.png: the preview page of the demo output, in headless chromium
screenshots: $(STAMP) browser
	$(PY) docs/screenshots.py

# the quick loop while developing: no clusters, no kill -9 runs
test-quick: $(STAMP) bytecode
	$(PY) -m pytest -q -m "not slow"

# A separate environment, so mapchete (the comparison) never leaks into runtime or tests.
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_VENV)/.installed

$(ODC_VENV)/.installed:
	$(PYTHON) -m venv $(ODC_VENV)
	$(ODC_VENV)/bin/python -m pip install --quiet odc-stac 'dask[array]' distributed scipy bottleneck zarr
	touch $(ODC_VENV)/.installed

bench: $(BENCH_VENV)/.installed $(ODC_VENV)/.installed gdal
	@$(BENCH_VENV)/bin/python -m compileall -q src processes > /dev/null
	$(BENCH_VENV)/bin/python bench/run.py
	$(BENCH_VENV)/bin/python bench/tile_profile.py
	$(BENCH_VENV)/bin/python bench/schedule_sim.py
	$(BENCH_VENV)/bin/python bench/pyramid.py
	$(BENCH_VENV)/bin/python bench/s3.py
	$(BENCH_VENV)/bin/python bench/credentials.py
	$(BENCH_VENV)/bin/python bench/ledger_keys.py
	$(BENCH_VENV)/bin/python bench/ledger_resume.py
	$(BENCH_VENV)/bin/python bench/merge.py
	$(BENCH_VENV)/bin/python bench/stores.py
	$(BENCH_VENV)/bin/python bench/composite.py --odc-python $(ODC_VENV)/bin/python
	$(BENCH_VENV)/bin/python bench/kernels.py
	$(BENCH_VENV)/bin/python bench/faults.py
	$(BENCH_VENV)/bin/python bench/faults_bucket.py
	$(BENCH_VENV)/bin/python bench/ledger_remote.py
	$(BENCH_VENV)/bin/python bench/tile_commands.py
	$(BENCH_VENV)/bin/python bench/timeseries.py --odc-python $(ODC_VENV)/bin/python

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(ODC_VENV) output bench/.cache .mypy_cache .ruff_cache
