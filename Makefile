# attestd: `make run` starts a node on the embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: run test bench lint clean

run: $(VENV)/.installed-node
	$(BIN)/attestd init
	$(BIN)/attestd db upgrade
	$(BIN)/attestd serve

test: $(VENV)/.installed-all
	.ci/install-services
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/bench_scan.py
	$(BIN)/python bench/bench_hash.py
	$(BIN)/python bench/bench_index.py

lint: $(VENV)/.installed-all
	$(BIN)/ruff check attestd scanner activitypub tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.installed-node: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[postgres]'
	touch $@

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[classifier,postgres,dev]'
	touch $@ $(VENV)/.installed-node

$(VENV)/.installed-bench: $(VENV)/.installed-all
	$(PIP) install -q -e '.[classifier,postgres,dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
