"""Run the migrations from code: at start-up, in a job, or in tests.

    from {{ cookiecutter.package_name }}.migrations import upgrade, is_at_head
    upgrade()                                   # sync code, or inside a running event loop
    await upgrade_async()                       # async code
    await conn.run_sync(lambda c: upgrade(connection=c))   # on your own connection

`is_at_head()` tells whether the database has every pre revision (what this code needs) without the
migration lock, e.g. for a readiness probe of a service that leaves migrating to a separate job;
`wait_for_head()` polls it until then (for init containers and start scripts). `python -m
{{ cookiecutter.package_name }}.migrations` runs all of this from an installed wheel (see __main__.py).
The machinery is the alembic-steady library (vendor/alembic-steady); this module names the project.
"""

from pathlib import Path

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from sqlalchemy.engine import URL

from ..settings import DIALECT, PROJECT_ROOT, database_source, describe, get_settings

MIGRATIONS_DIR = Path(__file__).parent


def _describe(url: URL) -> str:
    return describe(url, database_source())


PROJECT = Project(
    package="{{ cookiecutter.package_name }}",
    migrations=MIGRATIONS_DIR,
    settings=get_settings,
    describe=_describe,
    root=PROJECT_ROOT,
    dialect=DIALECT,
)
_migrations = Migrations(PROJECT)

alembic_config = _migrations.alembic_config
upgrade = _migrations.upgrade
upgrade_async = _migrations.upgrade_async
script_heads = _migrations.script_heads
phases = _migrations.phases
current_heads = Migrations.current_heads
is_at_head = _migrations.is_at_head
wait_for_head = _migrations.wait_for_head
