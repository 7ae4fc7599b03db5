"""Fixtures that let pytest-alembic's built-in tests run on a rendered project.

run.py copies this file to `<work>/pytest-alembic/tests/conftest.py`, where pytest-alembic binds
its built-in tests by default, and runs the pytest-alembic venv's `pytest --test-alembic` there.
Environment: BENCH_PACKAGE (the project's package), BENCH_ADMIN_URL (a postgresql+psycopg URL of
the shared server's `postgres` database).

How it is wired, and why:

- `alembic_config` is the project's own code-built Alembic config (`<package>.migrations`): the
  script location alembic.ini names, without the ini's logging set-up re-run on every command.
- `alembic_engine` is a sync psycopg *Connection* to a database of the test's own. pytest-alembic
  passes this object to env.py as `config.attributes["connection"]`, and the generated env.py
  wants a Connection there (it takes the advisory lock and runs the revisions on it); with an
  Engine or an AsyncEngine it fails. Each test gets a fresh database, as in the generated suite.
- `commit_per_command`: env.py runs an injected connection's revisions inside the caller's
  transaction, so nothing would ever commit. A stock env.py under pytest-alembic opens a
  connection per command and commits it; committing after each command reproduces that (minus
  the reconnect, which favours pytest-alembic slightly), so both suites pay for the same commits.
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


def _package_module(name: str) -> Any:
    return importlib.import_module(f"{os.environ['BENCH_PACKAGE']}.{name}")


@pytest.fixture
def alembic_config() -> Config:
    return Config(alembic_config=_package_module("migrations").alembic_config())


def _admin(statement: str) -> None:
    engine = create_engine(
        os.environ["BENCH_ADMIN_URL"], poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def alembic_engine() -> Iterator[Connection]:
    name = f"pa_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = make_url(os.environ["BENCH_ADMIN_URL"]).set(database=name)
    engine = create_engine(url, poolclass=pool.NullPool)
    connection = engine.connect()
    try:
        yield connection
    finally:
        connection.close()
        engine.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    # `_run_env` carries upgrades and downgrades; `run_command` the other alembic commands.
    for name in ("_run_env", "run_command"):
        monkeypatch.setattr(CommandExecutor, name, _committing(getattr(CommandExecutor, name)))
