"""The migrations, run for real against {% if cookiecutter.database == "mysql" %}MySQL{% else %}PostgreSQL{% endif %} through the project's env.py, as `make migrate`
and `make check` run them: one head; base to head one revision at a time; the stairway (every
revision up, down to exactly the schema before it, and up again, on tables holding rows); the
models against the head schema; the data checks of data_checks.py; a failure part way keeps the
good revisions; the old release's models on the schema of each pre revision since (git: the
newest tag, or OLD_RELEASE). Each failure names the revision at fault. The tests are alembic-steady's.
"""

from alembic_steady.testing.checks import *  # noqa: F403
