"""The plugin's built-in migration tests, on the demo project, against MySQL or MariaDB."""

from alembic_steady.testing.checks import *  # noqa: F403
