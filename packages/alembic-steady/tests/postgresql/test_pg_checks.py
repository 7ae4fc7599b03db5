"""The plugin's built-in migration tests, on the demo project: what a project's test module
imports, run here against PostgreSQL."""

from alembic_steady.testing.checks import *  # noqa: F403
