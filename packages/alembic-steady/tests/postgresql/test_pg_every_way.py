"""Every operation authoring/ops.py offers, and `autocommit_block()` revisions written by hand,
under every way a revision is run: `make migrate` (the runner), the test walk (its stairway, on
tables holding rows), `make rehearse` (on a copy of a database with rows), `make sql` (the whole
chain offline) and `lint-migrations` (each revision's own SQL offline). One chain holds them all;
each way must get through it, and the runner and the walk must leave the same schema."""

import io
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import demo_project
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.plugin import new_database
from alembic_steady.testing.walk import Harness, Walk, on_connection
from alembic_steady.tools import backup, lint

# After the demo chain (a1 widget, b2 create_index_concurrently, c3 price): one revision per
# operation, each with the downgrade a team would write.
OPERATIONS = [
    (
        "d1",
        '    op.add_column("widget", sa.Column("code", sa.Text(), nullable=True))\n'
        '    op.backfill("widget", {"code": "\'W-\' || id"}, where="code IS NULL")',
        '    op.drop_column("widget", "code")',
    ),
    ("d2", '    op.set_not_null("widget", "code")', '    op.drop_not_null("widget", "code")'),
    (
        "d3",
        '    op.create_unique_constraint_concurrently("uq_widget_code", "widget", ["code"])',
        '    op.drop_constraint("uq_widget_code", "widget", type_="unique")',
    ),
    (
        "d4",
        '    op.create_table("owner", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.add_column("widget", sa.Column("owner_id", sa.Integer(), nullable=True))\n'
        '    op.create_foreign_key_validated("fk_widget_owner_id_owner", "widget", "owner", '
        '["owner_id"], ["id"], validate=False)',
        '    op.drop_constraint("fk_widget_owner_id_owner", "widget", type_="foreignkey")\n'
        '    op.drop_column("widget", "owner_id")\n'
        '    op.drop_table("owner")',
    ),
    (
        "d5",
        "    # migration-tests: one-way: a validated constraint stays validated\n"
        '    op.validate_constraint("fk_widget_owner_id_owner", "widget")',
        "    pass",
    ),
    (
        "d6",
        '    op.drop_index_concurrently("ix_widget_name", table_name="widget")',
        '    op.create_index_concurrently("ix_widget_name", "widget", ["name"])',
    ),
    (
        "d7",
        "    with op.get_context().autocommit_block():\n"
        "        op.execute(\n"
        '            "CREATE INDEX CONCURRENTLY ix_widget_code_price ON widget (code, price)"\n'
        "        )\n"
        '        op.execute("UPDATE widget SET price = 1 WHERE price IS NULL")',
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("DROP INDEX CONCURRENTLY ix_widget_code_price")',
    ),
]
HEAD = "d7"
ROWS = 200
# The schema head leaves, as the catalog says it: constraints, indexes and NOT NULL columns.
SCHEMA = text(
    """
SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'widget'::regclass
UNION ALL
SELECT 'index ' || indexrelid::regclass::text || ' valid=' || indisvalid FROM pg_index
 WHERE indrelid = 'widget'::regclass
UNION ALL
SELECT 'not null ' || attname FROM pg_attribute
 WHERE attrelid = 'widget'::regclass AND attnum > 0 AND attnotnull AND NOT attisdropped
ORDER BY 1
"""
)


def schema(connection: Connection) -> list[str]:
    return [row for (row,) in connection.execute(SCHEMA)]


@pytest.fixture(scope="module")
def project() -> Project:
    chain = [*demo_project.CHAIN["postgresql"], *OPERATIONS]
    return demo_project.write("postgresql", name="every_way", chain=chain)


@pytest.fixture
def populated(project: Project, server_clients: Clients, server_url: URL) -> Iterator[URL]:
    """A database at c3 whose widget table holds rows, as production's does."""
    with new_database(server_clients, server_url) as url:
        Migrations(project).upgrade("c3", url=url)
        insert = f"INSERT INTO widget (name) SELECT 'w' || g FROM generate_series(1, {ROWS}) g"
        on_connection(url, lambda c: c.execute(text(insert)))
        yield url


def test_make_migrate_applies_every_operation_on_a_table_with_rows(
    project: Project, populated: URL, database_url: URL
) -> None:
    Migrations(project).upgrade(url=populated)
    assert on_connection(populated, Migrations.current_heads) == {HEAD}
    migrated = on_connection(populated, schema)
    assert "constraint uq_widget_code UNIQUE (code)" in migrated, migrated
    assert "not null code" in migrated, migrated
    assert "index ix_widget_code_price valid=true" in migrated, migrated
    assert not any("ix_widget_name" in row for row in migrated), migrated
    assert (
        on_connection(
            populated, lambda c: c.execute(text("SELECT count(*) FROM widget WHERE code IS NULL"))
        ).scalar_one()
        == 0
    )

    # The walk: every revision up, down and up again on tables holding generated rows, through
    # the same runner, ending where make migrate ended.
    outcome = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, outcome, stairway=True)
    assert (outcome.upgrade_failure, outcome.stairway_failures) == (None, []), outcome
    assert on_connection(database_url, schema) == migrated


def test_make_rehearse_runs_every_operation_on_a_copy(
    project: Project, populated: URL, tmp_path: Path
) -> None:
    configured = replace(project, settings=lambda: StaticSettings(populated))
    before = on_connection(populated, Migrations.current_heads)
    assert backup.main(configured, [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    result = demo_project.module_cli(project, "rehearse", f"file={dump}", url=populated)
    assert result.returncode == 0, result.stdout
    assert "FAILED" not in result.stdout, result.stdout
    # The backfill's rows count, though its batches are data-modifying CTEs.
    assert re.search(rf"d1 \(d1\): [\d.]+ s, {ROWS} row\(s\) changed", result.stdout), result.stdout
    # d7 and d6 go down and up again; d5, one-way by its line, stops the round trips there.
    assert "the pending revisions above it went down and up again" in result.stdout, result.stdout
    assert (
        "Accepted by its `# migration-tests:` line: revision d5 is one-way (a validated "
        "constraint stays validated); the 4 revision(s) below it were not taken down"
    ) in result.stdout, result.stdout
    assert on_connection(populated, Migrations.current_heads) == before  # the source untouched


def test_make_sql_and_lint_render_every_operation_offline(project: Project) -> None:
    config = Migrations(project).alembic_config(url=URL.create("postgresql+asyncpg", database="x"))
    config.attributes["command"] = "upgrade"
    config.output_buffer = io.StringIO()
    command.upgrade(config, "base:head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE INDEX CONCURRENTLY ix_widget_code_price" in sql, sql
    assert "VALIDATE CONSTRAINT fk_widget_owner_id_owner" in sql, sql
    # lint-migrations: each revision's own SQL, offline, as squawk is given it.
    script = ScriptDirectory.from_config(config)
    for revision, *_ in OPERATIONS:
        found = script.get_revision(revision)
        assert found is not None
        assert lint.revision_sql(config, script, found).strip(), revision
