"""Alembic environment: async online runs under the migration lock, and offline runs that only
print SQL. Run by every `alembic` command and by
`{{ cookiecutter.package_name }}.migrations.upgrade()`.

The four functions are Alembic's own; what they do (lock, retries, signals, guards, messages) is
alembic-steady's `MigrationEnvironment`, with its {{ 'MySQL' if cookiecutter.database == 'mysql' else 'PostgreSQL' }} dialect.
"""

from alembic import context
from alembic_steady.runner.environment import MigrationEnvironment
from sqlalchemy import Connection, MetaData

from {{ cookiecutter.package_name }}.migrations import PROJECT


def target_metadata() -> MetaData:
    # Imported only by autogenerate and `check`: upgrades start without the models (and SQLModel).
    from {{ cookiecutter.package_name }}.models import metadata

    return metadata


environment = MigrationEnvironment(context, PROJECT, target_metadata)


def run_migrations_offline() -> None:
    """`--sql`: print the SQL for a DBA to review; no database is needed."""
    environment.run_offline()


def do_run_migrations(connection: Connection) -> None:
    environment.run_on(connection)


async def run_async_migrations() -> None:
    """Migrate under the migration lock, on a connection of our own."""
    await environment.run_async(do_run_migrations)


def run_migrations_online() -> None:
    environment.run_online(run_async_migrations)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
