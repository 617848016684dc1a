# The two commands of the README: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= 0.0.0.0:5000
DATA ?= ./data
# Debian packages the test suite drives: real third-party clients, the reference registry, and
# chromium for the web page test (Playwright drives it; `playwright install` is never run), runc
# for the engine with the CNI plugins and iptables for its networks, docker.io (Debian's dockerd) as the reference
# engine the engine is compared with, docker-compose, which the engine must serve, and PostgreSQL
# (the tests start their own server on loopback from its binaries: the Hub's replica database),
# and npm, which fetches axe-core, the accessibility checker the web page tests inject (Debian's
# npm package only when no npm is installed: NodeSource's nodejs carries its own and conflicts).
APT_PACKAGES := skopeo podman docker-registry busybox-static crun runc containernetworking-plugins iptables docker.io nginx chromium docker-compose postgresql $(if $(shell command -v npm),,npm)
AXE_VERSION := 4.14.1
AXE := $(VENV)/axe/node_modules/axe-core/axe.min.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# what the engine itself needs on a host
DAEMON_PACKAGES := runc containernetworking-plugins iptables
DAEMON_HOST ?= unix:///run/dockyard.sock
DAEMON_DATA ?= /var/lib/dockyard

.PHONY: run daemon test lint bench apt-packages clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/dockyard-registry serve --listen $(LISTEN) --storage-root $(DATA)

daemon: $(VENV)/.runtime
	@missing=$$(for package in $(DAEMON_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi
	$(SUDO) $(BIN)/dockyardd --host $(DAEMON_HOST) --data-root $(DAEMON_DATA)

apt-packages:
	@missing=$$(for package in $(APT_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: lint apt-packages $(AXE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# axe-core for the web page's accessibility scans (tests/test_web_browser.py), pinned
$(AXE): | apt-packages $(BIN)/python
	npm install --silent --no-audit --no-fund --prefix $(VENV)/axe axe-core@$(AXE_VERSION)

# ruff (lint and import order) over everything; mypy --strict over ocispec, storage_backends and registry.core
lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.test apt-packages
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
