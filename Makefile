# The two commands of the README: `make run` and `make test`. Both install from the lock files
# (requirements.lock: runtime; requirements-dev.lock: runtime + the dev extra), which `make lock`
# writes from pyproject.toml; the Dockerfile installs requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 0.0.0.0
PORT   ?= 8000
# Redocly CLI lints openapi/openapi.json; npm (node 20+) installs it into openapi/lint/ exactly as
# openapi/lint/package-lock.json says.
REDOCLY := openapi/lint/node_modules/.bin/redocly

.PHONY: run test lint typecheck pytest openapi images bench clean lock openapi-lint

# uv resolves for CI's kind of machine (CPython 3.11, x86_64 Linux) whatever runs `make lock`,
# from PyPI alone, with the hashes of every file of each pinned release (so the image's Python,
# Debian's 3.13, installs the same releases' wheels). An existing pin is kept unless
# `make lock UPGRADE=1` (or a changed pyproject.toml) asks for another.
UV_VERSION := 0.13.8
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --generate-hashes \
	$(if $(UPGRADE),--upgrade) --custom-compile-command 'make lock'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The locked versions (hash-checked), then the project itself without resolving again.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# PyTorch is a test and benchmark peer only (tests/test_torch_parity.py, benchmarks/bench_http.py),
# never the server's: its CPU build, which pip takes from the machine's wheel directory. It is
# not in the lock (PyPI's Linux wheel of the same version is the CUDA build, GBs of downloads);
# what it requires is, in the dev extra.
TORCH_VERSION := 2.13.0

$(VENV)/.installed-dev: requirements-dev.lock pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip install --quiet --no-deps torch==$(TORCH_VERSION)
	touch $@ $(VENV)/.installed

$(BIN)/uv: | $(BIN)/activate
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

# The runtime lock is the dev lock's subset: what `make run` and the image install is what the
# tests ran on.
lock: | $(BIN)/uv
	$(LOCK) --extra dev -o requirements-dev.lock
	$(LOCK) --constraint requirements-dev.lock -o requirements.lock

run: $(VENV)/.installed
	$(BIN)/python -m initscope --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

test: lint typecheck openapi-lint pytest

openapi: $(VENV)/.installed
	$(BIN)/python scripts/export_openapi.py

$(REDOCLY): openapi/lint/package-lock.json
	npm ci --prefix openapi/lint --no-audit --no-fund --loglevel=error
	touch $@

# Redocly's recommended rules with every warning an error (recommended-strict); no telemetry.
openapi-lint: $(REDOCLY)
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		$(REDOCLY) lint --extends recommended-strict --format stylish openapi/openapi.json

images: $(VENV)/.installed
	$(BIN)/python scripts/render_examples.py

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_advice.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_cache.py
	$(BIN)/python benchmarks/bench_special.py

clean:
	rm -rf $(VENV) openapi/lint/node_modules .mypy_cache .pytest_cache .ruff_cache
