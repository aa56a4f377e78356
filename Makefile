# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 0.0.0.0
PORT   ?= 8000
# Redocly CLI lints openapi/openapi.json; installed from npm into .tools/ (node 20+ and npm).
REDOCLY_VERSION := 2.77.0
REDOCLY := .tools/node_modules/.bin/redocly

.PHONY: run test lint typecheck pytest openapi openapi-lint images bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

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

.tools/.redocly-$(REDOCLY_VERSION):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error @redocly/cli@$(REDOCLY_VERSION)
	touch $@

# Redocly's recommended rules with every warning an error (recommended-strict); no telemetry.
openapi-lint: .tools/.redocly-$(REDOCLY_VERSION)
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		$(REDOCLY) lint --extends recommended-strict --format stylish openapi/openapi.json

images: $(VENV)/.installed
	$(BIN)/python scripts/render_examples.py

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_cache.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache
