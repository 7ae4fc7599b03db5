"""Alembic environment: async (aiomysql) online runs, and offline runs that only print SQL.

Run by every `alembic` command and by `{{ cookiecutter.package_name }}.migrations.upgrade()`.
MySQL commits each DDL statement on its own: every revision still gets its own transaction (its
data statements and its version row), and a revision stopped half way says what it committed.
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

from {{ cookiecutter.package_name }}.migrations import guards, implicit_commits, lock, logs, retries
from {{ cookiecutter.package_name }}.migrations.errors import clear_errors, connect
from {{ cookiecutter.package_name }}.migrations.progress import Progress
from {{ cookiecutter.package_name }}.migrations.settings_loading import load_settings
from {{ cookiecutter.package_name }}.migrations.signals import Interrupted, cancel_on_signals
from {{ cookiecutter.package_name }}.settings import database_source, describe

config = context.config

# A command-line run ends with this script: freezing the imports' objects skips the interpreter's
# last garbage collection over them (the OS frees the memory anyway). Programmatic callers (no
# cmd_opts) live on, so their collector is left alone.
if config.cmd_opts is not None:
    atexit.register(gc.freeze)

# Command-line runs log as alembic.ini says; programmatic callers keep their own logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings = load_settings()
# The URL is an object from the settings (or injected by a caller). It never passes through
# alembic.ini, whose ConfigParser would choke on a `%` in the password.
url = config.attributes.get("url") or settings.migration_url
command = guards.command_name(config)
guards.refuse_in_production(command, settings)
# Only autogenerate and `check` compare models with the database.
compares_models = command in ("revision", "check", None)
policy = retries.RetryPolicy.from_settings(settings)
progress = Progress()


def configure(**kwargs: Any) -> None:
    target_metadata: MetaData | None = None
    if compares_models:
        from {{ cookiecutter.package_name }}.migrations import autogen
        from {{ cookiecutter.package_name }}.models import metadata

        target_metadata = metadata
        kwargs.update(autogen.configure_options(writing_revision=command == "revision"))
        if command == "revision":
            kwargs["process_revision_directives"] = implicit_commits.warn_mixed_ddl(
                kwargs["process_revision_directives"]
            )
        if command == "check":
            kwargs["process_revision_directives"] = guards.explain_model_drift
    context.configure(
        target_metadata=target_metadata,
        # Each revision gets its own transaction (its data statements and its version row);
        # no lock is held across the whole chain.
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`--sql`: print the SQL for a DBA to review; no database is needed."""
    configure(url=url, literal_binds=True)
    # The script carries the lock-wait bound an online run sets, for whoever runs it by hand.
    context.execute(f"SET SESSION lock_wait_timeout = {policy.timeout_seconds(99)}")
    with context.begin_transaction():
        context.run_migrations()


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
        # A caller's connection, or a caller's own `fn` (a test walk): run as given, each
        # statement waiting for locks at most MIGRATION_LOCK_TIMEOUT, without retries.
        retries.set_lock_timeout(connection, policy.timeout_seconds(99))
        if own_session:
            connection.commit()
        with context.begin_transaction():
            context.run_migrations()
        return
    # Alembic's upgrade/downgrade: one revision per run_migrations(), each retried on a lock
    # wait timeout while nothing of it is committed, the lock checked before each and at the end.
    connection.commit()
    steps = retries.OneRevisionAtATime(fn, progress)
    with logs.quiet("alembic.runtime.migration"):  # its dialect lines were logged once above
        configure(connection=connection, fn=steps)
    implicit_commits.instrument(context.get_context(), progress)
    while True:
        lock.verify_held(connection)
        retries.with_retries(
            connection,
            policy,
            progress,
            lambda: f"Revision {progress.revision}",
            context.run_migrations,
        )
        if steps.offered is None:
            connection.commit()
            return
        progress.applied(context.get_context().get_current_heads())


async def run_async_migrations(engine: AsyncEngine | None = None) -> None:
    """Migrate under the named lock, on one connection of `engine` (a caller's) or our own."""
    # NullPool: the connection closes when released, which also releases the named lock.
    own = engine is None
    engine = engine or create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            # Named in performance_schema.session_connect_attrs.
            "program_name": "{{ cookiecutter.package_name }} migrations",
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
                # Run on the caller's connection; the caller commits. DDL commits on its own
                # on MySQL whatever the caller's transaction.
                lock.acquire_transaction_lock(injected, settings)
                try:
                    do_run_migrations(injected, own_session=False)
                finally:
                    lock.release_sync(injected)
            elif injected is None or isinstance(injected, AsyncEngine):
                asyncio.run(run_async_migrations(injected))
            else:
                raise CommandError(
                    f"config.attributes['connection'] is a {type(injected).__name__}; pass a "
                    "Connection or an AsyncEngine (mysql+aiomysql)."
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
