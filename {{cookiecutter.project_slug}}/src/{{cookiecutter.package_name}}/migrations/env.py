"""Alembic environment: async (asyncpg) online runs, and offline runs that only print SQL.

Run by every `alembic` command and by `{{ cookiecutter.package_name }}.migrations.upgrade()`.
"""

import asyncio
import atexit
import gc
import sys
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import {{ cookiecutter.package_name }}.migrations.ops  # noqa: F401  registers the op.* of ops.py
from {{ cookiecutter.package_name }}.migrations import (
    guards,
    literals,
    lock,
    logs,
    nontransactional,
    retries,
)
from {{ cookiecutter.package_name }}.migrations.errors import (
    clear_errors,
    connect,
    offline_failure,
)
from {{ cookiecutter.package_name }}.migrations.progress import Progress
from {{ cookiecutter.package_name }}.migrations.settings_loading import load_settings
from {{ cookiecutter.package_name }}.migrations.signals import Interrupted, cancel_on_signals
from {{ cookiecutter.package_name }}.settings import database_source, describe

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

settings = load_settings()
# The URL is an object from the settings (or injected by a caller). It never passes through
# alembic.ini, whose ConfigParser would choke on a `%` in the password. Migrations use
# MIGRATION_DATABASE_URL when set: a direct connection where the app's goes through a pooler.
url = config.attributes.get("url") or settings.migration_url
command = guards.command_name(config)
guards.refuse_in_production(command, settings)
# Only autogenerate and `check` compare models with the database. Upgrades, downgrades, stamps
# and `current` skip importing the models (and SQLModel), which keeps them quick to start.
compares_models = command in ("revision", "check", None)
policy = retries.RetryPolicy.from_settings(settings)
progress = Progress()


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
        if command == "check":
            kwargs["process_revision_directives"] = guards.explain_model_drift
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
    literals.render_json_literals(context.get_context().dialect)  # bulk_insert of JSON values
    # The script carries the same timeouts an online run sets, for whoever runs it by hand.
    context.execute(f"SET lock_timeout = '{settings.migration_lock_timeout}'")
    context.execute(f"SET statement_timeout = '{settings.migration_statement_timeout}'")
    with context.begin_transaction():
        try:
            context.run_migrations()
        except Exception as exc:
            raise offline_failure(exc) from exc


def do_run_migrations(connection: Connection, *, own_session: bool = True) -> None:
    configure(connection=connection)
    # `stamp` is how a version row nobody defines gets repaired, so it skips these checks.
    if command != "stamp":
        current = context.get_context().get_current_heads()
        guards.require_known_revisions(current, context.script)
        if command in ("revision", "check"):
            guards.require_database_at_head(current, context.script)
        elif command == "upgrade":
            destination = context.get_revision_argument()
            guards.refuse_upgrade_below_current(current, context.script, destination)
    fn = context.get_context().opts.get("fn")
    if not own_session or not retries.wraps_alembic_command(fn):
        # A caller's transaction, or a caller's own `fn` (a test walk): run as given, each
        # statement waiting for locks at most MIGRATION_LOCK_TIMEOUT, without retries.
        if own_session:
            retries.set_lock_timeout(connection, policy.lock_timeout_ms)
            connection.commit()
        with context.begin_transaction():
            context.run_migrations()
        return
    # Alembic's upgrade/downgrade: one revision per run_migrations(), each retried on a lock
    # timeout, the lock checked before each and at the end. Configured outside a transaction,
    # so Alembic gives every revision its own.
    connection.commit()
    steps = retries.OneRevisionAtATime(fn, progress)
    with logs.quiet("alembic.runtime.migration"):  # its dialect lines were logged once above
        configure(connection=connection, fn=steps)
    nontransactional.instrument(context.get_context(), policy, progress)
    while True:
        lock.verify_held(connection)
        retries.with_retries(
            connection,
            policy,
            progress,
            lambda: f"Revision {progress.revision}",
            context.run_migrations,
            in_transaction=True,
        )
        if steps.offered is None:
            connection.commit()
            return
        progress.applied(context.get_context().get_current_heads())


async def run_async_migrations(engine: AsyncEngine | None = None) -> None:
    """Migrate under the advisory lock, on one connection of `engine` (a caller's) or our own."""
    # NullPool: the connection closes when released, which also releases the advisory lock.
    own = engine is None
    engine = engine or create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # Named in pg_stat_activity, and in the blocker lines of other runs.
            "server_settings": {"application_name": "{{ cookiecutter.package_name }} migrations"},
        },
    )
    try:
        with cancel_on_signals(config.cmd_opts is not None) as received:
            try:
                async with connect(engine, settings) as connection:
                    if command in ("upgrade", "downgrade", "stamp"):
                        await connection.run_sync(guards.require_writable)
                    await lock.acquire(connection, settings)
                    try:
                        await connection.run_sync(retries.set_statement_timeout, settings)
                        await connection.run_sync(do_run_migrations)
                        await connection.run_sync(lock.verify_held)
                        await connection.commit()
                    finally:
                        await lock.release(connection)
            except asyncio.CancelledError:
                if received:
                    raise Interrupted(received[0]) from None
                raise
    finally:
        if own:
            await engine.dispose()


def run_migrations_online() -> None:
    # A caller may pass a Connection (see `migrations.upgrade`) or an AsyncEngine (test tools
    # such as pytest-alembic do) in config.attributes["connection"].
    injected = config.attributes.get("connection")
    if config.cmd_opts is not None:
        # One line naming the database (never the password), so nobody migrates the wrong one
        # unawares; on stderr, so scripts that read stdout (`alembic current`) stay clean.
        print(describe(url, database_source()), file=sys.stderr)
    try:
        with clear_errors(settings, progress, command):
            if isinstance(injected, Connection):
                # Run inside the caller's transaction; the caller commits.
                lock.acquire_transaction_lock(injected, settings)
                retries.set_statement_timeout(injected, settings, local=True)
                do_run_migrations(injected, own_session=False)
            elif injected is None or isinstance(injected, AsyncEngine):
                asyncio.run(run_async_migrations(injected))
            else:
                raise CommandError(
                    f"config.attributes['connection'] is a {type(injected).__name__}; pass a "
                    "Connection or an AsyncEngine (postgresql+asyncpg)."
                )
    except Interrupted as stop:
        # One line, the same with VERBOSE=1: the stop was asked for, there is no bug to trace.
        print(
            f"Interrupted by {stop}: {progress.interrupted()} Run make migrate again.",
            file=sys.stderr,
        )
        sys.exit(128 + stop.signum)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
