# Two set-up commands for a fresh machine with Python 3.11 and pip:
#   make demo   — create .venv, install, run the default simulation
#   make test   — create .venv, install with test extras, run the whole test suite (slow tests too)
# Override the torch requirement for a GPU build, e.g.  make test TORCH="torch==2.13.0+cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"

demo: install
	$(BIN)/p2probust run

test: install
	$(BIN)/python -m pytest -q -n 2 --runslow

bench: install
	$(BIN)/python benchmarks/bench_round.py

clean:
	rm -rf $(VENV) runs
