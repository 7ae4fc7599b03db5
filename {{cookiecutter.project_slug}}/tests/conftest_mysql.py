"""A real MySQL (or MariaDB) for the tests, and an empty database for each test that needs one.

The server is the one named by TEST_DATABASE_URL (tests create and drop their own databases on
it, so name a user allowed to), else a testcontainers MySQL where a Docker engine answers. There
is no embedded MySQL: without either, every test that needs a server fails and says so. Nothing
is skipped for want of a server.
"""

import asyncio
import gc
import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from sqlalchemy import pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.settings import parse_database_url

# Imported first of the tests' own modules: see its docstring.
from . import models_registration  # noqa: F401
from .migration_helpers import Walk, walk_base_to_head

NO_SERVER = (
    "No MySQL server for the tests: set TEST_DATABASE_URL=mysql://USER:PASSWORD@HOST:3306/mysql "
    "(a user that may create and drop databases, e.g. root), or start a Docker engine so that "
    "testcontainers can run mysql:8.4."
)


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
    """Admin URL of a MySQL server that the tests may create databases on."""
    if named := os.environ.get("TEST_DATABASE_URL"):
        url = parse_database_url(named)
        SERVER_USED.append(f"{_version(url)} at {url.host}:{url.port or 3306} (TEST_DATABASE_URL)")
        yield url
    elif _docker_answers():
        try:
            from testcontainers.community.mysql import MySqlContainer
        except ImportError:  # testcontainers before its modules moved to `community`
            from testcontainers.mysql import MySqlContainer

        with MySqlContainer("mysql:8.4", username="root", password="test") as container:
            url = parse_database_url(container.get_connection_url())
            SERVER_USED.append(f"{_version(url)} in Docker (testcontainers mysql:8.4)")
            yield url
    else:
        pytest.fail(NO_SERVER, pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for server in SERVER_USED:
        terminalreporter.write_line(f"MySQL used: {server}")


def _test_database_password() -> str | None:
    named = os.environ.get("TEST_DATABASE_URL")
    return parse_database_url(named).password if named else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failure's report shows the arguments of every frame, the driver's connection parameters
    # (password included) among them: the password of TEST_DATABASE_URL becomes ***.
    report = yield
    password = _test_database_password()
    if password and report.longrepr is not None:
        text = str(report.longrepr)
        for secret in {password, quote(password, safe="")}:
            text = text.replace(secret, "***")
        report.longrepr = text
    return report


def _admin(server_url: URL, *statements: str) -> object:
    """Run `statements` on the server (no database selected); return the last one's value."""

    async def run() -> object:
        engine = create_async_engine(server_url.set(database=""), poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                value: object = None
                for statement in statements:
                    result = await connection.execute(text(statement))
                    value = result.scalar() if result.returns_rows else None
                return value
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _version(server_url: URL) -> str:
    """E.g. "MariaDB 10.11.19" or "MySQL 8.4.3", for the line naming the server."""
    version = str(_admin(server_url, "SELECT VERSION()"))
    number = version.split("-", 1)[0]
    return f"MariaDB {number}" if "mariadb" in version.lower() else f"MySQL {number}"


@contextmanager
def new_database(server_url: URL) -> Iterator[URL]:
    """A new, empty database of its own, with a unique name (xdist-safe); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f"CREATE DATABASE `{name}`")
    try:
        yield server_url.set(database=name)
    finally:
        _admin(server_url, f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def session_database(server_url: URL) -> Iterator[URL]:
    """One database per run (so per xdist worker too), shared by the tests that empty it."""
    with new_database(server_url) as url:
        yield url


@pytest.fixture
def database_url(session_database: URL) -> URL:
    """An empty database for one test: the run's, dropped and created again (MySQL has no
    schema to empty inside a database; this takes milliseconds)."""
    name = f"`{session_database.database}`"
    _admin(session_database, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    return session_database


@pytest.fixture(scope="session")
def walk(server_url: URL) -> Iterator[Walk]:
    """One walk from base to head, every revision up, down and up again, data checks written on
    the way. test_migrations.py's tests each read their part of the outcome; a test that needs a
    database at head uses the one it leaves (`walk.url`), so no test pays for a second walk."""
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
    # What is imported by now lives until the run ends. Frozen, it drops out of the garbage
    # collector's sweeps during the tests.
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    # And out of the last sweep at exit, with what the tests made since: the OS frees it anyway.
    gc.freeze()
