"""Alembic environment: async (asyncpg) online runs, and offline runs that only print SQL.

Run by every `alembic` command and by `{{ cookiecutter.package_name }}.migrations.upgrade()`.
"""

import asyncio
import atexit
import gc
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import {{ cookiecutter.package_name }}.migrations.ops  # noqa: F401  registers the op.* of ops.py
from {{ cookiecutter.package_name }}.migrations import safety

config = context.config

# A command-line run ends with this script. At exit the interpreter's last garbage collection walks
# every object the imports made (SQLAlchemy's, pydantic's): about a fifth of an upgrade that has
# nothing to do. Freezing them first skips that walk; the OS frees the memory anyway. Programmatic
# callers (no cmd_opts) live on, so their collector is left alone.
if config.cmd_opts is not None:
    atexit.register(gc.freeze)

# Command-line runs log as alembic.ini says; programmatic callers keep their own logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings = safety.load_settings()
# The URL is an object from the settings (or injected by a caller). It never passes through
# alembic.ini, whose ConfigParser would choke on a `%` in the password.
url = config.attributes.get("url") or settings.sqlalchemy_url
command = safety.command_name(config)
safety.refuse_in_production(command, settings)
# Only autogenerate and `check` compare models with the database. Upgrades, downgrades, stamps
# and `current` skip importing the models (and SQLModel), which keeps them quick to start.
compares_models = command in ("revision", "check", None)


def configure(**kwargs: Any) -> None:
    target_metadata: MetaData | None = None
    if compares_models:
        # Imported for its side effect: autogenerate then creates, alters and drops PostgreSQL
        # enum types along with the columns that use them, so downgrades leave no type behind.
        import alembic_postgresql_enum  # noqa: F401

        from {{ cookiecutter.package_name }}.migrations import autogen
        from {{ cookiecutter.package_name }}.models import metadata

        target_metadata = metadata
        kwargs.update(autogen.configure_options(writing_revision=command == "revision"))
    context.configure(
        target_metadata=target_metadata,
        # Each revision commits on its own: a failure in the fifth keeps the first four applied,
        # and no lock is held across the whole chain.
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`--sql`: print the SQL for a DBA to review; no database is needed."""
    configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    # The script carries the same timeouts an online run sets, for whoever runs it by hand.
    context.execute(f"SET lock_timeout = '{settings.migration_lock_timeout}'")
    context.execute(f"SET statement_timeout = '{settings.migration_statement_timeout}'")
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    # `stamp` is how a version row nobody defines gets repaired, so it skips these checks.
    if command != "stamp":
        current = context.get_context().get_current_heads()
        safety.require_known_revisions(current, context.script)
        if command in ("revision", "check"):
            safety.require_database_at_head(current, context.script)
        elif command == "upgrade":
            destination = context.get_revision_argument()
            safety.refuse_upgrade_below_current(current, context.script, destination)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(engine: AsyncEngine | None = None) -> None:
    """Migrate under the advisory lock; on `engine` if a caller passed one, else on our own."""
    # NullPool: connections close when released, which also releases the advisory lock.
    own = engine is None
    engine = engine or create_async_engine(
        url, poolclass=pool.NullPool, connect_args={"timeout": settings.db_connect_timeout}
    )
    try:
        async with safety.connect(engine, settings) as lock_connection:
            await lock_connection.run_sync(safety.acquire_session_lock, settings)
            async with safety.connect(engine, settings) as connection:
                await connection.run_sync(safety.apply_timeouts, settings)
                await connection.run_sync(do_run_migrations)
                await connection.commit()
    finally:
        if own:
            await engine.dispose()


def run_migrations_online() -> None:
    # A caller may pass a Connection (see `migrations.upgrade`) or an AsyncEngine (test tools
    # such as pytest-alembic do) in config.attributes["connection"].
    injected = config.attributes.get("connection")
    with safety.clear_errors(settings):
        if isinstance(injected, Connection):
            # Run inside the caller's transaction; the caller commits.
            safety.acquire_transaction_lock(injected, settings)
            do_run_migrations(injected)
        elif injected is None or isinstance(injected, AsyncEngine):
            asyncio.run(run_async_migrations(injected))
        else:
            raise CommandError(
                f"config.attributes['connection'] is a {type(injected).__name__}; pass a "
                "Connection or an AsyncEngine (postgresql+asyncpg)."
            )


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
