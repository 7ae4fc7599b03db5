"""Revisions meet a database as production has it: the walk of the migration tests runs on tables
holding generated rows (a NOT NULL text column among them), so a new NOT NULL column without a
default fails there rather than on the first populated database; and a downgrade that fails is
answered with the downgrade's own advice, not the upgrade's."""

import threading
import uuid
from collections.abc import Iterator

import demo_project
import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.dialects.postgresql_clients import PostgreSQLClients
from alembic_steady.dialects.postgresql_watch import Sampler
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, Walk, on_connection

CHAIN = [
    (
        "p1",
        # A SERIAL key, a NOT NULL text column (which the generated rows must fill) and a
        # nullable one.
        '    op.create_table("counter", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("code", sa.String(), nullable=False), '
        'sa.Column("hits", sa.Integer, nullable=False), sa.Column("label", sa.String()))',
        '    op.drop_table("counter")',
    ),
    (
        "p2",
        # Passes on empty tables only.
        '    op.add_column("counter", sa.Column("owner", sa.String(), nullable=False))',
        '    op.drop_column("counter", "owner")',
    ),
    (
        "p3",
        "    op.execute(\"COMMENT ON TABLE counter IS 'counts'\")",
        # A downgrade that fails, as one whose data no longer fits the old schema does.
        '    op.execute("SELECT 1 / 0")\n    op.execute("COMMENT ON TABLE counter IS NULL")',
    ),
]


@pytest.fixture(scope="module")
def project() -> Project:
    return demo_project.write("postgresql", name="populated", chain=CHAIN)


def test_the_walk_fails_a_not_null_column_without_default_on_populated_tables(
    project: Project, database_url: URL
) -> None:
    outcome = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, outcome, stairway=False)
    failure = outcome.upgrade_failure
    assert failure is not None and failure.startswith("upgrade to revision p2 "), failure
    # counter's rows come from the walk alone, which had to make a value for its NOT NULL text.
    assert 'column "owner" of relation "counter" contains null values' in failure
    assert "(the tables counter held generated rows" in failure
    # The walk's watch ended with the failed run: no sampler session left polling.
    assert not [thread for thread in threading.enumerate() if isinstance(thread, Sampler)]


def heads(connection: Connection) -> set[str]:
    return Migrations.current_heads(connection)


def test_a_failed_downgrade_gets_the_downgrade_advice(project: Project, database_url: URL) -> None:
    migrations = Migrations(project)
    # On empty tables the whole chain goes up (p2 included: it fails on rows only).
    migrations.upgrade(url=database_url)
    assert on_connection(database_url, heads) == {"p3"}
    config = migrations.alembic_config(url=database_url)
    config.attributes["command"] = "downgrade"
    with pytest.raises(CommandError) as failure:
        command.downgrade(config, "-1")
    message = str(failure.value)
    assert message.startswith("The downgrade of revision p3"), message
    assert "division by zero" in message
    assert "make rollback again" in message
    assert "run make migrate again" not in message
    # Its transaction rolled back: the database stays at p3, as the advice implies.
    assert on_connection(database_url, heads) == {"p3"}


# A unique index built CONCURRENTLY (op.create_index_concurrently, an autocommit_block()) on a
# table holding a duplicate: the build fails and leaves an INVALID index, which only the
# runner's statement hook notes (and drops before the next build).
UNIQUE_CHAIN = [
    (
        "q1",
        '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.String()))\n'
        "    op.execute(\"INSERT INTO item (name) VALUES ('twice'), ('twice')\")",
        '    op.drop_table("item")',
    ),
    (
        "q2",
        '    op.create_index_concurrently("ix_item_name_unique", "item", ["name"], unique=True)',
        '    op.drop_index_concurrently("ix_item_name_unique", "item")',
    ),
]


@pytest.fixture(scope="module")
def unique_project() -> Project:
    return demo_project.write("postgresql", name="populated_unique", chain=UNIQUE_CHAIN)


def test_the_walk_runs_a_concurrent_build_as_make_migrate_does(
    unique_project: Project, database_url: URL, server_clients: Clients
) -> None:
    """The walk's steps go through the runner, as `make migrate` runs them: the failed unique
    CONCURRENTLY build is answered with the same message (the revision, what was committed, the
    INVALID index it left and that the next run drops it)."""
    with pytest.raises(CommandError) as failed:
        Migrations(unique_project).upgrade(url=database_url)
    migrate_says = str(failed.value)
    assert "INVALID index" in migrate_says, migrate_says  # the runner's own handling
    server_clients.empty(database_url)

    outcome = Walk(database_url)
    Harness(unique_project).walk_base_to_head(database_url, outcome, stairway=True)
    failure = outcome.upgrade_failure
    assert failure is not None and failure.startswith("upgrade to revision q2 "), failure
    assert migrate_says in failure, f"make migrate says:\n{migrate_says}\nthe walk:\n{failure}"


# A CHECK that refuses one of the generated rows (the last leaves every nullable column NULL),
# and a table made in the same revision whose rows refer to those that went in.
CHECKED_CHAIN = [
    (
        "r1",
        '    op.create_table("gauge", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("label", sa.String()), sa.CheckConstraint("label IS NOT NULL"))\n'
        '    op.create_table("reading", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("gauge_id", sa.Integer, sa.ForeignKey("gauge.id"), nullable=False))',
        '    op.drop_table("reading")\n    op.drop_table("gauge")',
    ),
    ("r2", '    op.execute("COMMENT ON TABLE gauge IS NULL")', "    pass"),
]


@pytest.fixture(scope="module")
def checked_project() -> Project:
    return demo_project.write("postgresql", name="populated_checked", chain=CHECKED_CHAIN)


def test_rows_a_check_refuses_stay_out_and_the_others_go_in(
    checked_project: Project, database_url: URL
) -> None:
    outcome = Walk(database_url)
    Harness(checked_project).walk_base_to_head(database_url, outcome, stairway=True)
    assert outcome.upgrade_failure is None and not outcome.stairway_failures, outcome
    counts = on_connection(
        database_url,
        lambda c: c.exec_driver_sql(
            "SELECT (SELECT count(*) FROM gauge), (SELECT count(*) FROM reading)"
        ).one(),
    )
    # Three generated rows, refused together for the last one's NULL, then tried one by one;
    # the table after it then gets all of its rows, each referring to a gauge that went in.
    assert tuple(counts) == (2, 3)


# Each step meets the tables before it holding rows, a table a downgrade made again included:
# s2's upgrade refuses to run on an empty `spare` (which s1 made), and its downgrade makes `spare`
# again, empty, before the stairway's second upgrade of s2.
REFUSES_EMPTY = """DO $body$ BEGIN
        IF NOT EXISTS (SELECT FROM spare) THEN RAISE 'spare is empty'; END IF;
    END $body$"""
REFILLED_CHAIN = [
    (
        "s1",
        '    op.create_table("spare", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("code", sa.String(), nullable=False))',
        '    op.drop_table("spare")',
    ),
    (
        "s2",
        f'    op.execute("""{REFUSES_EMPTY}""")\n    op.drop_table("spare")',
        '    op.create_table("spare", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("code", sa.String(), nullable=False))',
    ),
]


@pytest.fixture(scope="module")
def refilled_project() -> Project:
    return demo_project.write("postgresql", name="populated_refilled", chain=REFILLED_CHAIN)


@pytest.fixture(params=["event triggers", "full read"])
def walked_url(
    request: pytest.FixtureRequest, database_url: URL, server_url: URL, server_clients: Clients
) -> Iterator[URL]:
    """The test database as the superuser (the stairway's snapshot follows the event triggers),
    or one of a plain role's own (no event triggers: each snapshot reads the whole schema)."""
    if request.param == "event triggers":
        yield database_url
        return
    assert isinstance(server_clients, PostgreSQLClients)
    role, password = f"plain_{uuid.uuid4().hex[:8]}", "plain-pw"
    admin = server_url.set(database="postgres")
    server_clients.admin(admin, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    server_clients.admin(admin, f'CREATE DATABASE "{role}" OWNER "{role}"')
    try:
        yield server_url.set(database=role, username=role, password=password)
    finally:
        server_clients.admin(admin, f'DROP DATABASE "{role}" WITH (FORCE)', f'DROP ROLE "{role}"')


@pytest.mark.parametrize("stairway", [True, False], ids=["stairway", "upgrades only"])
def test_every_step_meets_its_tables_holding_rows_one_a_downgrade_made_again_included(
    refilled_project: Project, walked_url: URL, stairway: bool
) -> None:
    outcome = Walk(walked_url)
    Harness(refilled_project).walk_base_to_head(walked_url, outcome, stairway=stairway)
    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert not outcome.stairway_failures, outcome.stairway_failures
    assert on_connection(walked_url, heads) == {"s2"}
