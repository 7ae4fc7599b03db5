"""What the generated migration tests promise to catch, each on a project with the defect planted,
walked as the plugin's `walk` fixture walks a project's chain (every revision up, down and up
again, on tables holding generated rows): a new unique constraint over the duplicate rows a
populated table holds, a narrowed integer or text column, a data check's rows lost by a later
revision (its `after` runs at head), and a downgrade that leaves a column default, or a CHECK
changed under its name, behind."""

from collections.abc import Callable

import demo_project
import pytest
from queries import heads
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.data_checks import DATA_CHECKS, DataCheck
from alembic_steady.testing.walk import Harness, Walk


def walked(project: Project, url: URL) -> Walk:
    """The outcome of the walk the generated tests read, from base on `url`."""
    outcome = Walk(url)
    Harness(project).walk_base_to_head(url, outcome, stairway=True)
    return outcome


# 1. The populated walk: a table made by the first revision holds the walk's generated rows when
# the second one runs, which passes on empty tables and fails on the first populated database.
TAG = (
    "u1",
    '    op.create_table("tag", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("label", sa.String(20), nullable=False), '
    'sa.Column("weight", sa.Integer, nullable=False))',
    '    op.drop_table("tag")',
)
# The second revision, and what PostgreSQL says when it meets the rows.
POPULATED: dict[str, tuple[str, str, str]] = {
    "unique": (
        '    op.create_unique_constraint("uq_tag_label", "tag", ["label"])',
        '    op.drop_constraint("uq_tag_label", "tag", type_="unique")',
        'could not create unique index "uq_tag_label"',
    ),
    "narrower_integer": (
        '    op.alter_column("tag", "weight", type_=sa.SmallInteger)',
        '    op.alter_column("tag", "weight", type_=sa.Integer)',
        "smallint out of range",
    ),
    "narrower_text": (
        '    op.alter_column("tag", "label", type_=sa.String(10))',
        '    op.alter_column("tag", "label", type_=sa.String(20))',
        "value too long for type character varying(10)",
    ),
}


@pytest.mark.parametrize("planted", list(POPULATED))
def test_a_revision_that_fails_on_populated_tables_fails_the_walk(
    planted: str, database_url: URL, server_clients: Clients
) -> None:
    upgrade, downgrade, refused = POPULATED[planted]
    project = demo_project.write(
        "postgresql", name=f"promises_{planted}", chain=[TAG, ("u2", upgrade, downgrade)]
    )
    # On empty tables the chain goes up, as `make migrate` runs it: only rows tell the defect.
    Migrations(project).upgrade(url=database_url)
    assert heads(database_url) == {"u2"}
    server_clients.empty(database_url)

    failure = walked(project, database_url).upgrade_failure
    assert failure is not None and failure.startswith("upgrade to revision u2 "), failure
    assert refused in failure, failure
    assert "(the tables tag held generated rows" in failure, failure


# 2. Data checks: rows written right after the first revision must come through to head. The
# last revision keeps them, or (as a careless data migration would) deletes them.
NOTE = (
    "k1",
    '    op.create_table("note", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("body", sa.Text))',
    '    op.drop_table("note")',
)
SEEN = (
    "k2",
    '    op.add_column("note", sa.Column("seen", sa.Boolean))',
    '    op.drop_column("note", "seen")',
)
LATER = {
    "kept": '    op.execute("UPDATE note SET seen = true")',
    "lost": "    op.execute(\"DELETE FROM note WHERE body LIKE 'kept%'\")",
}


class NotesSurvive:
    """A data check as a project writes one; it notes the revision each `after` ran at."""

    def __init__(self) -> None:
        self.after_ran_at: list[str] = []

    def before(self, connection: Connection) -> None:
        connection.execute(text("INSERT INTO note (body) VALUES ('kept one'), ('kept two')"))

    def after(self, connection: Connection) -> None:
        self.after_ran_at.append(connection.execute(text("SELECT * FROM alembic_version")).one()[0])
        bodies = connection.execute(text("SELECT body FROM note WHERE body LIKE 'kept%'"))
        assert list(bodies.scalars()) == ["kept one", "kept two"]


@pytest.fixture
def notes_check(monkeypatch: pytest.MonkeyPatch) -> Callable[[], NotesSurvive]:
    """Registers a NotesSurvive for k1, as `@data_check("k1")` would, for one test only."""

    def register() -> NotesSurvive:
        check = NotesSurvive()
        monkeypatch.setitem(DATA_CHECKS, "k1", DataCheck(check.before, check.after))
        return check

    return register


def notes_project(later: str) -> Project:
    chain = [NOTE, SEEN, ("k3", LATER[later], "    pass")]
    return demo_project.write("postgresql", name=f"promises_notes_{later}", chain=chain)


def test_a_data_check_reads_its_rows_at_head(
    notes_check: Callable[[], NotesSurvive], database_url: URL
) -> None:
    check = notes_check()
    outcome = walked(notes_project("kept"), database_url)
    assert outcome.upgrade_failure is None and not outcome.stairway_failures, outcome
    assert outcome.data_failures == {}
    # Once, at head: past the later revisions' round trips, not right after its own.
    assert check.after_ran_at == ["k3"]


def test_rows_a_later_revision_loses_fail_their_data_check(
    notes_check: Callable[[], NotesSurvive], database_url: URL
) -> None:
    notes_check()
    outcome = walked(notes_project("lost"), database_url)
    assert outcome.upgrade_failure is None and not outcome.stairway_failures, outcome
    assert list(outcome.data_failures) == ["k1"], outcome.data_failures
    assert outcome.data_failures["k1"].startswith("AssertionError: "), outcome.data_failures
    assert "[] == ['kept one', 'kept two']" in outcome.data_failures["k1"]


# 3. The stairway compares definitions: a downgrade that forgets to put back a column's default,
# or a CHECK replaced under the same name, leaves a schema that differs from the one before.
GIZMO = (
    "g1",
    '    op.execute("CREATE TABLE gizmo (id int PRIMARY KEY, size int DEFAULT 1, '
    'CONSTRAINT ck_gizmo_size CHECK (size > 0))")',
    '    op.execute("DROP TABLE gizmo")',
)
DEFAULT_LEFT = (
    "g2",
    '    op.execute("ALTER TABLE gizmo ALTER COLUMN size SET DEFAULT 2")',
    "    pass",
)
# The new CHECK holds for the generated rows (size 1, the default): the upgrade goes through.
CHECK_LEFT = (
    "g3",
    '    op.execute("ALTER TABLE gizmo DROP CONSTRAINT ck_gizmo_size, '
    'ADD CONSTRAINT ck_gizmo_size CHECK (size >= 0)")',
    "    pass",
)


def test_the_stairway_names_a_default_and_a_check_a_downgrade_leaves_changed(
    database_url: URL,
) -> None:
    project = demo_project.write(
        "postgresql", name="promises_definitions", chain=[GIZMO, DEFAULT_LEFT, CHECK_LEFT]
    )
    outcome = walked(project, database_url)
    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    found = {finding.split(" ", 2)[1]: finding for finding in outcome.stairway_failures}
    assert sorted(found) == ["g2", "g3"], outcome.stairway_failures
    assert "public.gizmo.size integer default 2" in found["g2"], found["g2"]
    assert "public.gizmo.size integer default 1" in found["g2"], found["g2"]
    assert "CHECK ((size >= 0))" in found["g3"] and "CHECK ((size > 0))" in found["g3"], found
