"""Zero-downtime changes on tables with rows, without a render: the forms autogenerate writes on
existing tables (authoring/autogen.py), the safe operations of authoring/ops.py against a second
session holding a lock, the batched backfill (interrupted, and from code), and the SQL
`lint-migrations` hands to squawk.

Each test writes a small project of its own (the models it changes, the chain before the change)
and migrates the database the plugin's `database_url` gives it: they run in any order, and apart.
"""

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import demo_project
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pg_sessions import session_holding
from queries import execute, heads, rows
from sqlalchemy import pool, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from alembic_steady import Project
from alembic_steady.authoring.ops import backfill
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, on_connection
from alembic_steady.tools import lint

ROWS = 3000


# The template's naming convention: the names autogenerate writes (ix_item_sku, uq_item_code,
# fk_item_owner_id_owner) come from it.
METADATA = """
import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})
"""

CREATE_ITEM = (
    '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("name", sa.String(100), nullable=False), '
    'sa.Column("description", sa.String(), nullable=True), '
    'sa.PrimaryKeyConstraint("id", name="pk_item"))'
)
DROP_ITEM = '    op.drop_table("item")'


def write_project(name: str, chain: demo_project.Chain, models: str = METADATA) -> Project:
    """A demo project with its own chain and models, and the file `alembic revision` renders."""
    project = demo_project.write("postgresql", name=name, chain=chain, models=models)
    return project


def config_for(project: Project, url: URL, alembic_command: str) -> Config:
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = alembic_command
    return config


def autogenerate(project: Project, url: URL, message: str) -> Path | None:
    """`alembic revision --autogenerate` (what `make migration` runs): the file it wrote."""
    before = set(project.versions.glob("*.py"))
    command.revision(config_for(project, url, "revision"), message=message, autogenerate=True)
    new = sorted(set(project.versions.glob("*.py")) - before)
    assert len(new) <= 1, new
    return new[0] if new else None


def written(project: Project, url: URL, message: str) -> str:
    path = autogenerate(project, url, message)
    assert path is not None, "no revision written"
    return path.read_text(encoding="utf-8")


def check(project: Project, url: URL) -> str:
    """`alembic check` (`make check`): what it prints when the models match the migrations."""
    config = config_for(project, url, "check")
    config.stdout = io.StringIO()
    command.check(config)
    return config.stdout.getvalue()


def count(url: URL, sql: str) -> int:
    return int(on_connection(url, lambda c: c.execute(text(sql)).scalar_one()))


# --- what autogenerate writes -----------------------------------------------------------------

OWNER_AND_ITEM = (
    METADATA
    + """
owner = sa.Table(
    "owner", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False, index=True),
)
item = sa.Table(
    "item", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.String(), nullable=True),
    sa.Column("sku", sa.String(), nullable=True, index=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("owner.id"), nullable=True),
    sa.Column("ref", sa.Uuid, nullable=True),
    sa.Column("code", sa.String(), nullable=True, unique=True),
)
"""
)


def test_autogenerate_writes_concurrent_index_and_validated_foreign_key(
    database_url: URL,
) -> None:
    """The models gain a table, and columns, an index, a foreign key and a unique constraint on
    a table that already holds rows: the new table keeps the plain forms, the populated one gets
    the forms that let writes through, and they apply, roll back and apply again."""
    project = write_project("ops_autogen", [("a1", CREATE_ITEM, DROP_ITEM)], OWNER_AND_ITEM)
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    execute(
        database_url,
        f"INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g",
    )

    text_ = written(project, database_url, "add owner")
    # As Alembic renders them (a project's post-write hook may reformat them, as the template's
    # ruff does). The new table keeps the plain forms; the existing, populated one gets the safe
    # forms.
    assert "op.create_table('owner'," in text_
    assert "op.create_index(op.f('ix_owner_name'), 'owner'" in text_
    assert "op.create_index_concurrently(op.f('ix_item_sku'), 'item', ['sku']" in text_
    assert re.search(
        r"op\.create_foreign_key_validated\(\s*op\.f\('fk_item_owner_id_owner'\)", text_
    )
    assert "op.drop_index_concurrently(op.f('ix_item_sku'), table_name='item')" in text_
    assert (
        "op.create_unique_constraint_concurrently(op.f('uq_item_code'), 'item', ['code'])" in text_
    )
    assert "op.create_index(op.f('ix_item_sku')" not in text_
    # The concurrent steps commit what precedes them, so a rerun must skip the columns added.
    assert "sa.Column('sku', sa.String(), nullable=True), if_not_exists=True" in text_

    migrations.upgrade(url=database_url)
    assert rows(
        database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_item_sku'::regclass"
    ) == [(True,)]
    assert rows(
        database_url,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_item_owner_id_owner'",
    ) == [(True,)]
    assert rows(
        database_url, "SELECT contype::text FROM pg_constraint WHERE conname = 'uq_item_code'"
    ) == [("u",)]
    assert "No new upgrade operations detected" in check(project, database_url)
    # Both directions: down through drop_index_concurrently, and up again.
    command.downgrade(config_for(project, database_url, "downgrade"), "-1")
    assert rows(database_url, "SELECT to_regclass('ix_item_sku') IS NULL") == [(True,)]
    migrations.upgrade(url=database_url)
    assert rows(database_url, "SELECT count(*) FROM item") == [(ROWS,)]


CREATE_GADGET = (
    '    op.create_table("gadget", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("legacy", sa.String(), nullable=True), '
    'sa.PrimaryKeyConstraint("id", name="pk_gadget"))'
)
# gadget loses a column, item's name becomes unique: Alembic compares the tables in name order,
# so the drop runs, and the index build commits it, before the build fails.
UNIQUE_NAME_NO_LEGACY = (
    METADATA
    + """
gadget = sa.Table("gadget", metadata, sa.Column("id", sa.Integer, primary_key=True))
item = sa.Table(
    "item", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, index=True, unique=True),
    sa.Column("description", sa.String(), nullable=True),
)
"""
)


def test_a_unique_concurrent_index_refuses_duplicates_and_its_revision_reruns(
    database_url: URL,
) -> None:
    """The models drop a column and make an existing column unique: autogenerate writes the
    index CONCURRENTLY and still unique, so duplicates fail the build; the drop before it was
    committed by then, so it says IF EXISTS, and the rerun, duplicates gone, goes through."""
    project = write_project(
        "ops_unique_rerun",
        [("a1", f"{CREATE_ITEM}\n{CREATE_GADGET}", f'{DROP_ITEM}\n    op.drop_table("gadget")')],
        UNIQUE_NAME_NO_LEGACY,
    )
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    execute(
        database_url,
        f"INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g",
        "INSERT INTO item (name) VALUES ('item 1')",
    )

    text_ = written(project, database_url, "unique name")
    assert "op.create_index_concurrently(op.f('ix_item_name'), 'item', ['name'], unique=True)" in (
        text_
    )
    assert "op.drop_column('gadget', 'legacy', if_exists=True)" in text_

    with pytest.raises(CommandError, match="could not create unique index"):
        migrations.upgrade(url=database_url)
    assert heads(database_url) == {"a1"}
    # Committed before the concurrent build began: the rerun finds it done.
    assert rows(
        database_url,
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'gadget' AND column_name = 'legacy'",
    ) == [(0,)]

    execute(database_url, "DELETE FROM item WHERE id = (SELECT max(id) FROM item)")
    migrations.upgrade(url=database_url)
    assert rows(
        database_url,
        "SELECT indisvalid AND indisunique FROM pg_index "
        "WHERE indexrelid = 'ix_item_name'::regclass",
    ) == [(True,)]
    assert heads(database_url) != {"a1"}
    assert "No new upgrade operations detected" in check(project, database_url)


SKU_NULLABLE = (
    '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("name", sa.String(100), nullable=False), '
    'sa.Column("sku", sa.String(), nullable=True), '
    'sa.PrimaryKeyConstraint("id", name="pk_item"))'
)
SKU_REQUIRED = (
    METADATA
    + """
item = sa.Table(
    "item", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("sku", sa.String(), nullable=False),
)
"""
)
NOT_NULL_CHECKS = "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ck_item_sku%'"


def test_not_null_fails_cleanly_on_nulls_then_backfill_and_not_null_pass(
    database_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    """A column the models make NOT NULL: the revision says to backfill first, and applied
    before the backfill it fails naming the fix, leaving nothing that would reject the old app's
    NULLs. The backfill the README orders first, then the same change, go through."""
    project = write_project("ops_not_null", [("a1", SKU_NULLABLE, DROP_ITEM)], SKU_REQUIRED)
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    execute(
        database_url,
        f"INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g",
    )
    capsys.readouterr()

    not_null = autogenerate(project, database_url, "sku required")
    assert not_null is not None
    text_ = not_null.read_text(encoding="utf-8")
    assert "op.set_not_null('item', 'sku')" in text_
    assert re.search(r"# REVIEW: item\.sku becomes NOT NULL: existing NULLs .*[Bb]ackfill", text_)
    assert "nullable=False" not in text_.split("def downgrade")[0]
    generated = capsys.readouterr().err
    assert "WARNING: this revision makes item.sku NOT NULL: backfill its NULLs first" in generated

    with pytest.raises(CommandError, match=r"item\.sku still has NULLs: backfill them first"):
        migrations.upgrade(url=database_url)
    assert heads(database_url) == {"a1"}
    # Nothing is left behind that would reject the app's NULLs before it is ready for them.
    assert rows(database_url, NOT_NULL_CHECKS) == [(0,)]
    execute(database_url, "INSERT INTO item (name) VALUES ('written by the old app')")

    # The order the README gives: backfill first, then NOT NULL.
    not_null.unlink()
    total = ROWS + 1
    demo_project.add_revision(
        project.versions,
        "b2",
        "a1",
        """    op.backfill("item", {"sku": "'SKU-' || id"}, where="sku IS NULL", batch_size=700)""",
        "    pass",
        doc="backfill sku",
    )
    capsys.readouterr()
    migrations.upgrade(url=database_url)
    output = capsys.readouterr().err
    assert re.search(
        rf"backfill item\.sku: 700/{total} rows \(\d+%\), \d+ rows/s, ETA \d+s", output
    ), output
    assert f"backfill item.sku: {total}/{total} rows (100%)" in output
    assert rows(
        database_url, "SELECT count(*) FROM item WHERE sku IS DISTINCT FROM 'SKU-' || id"
    ) == [(0,)]

    assert autogenerate(project, database_url, "sku required") is not None
    migrations.upgrade(url=database_url)
    assert rows(
        database_url,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'item'::regclass AND attname = 'sku'",
    ) == [(True,)]
    assert rows(database_url, NOT_NULL_CHECKS) == [(0,)]
    assert "No new upgrade operations detected" in check(project, database_url)


OWNER_INT_ITEM_UUID = (
    '    op.create_table("owner", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("name", sa.String(80), nullable=False), '
    'sa.PrimaryKeyConstraint("id", name="pk_owner"))\n'
    '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("ref", sa.Uuid, nullable=True), sa.PrimaryKeyConstraint("id", name="pk_item"))'
)
CHANGED_TYPES = (
    METADATA
    + """
owner = sa.Table(
    "owner", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("code", sa.String(), nullable=False),
)
item = sa.Table(
    "item", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ref", sa.String(), nullable=True),
)
"""
)


def test_type_changes_and_not_null_columns_are_flagged_for_what_they_do(
    database_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    """Type changes say what they do to a live table and to the data, both ways, and a NOT NULL
    column without a default that it fails on rows: on stderr, and as review notes in the file."""
    project = write_project(
        "ops_types",
        [("a1", OWNER_INT_ITEM_UUID, '    op.drop_table("item")\n    op.drop_table("owner")')],
        CHANGED_TYPES,
    )
    Migrations(project).upgrade(url=database_url)
    capsys.readouterr()
    text_ = written(project, database_url, "types")
    output = capsys.readouterr().err
    assert "narrows owner.name from VARCHAR(80) to VARCHAR(40): can lose data" in output
    assert "widens owner.id from INTEGER to BIGINT: rewrites the table" in output
    assert "its downgrade narrows it back to INTEGER and can lose data" in output
    # A Uuid column is named as PostgreSQL writes it, not as SQLAlchemy's CHAR(32) fallback.
    assert "converts item.ref from UUID to VARCHAR" in output
    assert (
        "adds NOT NULL column owner.code without a server default: fails on a table with rows"
        in output
    )
    for note in (
        "narrows owner.name",
        "widens owner.id",
        "converts item.ref",
        "adds NOT NULL column owner.code",
    ):
        assert re.search(rf"# REVIEW: .*{re.escape(note)}", text_), note


# --- the safe operations on a live table ----------------------------------------------------

LEDGER_SQL = (
    "CREATE TABLE owner (id bigint PRIMARY KEY, name text)",
    "CREATE TABLE ledger (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text, "
    "owner_id bigint, code text)",
    "INSERT INTO owner (id, name) VALUES (1, 'first')",
    "INSERT INTO ledger (note, owner_id) SELECT 'n' || g, 1 FROM generate_series(1, {rows}) g",
)


def ledger(rows: int = ROWS) -> str:
    """a1's upgrade: the owner, and a ledger holding `rows` rows."""
    return "\n".join(f"    op.execute({sql.format(rows=rows)!r})" for sql in LEDGER_SQL)


DROP_LEDGER = '    op.execute("DROP TABLE ledger")\n    op.execute("DROP TABLE owner")'

NOT_NULL_DONE = (
    "SELECT attnotnull AND NOT EXISTS (SELECT FROM pg_constraint WHERE conname = "
    "'ck_ledger_note_not_null') FROM pg_attribute WHERE attrelid = 'ledger'::regclass "
    "AND attname = 'note'"
)
INDEX_ON_NOTE = 'op.create_index_concurrently("ix_ledger_note", "ledger", ["note"], unique=True)'
# A failed concurrent build (duplicates) leaves an INVALID index of the same name behind.
INVALID_LEFTOVER = "CREATE UNIQUE INDEX CONCURRENTLY ix_ledger_note ON ledger (owner_id)"
NOTE_INDEX_DONE = (
    "SELECT indisvalid AND indisunique AND pg_get_indexdef(indexrelid) LIKE '%(note)' "
    "FROM pg_index WHERE indexrelid = 'ix_ledger_note'::regclass"
)


# The lock the migration's session waits for on the ledger (none while it is not waiting).
WAITING = text(
    "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE NOT l.granted AND l.relation = 'ledger'::regclass AND a.application_name = :name"
)


def execute_outside_transaction(url: URL, sql: str) -> None:
    """For statements PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY)."""

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run())


def upgrade_process(project: Project, url: URL, **env: str) -> "subprocess.Popen[str]":
    """`python -m <package>.migrations upgrade` started, as a deploy job runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", f"{project.package}.migrations", "upgrade"],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": url.render_as_string(hide_password=False),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


async def write_while_the_migration_waits(url: URL, session_name: str) -> str:
    """Wait until the migration's session queues for a lock on the ledger, then write to it as
    the application does: a queued ACCESS EXCLUSIVE or SHARE lock would make these writes wait
    too, and their 2 s statement_timeout would cancel them. Returns the mode it queued for."""
    engine = create_async_engine(url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            mode = None
            deadline = time.monotonic() + 30
            while mode is None and time.monotonic() < deadline:
                mode = (await connection.execute(WAITING, {"name": session_name})).scalar()
                if mode is None:
                    await asyncio.sleep(0.005)
            assert mode, "the migration never queued for the ledger"
            await connection.execute(text("SET statement_timeout = '2s'"))
            for n in range(20):
                await connection.execute(
                    text(f"INSERT INTO ledger (note, owner_id) VALUES ('w{n}', 1)")
                )
                await connection.execute(text(f"UPDATE ledger SET note = note WHERE id = {n + 1}"))
                await asyncio.sleep(0.02)
            return str(mode)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("operation", "leftover", "done", "waits_for"),
    [
        (
            'op.set_not_null("ledger", "note")',
            # A run stopped after its first step left the NOT VALID CHECK: the rerun validates it.
            "ALTER TABLE ledger ADD CONSTRAINT ck_ledger_note_not_null "
            "CHECK (note IS NOT NULL) NOT VALID",
            NOT_NULL_DONE,
            "ShareUpdateExclusiveLock",
        ),
        (
            'op.create_foreign_key_validated("fk_ledger_owner_id_owner", "ledger", "owner", '
            '["owner_id"], ["id"])',
            "ALTER TABLE ledger ADD CONSTRAINT fk_ledger_owner_id_owner FOREIGN KEY (owner_id) "
            "REFERENCES owner (id) NOT VALID",
            "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_ledger_owner_id_owner'",
            "ShareUpdateExclusiveLock",
        ),
        (INDEX_ON_NOTE, INVALID_LEFTOVER, NOTE_INDEX_DONE, "ShareUpdateExclusiveLock"),
        (
            # From the first step: its moment of ACCESS EXCLUSIVE waits behind the holder (as it
            # would behind autovacuum) only briefly at a time, so writes get through in between.
            'op.set_not_null("ledger", "note")',
            None,
            NOT_NULL_DONE,
            "AccessExclusiveLock",
        ),
    ],
    ids=["not-null", "foreign-key", "index", "brief-exclusive-lock"],
)
def test_live_operations_let_writes_through(
    database_url: URL,
    request: pytest.FixtureRequest,
    operation: str,
    leftover: str | None,
    done: str,
    waits_for: str,
) -> None:
    """A second session holds SHARE UPDATE EXCLUSIVE on the table while the operation runs: the
    scans (VALIDATE, CREATE INDEX CONCURRENTLY) queue for that same mode, which lets writes
    through; the brief strong locks give way after a moment. A write blocked until the holder
    lets go would hit its 2 s statement_timeout and fail the test."""
    case = request.node.callspec.id.replace("-", "_")
    project = write_project(
        f"ops_live_{case}",
        [("a1", ledger(), DROP_LEDGER), ("b2", f"    {operation}", "    pass")],
    )
    Migrations(project).upgrade("a1", url=database_url)
    if leftover is not None:
        # The failed concurrent build raises; its INVALID index stays for the operation to replace.
        with suppress(DBAPIError):
            execute_outside_transaction(database_url, leftover)
    holder = "LOCK TABLE ledger IN SHARE UPDATE EXCLUSIVE MODE"
    with session_holding(database_url, holder, application_name="holder"):
        # A team's long lock timeout (the template's is 1 s) bounds the runner's waits, never a
        # brief strong lock's: writes queue behind that request for BRIEF_LOCK_WAIT at most.
        process = upgrade_process(
            project, database_url, MIGRATION_LOCK_TIMEOUT="20s", MIGRATION_LOCK_RETRIES="30"
        )
        try:
            mode = asyncio.run(write_while_the_migration_waits(database_url, project.session_name))
            assert process.poll() is None, "the migration finished past the holder"
        except BaseException:
            process.kill()
            process.communicate()
            raise
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert mode == waits_for
    assert rows(database_url, done) == [(True,)]
    assert heads(database_url) == {"b2"}


def test_an_invalid_leftover_is_rebuilt_where_the_runner_does_not_watch_statements(
    database_url: URL,
) -> None:
    """The runner drops an INVALID leftover before a concurrent build it runs itself; a run on
    a caller's own `fn` (the test walk's, say) is left untouched by it, and there the operation
    must do so itself: `IF NOT EXISTS` alone would keep the leftover, which enforces nothing."""
    project = write_project(
        "ops_leftover",
        [("a1", ledger(), DROP_LEDGER), ("b2", f"    {INDEX_ON_NOTE}", "    pass")],
    )
    Migrations(project).upgrade("a1", url=database_url)
    with suppress(DBAPIError):
        execute_outside_transaction(database_url, INVALID_LEFTOVER)
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_ledger_note'::regclass"
    assert rows(database_url, invalid) == [(False,)]

    harness = Harness(project)
    b2 = harness.script.get_revision("b2")
    assert b2 is not None
    harness.run_env(database_url, lambda heads, context: [harness.up(b2)])
    assert rows(database_url, NOTE_INDEX_DONE) == [(True,)]
    assert heads(database_url) == {"b2"}


def test_a_written_if_not_exists_build_replaces_an_invalid_leftover(database_url: URL) -> None:
    """A revision's own `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (in an autocommit_block, as
    PostgreSQL needs), rerun after a failed build left an INVALID index of that name: IF NOT
    EXISTS alone would skip the build and record the revision over an index that enforces
    nothing. The runner drops the leftover first, so the index built is the revision's, valid."""
    build = (
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_ledger_note '
        'ON ledger (note)")'
    )
    project = write_project(
        "ops_leftover_if_not_exists",
        [("a1", ledger(), DROP_LEDGER), ("b2", build, "    pass")],
    )
    Migrations(project).upgrade("a1", url=database_url)
    with suppress(DBAPIError):
        execute_outside_transaction(database_url, INVALID_LEFTOVER)
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_ledger_note'::regclass"
    assert rows(database_url, invalid) == [(False,)]

    Migrations(project).upgrade(url=database_url)
    assert rows(database_url, NOTE_INDEX_DONE) == [(True,)]
    assert heads(database_url) == {"b2"}


# --- the batched backfill ---------------------------------------------------------------------

RESUMED_ROWS = 1000
CODED = "SELECT count(*) FROM ledger WHERE code IS NOT NULL"


def test_interrupted_backfill_resumes_where_it_stopped(database_url: URL) -> None:
    """A deploy job killed in the middle of a backfill: its committed batches stay, and the next
    run starts where it stopped, counting and updating only the rows still NULL."""
    project = write_project(
        "ops_resume",
        [
            ("a1", ledger(RESUMED_ROWS), DROP_LEDGER),
            (
                "b2",
                '    op.backfill("ledger", {"code": "\'C-\' || id"}, where="code IS NULL", '
                "batch_size=100, pause=0.05)",
                "    pass",
            ),
        ],
    )
    migrations = Migrations(project)
    migrations.upgrade("a1", url=database_url)
    process = upgrade_process(project, database_url)
    try:
        # Killed once a few batches have committed (the whole backfill takes half a second).
        deadline = time.monotonic() + 30
        done = 0
        while done < 200 and process.poll() is None and time.monotonic() < deadline:
            done = count(database_url, CODED)
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # a deploy job killed midway
    finally:
        output, _ = process.communicate(timeout=60)
    assert "backfill ledger.code:" in output
    done = count(database_url, CODED)
    assert 0 < done < RESUMED_ROWS
    assert heads(database_url) == {"a1"}

    finished = demo_project.module_cli(
        project,
        "upgrade",
        env={"DATABASE_URL": database_url.render_as_string(hide_password=False)},
    )
    assert finished.returncode == 0, finished.stdout
    remaining = RESUMED_ROWS - done
    # It starts where the killed run stopped: only the rows still NULL are counted and updated.
    assert f"backfill ledger.code: {remaining}/{remaining} rows (100%)" in finished.stdout
    assert rows(database_url, "SELECT count(*) FROM ledger WHERE code = 'C-' || id") == [
        (RESUMED_ROWS,)
    ]
    assert heads(database_url) == {"b2"}


def test_a_signal_during_a_backfill_says_what_it_committed(database_url: URL) -> None:
    """SIGTERM part way through op.backfill (a deploy cancelled): the run stops as for any
    signal (143, one line, no traceback), and the line says the batches before it committed,
    not that nothing was applied; a rerun finishes from there."""
    project = write_project(
        "ops_signal",
        [
            ("a1", ledger(RESUMED_ROWS), DROP_LEDGER),
            (
                "b2",
                '    op.backfill("ledger", {"code": "\'C-\' || id"}, where="code IS NULL", '
                "batch_size=100, pause=0.05)",
                "    pass",
            ),
        ],
    )
    Migrations(project).upgrade("a1", url=database_url)
    process = upgrade_process(project, database_url)
    try:
        deadline = time.monotonic() + 30
        while count(database_url, CODED) < 200 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
    finally:
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output and "PendingRollbackError" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("Interrupted by SIGTERM")]
    assert "Nothing of it was applied" not in line and "was rolled back" not in line, line
    stated = re.search(r"backfill UPDATE ledger SET code = .* \(at least (\d+) rows\)", line)
    assert stated is not None, line
    assert 200 <= int(stated.group(1)) <= count(database_url, CODED) < RESUMED_ROWS
    assert heads(database_url) == {"a1"}
    finished = demo_project.module_cli(project, "upgrade", url=database_url)
    assert finished.returncode == 0, finished.stdout
    assert count(database_url, CODED) == RESUMED_ROWS


def test_backfill_leaves_the_rows_its_where_excludes(
    database_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new release is live before its backfill runs and already wrote the column on some
    rows, scattered through the table: the backfill's `where` excludes them, so every batch must
    pass them by, keeping the application's values, and count only the rows it selects."""
    project = write_project(
        "ops_backfill_where",
        [
            ("a1", ledger(RESUMED_ROWS), DROP_LEDGER),
            (
                "b2",
                '    op.backfill("ledger", {"code": "\'C-\' || id"}, where="code IS NULL", '
                "batch_size=100, pause=0)",
                "    pass",
            ),
        ],
    )
    migrations = Migrations(project)
    migrations.upgrade("a1", url=database_url)
    # From row 2 on: the first batch starts at the lowest NULL row, so rows inside every batch's
    # key range are the ones at stake.
    execute(database_url, "UPDATE ledger SET code = 'app-' || id WHERE id % 7 = 2")
    written_by_app = count(database_url, CODED)
    capsys.readouterr()

    migrations.upgrade(url=database_url)

    remaining = RESUMED_ROWS - written_by_app
    assert f"backfill ledger.code: {remaining}/{remaining} rows (100%)" in capsys.readouterr().err
    assert rows(
        database_url,
        "SELECT count(*) FILTER (WHERE code = 'app-' || id), "
        "count(*) FILTER (WHERE code = 'C-' || id) FROM ledger",
    ) == [(written_by_app, remaining)]
    assert heads(database_url) == {"b2"}


# The migration's session waiting for a row lock an application transaction holds.
WAITING_FOR_A_ROW = text(
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE NOT l.granted AND l.locktype = 'transactionid' AND a.application_name = :name"
)


def test_backfill_keeps_a_value_the_application_writes_while_a_batch_waits(
    database_url: URL,
) -> None:
    """The new release updates a row the running batch has selected, and commits while the batch
    waits for that row: PostgreSQL then re-checks only the UPDATE's own WHERE on the new row
    version, so the batch must repeat the backfill's `where` there, or it overwrites the
    application's value with the backfill's."""
    project = write_project(
        "ops_backfill_race",
        [
            ("a1", ledger(RESUMED_ROWS), DROP_LEDGER),
            (
                "b2",
                '    op.backfill("ledger", {"code": "\'C-\' || id"}, where="code IS NULL", '
                "batch_size=100000, pause=0)",
                "    pass",
            ),
        ],
    )
    migrations = Migrations(project)
    migrations.upgrade("a1", url=database_url)

    async def race() -> None:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as app, engine.connect() as observer:
                await app.execute(text("UPDATE ledger SET code = 'app' WHERE id = 500"))
                upgrading = asyncio.ensure_future(
                    asyncio.to_thread(migrations.upgrade, url=database_url)
                )
                deadline = time.monotonic() + 30
                name = {"name": project.session_name}
                while not (await observer.execute(WAITING_FOR_A_ROW, name)).scalar_one():
                    assert not upgrading.done(), "the backfill never waited for the row"
                    assert time.monotonic() < deadline, "the backfill never waited for the row"
                    await observer.rollback()
                    await asyncio.sleep(0.005)
                await app.commit()
                await upgrading
        finally:
            await engine.dispose()

    asyncio.run(race())
    assert rows(database_url, "SELECT code FROM ledger WHERE id = 500") == [("app",)]
    assert count(database_url, "SELECT count(*) FROM ledger WHERE code = 'C-' || id") == (
        RESUMED_ROWS - 1
    )
    assert heads(database_url) == {"b2"}


def test_backfill_runs_from_code(database_url: URL, capsys: pytest.CaptureFixture[str]) -> None:
    """`backfill` outside a migration, as its docstring shows it from async code: on the
    caller's connection, committing batch by batch, with the same progress lines."""
    execute(database_url, LEDGER_SQL[1])
    execute(
        database_url, f"INSERT INTO ledger (note) SELECT 'n' || g FROM generate_series(1, {ROWS}) g"
    )

    async def run() -> int:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                updated: int = await conn.run_sync(
                    backfill,
                    "ledger",
                    {"code": "upper(note)"},
                    where="code IS NULL",
                    batch_size=1000,
                )
                return updated
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == ROWS
    assert f"backfill ledger.code: {ROWS}/{ROWS} rows (100%)" in capsys.readouterr().err
    # Committed by backfill itself: the connection closed without a commit of the caller's.
    assert rows(database_url, "SELECT count(*) FROM ledger WHERE code = upper(note)") == [(ROWS,)]


# --- a caller's transaction -------------------------------------------------------------------


def test_safe_operation_inside_a_callers_transaction_is_refused_clearly(
    migration_project: Project, database_url: URL
) -> None:
    """b2 of the demo chain builds its index CONCURRENTLY, which commits step by step: inside
    a transaction the caller holds open it cannot, and says how to run it instead."""
    migrations = Migrations(migration_project)
    migrations.upgrade("a1", url=database_url)

    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(lambda c: migrations.upgrade(connection=c))
                await conn.commit()
        finally:
            await engine.dispose()

    with pytest.raises(CommandError) as refused:
        asyncio.run(run())
    message = str(refused.value)
    assert "commit step by step, outside any transaction" in message
    assert "`make migrate` or upgrade() without a connection" in message
    assert heads(database_url) == {"a1"}
    assert rows(database_url, "SELECT to_regclass('ix_widget_name') IS NULL") == [(True,)]


# --- the SQL lint-migrations hands to squawk --------------------------------------------------

BLOCKING = (
    '    op.create_index("ix_item_description", "item", ["description"])\n'
    '    op.drop_column("item", "description")'
)


@pytest.fixture(scope="module")
def lint_project() -> Iterator[Project]:
    """a1 creates the table; b2 makes two blocking changes, each accepted on a line of its own;
    c3 makes a column NOT NULL the safe way."""
    project = write_project(
        "ops_lint",
        [("a1", CREATE_ITEM, DROP_ITEM), ("b2", BLOCKING, "    pass"), ("c3", "", "    pass")],
    )
    b2 = project.versions / "b2.py"
    b2.write_text(
        "# squawk-ignore: require-concurrent-index-creation\n"
        "# squawk-ignore: ban-drop-column\n" + b2.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    demo_project.add_revision(
        project.versions, "c3", "b2", '    op.set_not_null("item", "name")', "    pass"
    )
    yield project


def offline_sql(project: Project, revision: str) -> str:
    """One revision's SQL on its own, as lint-migrations renders it for squawk."""
    config = Migrations(project).alembic_config(url=URL.create("postgresql+asyncpg", database="x"))
    config.attributes["command"] = "upgrade"
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None
    return lint.revision_sql(config, script)


def test_lint_reads_every_ignore_line_of_a_revision(lint_project: Project) -> None:
    """squawk is a dependency of the rendered projects, not of the toolkit: what it is given is
    checked here, its findings in the template's tests/test_zero_downtime.py."""
    accepted = lint.accepted_rules(lint_project.versions / "b2.py")
    assert accepted == ["require-concurrent-index-creation", "ban-drop-column"]
    assert lint.accepted_rules(lint_project.versions / "a1.py") == []


def test_lint_renders_each_revisions_own_sql(lint_project: Project) -> None:
    """A finding points at the revision that causes it: b2's SQL holds its own statements, not
    a1's table nor Alembic's version table; the safe NOT NULL's temporary CHECK is dropped with
    the ignore comment squawk reads right above the statement."""
    blocking = offline_sql(lint_project, "b2")
    assert "CREATE INDEX ix_item_description ON item (description)" in blocking
    assert "ALTER TABLE item DROP COLUMN description" in blocking
    assert "CREATE TABLE item" not in blocking
    # Alembic's own bookkeeping, which the first revision's SQL starts with, is no finding.
    first = offline_sql(lint_project, "a1")
    assert "CREATE TABLE item" in first
    assert "CREATE TABLE alembic_version" not in first
    safe = offline_sql(lint_project, "c3")
    assert (
        "-- squawk-ignore ban-drop-constraint\n"
        "ALTER TABLE item DROP CONSTRAINT IF EXISTS ck_item_name_not_null" in safe
    ), safe
