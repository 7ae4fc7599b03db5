"""`alembic check`, autogenerate and the models test see what Alembic alone does not: a named CHECK
added to an existing table or changed under its name, a partial index whose WHERE changed, and
Integer -> BigInteger on a SERIAL key, whose sequence must widen too. Unchanged models stay clean:
PostgreSQL prints an expression its own way (casts, parentheses), which is no drift.

Driven through the project's env.py with Alembic's own command functions, as `make check` and
`make migration` run them; the models are plain SQLAlchemy, rebuilt with the changes a test
makes."""

import importlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import demo_project
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.checks import test_models_match_head_schema as models_match
from alembic_steady.testing.plugin import new_database
from alembic_steady.testing.walk import Harness, Walk, on_connection

# `build()` makes the models with one thing changed at a time; `metadata` is what env.py reads.
MODELS = '''
import sqlalchemy as sa

NAMING = {"ix": "ix_%(column_0_label)s", "ck": "ck_%(table_name)s_%(constraint_name)s",
          "pk": "pk_%(table_name)s"}


def build(*, check="length(name) > 0", where="label IS NOT NULL", key=sa.Integer):
    """item with a named CHECK (none when `check` is None); counter with a SERIAL key, a NOT
    NULL text column and a partial index."""
    metadata = sa.MetaData(naming_convention=NAMING)
    checks = [sa.CheckConstraint(check, name="name_set")] if check else []
    sa.Table("item", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String, nullable=False), *checks)
    sa.Table("counter", metadata, sa.Column("id", key, primary_key=True),
             sa.Column("code", sa.String, nullable=False),
             sa.Column("hits", sa.Integer, nullable=False),
             sa.Column("label", sa.String, nullable=True),
             sa.Index("ix_counter_open", "hits", postgresql_where=sa.text(where)))
    return metadata


metadata = build()
'''
# A project's template for new revisions (the template's own, which has no Jinja in it).
SCRIPT_MAKO = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''
# What changed in the models since the last revision: the CHECK's expression, the index's WHERE
# and the key's width, all at once (one autogenerate, as a team's `make migration` would).
DRIFT: dict[str, Any] = {
    "check": "length(name) > 2",
    "where": "label IS NULL",
    "key": sa.BigInteger,
}


@pytest.fixture(scope="module")
def project() -> Project:
    """No revision yet: autogenerate writes them all."""
    project = demo_project.write("postgresql", name="compare", chain=[], models=MODELS)
    (project.migrations / "script.py.mako").write_text(SCRIPT_MAKO, encoding="utf-8")
    return project


@contextmanager
def models(project: Project, **changes: Any) -> Iterator[None]:
    """The project's models, built with `changes`, for the block."""
    module = importlib.import_module(f"{project.package}.models")
    kept = module.metadata
    vars(module)["metadata"] = module.build(**changes)
    try:
        yield
    finally:
        vars(module)["metadata"] = kept


def config(project: Project, url: URL, command_name: str) -> Config:
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = command_name
    return config


def write_revision(project: Project, url: URL, message: str, rev_id: str) -> Path | None:
    """`make migration msg=...`: autogenerate through env.py; the file it wrote, None when it
    found no change (and wrote none)."""
    script = command.revision(
        config(project, url, "revision"), message=message, autogenerate=True, rev_id=rev_id
    )
    return None if script is None or isinstance(script, list) else Path(script.path)


def check(project: Project, url: URL) -> str:
    """`make check`: raises CommandError naming the drift, else says there is none (returned:
    Alembic's Config binds sys.stdout as it was when Alembic was imported)."""
    checking = config(project, url, "check")
    checking.stdout = io.StringIO()
    command.check(checking)
    return checking.stdout.getvalue()


@pytest.fixture(scope="module")
def head(project: Project, server_clients: Clients, server_url: URL) -> Iterator[URL]:
    """A database at head after two autogenerated revisions, applied in turn: item and counter
    created, then the CHECK added to item (which already exists)."""
    with new_database(server_clients, server_url) as url:
        with models(project, check=None):
            write_revision(project, url, "add counter", "c0unter")
        Migrations(project).upgrade(url=url)
        write_revision(project, url, "check item name", "checkname")
        Migrations(project).upgrade(url=url)
        yield url


def test_a_check_added_to_an_existing_table_is_written(project: Project, head: URL) -> None:
    revision = (project.versions / "checkname_check_item_name.py").read_text(encoding="utf-8")
    assert "op.create_check_constraint(op.f('ck_item_name_set'), 'item'" in revision


def test_unchanged_models_are_clean(project: Project, head: URL) -> None:
    # PostgreSQL prints `length(name) > 0` as `CHECK ((length((name)::text) > 0))` and the
    # predicate as `(label IS NOT NULL)`: the same definitions, so no drift.
    assert "No new upgrade operations detected" in check(project, head)


@pytest.fixture(scope="module")
def drift(project: Project, head: URL) -> Iterator[tuple[str, Path]]:
    """With the CHECK's expression, the index's WHERE and the key's width changed in the models:
    what `make check` says, and the revision `make migration` writes. The revision is kept aside
    (the chain's head stays `checkname`) for the test that applies it."""
    with models(project, **DRIFT):
        with pytest.raises(CommandError) as checked:
            check(project, head)
        written = write_revision(project, head, "drift", "drift0")
    assert written is not None, "no change found in the drifted models"
    aside = Path(tempfile.mkdtemp(prefix="steady-drift-")) / written.name
    shutil.move(written, aside)
    yield str(checked.value), aside
    shutil.rmtree(aside.parent)


def test_a_changed_check_expression_is_seen(drift: tuple[str, Path]) -> None:
    checked, revision = drift
    assert "ck_item_name_set" in checked
    assert "make migration" in checked
    written = revision.read_text(encoding="utf-8")
    assert "op.create_check_constraint(op.f('ck_item_name_set'), 'item', 'length(name) > 2')" in (
        written
    )


def test_a_changed_partial_index_predicate_is_seen(drift: tuple[str, Path]) -> None:
    checked, revision = drift
    assert "ix_counter_open" in checked
    upgrade = revision.read_text(encoding="utf-8").split("def downgrade")[0]
    assert "drop_index" in upgrade and "postgresql_where=sa.text('label IS NULL')" in upgrade


def sequence_type(connection: Connection) -> str:
    return str(
        connection.execute(
            text(
                "SELECT format_type(seqtypid, NULL) FROM pg_sequence "
                "WHERE seqrelid = 'counter_id_seq'::regclass"
            )
        ).scalar_one()
    )


def test_a_serial_key_made_bigint_widens_its_sequence(
    project: Project,
    drift: tuple[str, Path],
    database_url: URL,
) -> None:
    checked, revision = drift
    assert "counter_id_seq" in checked
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    assert on_connection(database_url, sequence_type) == "integer"
    applied = project.versions / revision.name
    shutil.copy(revision, applied)
    try:
        migrations.upgrade(url=database_url)
        assert on_connection(database_url, sequence_type) == "bigint"
        # The revision as written leaves nothing for `make check` to find.
        with models(project, **DRIFT):
            assert "No new upgrade operations detected" in check(project, database_url)
        command.downgrade(config(project, database_url, "downgrade"), "-1")
        assert on_connection(database_url, sequence_type) == "integer"
    finally:
        applied.unlink()


def test_the_models_test_sees_the_drift(project: Project, head: URL) -> None:
    """The plugin's test_models_match_head_schema compares as `make check` does: clean on the
    models the revisions made, failing, naming each change, on the drifted ones."""
    harness = Harness(project)
    at_head = Walk(head)
    models_match(harness, at_head)
    with models(project, **DRIFT), pytest.raises(AssertionError) as failed:
        models_match(harness, at_head)
    for name in ("ck_item_name_set", "ix_counter_open", "counter_id_seq"):
        assert name in str(failed.value), name


UNRESOLVED_RELATIONSHIP = """
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s", "pk": "pk_%(table_name)s"}
    )


class Widget(Base):
    __tablename__ = "widget"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), index=True)
    price: Mapped[int | None]
    owner: Mapped["User | None"] = relationship()  # no User model: only the app would fail


metadata = Base.metadata
"""


def test_a_relationship_sqlalchemy_cannot_resolve_fails_the_check_naming_the_model(
    database_url: URL,
) -> None:
    # In a process of its own: a mapper that cannot configure breaks every later one there.
    project = demo_project.write("postgresql", name="mappers", models=UNRESOLVED_RELATIONSHIP)
    Migrations(project).upgrade(url=database_url)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(demo_project.alembic_ini(project)), "check"],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": database_url.render_as_string(hide_password=False),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "FAILED: The models do not configure (InvalidRequestError)" in output
    assert "Mapper[Widget(widget)], expression 'User' failed to locate" in output
    assert "Traceback" not in output
