# The commands the README and CI use. Only Python 3.11+ and make are needed up front.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser run test lint typecheck pytest format bench bench-peers clean soak client typescript

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## browser: Debian's Chromium for tests/browser (and other system packages the tests use)
browser:
	scripts/install-system-packages

## run: the whole stack (API, workers, embedded Redis unless REDIS_URL is set)
run: install
	$(BIN)/python -m service.dev $(ARGS)

## test: lint, types, and every test (unit, integration)
test: lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: issue 7's suite (bench/README.md): one table, each figure next to a baseline from the same run.
## Needs Debian's wrk (installed here). Some: make bench BENCH_ARGS="p1 p3"; a smoke run: BENCH_ARGS=--quick
bench: install
	scripts/install-system-packages
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## bench-peers: issue 12's peer comparison (bench/README.md): offload beside Celery, Dramatiq, arq, SAQ,
## taskiq and raw RQ, each in a venv of its own (made once under ~/.cache/offload-bench, from PyPI).
## Some: make bench-peers PEERS_ARGS="--systems offload,arq --scenarios drain"; a smoke run: PEERS_ARGS=--quick
bench-peers: install
	scripts/install-system-packages
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

## soak: the fault soak (bench/soak): workers killed at random, every accepted job accounted for
soak: install
	$(BIN)/python -m pytest -m soak tests/integration/test_soak.py $(PYTEST_ARGS)

## client: write the Python client's typed module (client/offload_client/generated.py) from the app's
## OpenAPI schema again, after a job, an option or a view changed; tests/unit/test_client_generate.py
## fails until it is.
client: install
	$(BIN)/python -m service.dev.openapi | $(BIN)/python -m offload_client.generate - --out client/offload_client/generated.py

## typescript: TypeScript types from the app's /openapi.json (openapi-typescript) and an example that
## tsc --strict checks against them (client/typescript); needs node and npm. CI runs it.
typescript: install
	PYTHON=$(BIN)/python scripts/typescript-check

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
