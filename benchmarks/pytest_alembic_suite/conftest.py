"""Fixtures that let pytest-alembic's built-in tests run on a rendered project.

run.py copies this file to `<work>/pytest-alembic/tests/conftest.py`, where pytest-alembic binds
its built-in tests by default, and runs the pytest-alembic venv's `pytest --test-alembic` there,
once per mode. Environment: BENCH_PACKAGE (the project's package), BENCH_ADMIN_URL (a
postgresql:// URL of the shared server's `postgres` database), BENCH_PA_MODE:

- `engine` (as pytest-alembic documents it): `alembic_engine` is an AsyncEngine (asyncpg, the
  project's driver) on an empty database. pytest-alembic hands it to env.py as
  `config.attributes["connection"]`, and the generated env.py migrates on it under its usual
  lock, so every command pays what a user's would: env.py, a lock connection and a migration
  connection.
- `connection` (hand-tuned, kinder to pytest-alembic): `alembic_engine` is one sync psycopg
  Connection shared by every command of the test, committed after each command (env.py runs an
  injected Connection inside the caller's transaction). No command opens a connection.

Both use the project's own code-built Alembic config (`<package>.migrations.alembic_config()`),
and the generated suite's database set-up: one database for the session (CREATE DATABASE once),
emptied before each test by dropping every schema, rather than a CREATE DATABASE per test, and
with the same database setting: the generated plugin makes its test databases with
`synchronous_commit = off` (a disposable database need not wait for the disk), so this one gets
it too. Nothing else differs from the server's defaults.
"""

import functools
import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_alembic.config import Config
from pytest_alembic.executor import CommandExecutor
from sqlalchemy import Connection, create_engine, make_url, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

MODE = os.environ.get("BENCH_PA_MODE", "engine")


def _package_module(name: str) -> Any:
    return importlib.import_module(f"{os.environ['BENCH_PACKAGE']}.{name}")


def _url(database: str, driver: str) -> Any:
    return make_url(os.environ["BENCH_ADMIN_URL"]).set(drivername=driver, database=database)


def _admin(statement: str, database: str = "postgres") -> None:
    engine = create_engine(
        _url(database, "postgresql+psycopg"),
        poolclass=pool.NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def alembic_config() -> Config:
    return Config(alembic_config=_package_module("migrations").alembic_config())


# The generated project's conftest empties a database the same way.
EMPTY_DATABASE = r"""
DO $$
DECLARE schema_name name;
BEGIN
  FOR schema_name IN SELECT nspname FROM pg_namespace
                      WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
  END LOOP;
  CREATE SCHEMA public;
END $$
"""


@pytest.fixture(scope="session")
def session_database() -> Iterator[str]:
    name = f"pa_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    _admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')  # as the generated suite's
    try:
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def alembic_engine(session_database: str) -> Iterator[Any]:
    name = session_database
    _admin(EMPTY_DATABASE, name)
    if MODE == "engine":
        async_engine = create_async_engine(
            _url(name, "postgresql+asyncpg"), poolclass=pool.NullPool
        )
        yield async_engine
        # NullPool: no connection outlives its command, so there is nothing to dispose.
    else:
        engine = create_engine(_url(name, "postgresql+psycopg"), poolclass=pool.NullPool)
        with engine.connect() as connection:
            yield connection
        engine.dispose()


def _committing(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: CommandExecutor, *args: Any, **kwargs: Any) -> Any:
        connection = self.alembic_config.attributes.get("connection")
        try:
            result = method(self, *args, **kwargs)
        except BaseException:
            if isinstance(connection, Connection):
                connection.rollback()
            raise
        if isinstance(connection, Connection):
            connection.commit()
        return result

    return run


@pytest.fixture(autouse=True)
def commit_per_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the shared Connection needs it: `_run_env` carries upgrades and downgrades,
    # `run_command` the other alembic commands.
    if MODE == "connection":
        for name in ("_run_env", "run_command"):
            monkeypatch.setattr(CommandExecutor, name, _committing(getattr(CommandExecutor, name)))
