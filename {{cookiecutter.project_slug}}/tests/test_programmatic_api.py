"""`upgrade()` from sync code, inside a running event loop, and on a caller's connection; env.py
on an engine that a test tool injects. Each way in waits for the same migration lock, and on a
caller's connection the upgrade stays inside the caller's transaction.

The upgrades run the project's env.py and runner over a one-revision chain of their own: the
plumbing is the same for any chain, test_migrations.py walks the project's, and a large first
revision (a squashed baseline) would otherwise cost each test here its whole upgrade. The lock
tests use the project's own chain: they apply nothing.
"""

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
{%- if cookiecutter.database == "mysql" %}
from alembic_steady.dialects.mysql import lock_name
{%- else %}
from alembic_steady.dialects.postgresql import lock_key
{%- endif %}
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, on_connection
from sqlalchemy import Connection, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.db import create_engine
from {{ cookiecutter.package_name }}.migrations import (
    MIGRATIONS_DIR,
    PROJECT,
    alembic_config,
    current_heads,
    upgrade,
)
from {{ cookiecutter.package_name }}.settings import get_settings

FIRST = Harness.of(PROJECT).revisions_base_to_head()[0].revision


def assert_at(url: URL, expected: set[str]) -> None:
    def check(connection: Connection) -> None:
        assert current_heads(connection) == expected

    on_connection(url, check)


TINY = "0a0a0a0a0a0a"
TINY_REVISION = f'''"""A table for the ways in."""

from alembic import op

revision = "{TINY}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE ways_in (id int)")


def downgrade() -> None:
    op.execute("DROP TABLE ways_in")
'''


@pytest.fixture(scope="module")
def ways_in() -> Iterator[Migrations]:
    """The project's migrations (its env.py, runner and settings) over the one-revision chain."""
    # Not pytest's tmp_path: see alembic_steady.testing.checks.planted_folder.
    with tempfile.TemporaryDirectory(prefix="ways-in-") as folder:
        migrations = Path(folder) / "migrations"
        shutil.copytree(
            MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("versions", "__pycache__")
        )
        (migrations / "versions").mkdir()
        (migrations / "versions" / f"{TINY}_ways_in.py").write_text(TINY_REVISION)
        yield Migrations(replace(PROJECT, migrations=migrations))


@pytest.fixture
def database_url(database_url: URL) -> URL:
    """The shared fixture's empty database, checked: no test here may pass because an earlier
    one left a revision applied."""
    assert_at(database_url, set())
    return database_url


def test_upgrade_from_sync_code(database_url: URL, ways_in: Migrations) -> None:
    ways_in.upgrade(TINY, url=database_url)
    assert_at(database_url, {TINY})


def test_upgrade_inside_a_running_event_loop(database_url: URL, ways_in: Migrations) -> None:
    async def lifespan() -> None:
        # A sync call from async code must not break the loop.
        ways_in.upgrade(TINY, url=database_url)

    asyncio.run(lifespan())
    assert_at(database_url, {TINY})


def test_upgrade_async(database_url: URL, ways_in: Migrations) -> None:
    asyncio.run(ways_in.upgrade_async(TINY, url=database_url))
    assert_at(database_url, {TINY})


def on_injected_connection(url: URL, migrate: Callable[[Connection], object]) -> None:
    """`migrate` on a connection of the app's engine, in a transaction the caller began."""

    async def run() -> None:
        engine = create_engine(url=url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


def on_injected_engine(url: URL, config: Config, revision: str) -> None:
    """What pytest-alembic does with an async `alembic_engine` fixture: env.py then migrates on
    that engine, under the same lock, and leaves disposing of it to the caller."""
    engine = create_engine(url=url)
    config.attributes["connection"] = engine
    try:
        command.upgrade(config, revision)
    finally:
        asyncio.run(engine.dispose())


def test_upgrade_on_an_injected_connection(database_url: URL, ways_in: Migrations) -> None:
    on_injected_connection(database_url, lambda sync: ways_in.upgrade(TINY, connection=sync))
    assert_at(database_url, {TINY})


def test_env_runs_on_an_injected_async_engine(database_url: URL, ways_in: Migrations) -> None:
    on_injected_engine(database_url, ways_in.alembic_config(), TINY)
    assert_at(database_url, {TINY})


def test_upgrade_on_an_injected_connection_stays_in_the_callers_transaction(
    database_url: URL, ways_in: Migrations
) -> None:
    # The caller decides: rolled back, the upgrade leaves nothing behind.
    async def migrate_then_roll_back() -> None:
        engine = create_engine(url=database_url)
        async with engine.connect() as connection:
            await connection.run_sync(lambda sync: ways_in.upgrade(TINY, connection=sync))
            await connection.rollback()
        await engine.dispose()

    asyncio.run(migrate_then_roll_back())
    assert_at(database_url, set())
{%- if cookiecutter.database == "mysql" %}
    # MySQL commits DDL on its own: the caller's rollback undid the version row, not the table
    # (nor the table of the runner's checksums, beside the version table).
    tables = text(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME NOT IN ('alembic_version', 'alembic_version_checksums')"
    )
    listed = on_connection(database_url, lambda sync: sync.execute(tables).scalars().all())
    assert listed == ["ways_in"]
{%- endif %}


@contextmanager
def migration_lock_held(url: URL) -> Iterator[None]:
    """The project's migration lock, held by another session as a running replica holds it."""
    loop = asyncio.new_event_loop()
    engine = create_async_engine(url, poolclass=pool.NullPool)
    connection = loop.run_until_complete(engine.connect())
    try:
{%- if cookiecutter.database == "mysql" %}
        lock = text("SELECT GET_LOCK(:name, 5)")
        held = {"name": lock_name("{{ cookiecutter.package_name }}", url.database)}
{%- else %}
        lock = text("SELECT pg_advisory_lock(:key)")
        held = {"key": lock_key("{{ cookiecutter.package_name }}")}
{%- endif %}
        loop.run_until_complete(connection.execute(lock, held))
        yield
    finally:
        loop.run_until_complete(connection.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


@pytest.mark.parametrize(
    "migrate",
    [
        lambda url: upgrade(FIRST, url=url),
        lambda url: on_injected_connection(url, lambda sync: upgrade(FIRST, connection=sync)),
        lambda url: on_injected_engine(url, alembic_config(), FIRST),
    ],
    ids=["upgrade", "injected connection", "injected async engine"],
)
def test_every_way_in_waits_for_the_migration_lock(
    database_url: URL, monkeypatch: pytest.MonkeyPatch, migrate: Callable[[URL], None]
) -> None:
    # Another replica holds the lock: each way of migrating from code waits for it (briefly
    # here), gives up with a message about the lock, and applies nothing.
    monkeypatch.setenv("MIGRATION_LOCK_WAIT", "0.02")
    get_settings.cache_clear()
    try:
        with migration_lock_held(database_url), pytest.raises(CommandError, match="lock"):
            migrate(database_url)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert_at(database_url, set())
