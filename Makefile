# The two commands of the README: `make run` and `make test`. Everything else serves them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n auto
KIT := packages/pytest-fastapi-db

.PHONY: install install-dev run migrate test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps make the install steps idempotent: they rerun only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(KIT)/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e $(KIT) -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/resource-api migrate

run: migrate
	$(BIN)/resource-api serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Our server against the baselines, then fan-out and a million rows: bench/RESULTS.md.
# PostgreSQL too where BENCH_POSTGRES_URL names a server (a test-like database name).
bench: install-dev
	$(BIN)/python -m bench.run

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app $(KIT)/src

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
