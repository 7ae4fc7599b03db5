"""What env.py runs: one migration environment for every way in (the Make targets, plain
`alembic`, the module CLI, `upgrade()` from code, the generated tests) and both databases.

A project's env.py keeps Alembic's four functions and calls these methods from them:

    environment = MigrationEnvironment(context, PROJECT)

    def run_migrations_offline() -> None:
        environment.run_offline()

    def do_run_migrations(connection: Connection) -> None:
        environment.run_on(connection)

    async def run_async_migrations() -> None:
        await environment.run_async(do_run_migrations)

    def run_migrations_online() -> None:
        environment.run_online(run_async_migrations)
"""

import asyncio
import atexit
import gc
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import cached_property
from logging.config import fileConfig
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, event, pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..dialects.base import for_url
from ..project import MigrationSettings, Project
from . import alembic_internals, checksums, guards, logs, phases
from .errors import clear_errors, connect, offline_failure
from .progress import COMMANDS, PROGRESS, Progress, named
from .retries import RetryPolicy, forget_lock_bound, with_retries
from .settings import load_settings
from .signals import Interrupted, cancel_on_signals

# Commands that compare the models with the database; the others never import the models.
COMPARING = ("revision", "check", None)


class MigrationEnvironment:
    def __init__(
        self,
        context: Any,
        project: Project,
        metadata: Callable[[], MetaData] | None = None,
    ) -> None:
        # `alembic.context`: the module that proxies the running EnvironmentContext.
        self.context = context
        config = context.config
        # A command-line run ends with this script. At exit the interpreter's last garbage
        # collection walks every object the imports made (SQLAlchemy's, pydantic's): about a
        # fifth of an upgrade that has nothing to do. Freezing them first skips that walk; the OS
        # frees the memory anyway. Programmatic callers (no cmd_opts) live on, so their
        # collector is left alone.
        self.command_line = config.cmd_opts is not None
        if self.command_line:
            atexit.register(gc.freeze)
        # SIGTERM/SIGINT cancel the statement on the server in a command-line run, and for the
        # callers that ask (the module CLI a Job or a container's PID 1 runs); other programs
        # keep their own handlers.
        self.cancels_on_signals = self.command_line or bool(
            config.attributes.get("cancel_on_signals")
        )
        # Command-line runs log as alembic.ini says; programmatic callers keep their own logging.
        if config.config_file_name is not None and config.attributes.get("configure_logger", True):
            fileConfig(config.config_file_name, disable_existing_loggers=False)
        # The module CLI and other callers word the advice in their own commands.
        commands = config.attributes.get("commands")
        self.project = project if commands is None else project.with_commands(commands)
        # A tenant schema (the fleet runner's, or upgrade(schema=...)): its own lock, search path
        # and version table.
        if (schema := config.attributes.get("schema")) is not None:
            self.project = replace(self.project, schema=schema)
        # A person or a job log reads what a command-line or module CLI run did; code calling
        # upgrade() gets no output.
        self.talks = self.command_line or commands is not None
        self.settings = load_settings(project.settings)
        # The URL is an object from the settings (or injected by a caller). It never passes
        # through alembic.ini, whose ConfigParser would choke on a `%` in the password.
        # Migrations use MIGRATION_DATABASE_URL when set: a direct connection where the app's
        # goes through a pooler.
        given = config.attributes.get("url") or _url_of(config.attributes.get("connection"))
        self.url: URL = given or self.settings.migration_url
        self.dialect = for_url(self.url)
        self.command = guards.command_name(config)
        guards.refuse_in_production(self.command, self.settings, self.project.commands)
        # A caller's own metadata (`make squash`: the tables a database holds, reflected) in
        # place of the models.
        given_metadata = config.attributes.get("target_metadata")
        self.metadata = metadata if given_metadata is None else lambda: given_metadata
        self.policy = RetryPolicy.from_settings(self.settings)
        # The deploy phase an upgrade applies (`upgrade --phase`, `alembic -x phase=...`).
        x_arguments = dict(
            item.split("=", 1) for item in getattr(config.cmd_opts, "x", None) or [] if "=" in item
        )
        given_phase = config.attributes.get("phase") or x_arguments.get("phase")
        self.phase = phases.phase_of(given_phase)
        # What `make migration renames=...` says was renamed (authoring/renames.py).
        self.renames = config.attributes.get("renames") or x_arguments.get("renames")
        if self.phase is not None and self.command != "upgrade":
            raise CommandError(f"phase={self.phase} applies to an upgrade, not to {self.command}")
        self.progress = Progress()
        # Registers op.create_rename_sync, op.queue_backfill and the safe operations of ops.py
        # (renames imports the others; on MySQL too, where the PostgreSQL ones say so).
        from ..authoring import renames  # noqa: F401

    # -- configuring -------------------------------------------------------------------------
    @cached_property
    def upgrade_fn(self) -> Any:
        """Alembic's own upgrade `fn`; to head in a history with a post line, or for one phase,
        the deploy phases' choice of its steps (every pre revision first). None: the command's
        `fn` as given. (Read on first use, inside the run: a revision file that does not load is
        named as any failure of the run is.)"""
        if self.command != "upgrade":
            return None
        options = alembic_internals.environment_options(self.context)
        fn, destination = options.get("fn"), options.get("destination_rev")
        if not alembic_internals.wraps_alembic_command(fn):
            return None  # a caller's own steps (the test walk) are already in order
        if destination not in ("head", "heads"):
            if self.phase is not None:
                raise CommandError(
                    f"phase={self.phase} upgrades to that phase's head: leave out the revision "
                    f"({destination}), or the phase"
                )
            return None
        history = phases.Phases(self.context.script)
        if self.phase is None and not history.used:
            return None
        if problems := history.problems():
            raise CommandError(problems[0])
        return phases.upgrade_steps(history, self.phase, self.project.commands)

    def configure(self, **kwargs: Any) -> None:
        # Only autogenerate and `check` compare models with the database. Upgrades, downgrades,
        # stamps and `current` skip importing the models (and SQLModel), which keeps them quick.
        target_metadata = self.metadata() if self.command in COMPARING and self.metadata else None
        if target_metadata is not None:
            guards.require_configured_mappers()
            from ..authoring import autogen

            writing = self.command == "revision"
            kwargs.update(
                autogen.configure_options(writing_revision=writing, renames_given=self.renames)
            )
            schemas = {table.schema for table in target_metadata.tables.values()} - {None}
            if schemas:  # a reflection of several schemas (`make squash`): those, no others
                kwargs["include_schemas"] = True
                kwargs["include_name"] = autogen.within_schemas(schemas, kwargs["include_name"])
            self.dialect.autogenerate_options(kwargs, writing)
            if self.command == "check":
                kwargs["process_revision_directives"] = guards.explain_model_drift(
                    self.project.commands
                )
        if self.upgrade_fn is not None:
            kwargs.setdefault("fn", self.upgrade_fn)
        self.context.configure(
            target_metadata=target_metadata,
            # Each revision commits on its own: a failure in the fifth keeps the first four
            # applied, and no lock is held across the whole chain.
            transaction_per_migration=True,
            **kwargs,
        )

    # -- offline -----------------------------------------------------------------------------
    def run_offline(self) -> None:
        """`--sql`: print the SQL for a DBA to review; no database is needed."""
        try:
            self.upgrade_fn  # noqa: B018  (reads the revision files: one may not load)
        except CommandError:
            raise  # the runner's own answer (a phase refused) names its cause
        except Exception as exc:
            raise offline_failure(exc, self.project) from exc
        self.configure(url=self.url, literal_binds=True, dialect_opts={"paramstyle": "named"})
        self.dialect.offline_dialect(self.context.get_context().dialect)
        # The script carries the same timeouts an online run sets, for whoever runs it by hand.
        for statement in self.dialect.offline_preamble(self.settings, self.policy):
            self.context.execute(statement)
        with self.context.begin_transaction():
            try:
                self.context.run_migrations()
            except CommandError:
                raise  # Alembic's or the runner's own answer names its cause
            except Exception as exc:
                raise offline_failure(exc, self.project) from exc

    # -- online ------------------------------------------------------------------------------
    def run_on(self, connection: Connection, *, own_session: bool = True) -> None:
        """Run the command on `connection`: Alembic's upgrade/downgrade a revision at a time,
        each under the lock and retried on lock timeouts; anything else as given."""
        context = self.context
        commands = self.project.commands
        self.configure(connection=connection)
        self.progress.phase = self.phase
        if own_session:  # a caller's connection outlives the run: leave nothing on it
            connection.info[PROGRESS] = self.progress
            connection.info[COMMANDS] = commands
        if self.command == "stamp":  # how a half-applied revision is settled by hand
            self.dialect.forget_unfinished(connection)
        current = None
        # `stamp` is how a version row nobody defines gets repaired, so it skips these checks.
        if self.command != "stamp":
            current = context.get_context().get_current_heads()
            self.progress.found = tuple(sorted(current))
            guards.require_known_revisions(current, context.script)
            if self.command in ("revision", "check"):
                guards.require_database_at_head(current, context.script, commands)
            elif self.command == "upgrade" and self.upgrade_fn is None:
                # (To every head, or a phase's, is never below the database.)
                destination = context.get_revision_argument()
                guards.refuse_upgrade_below_current(current, context.script, destination, commands)
        fn = context.get_context().opts.get("fn")
        ledger = self._checksums(connection, current, fn)
        if not own_session or not alembic_internals.runs_one_revision_at_a_time(fn):
            # A caller's transaction, or a caller's own `fn` (the models test), or a stamp: run
            # as given, each statement waiting for locks at most MIGRATION_LOCK_TIMEOUT, without
            # retries.
            if own_session:
                self.dialect.set_lock_timeout(connection, self.policy, 0)
                connection.commit()
            if ledger is not None:  # each step records what it applied, or forgets what it undid
                with logs.quiet("alembic.runtime.migration"):
                    self.configure(
                        connection=connection,
                        on_version_apply=[lambda heads, **_: ledger.sync(connection, heads)],
                    )
            with context.begin_transaction():
                context.run_migrations()
            return
        # Alembic's upgrade/downgrade: one revision per run_migrations(), each retried on a lock
        # timeout, the lock checked before each and at the end. Configured outside a
        # transaction, so Alembic gives every revision its own.
        connection.commit()
        forget_lock_bound(connection)
        self.dialect.refuse_unfinished(connection, self.progress, commands)
        # A Stepwise's inspected steps are told whether their transaction holds them whole:
        # the commits seen on the connection since the step was handed to Alembic.
        commits = _Commits(connection) if isinstance(fn, alembic_internals.Stepwise) else None
        steps = alembic_internals.OneRevisionAtATime(
            fn, self.progress, commits.mark if commits else None
        )
        try:
            self._step_by_step(connection, context, steps, fn, ledger, commits)
        finally:
            if commits is not None:
                commits.close()

    def _step_by_step(
        self,
        connection: Connection,
        context: Any,
        steps: alembic_internals.OneRevisionAtATime,
        fn: object,
        ledger: checksums.Ledger | None,
        commits: "_Commits | None",
    ) -> None:
        """Apply `steps` one revision per run_migrations(), each retried on a lock timeout, the
        lock checked before each and at the end."""
        fresh = isinstance(fn, alembic_internals.Stepwise) and fn.fresh_contexts
        reached: list[tuple[str, ...]] = []  # the heads Alembic wrote for the step

        def done(heads: set[str], **_: Any) -> None:
            reached[:] = [tuple(heads)]
            if ledger is not None:
                ledger.sync(connection, heads)
            self.dialect.revision_done(connection, self.progress)
            if steps.inspected is not None:
                migration = context.get_context()
                # Whole: nothing of it committed before its end, so a rollback undoes it all.
                whole = bool(migration.impl.transactional_ddl) and (
                    commits is None or commits.since_mark == 0
                )
                if steps.inspected.look(whole) and whole:
                    alembic_internals.roll_back_revision(migration)
                    steps.inspected.rolled_back = True
                    reached[:] = [self.progress.at or ()]  # where the step started
                    # What the step's transaction wrote is undone: the records of applied
                    # revisions, and the lock bound a step may have set in it.
                    if ledger is not None:
                        ledger.rolled_back()
                    forget_lock_bound(connection)

        def new_context() -> None:
            with logs.quiet("alembic.runtime.migration"):  # its dialect lines were logged above
                self.configure(connection=connection, fn=steps, on_version_apply=[done])
            alembic_internals.hook_statements(context.get_context(), self._on_statement)
            if self.progress.last is not None:  # a revision of this run wrote the version table
                alembic_internals.heads_known(context.get_context(), self.progress.at or ())

        new_context()
        # The lock is checked before each of Alembic's revisions (a pooler may have reset the
        # session since the last). A Stepwise (the tests' walk, on a database of its own) is
        # checked before its first step, and like every run at the end (run_async): its hundreds
        # of steps would pay a pg_locks scan each.
        walking = isinstance(fn, alembic_internals.Stepwise)
        first = True
        while True:
            if fresh and not first:
                new_context()  # the step remembers nothing of the one before
            if first or not walking:
                self.dialect.verify_lock(connection, self.project)
            first = False
            try:
                with_retries(
                    connection,
                    self.dialect,
                    self.policy,
                    self.progress,
                    lambda: f"Revision {self.progress.revision}",
                    context.run_migrations,
                    in_transaction=True,
                )
            except Exception:
                self.dialect.revision_failed(connection, self.progress)
                raise
            if steps.offered is None:
                connection.commit()
                return
            # The heads the step wrote: the next run_migrations() starts from them, unread.
            self.progress.applied(
                reached.pop() if reached else context.get_context().get_current_heads()
            )
            alembic_internals.heads_known(context.get_context(), self.progress.at or ())

    def _checksums(
        self, connection: Connection, current: tuple[str, ...] | None, fn: object
    ) -> checksums.Ledger | None:
        """The run's checksums of applied revisions: compared with the files first when the
        command verifies (`current`: the heads read, None for a stamp), then made ready to be
        kept in step when the run applies or undoes revisions (None when it does neither)."""
        migration = self.context.get_context()
        ledger = checksums.Ledger(self.context.script, migration.version_table_schema)
        if current is not None and self.command in checksums.VERIFYING:
            ledger.verify(connection, current, self.project.commands)
        if not checksums.keeps_records(
            self.command, alembic_internals.runs_one_revision_at_a_time(fn)
        ):
            return None
        # Before any revision's transaction: MySQL's CREATE TABLE would commit one. A stamp has
        # not read the heads yet; the others have.
        heads = migration.get_current_heads() if current is None else current
        ledger.prepare(connection, heads)
        return ledger

    def _on_statement(self, connection: Connection | None, sql: str, run: Callable[[], Any]) -> Any:
        def retry(attempt: Callable[[], Any], where: str) -> Any:
            assert connection is not None
            return with_retries(
                connection,
                self.dialect,
                self.policy,
                self.progress,
                lambda: f"Revision {self.progress.revision}, {where}",
                attempt,
                in_transaction=False,
            )

        # Every statement is recorded, so a failure can say which of them were committed.
        self.progress.statements.append(sql)
        return self.dialect.on_statement(connection, sql, run, self.progress, retry)

    async def run_async(
        self,
        run_on: Callable[[Connection], None],
        engine: AsyncEngine | None = None,
    ) -> None:
        """Migrate under the migration lock, on one connection of `engine` (a caller's) or our
        own, calling `run_on` (env.py's do_run_migrations) with it."""
        own = engine is None
        engine = engine or migration_engine(self.url, self.settings, self.project)
        dialect, project = self.dialect, self.project
        try:
            with cancel_on_signals(self.cancels_on_signals) as signals:
                try:
                    async with connect(engine, dialect, self.settings, project) as connection:
                        signals.stop_on_server = await dialect.server_stopper(
                            connection, engine, self.progress
                        )
                        if self.command in ("upgrade", "downgrade", "stamp"):
                            await connection.run_sync(dialect.require_writable)
                        await dialect.acquire_lock(connection, project, self.settings)
                        try:
                            if project.schema is not None:
                                await connection.run_sync(dialect.enter_schema, project.schema)
                            await connection.run_sync(dialect.set_statement_timeout, self.settings)
                            await connection.run_sync(run_on)
                            await connection.run_sync(dialect.verify_lock, project)
                            await connection.commit()
                        finally:
                            await dialect.release_lock(connection, project)
                except BaseException:
                    # The cancellation may surface as another error: a statement the greenlet
                    # was running when asyncpg cancelled it leaves the connection invalid, and
                    # the next one (a backfill's next batch) raises PendingRollbackError.
                    if signals.received:
                        raise await signals.interrupted(dialect.cancelled_on_signal) from None
                    raise
        finally:
            if own:
                await engine.dispose()

    def run_online(self, run_async: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run on the connection or engine a caller injected (config.attributes["connection"]),
        else through `run_async` (env.py's run_async_migrations) on an event loop of our own."""
        injected = self.context.config.attributes.get("connection")
        if self.command_line:
            # One line naming the database (never the password), so nobody migrates the wrong
            # one unawares; on stderr, so scripts that read stdout (`alembic current`) stay clean.
            print(self.project.describe(self.url), file=sys.stderr)
        try:
            with clear_errors(
                self.dialect, self.settings, self.progress, self.project, self.command
            ):
                if injected is not None and self.project.schema is not None:
                    raise CommandError(
                        "A tenant schema is migrated on a connection of the runner's own: pass "
                        "url= with schema=, not a connection."
                    )
                if isinstance(injected, Connection):
                    self._run_on_callers_connection(injected)
                elif injected is None:
                    asyncio.run(run_async())
                elif isinstance(injected, AsyncEngine):
                    asyncio.run(self.run_async(self.run_on, injected))
                else:
                    raise CommandError(
                        f"config.attributes['connection'] is a {type(injected).__name__}; pass a "
                        f"Connection or an AsyncEngine ({self.url.drivername})."
                    )
            if self.talks:
                self._say_when_nothing_happened()
        except Interrupted as stop:
            # One line, the same with VERBOSE=1: the stop was asked for, there is no bug to trace.
            print(
                f"Interrupted by {stop}: "
                f"{self.progress.interrupted(self.dialect.committed_steps, stop.stopped)} "
                f"Run {self.project.commands.migrate} again.",
                file=sys.stderr,
            )
            sys.exit(128 + stop.signum)

    def _say_when_nothing_happened(self) -> None:
        """Silence reads as a hang or a failure: an upgrade with nothing to apply, and a
        database at base asked for its revision (Alembic prints nothing for either), say so."""
        found, commands = self.progress.found, self.project.commands
        if found is None:
            return
        if self.command == "upgrade" and self.progress.last is None:
            print(f"Nothing to apply: the database is at {named(found)}.", file=sys.stderr)
        elif self.command == "current" and found == ():
            print(
                f"No revision is applied yet (base): {commands.migrate} applies them.",
                file=sys.stderr,
            )

    def _run_on_callers_connection(self, connection: Connection) -> None:
        """Inside the caller's transaction; the caller commits. (MySQL's DDL commits on its own
        whatever the caller's transaction.)"""
        self.dialect.acquire_caller_lock(connection, self.project, self.settings)
        try:
            self.dialect.set_caller_timeouts(connection, self.settings, self.policy)
            self.run_on(connection, own_session=False)
        finally:
            self.dialect.release_caller_lock(connection, self.project)


class _Commits:
    """Counts the commits on a connection since the last `mark()`: an autocommit_block()
    commits what ran before it (and each statement in it), as does a step's own commit."""

    def __init__(self, connection: Connection) -> None:
        self.connection, self.since_mark = connection, 0
        event.listen(connection, "commit", self._seen)

    def _seen(self, _connection: Connection) -> None:
        self.since_mark += 1

    def mark(self) -> None:
        self.since_mark = 0

    def close(self) -> None:
        event.remove(self.connection, "commit", self._seen)


def migration_engine(url: URL, settings: MigrationSettings, project: Project) -> AsyncEngine:
    """The engine a run makes for itself: one connection at a time under its session name
    (NullPool: the connection closes when released, which also releases the lock)."""
    return create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args=for_url(url).connect_args(settings, project.session_name),
    )


def _url_of(injected: object) -> URL | None:
    """The URL of a caller's Connection or AsyncEngine: its database is the one to migrate."""
    if isinstance(injected, Connection | AsyncEngine):
        return injected.engine.url if isinstance(injected, Connection) else injected.url
    return None
