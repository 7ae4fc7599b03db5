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

.PHONY: help venv demo test test-toolkit test-toolkit-floor lint clean bench mutate mutation-score

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-19s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -r pyproject.toml --extra test
	touch $@

# The toolkit has a venv of its own: its MySQL driver (aiomysql) ships a top-level `examples`
# package that would shadow cruft's, which the template's tests need. It lives outside the
# toolkit's folder, which renders copy whole into vendor/.
TOOLKIT := packages/alembic-steady
TOOLKIT_VENV := .venv-toolkit
TOOLKIT_BIN := $(CURDIR)/$(TOOLKIT_VENV)/bin

$(TOOLKIT_VENV)/.installed: $(TOOLKIT)/pyproject.toml | $(VENV)/.installed
	$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(TOOLKIT_VENV)
	$(BIN)/uv pip install --quiet --python $(TOOLKIT_BIN)/python --compile-bytecode \
		-e "$(TOOLKIT)[postgresql,mysql,test]" --group $(TOOLKIT)/pyproject.toml:mutation
	touch $@

venv: $(VENV)/.installed ## Create .venv with the template's test tools

demo: venv ## Render build/demo/my-service, install it, start the embedded PostgreSQL, migrate
	rm -rf build/demo && mkdir -p build/demo
	@# The hook's "Next: cd ..., make install, ..." is what this recipe does next: not printed.
	$(BIN)/cookiecutter --no-input --output-dir build/demo . >/dev/null
	cd build/demo/my-service && env -u DATABASE_URL $(MAKE) --no-print-directory install db-up migrate current
	@echo "Demo project: build/demo/my-service (make -C build/demo/my-service db-down to stop its database)"

# The template's tests in two workers, a module per worker (a module shares one render): they
# are mostly renders, installs and `make` runs. WORKERS=0 runs them in this process.
WORKERS ?= 2

test: venv test-toolkit test-toolkit-floor ## Run every test: the toolkit's tiers (newest and lowest dependencies), then the template's (renders projects)
	$(BIN)/pytest $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile) $(args)

# The toolkit's tests are parallel-safe (a database per test, unique names): two workers, each with
# its own server when none is named. WORKERS=0 runs them in one process too. In the PostgreSQL
# tier a module's tests stay on one worker (BY_MODULE), so a fixture they share, such as
# test_pg_stairway.py's run of its planted projects, is made once: 50 s instead of 57. The MySQL
# tier's three uneven modules spread better test by test.
TOOLKIT_WORKERS = $(if $(filter 0,$(WORKERS)),,-n $(WORKERS))
BY_MODULE = $(if $(filter 0,$(WORKERS)),,--dist loadfile)

# The toolkit's tiers run apart: each names its own project to the plugin. Its MySQL tier needs
# TEST_MYSQL_URL, and says so when it is unset.
test-toolkit: $(TOOLKIT_VENV)/.installed ## Run the toolkit's tests: unit (no database), postgresql, mysql
	cd $(TOOLKIT) && $(TOOLKIT_BIN)/pytest -p no:cacheprovider $(TOOLKIT_WORKERS) $(BY_MODULE) tests/unit tests/postgresql
	cd $(TOOLKIT) && $(TOOLKIT_BIN)/pytest -p no:cacheprovider $(TOOLKIT_WORKERS) -rs tests/mysql

# The same tiers on the lowest versions the toolkit's bounds allow (alembic 1.19.2, SQLAlchemy
# 2.0.36, ...): a bound nobody installs would rot.
FLOOR_VENV := .venv-toolkit-floor
FLOOR_BIN := $(CURDIR)/$(FLOOR_VENV)/bin

$(FLOOR_VENV)/.installed: $(TOOLKIT)/pyproject.toml | $(VENV)/.installed
	$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(FLOOR_VENV)
	$(BIN)/uv pip install --quiet --python $(FLOOR_BIN)/python --compile-bytecode \
		--resolution lowest-direct -e "$(TOOLKIT)[postgresql,mysql,test]"
	touch $@

# Not the chores' and the bad-input tests (test_pg_tools.py, test_pg_safety.py, the MySQL
# tier's tools, squash and plan: PostgreSQL's squash runs here, and the walk measures every
# revision through the watch the plan uses), nor the server's own limits
# (test_pg_server_limits.py): they exercise the server's client programs, its limits and the
# messages, through the same library calls as the runner's tiers, which run here; that keeps
# CI's time within its bound.
FLOOR_SKIPS := --ignore=tests/postgresql/test_pg_tools.py --ignore=tests/postgresql/test_pg_safety.py \
	--ignore=tests/postgresql/test_pg_server_limits.py --ignore=tests/postgresql/test_pg_plan.py

test-toolkit-floor: $(FLOOR_VENV)/.installed ## Run the toolkit's tests on its lowest dependency versions
	@$(FLOOR_BIN)/python -c 'import alembic, sqlalchemy; print(f"Lowest versions: alembic {alembic.__version__}, SQLAlchemy {sqlalchemy.__version__}")'
	cd $(TOOLKIT) && $(FLOOR_BIN)/pytest -p no:cacheprovider -q $(TOOLKIT_WORKERS) $(BY_MODULE) $(FLOOR_SKIPS) tests/unit tests/postgresql
	cd $(TOOLKIT) && $(FLOOR_BIN)/pytest -p no:cacheprovider -q $(TOOLKIT_WORKERS) -rs \
		--ignore=tests/mysql/test_mysql_tools.py --ignore=tests/mysql/test_mysql_squash.py \
		--ignore=tests/mysql/test_mysql_plan.py tests/mysql

mutate: venv $(TOOLKIT_VENV)/.installed ## Break each README promise once (mutation/mutations.toml); fail if a test misses one
	$(BIN)/python mutation/run.py $(args)

mutation-score: venv $(TOOLKIT_VENV)/.installed ## The toolkit's mutation score per module (mutmut, unit tier); fail below mutation/ratchet.toml
	$(BIN)/python mutation/score.py $(args)

bench: venv ## Benchmark a fresh render: migration tests, upgrade at head, first run [args=...]
	$(BIN)/python benchmarks/run.py $(args)

lint: venv $(TOOLKIT_VENV)/.installed ## Lint the template's hooks and tests, and the toolkit (ruff, mypy --strict)
	$(BIN)/ruff check hooks tests benchmarks mutation local_extensions.py
	$(BIN)/ruff format --check hooks tests benchmarks mutation local_extensions.py
	@# Caches outside the toolkit's folder, which renders copy whole into vendor/.
	cd $(TOOLKIT) && $(TOOLKIT_BIN)/ruff check --cache-dir $(CURDIR)/.ruff_cache . && \
		$(TOOLKIT_BIN)/ruff format --check --cache-dir $(CURDIR)/.ruff_cache . && \
		$(TOOLKIT_BIN)/mypy --cache-dir $(CURDIR)/.mypy_cache/toolkit

clean: ## Remove the venvs and rendered projects
	-[ -d build/demo/my-service/.devdb ] && $(MAKE) -C build/demo/my-service db-down
	rm -rf $(VENV) $(TOOLKIT_VENV) $(FLOOR_VENV) build .pytest_cache
