"""`upgrade()` from sync code, inside a running event loop, and on a caller's connection; env.py
on an engine that a test tool injects. Each way in waits for the same migration lock, and on a
caller's connection the upgrade stays inside the caller's transaction.

Each test upgrades to the first revision only: the API's plumbing is the same for any target,
and test_migrations.py already walks the whole chain, so these stay fast as the chain grows.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.util import CommandError
{%- if cookiecutter.database == "mysql" %}
from alembic_steady.dialects.mysql import lock_name
{%- else %}
from alembic_steady.dialects.postgresql import lock_key
{%- endif %}
from alembic_steady.testing.walk import Harness, on_connection
from sqlalchemy import Connection, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.db import create_engine
from {{ cookiecutter.package_name }}.migrations import (
    PROJECT,
    alembic_config,
    current_heads,
    upgrade,
    upgrade_async,
)
from {{ cookiecutter.package_name }}.settings import get_settings

FIRST = Harness.of(PROJECT).revisions_base_to_head()[0].revision


def assert_at(url: URL, expected: set[str]) -> None:
    def check(connection: Connection) -> None:
        assert current_heads(connection) == expected

    on_connection(url, check)


def assert_at_first(url: URL) -> None:
    assert_at(url, {FIRST})


@pytest.fixture
def database_url(database_url: URL) -> URL:
    """The shared fixture's empty database, checked: no test here may pass because an earlier
    one left the database at FIRST."""
    assert_at(database_url, set())
    return database_url


def test_upgrade_from_sync_code(database_url: URL) -> None:
    upgrade(FIRST, url=database_url)
    assert_at_first(database_url)


def test_upgrade_inside_a_running_event_loop(database_url: URL) -> None:
    async def lifespan() -> None:
        upgrade(FIRST, url=database_url)  # a sync call from async code must not break the loop

    asyncio.run(lifespan())
    assert_at_first(database_url)


def test_upgrade_async(database_url: URL) -> None:
    asyncio.run(upgrade_async(FIRST, url=database_url))
    assert_at_first(database_url)


def test_upgrade_on_an_injected_connection(database_url: URL) -> None:
    async def migrate() -> None:
        engine = create_engine(url=database_url)
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: upgrade(FIRST, connection=sync))
        await engine.dispose()

    asyncio.run(migrate())
    assert_at_first(database_url)


def test_env_runs_on_an_injected_async_engine(database_url: URL) -> None:
    # What pytest-alembic does with an async `alembic_engine` fixture: env.py then migrates on
    # that engine, under the same lock, and leaves disposing of it to the caller.
    engine = create_engine(url=database_url)
    config = alembic_config()
    config.attributes["connection"] = engine
    command.upgrade(config, FIRST)
    asyncio.run(engine.dispose())
    assert_at_first(database_url)


def test_upgrade_on_an_injected_connection_stays_in_the_callers_transaction(
    database_url: URL,
) -> None:
    # The caller decides: rolled back, the upgrade leaves nothing behind.
    async def migrate_then_roll_back() -> None:
        engine = create_engine(url=database_url)
        async with engine.connect() as connection:
            await connection.run_sync(lambda sync: upgrade(FIRST, connection=sync))
            await connection.rollback()
        await engine.dispose()

    asyncio.run(migrate_then_roll_back())
    assert_at(database_url, set())
{%- if cookiecutter.database == "mysql" %}
    # MySQL commits DDL on its own: the caller's rollback undid the version row, not the table.
    tables = text(
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'"
    )
    listed = on_connection(database_url, lambda sync: sync.execute(tables).scalars().all())
    assert listed == ["item"]
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


def _on_injected_connection(url: URL) -> None:
    async def migrate() -> None:
        engine = create_engine(url=url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(lambda sync: upgrade(FIRST, connection=sync))
        finally:
            await engine.dispose()

    asyncio.run(migrate())


def _on_injected_engine(url: URL) -> None:
    engine = create_engine(url=url)
    config = alembic_config()
    config.attributes["connection"] = engine
    try:
        command.upgrade(config, FIRST)
    finally:
        asyncio.run(engine.dispose())


@pytest.mark.parametrize(
    "migrate",
    [
        lambda url: upgrade(FIRST, url=url),
        _on_injected_connection,
        _on_injected_engine,
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
