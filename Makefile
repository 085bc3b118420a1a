# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest system-deps clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: install
	$(BIN)/chaos-monkey-engine

# System packages the tests use (real sshd, network namespaces, iptables).
system-deps:
	@./scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy app.py chalicelib chaosmonkey attacks planners tests

pytest: install
	$(BIN)/pytest

test: system-deps install lint typecheck pytest

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
