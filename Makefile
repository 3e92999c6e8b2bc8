# KioskHub: `make up` runs the platform on this machine, `make test` runs the whole suite.

SHELL       := /bin/bash
# A system-wide Python 3.11+ is preferred: when the hub runs as root, the users' own
# accounts must be able to run the venv's interpreter (one under /root is out of reach).
PYTHON      ?= $(shell for p in /usr/bin/python3 /usr/local/bin/python3 python3; do \
                 $$p -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
                 2>/dev/null && { echo $$p; break; }; done)
VENV        := .venv
BIN         := $(VENV)/bin
CONFIG      ?= kioskhub.yaml
PY_STAMP    := $(VENV)/.installed-base
TEST_STAMP  := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
NODE_STAMP  := node_modules/.installed
PYTEST_ARGS ?=
BENCH_ARGS  ?=

export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: up test lint check-config system-packages clean bench

up: $(PY_STAMP) $(NODE_STAMP)
	@$(BIN)/kioskhub init --config $(CONFIG)
	@$(BIN)/kioskhub up --config $(CONFIG)

test: $(TEST_STAMP) $(NODE_STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Side-by-side benchmarks (scripts, not tests): tables, JSON and PNG in benchmarks/results/.
bench: $(BENCH_STAMP) $(NODE_STAMP)
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

check-config: $(PY_STAMP)
	$(BIN)/kioskhub check-config --config $(CONFIG)

system-packages:
	@tests/require-system-packages

$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.4'

# Bytecode is compiled at install: user servers run as their own accounts, which cannot
# write it into this venv, and would otherwise compile every module again at each start.
UV_INSTALL = $(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode

$(PY_STAMP): pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e .
	@touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e '.[test]'
	@touch $@ $(PY_STAMP)

$(BENCH_STAMP): pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e '.[bench]'
	@touch $@ $(PY_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) node_modules
