"""The generated project's own `make test`: green on a fresh project with nothing skipped, and red,
naming the culprit, for a bad downgrade, model drift and a second head."""

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import (
    Server,
    bake,
    clean_env,
    install,
    make,
    must,
    revision_id,
    run,
    url_as,
    versions_dir,
)

ENUM_MODEL = '''"""A model with a PostgreSQL enum."""

import enum

from sqlmodel import Field, SQLModel


class Status(enum.StrEnum):
    open = "open"
    closed = "closed"


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    status: Status = Field(default=Status.open)
'''


def generated_tests(project: Path) -> str:
    return make(project, "test", "args=-v -p no:cacheprovider", env=clean_env(CI="true")).stdout


def test_generated_make_test_passes(default_project: Path) -> None:
    output = must(make(default_project, "test", "args=-v", env=clean_env(CI="true")))
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary and "failed" not in summary
    for test in (
        "test_stairway",
        "test_upgrade_base_to_head",
        "test_models_match_head_schema",
        "test_single_head",
        "test_data_survives_later_upgrades",
        "test_upgrade_inside_a_running_event_loop",
    ):
        assert re.search(rf"{test}\S* PASSED", output), test


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Path:
    return install(bake(tmp_path_factory.mktemp("planted")))


@pytest.fixture(scope="module")
def server_env(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    name = "tmpl_planted"
    server.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server.execute("postgres", f'CREATE DATABASE "{name}"')
    yield clean_env(DATABASE_URL=server.url(name))
    server.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def enum_type_left_behind(project: Path) -> Iterator[str]:
    """Plant the classic bug in the ticket revision: its downgrade drops the table but forgets
    the enum type. Yields the revision's id; the file is restored afterwards."""
    ticket = next(versions_dir(project).glob("*_add_ticket.py"))
    text = ticket.read_text(encoding="utf-8")
    dropped = re.sub(
        r'\n\s*sa\.Enum\("open", "closed", name="status"\)\.drop\(op\.get_bind\(\)\)', "", text
    )
    assert dropped != text
    ticket.write_text(dropped, encoding="utf-8")
    try:
        yield revision_id(ticket)
    finally:
        ticket.write_text(text, encoding="utf-8")


def test_enum_round_trip_and_a_planted_bad_downgrade(
    project: Path, server_env: dict[str, str]
) -> None:
    models = project / "src" / "my_service" / "models"
    (models / "ticket.py").write_text(ENUM_MODEL, encoding="utf-8")
    must(make(project, "migrate", env=server_env))
    must(make(project, "migration", "msg=add ticket", env=server_env))
    (models / "ticket.py").write_text(
        ENUM_MODEL.replace(
            '    closed = "closed"\n', '    closed = "closed"\n    pending = "pending"\n'
        ),
        encoding="utf-8",
    )
    must(make(project, "migrate", env=server_env))
    must(make(project, "migration", "msg=add pending status", env=server_env))
    # The enum is created, extended and dropped by the revisions: the stairway goes round.
    output = generated_tests(project)
    assert re.search(r"test_stairway\S* PASSED", output), output
    must(make(project, "migrate", env=server_env))
    must(make(project, "rollback", "steps=2", env=server_env))
    must(make(project, "migrate", env=server_env))

    with enum_type_left_behind(project) as revision:
        output = generated_tests(project)
    assert re.search(r"test_stairway\S* FAILED", output)
    assert f"revision {revision} " in output
    assert "('type', 'status open,closed')" in output


def test_planted_bad_downgrade_is_named_without_a_superuser(project: Path, server: Server) -> None:
    # Event triggers, which let the stairway re-read only what each step touched, need a
    # superuser. A server that gives the tests a plain role (CREATEDB only) gets the fallback,
    # which reads the whole schema: it must catch the same bug, and the other tests still pass.
    role, password = f"tmpl_plain_{uuid.uuid4().hex[:8]}", "plain-pw"
    server.execute("postgres", f"CREATE ROLE \"{role}\" LOGIN CREATEDB PASSWORD '{password}'")
    url = url_as(server, "postgres", role, password)
    try:
        with enum_type_left_behind(project) as revision:
            output = make(
                project,
                "test",
                "args=-v -p no:cacheprovider tests/test_migrations.py",
                env=clean_env(CI="true", TEST_DATABASE_URL=url),
            ).stdout
    finally:
        server.execute("postgres", f'DROP ROLE "{role}"')
    assert re.search(r"test_stairway\S* FAILED", output), output
    assert f"revision {revision} " in output
    assert "('type', 'status open,closed')" in output
    for test in ("test_upgrade_base_to_head", "test_models_match_head_schema"):
        assert re.search(rf"{test}\S* PASSED", output), test


def test_planted_model_drift_is_named(project: Path) -> None:
    item = project / "src" / "my_service" / "models" / "item.py"
    original = item.read_text(encoding="utf-8")
    item.write_text(original + "    sku: str | None = None\n", encoding="utf-8")
    try:
        output = generated_tests(project)
    finally:
        item.write_text(original, encoding="utf-8")
    assert re.search(r"test_models_match_head_schema\S* FAILED", output)
    assert "add_column" in output and "sku" in output


def test_planted_second_head_is_named(project: Path, server_env: dict[str, str]) -> None:
    # A second root revision: a second head whatever the chain holds when this test runs.
    must(
        run(
            project,
            ".venv/bin/alembic",
            "revision",
            "-m",
            "sideways",
            "--head",
            "base",
            env=server_env,
        )
    )
    (sideways,) = versions_dir(project).glob("*_sideways.py")
    sideways_rev = revision_id(sideways)
    try:
        output = generated_tests(project)
    finally:
        sideways.unlink()
    assert re.search(r"test_single_head\S* FAILED", output)
    assert "more than one head" in output and sideways_rev in output
    shutil.rmtree(project / ".pytest_cache", ignore_errors=True)
