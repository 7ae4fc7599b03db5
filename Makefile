# The template's own chores. `make demo` renders a project and migrates it; `make test` tests it all.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Rendered projects find uv (installed in .venv) for their own `make install`.
export PATH := $(BIN):$(PATH)
export UV_PYTHON_DOWNLOADS := never
# `make test args=...` and `make bench args=...` are for this Makefile only: the rendered projects'
# own `make test` (run by the tests and benchmarks) must not receive them, neither through the
# environment nor through MAKEFLAGS.
unexport args
MAKEOVERRIDES :=

.PHONY: help venv demo test lint clean bench mutate

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -r pyproject.toml --extra test
	touch $@

venv: $(VENV)/.installed ## Create .venv with the template's test tools

demo: venv ## Render build/demo/my-service, install it, start the embedded PostgreSQL, migrate
	rm -rf build/demo && mkdir -p build/demo
	@# The hook's "Next: cd ..., make install, ..." is what this recipe does next: not printed.
	$(BIN)/cookiecutter --no-input --output-dir build/demo . >/dev/null
	cd build/demo/my-service && env -u DATABASE_URL $(MAKE) --no-print-directory install db-up migrate current
	@echo "Demo project: build/demo/my-service (make -C build/demo/my-service db-down to stop its database)"

test: venv ## Run the template's tests (renders projects, drives their Make targets on PostgreSQL)
	$(BIN)/pytest $(args)

mutate: venv ## Break each README promise once (mutation/mutations.toml); fail if a test misses one
	$(BIN)/python mutation/run.py $(args)

bench: venv ## Benchmark a fresh render: migration tests, upgrade at head, first run [args=...]
	$(BIN)/python benchmarks/run.py $(args)

lint: venv ## Lint the hooks and tests of the template
	$(BIN)/ruff check hooks tests benchmarks mutation local_extensions.py
	$(BIN)/ruff format --check hooks tests benchmarks mutation local_extensions.py

clean: ## Remove the venv and rendered projects
	-[ -d build/demo/my-service/.devdb ] && $(MAKE) -C build/demo/my-service db-down
	rm -rf $(VENV) build .pytest_cache
