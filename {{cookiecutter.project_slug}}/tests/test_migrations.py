"""The migrations, run for real against {% if cookiecutter.database == "mysql" %}MySQL{% else %}PostgreSQL{% endif %} through the project's env.py, as `make migrate`
and `make check` run them: one head; base to head one revision at a time; the stairway; the
models against the head schema; data_checks.py's checks; a failure part way keeps the good
revisions; the last release's models after each pre revision since. Each failure names the
revision at fault. The tests are alembic-steady's.
"""

from alembic_steady.testing.checks import *  # noqa: F403
