# Two promises: `make run` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check lint typecheck bench clean install

# `dev` includes the `sandbox` extra (moto for the ECS emulator): tests and `make run` need it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The sandbox's own entry point (sandbox/ is development-only, not in the wheel): with Slack
# credentials set it serves Slack like `rollback-bot serve`, without them the local sandbox.
run: $(STAMP)
	$(BIN)/python -m sandbox run

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy bot handlers platforms

check: lint typecheck test

# Every bench runs even when one misses its goal; the exit status says whether any did.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
