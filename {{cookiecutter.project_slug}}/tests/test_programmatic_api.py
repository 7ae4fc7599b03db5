"""`upgrade()` from sync code, inside a running event loop, and on a caller's connection; env.py
on an engine that a test tool injects.

Each test upgrades to the first revision only: the API's plumbing is the same for any target,
and test_migrations.py already walks the whole chain, so these stay fast as the chain grows.
"""

import asyncio

import pytest
from alembic import command
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.db import create_engine
from {{ cookiecutter.package_name }}.migrations import (
    alembic_config,
    current_heads,
    upgrade,
    upgrade_async,
)

from .migration_helpers import on_connection, revisions_base_to_head

FIRST = revisions_base_to_head()[0].revision


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
