"""Failures turned into one-line answers that name the real cause, where the database stands and
the fix, without printing a secret. Alembic prints a `CommandError` as `FAILED: ...` and exits 1
(also with --raiseerr, which adds the traceback); the original exception stays chained. The
dialect classifies the driver's errors and says where a half-run revision leaves the database."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..dialects.base import Dialect, LockLost
from ..project import MigrationSettings, Project
from .messages import HINT_VERBOSE, explain_alembic, failed_revision, failing_revision
from .progress import Progress
from .retries import LockRetriesExhausted


@asynccontextmanager
async def connect(
    engine: AsyncEngine, dialect: Dialect, settings: MigrationSettings, project: Project
) -> AsyncIterator[AsyncConnection]:
    """A connection, or a short answer saying which server refused it and what to check."""
    try:
        connection = await engine.connect()
    except Exception as exc:
        raise dialect.connect_failure(exc, engine.url, settings, project.commands) from exc
    try:
        yield connection
    finally:
        await connection.close()


@contextmanager
def clear_errors(
    dialect: Dialect,
    settings: MigrationSettings,
    progress: Progress,
    project: Project,
    command: str | None = None,
) -> Iterator[None]:
    """Turn the failures users meet into a few lines that name the cause and the fix."""
    commands, versions = project.commands, project.versions
    try:
        yield
    except CommandError as exc:
        explained = explain_alembic(exc, command, commands, progress.found)
        if explained is not None:
            raise CommandError(explained) from exc
        # Alembic names the revision it cannot find, but not where the known ones are listed.
        if isinstance(exc.__cause__, ResolutionError):
            raise CommandError(
                f"{exc}: no revision file defines it. `{commands.history}` lists the revisions, "
                f"`{commands.heads}` the heads."
            ) from exc
        raise
    except LockLost as exc:
        raise CommandError(
            f"The migration lock is no longer held by this run (found out after revision "
            f"{progress.last or '(none)'}): {dialect.lock_lost_cause}. Stopped; "
            f"{progress.where()}. Migrate through {dialect.direct_connection} "
            f"(MIGRATION_DATABASE_URL) and run {commands.migrate} again."
        ) from exc
    except LockRetriesExhausted as exc:
        raise CommandError(
            f"Revision {progress.revision} could not get its lock in {exc.attempts} attempts "
            f"over {exc.seconds:.0f}s ({dialect.lock_timeout_setting} up to "
            f"{settings.migration_lock_timeout}): {exc.blockers}. "
            f"{dialect.where(progress, commands)} End the blocking transaction "
            f"(or {dialect.end_session}), or raise MIGRATION_LOCK_RETRIES / "
            f"MIGRATION_LOCK_RETRY_TOTAL, and run {commands.migrate} again."
        ) from exc
    except SyntaxError as exc:
        # Alembic reads every revision file before it runs one: a file that does not compile
        # stops the run before anything is applied, in one line rather than a traceback.
        if exc.filename is None or Path(exc.filename).parent != versions:
            raise
        raise CommandError(
            f"Revision file {Path(exc.filename).name}, line {exc.lineno}: {exc.msg} "
            f"({type(exc).__name__}). {dialect.where(progress, commands)} Fix the file and run "
            f"{commands.migrate} again."
        ) from None
    except Exception as exc:
        in_revision = failed_revision(exc, versions)
        if not isinstance(exc, SQLAlchemyError | OSError | RuntimeError) and not in_revision:
            # A bug worth its traceback, or a caller's own control flow (test tools stop
            # `alembic revision` with an exception of theirs): it passes through unchanged.
            raise
        where = dialect.where(progress, commands)
        failing = failing_revision(progress, exc, versions)
        first_line = dialect.first_line(exc)
        if dialect.lost_connection(exc):
            raise CommandError(
                f"Lost the connection to {dialect.server} during revision {failing}: "
                f"{first_line}. The server ended the session (and the migration lock with "
                f"it). {where} Check why ({dialect.lost_connection_causes}) and run "
                f"{commands.migrate} again. {HINT_VERBOSE}"
            ) from exc
        pooler = dialect.through_pooler(exc)
        if pooler is not None:
            raise CommandError(f"{first_line}: {pooler} {where}") from exc
        if dialect.read_only(exc):
            raise CommandError(
                f"Revision {failing} failed: the database is read-only ({first_line}). "
                "Migrations must run on the primary: point MIGRATION_DATABASE_URL (or "
                f"DATABASE_URL) at it. {where}"
            ) from exc
        missing = dialect.unavailable_extension(exc, commands)
        if missing is not None:
            raise CommandError(
                f"Revision {failing} failed: {first_line}. {where} {missing} {HINT_VERBOSE}"
            ) from exc
        if command == "downgrade" and (in_revision or progress.revision):
            # Its own advice: the upgrade's would send the user to migrate.
            raise CommandError(
                f"The downgrade of revision {failing} failed: {first_line}. {where} Fix that "
                "revision's downgrade() (data the upgrade changed may not fit the old schema: "
                f"move it back first), then run {commands.rollback} again; {commands.current} "
                f"shows the version. {HINT_VERBOSE}"
            ) from exc
        if in_revision is not None or progress.revision is not None:
            # Where committed statements stay (MySQL's DDL), `where` gave the ways back.
            rerun = (
                ""
                if dialect.committed_is_final and progress.committed
                else f"Fix the cause and run {commands.migrate} again ({commands.current} "
                "shows the version). "
            )
            raise CommandError(
                f"Revision {failing} failed: {first_line}. {where} {rerun}{HINT_VERBOSE}"
            ) from exc
        raise CommandError(f"Migration run failed: {first_line}. {HINT_VERBOSE}") from exc


def offline_failure(exc: BaseException, project: Project) -> CommandError:
    """`make sql`: the revision that cannot be rendered as SQL without a database, and why."""
    where = failed_revision(exc, project.versions) or "a revision"
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first_line = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return CommandError(
        f"{where} cannot be rendered as SQL offline: {first_line}. It needs a database "
        "(op.get_bind(), or data it reads): render the revisions before and after it apart "
        f"(make sql rev=from:to) and review this one by hand. {HINT_VERBOSE}"
    )
