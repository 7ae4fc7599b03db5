"""Checksums of applied revisions (runner/checksums.py) on a real PostgreSQL: each run records
what it applies in the revision's own transaction; `upgrade`, `check` and `wait-for-head` refuse
a revision whose code was edited after this database ran it, until `accept-edit`; formatting,
comments and docstrings may change; a rollback forgets, a stamp records, a database migrated
before checksums existed is recorded without complaint. Driven as a user meets it: the module
CLI (what a Job and `make migrate` run) and Alembic's commands through env.py."""

import hashlib
import uuid
from pathlib import Path
from subprocess import CompletedProcess

import demo_project
import pytest
from alembic import command
from alembic.util import CommandError
from pg_safety_support import state
from sqlalchemy import text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.runner.checksums import normalised
from alembic_steady.testing.walk import on_connection

CHAIN = demo_project.CHAIN["postgresql"]


@pytest.fixture
def project() -> Project:
    """A project of its own per test: the tests edit its revision files."""
    return demo_project.write("postgresql", name=f"sums_{new_name()}")


def new_name() -> str:
    return uuid.uuid4().hex[:8]


def cli(project: Project, url: URL, *args: str) -> CompletedProcess[str]:
    return demo_project.module_cli(project, *args, url=url)


def records(url: URL) -> dict[str, str]:
    """Revision -> the file hash recorded for it."""
    rows = on_connection(
        url,
        lambda c: c.execute(
            text("SELECT revision, file_sha256 FROM alembic_version_checksums")
        ).all(),
    )
    return dict(rows)


def file_hash(project: Project, revision: str) -> str:
    return hashlib.sha256((project.versions / f"{revision}.py").read_bytes()).hexdigest()


def edit(project: Project, revision: str, old: str, new: str) -> Path:
    path = project.versions / f"{revision}.py"
    text_ = path.read_text(encoding="utf-8")
    assert text_.count(old) == 1, (old, text_)
    path.write_text(text_.replace(old, new), encoding="utf-8")
    return path


def check(project: Project, url: URL) -> None:
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = "check"
    command.check(config)


def test_each_applied_revision_is_recorded_as_its_file_is(
    project: Project, database_url: URL
) -> None:
    assert cli(project, database_url, "upgrade", "b2").returncode == 0
    assert records(database_url) == {r: file_hash(project, r) for r in ("a1", "b2")}
    assert cli(project, database_url, "upgrade").returncode == 0
    assert records(database_url) == {r: file_hash(project, r) for r in ("a1", "b2", "c3")}


def test_an_edited_applied_revision_is_refused_by_upgrade_check_and_wait_for_head(
    project: Project, database_url: URL
) -> None:
    assert cli(project, database_url, "upgrade").returncode == 0
    before = state(database_url)
    edit(
        project, "c3", "sa.Integer, nullable=True", 'sa.Integer, nullable=True, server_default="0"'
    )
    demo_project.add_revision(project.versions, "d4", "c3", "    pass", "    pass")

    result = cli(project, database_url, "upgrade")
    assert result.returncode == 1, result.stdout
    output = result.stdout
    assert "Revision c3 (c3.py) was edited after this database applied it" in output
    # The changed line, as it ran and as it is now.
    was = "op.add_column('widget', sa.Column('price', sa.Integer, nullable=True"
    assert f"\n  -    {was}))\n  +    {was}, server_default='0'))\n" in output
    assert "python -m " in output and ".migrations accept-edit c3" in output
    assert "Traceback" not in output
    assert state(database_url) == before  # d4 was not applied

    # At head again (without the pending d4): check and wait-for-head refuse, at once.
    (project.versions / "d4.py").unlink()
    with pytest.raises(CommandError, match=r"Revision c3 \(c3.py\) was edited"):
        check(project, database_url)
    result = cli(project, database_url, "wait-for-head", "--timeout", "30")
    assert result.returncode == 1 and "Revision c3 (c3.py) was edited" in result.stdout
    assert "Not at head after" not in result.stdout

    result = cli(project, database_url, "accept-edit", "c3")
    assert result.returncode == 0, result.stdout
    assert "Accepted: c3 (c3.py) is recorded as its file is now." in result.stdout
    assert records(database_url)["c3"] == file_hash(project, "c3")
    assert cli(project, database_url, "wait-for-head", "--timeout", "5").returncode == 0
    assert cli(project, database_url, "upgrade").returncode == 0


def test_formatting_comments_and_docstrings_may_change(project: Project, database_url: URL) -> None:
    assert cli(project, database_url, "upgrade").returncode == 0
    path = edit(project, "c3", '"""add price"""', '"""Add the price column (reviewed)."""')
    text_ = path.read_text(encoding="utf-8")
    text_ = text_.replace("def upgrade() -> None:\n", "def upgrade() -> None:\n    # why\n")
    text_ = text_.replace('op.add_column("widget", ', 'op.add_column(\n        "widget",\n        ')
    path.write_text(text_.replace('"', "'"), encoding="utf-8")
    assert records(database_url)["c3"] != file_hash(project, "c3")
    result = cli(project, database_url, "upgrade")
    assert result.returncode == 0, result.stdout
    check(project, database_url)
    assert cli(project, database_url, "wait-for-head", "--timeout", "5").returncode == 0


def test_the_fingerprint_keeps_what_runs_and_drops_the_rest() -> None:
    source = (
        '"""Doc."""\nimport sqlalchemy as sa\n\n\ndef upgrade():\n    """Up."""\n    x = 1  # c\n'
    )
    assert normalised(source) == "import sqlalchemy as sa\n\ndef upgrade():\n    x = 1\n"
    assert normalised(source.replace("x = 1", "x = 2")) != normalised(source)


def test_a_database_migrated_before_checksums_is_recorded_without_complaint(
    project: Project, database_url: URL
) -> None:
    # At head before checksums existed (no table), with a file edited since: nothing can tell.
    assert cli(project, database_url, "upgrade").returncode == 0
    on_connection(database_url, lambda c: c.execute(text("DROP TABLE alembic_version_checksums")))
    edit(project, "b2", '"widget", ["name"]', '"widget", ["name"], unique=False')
    result = cli(project, database_url, "upgrade")  # nothing to apply: recorded all the same
    assert result.returncode == 0, result.stdout
    assert records(database_url) == {r: file_hash(project, r) for r in ("a1", "b2", "c3")}
    # From then on an edit is seen.
    edit(project, "b2", "unique=False", "unique=True")
    assert cli(project, database_url, "upgrade").returncode == 1


def test_a_rollback_forgets_and_a_stamp_records(project: Project, database_url: URL) -> None:
    assert cli(project, database_url, "upgrade").returncode == 0
    config = Migrations(project).alembic_config(url=database_url)
    config.attributes["command"] = "downgrade"
    command.downgrade(config, "a1")
    assert set(records(database_url)) == {"a1"}
    # c3 is not applied any more: its edited file runs, and is recorded as it is.
    edit(project, "c3", "nullable=True", 'nullable=True, comment="cents"')
    assert cli(project, database_url, "upgrade").returncode == 0
    assert records(database_url)["c3"] == file_hash(project, "c3")

    config.attributes["command"] = "stamp"
    command.stamp(config, "base")
    assert records(database_url) == {}
    command.stamp(config, "b2")
    assert records(database_url) == {r: file_hash(project, r) for r in ("a1", "b2")}


def test_a_failing_revision_leaves_the_records_of_the_good_ones(database_url: URL) -> None:
    failing = ("d4", '    op.execute("SELECT 1/0")', "    pass")
    project = demo_project.write(
        "postgresql", name=f"sums_fails_{new_name()}", chain=[*CHAIN, failing]
    )
    result = cli(project, database_url, "upgrade")
    assert result.returncode == 1
    assert set(records(database_url)) == {"a1", "b2", "c3"}
    assert state(database_url)[1] == {"c3"}


def test_accepting_a_revision_not_applied_is_refused(project: Project, database_url: URL) -> None:
    assert cli(project, database_url, "upgrade", "a1").returncode == 0
    result = cli(project, database_url, "accept-edit", "c3")
    assert result.returncode == 1
    assert "c3 is not applied to this database: there is no edit to accept" in result.stdout
