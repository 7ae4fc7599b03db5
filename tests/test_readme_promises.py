"""Promises of the READMEs that only a rendered project proves, on one rendered, installed project:

- its own `make test` is green with nothing skipped,
- `make db-up` takes the Docker branch when a Docker engine answers,
- project code and revisions run from bytecode under PYTHONDONTWRITEBYTECODE=1.

The built-in migration tests' verdicts on planted defects (the stairway, model drift, a second
head, enum types), and a failure part-way from base, are proven in the toolkit's
tests/postgresql/test_pg_stairway.py, without a render. The tests share the project; each removes
what it adds.
"""

import os
import re
from pathlib import Path

import pytest

from .conftest import (
    bake,
    clean_env,
    install,
    make,
    must,
    run,
    versions,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("promises")))


# 1. The generated `make test`


def test_generated_make_test_passes(project: Path) -> None:
    output = must(make(project, "test", "args=-v", env=clean_env(CI="true")))
    summary = output.strip().splitlines()[-1]
    # Passed and nothing else: a skip, an xfail or an xpass would be a test that proves nothing.
    assert re.fullmatch(r"=+ \d+ passed in [\d.]+s( \([\d:]+\))? =+", summary), summary
    for test in (
        "test_stairway",
        "test_upgrade_base_to_head",
        "test_models_match_head_schema",
        "test_no_long_lock_on_an_existing_table",
        "test_single_head",
        "test_data_survives_later_upgrades",
        "test_a_fleet_reaches_head",
        "test_upgrade_inside_a_running_event_loop",
    ):
        assert re.search(rf"{test}\S* PASSED", output), test


# 3. The Docker branch of `make db-up`

# No Docker engine runs here, so a `docker` command on PATH stands in for the CLI: it answers
# `docker info` and records every call. This proves which branch `make db-up`/`db-down` choose and
# what they ask Docker for, not that Compose starts PostgreSQL (compose.yaml is checked by render).
DOCKER_SHIM = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
exit 0
"""


def test_db_up_uses_docker_compose_when_docker_answers(project: Path, tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM, encoding="utf-8")
    (shim / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    env = clean_env(PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", DOCKER_CALLS=str(calls))
    dotenv = project / ".env"
    assert not dotenv.exists()
    try:
        up = must(make(project, "db-up", env=env))
        assert "PostgreSQL running in Docker" in up
        assert calls.read_text().splitlines() == ["info", "compose up --detach --wait db"]
        # The app's settings then match compose.yaml's server.
        example = (project / ".env.example").read_text(encoding="utf-8")
        assert dotenv.read_text(encoding="utf-8") == example
        assert not (project / ".devdb").exists()
        calls.unlink()
        must(make(project, "db-down", env=env))
        assert calls.read_text().splitlines() == ["info", "compose down"]
    finally:
        dotenv.unlink(missing_ok=True)


# 4. Bytecode under PYTHONDONTWRITEBYTECODE=1


def modules_loaded_from_source(project: Path, *alembic_args: str) -> tuple[list[str], str]:
    """Project files an `alembic` command compiled from source (its own, and the toolkit's in
    vendor/, installed editable from there), and its verbose import log."""
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", PYTHONVERBOSE="1")
    output = must(run(project, ".venv/bin/alembic", *alembic_args, env=env))
    roots = "|".join(re.escape(str(project / folder)) for folder in ("src", "vendor"))
    return re.findall(rf"^# code object from '?((?:{roots})\S+\.py)'?$", output, re.M), output


def test_project_code_and_revisions_run_from_bytecode(project: Path) -> None:
    offline = ("upgrade", "head", "--sql")
    from_source, log = modules_loaded_from_source(project, *offline)
    assert not from_source, f"compiled at every start, not read from bytecode: {from_source}"
    for loaded in (
        "migrations/__pycache__/env.",
        "migrations/versions/__pycache__/",
        "settings.",
        "alembic_steady/runner/__pycache__/environment.",
    ):
        assert re.search(rf"code object from '\S+{re.escape(loaded)}\S*\.pyc'", log), loaded

    # A revision written by `make migration-empty` is compiled as it is written.
    before = set(versions(project))
    env = clean_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    must(make(project, "migration-empty", "msg=compiled on write", env=env))
    (new,) = set(versions(project)) - before
    try:
        from_source, _ = modules_loaded_from_source(project, *offline)
        assert not from_source, f"compiled at every start, not read from bytecode: {from_source}"
    finally:
        new.unlink()
        for compiled in (new.parent / "__pycache__").glob(f"{new.stem}.*.pyc"):
            compiled.unlink()
