# The two commands of the README: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= 0.0.0.0:5000
DATA ?= ./data
# Debian packages the test suite drives: real third-party clients, the reference registry, and
# chromium for the web page test (Playwright drives it; `playwright install` is never run), runc
# for the engine, and docker.io (Debian's dockerd) as the reference engine the engine is compared with.
APT_PACKAGES := skopeo podman docker-registry busybox-static crun runc docker.io nginx chromium docker-compose
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DAEMON_HOST ?= unix:///run/dockyard.sock
DAEMON_DATA ?= /var/lib/dockyard

.PHONY: run daemon test bench apt-packages clean

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
	@command -v runc >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq runc; }
	$(SUDO) $(BIN)/dockyardd --host $(DAEMON_HOST) --data-root $(DAEMON_DATA)

apt-packages:
	@missing=$$(for package in $(APT_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: $(VENV)/.test apt-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test apt-packages
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
