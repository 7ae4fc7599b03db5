"""The runner against a real PostgreSQL, without a render: the migration lock, lock-timeout
retries naming the blocker, a caller's connection and transaction, offline SQL, concurrent runs."""

import asyncio
import io
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import demo_project
import pytest
from alembic import command
from alembic.util import CommandError
from pg_sessions import session_holding
from sqlalchemy import Connection, Engine, event, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from alembic_steady import Project
from alembic_steady.dialects.postgresql import lock_key
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection


@pytest.fixture
def migrations(migration_project: Project) -> Migrations:
    return Migrations(migration_project)


def heads(connection: Connection) -> set[str]:
    return Migrations.current_heads(connection)


def advisory_locks(connection: Connection) -> int:
    return int(
        connection.execute(
            # This database's only: runs sharing the server hold their own.
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
    )


def test_upgrade_reaches_head_and_releases_the_lock(
    migrations: Migrations, database_url: URL
) -> None:
    migrations.upgrade(url=database_url)
    assert on_connection(database_url, heads) == {"c3"}
    assert on_connection(database_url, advisory_locks) == 0


def test_what_a_run_reads_and_sets_once_does_not_grow_with_its_revisions(
    migrations: Migrations, database_url: URL
) -> None:
    # The version table is read, and lock_timeout set, once per run: a step knows the heads the
    # step before wrote and the bound the session holds (a walk of hundreds of revisions paid
    # two round trips per step for them).
    def counted(revision: str) -> Counter[str]:
        seen: Counter[str] = Counter()

        def count(_: object, __: object, statement: str, *args: object) -> None:
            if "FROM alembic_version" in statement:
                seen["version read"] += 1
            elif "set_config('lock_timeout'" in statement:
                seen["lock bound"] += 1

        event.listen(Engine, "before_cursor_execute", count)
        try:
            migrations.upgrade(revision, url=database_url)
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        return seen

    migrations.upgrade("a1", url=database_url)
    one = counted("b2")
    command.downgrade(migrations.alembic_config(url=database_url), "a1")
    two = counted("head")  # b2 and c3
    assert on_connection(database_url, heads) == {"c3"}
    assert one == two and one["lock bound"] == 1, (one, two)


def test_the_concurrent_index_is_built_and_valid(migrations: Migrations, database_url: URL) -> None:
    migrations.upgrade(url=database_url)
    valid = on_connection(
        database_url,
        lambda c: c.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_widget_name'::regclass")
        ).scalar_one(),
    )
    assert valid is True


@pytest.fixture
def held_lock(migrations: Migrations, database_url: URL) -> Iterator[None]:
    """Another session holding the project's migration lock, as a replica mid-migration does."""
    key = lock_key(migrations.project.package)
    with session_holding(database_url, f"SELECT pg_advisory_lock({key})"):
        yield


def test_a_held_migration_lock_is_waited_for_then_named(
    migrations: Migrations, database_url: URL, held_lock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # env.py reads the project's settings: MIGRATION_LOCK_WAIT=0.5 there.
    settings = sys.modules[f"{migrations.project.package}.migrations"]
    monkeypatch.setattr(settings, "SETTINGS", replace(settings.SETTINGS, migration_lock_wait=0.5))
    started = time.monotonic()
    with pytest.raises(
        CommandError, match=r"Another migration \(pid \d+.*holds the lock after 0.5s"
    ):
        migrations.upgrade(url=database_url)
    assert time.monotonic() - started < 5  # waited its bound, not the default 20 s
    assert on_connection(database_url, heads) == set()


@pytest.fixture
def blocked_widget(migrations: Migrations, database_url: URL) -> Iterator[None]:
    """The chain up to b2, and an app session idle in a transaction holding a lock on widget."""
    migrations.upgrade("b2", url=database_url)
    with session_holding(
        database_url, "SELECT count(*) FROM widget", application_name="blocking-app"
    ):
        yield


def test_a_blocked_revision_is_retried_then_explained_naming_the_blocker(
    migrations: Migrations,
    database_url: URL,
    blocked_widget: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(CommandError) as failure:
        migrations.upgrade(url=database_url)
    message = str(failure.value)
    assert message.startswith("Revision c3 (add price) could not get its lock in 3 attempts"), (
        message
    )
    assert "application_name 'blocking-app'" in message
    assert "make migrate" in message
    # Each failed attempt logged the revision and its escalating bound: a quarter of 400ms, then
    # half (the third, at the whole 400ms, gave up).
    waits = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert [w.split(" waited ")[1].split(" ")[0] for w in waits] == ["100ms", "200ms"], waits
    assert all(w.startswith("Revision c3") for w in waits), waits
    assert on_connection(database_url, heads) == {"b2"}


def test_a_callers_connection_runs_inside_its_transaction(
    migrations: Migrations, database_url: URL
) -> None:
    async def run() -> set[str]:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(lambda sync: migrations.upgrade("a1", connection=sync))
                inside = await connection.run_sync(heads)
                await connection.rollback()  # the caller's choice: nothing stays
                return inside
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == {"a1"}
    assert on_connection(database_url, heads) == set()


def test_offline_sql_carries_the_timeouts(migrations: Migrations) -> None:
    config = migrations.alembic_config(url=URL.create("postgresql+asyncpg", database="x"))
    config.output_buffer = io.StringIO()
    config.attributes["command"] = "upgrade"
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "SET lock_timeout = '400ms'" in sql
    assert "CREATE INDEX CONCURRENTLY" in sql.upper()


def test_replicas_racing_serialise(migrations: Migrations, database_url: URL) -> None:
    """Four replicas starting at once: each exits 0, and the chain is applied once."""
    outcomes = demo_project.race(migrations.project, database_url, 4)
    assert [status for status, _ in outcomes] == [0, 0, 0, 0], outcomes
    assert on_connection(database_url, heads) == {"c3"}


def test_a_revision_that_does_not_compile_is_one_line_naming_file_and_line(
    database_url: URL,
) -> None:
    # Alembic loads every revision file before running one: the run stops at the start.
    project = demo_project.write("postgresql", name="syntax")
    broken = 'revision = "d4"\ndown_revision = "c3"\n\n\ndef upgrade() -> None:\n'
    broken += '    op.execute("x"\n'
    (project.versions / "d4.py").write_text(broken, encoding="utf-8")
    result = demo_project.module_cli(project, "upgrade", url=database_url)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert line.startswith("FAILED: Revision file d4.py, line 6: '(' was never closed"), line
    assert "This run changed nothing" in line
    assert on_connection(database_url, heads) == set()


def test_a_run_that_changes_nothing_says_so(migrations: Migrations, database_url: URL) -> None:
    # Alembic prints nothing for either: silence in a job log reads as a hang or a failure.
    project = migrations.project
    current = demo_project.module_cli(project, "current", url=database_url)
    assert current.returncode == 0, current.stdout
    migrate = f"python -m {project.package}.migrations upgrade"
    assert f"No revision is applied yet (base): {migrate} applies them." in current.stdout
    assert demo_project.module_cli(project, "upgrade", url=database_url).returncode == 0
    again = demo_project.module_cli(project, "upgrade", url=database_url)
    assert again.returncode == 0, again.stdout
    assert "Nothing to apply: the database is at c3." in again.stdout
    # At a revision, `current` prints Alembic's line only.
    assert "No revision" not in demo_project.module_cli(project, "current", url=database_url).stdout


def test_code_calling_upgrade_gets_no_output(
    migrations: Migrations, database_url: URL, capfd: pytest.CaptureFixture[str]
) -> None:
    migrations.upgrade(url=database_url)
    migrations.upgrade(url=database_url)
    assert capfd.readouterr() == ("", "")


def test_a_database_that_does_not_exist_is_named_with_the_way_to_create_it(
    migrations: Migrations, database_url: URL
) -> None:
    missing = database_url.set(database=f"{database_url.database}_missing")
    result = demo_project.module_cli(migrations.project, "upgrade", url=missing)
    assert result.returncode == 1, result.stdout
    assert f'does not exist. Create it (CREATE DATABASE "{missing.database}"' in result.stdout
    assert "Traceback" not in result.stdout


def test_a_test_database_commits_without_waiting_for_the_disk(database_url: URL) -> None:
    # The walk's hundreds of transactions each waited for a WAL flush; a test database is
    # thrown away, so nothing is lost by not waiting (locks and visibility are the same).
    setting = on_connection(
        database_url, lambda c: c.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    )
    assert setting == "off"
