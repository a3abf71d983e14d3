# Two entry points: `make run` starts the console on its embedded defaults,
# `make test` runs the test suite. Both create .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --verbosity 0
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py ensure_demo_admin
	$(BIN)/honcho --procfile Procfile start

test: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var/ .pytest_cache

.PHONY: bench-optimizer bench-cycle
bench-optimizer: $(VENV)/.runtime
	$(BIN)/python -m optimizer.bench --repeats 10

bench-cycle: $(VENV)/.runtime
	$(BIN)/python benchmarks/cycle_bench.py --cycles 10 --replicas 8

.PHONY: bench-fleetsim
bench-fleetsim: $(VENV)/.runtime
	$(BIN)/python benchmarks/fleetsim_bench.py --seconds 3600 --compression 8

.PHONY: compare
compare: $(VENV)/.runtime
	mkdir -p var/compare
	$(BIN)/python -m fleetsim compare --trace azure-conv --scale 20 \
		--scale-mode superpose --seed 1 --json var/compare/azure-conv.json \
		--plots var/compare/azure-conv
