# Setup, demo and tests. `make demo` and `make test` work on a fresh machine (Python 3.11, pip, gcc).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: setup demo test test-all lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev,export,itk]"
	$(PIP) install -q --no-deps "dynamic_network_architectures>=0.4.4,<0.5"  # nnunet family
	touch $@

demo: setup
	$(BIN)/medtoken demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "slow or not slow"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) medtoken-demo .pytest_cache .mypy_cache .ruff_cache
