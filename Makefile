# The two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format install clean bench bench-quick migrate demo

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: start the broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and the four services
run: $(STAMP)
	exec $(BIN)/python -m devtools.devrun

## test: the whole suite (unit, integration on the real broker, SQLite and PostgreSQL, e2e)
## (on TEST_WORKERS pytest-xdist workers, each with its own broker; TEST_WORKERS=0 runs serially)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## test-faults: the fault suite alone (also part of `make test`): broker SIGKILL, stuck
## group, kills between commits, rebalance churn, slow handler, database away, hostile input,
## duplicates and disorder (Hypothesis), an erasure pending while a service is down
test-faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -s

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	for s in $$($(BIN)/python -m shared.manifest names); do $(BIN)/python -m services.$$s migrate || exit 1; done

## bench: every bench at full size (< 20 min) -> bench/results/latest.md + PNG plots
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

## bench-quick: every bench at small size (< 2 min) -> bench/results/quick.md; CI runs it
bench-quick: $(STAMP)
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

## demo: a generated shop of 10,000 customers streamed into the running system (or one it starts), then reports, charts and a campaign
demo: $(STAMP)
	$(BIN)/python -m crmctl.demo
