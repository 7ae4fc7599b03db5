"""MySQL tier: the MySQL or MariaDB server TEST_MYSQL_URL names (there is no embedded MySQL).
Without it the tier is skipped, and pytest's summary says why."""

import os
from collections.abc import Iterator

import demo_project
import pytest
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects import parse_url
from alembic_steady.dialects.clients import Clients
from alembic_steady.testing import plugin


@pytest.fixture(scope="session")
def migration_project() -> Project:
    return demo_project.write("mysql")


@pytest.fixture(scope="session")
def server_url(server_clients: Clients) -> Iterator[URL]:
    named = os.environ.get("TEST_MYSQL_URL")
    if not named:
        pytest.skip(
            "MySQL tests NOT run: TEST_MYSQL_URL is unset (e.g. mysql://root@127.0.0.1:3306/mysql)"
        )
    url = parse_url(named, "mysql")
    version = server_clients.version(url)
    plugin.SERVER_USED.append(
        f"MySQL used: {version} at {url.host}:{url.port or 3306} (TEST_MYSQL_URL)"
    )
    yield url
