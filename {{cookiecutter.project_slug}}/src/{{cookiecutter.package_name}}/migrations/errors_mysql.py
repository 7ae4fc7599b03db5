"""Failures turned into one-line answers that name the real cause, where the database stands and
the fix, without printing a secret. Alembic prints a `CommandError` as `FAILED: ...` and exits 1
(also with --raiseerr, which adds the traceback); the original exception stays chained.

MySQL commits each DDL statement on its own: a revision that fails half way keeps what it made
before the failure, while its version row is not advanced. The message names those objects and
the two ways back to a consistent database.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..settings import Settings
from .implicit_commits import committed_objects
from .lock import LockLost
from .messages import (
    HINT_VERBOSE,
    cap,
    describe_target,
    explain_alembic,
    failed_revision,
    failing_revision,
)
from .progress import Progress
from .retries import LockRetriesExhausted, errno

ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049
TOO_MANY_CONNECTIONS = (1040, 1203)
# --read-only (ER_OPTION_PREVENTS_STATEMENT), a read-only transaction.
READ_ONLY = (1290, 1792)
# Server gone away, lost during a query, killed (KILL), shutting down; 2002/2003: cannot connect.
CONNECTION_LOST = (2006, 2013, 1927, 1053, 2002, 2003)


def _errno(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        number = errno(seen)
        if number is not None:
            return number
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    args: tuple[object, ...] = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL's (errno, message)
        return f"{type(orig).__name__} {args[0]}: {args[1]}"
    message = str(orig or exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


@asynccontextmanager
async def connect(engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncConnection]:
    """A connection, or a short answer saying which server refused it and what to check."""
    try:
        connection = await engine.connect()
    except Exception as exc:
        target = describe_target(engine.url)
        number = _errno(exc)
        if number == ACCESS_DENIED:
            fix = "Check the user and password in DATABASE_URL or DB_USER/DB_PASSWORD"
        elif number == UNKNOWN_DATABASE:
            fix = (
                f"Create it (CREATE DATABASE `{engine.url.database}`, or make db-reset in "
                "development), or fix the name in DATABASE_URL or DB_NAME"
            )
        elif number in TOO_MANY_CONNECTIONS:
            fix = (
                "Its max_connections are used up; a migration run needs one connection. Free "
                "connections or raise max_connections"
            )
        else:
            fix = (
                "Check DATABASE_URL or DB_* (or MIGRATION_DATABASE_URL; environment or .env) and "
                "that the server runs (make db-up)"
            )
        timeout = settings.db_connect_timeout
        reason = _first_line(exc) if str(exc) else f"no answer within {timeout:g}s"
        raise CommandError(
            f"Cannot connect to MySQL ({target}): {reason}. {fix}, then run again. {HINT_VERBOSE}"
        ) from exc
    try:
        yield connection
    finally:
        await connection.close()


def _lost_connection(exc: BaseException) -> bool:
    if _errno(exc) in CONNECTION_LOST:
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError)


def _where(progress: Progress) -> str:
    """Where the database stands after the current revision stopped part way, as sentences."""
    if progress.revision is None:
        return f"{cap(progress.where())}."
    committed = committed_objects(progress)
    if not committed:
        return f"Nothing of it was applied; {progress.where()}."
    revision = progress.revision.split(" ", 1)[0]
    return (
        "MySQL commits each DDL statement on its own, and these statements of the revision were "
        f"already committed: {'; '.join(committed)}. The version row was NOT advanced: "
        f"{progress.where()}. To recover, either finish the revision by hand (run its remaining "
        f"statements) and then `make stamp rev={revision}`, or undo what was committed (e.g. "
        "DROP the objects above), fix the revision and run make migrate again. Keep one DDL "
        "statement per revision on MySQL to avoid this."
    )


@contextmanager
def clear_errors(
    settings: Settings, progress: Progress, command: str | None = None
) -> Iterator[None]:
    """Turn the failures users meet into a few lines that name the cause and the fix."""
    try:
        yield
    except CommandError as exc:
        explained = explain_alembic(exc, command)
        if explained is not None:
            raise CommandError(explained) from exc
        # Alembic names the revision it cannot find, but not where the known ones are listed.
        if isinstance(exc.__cause__, ResolutionError):
            raise CommandError(
                f"{exc}: no revision file defines it. `make history` lists the revisions, "
                "`make heads` the heads."
            ) from exc
        raise
    except LockLost as exc:
        raise CommandError(
            f"The migration lock is no longer held by this run (found out after revision "
            f"{progress.last or '(none)'}): its session was reset or replaced (a proxy that "
            f"multiplexes sessions does this). Stopped; {progress.where()}. Migrate through a "
            "direct connection (MIGRATION_DATABASE_URL) and run make migrate again."
        ) from exc
    except LockRetriesExhausted as exc:
        raise CommandError(
            f"Revision {progress.revision} could not get its lock in {exc.attempts} attempts "
            f"over {exc.seconds:.0f}s (lock_wait_timeout up to "
            f"{settings.migration_lock_timeout}): {exc.blockers}. {_where(progress)} End the "
            "blocking transaction (or KILL <connection>), or raise MIGRATION_LOCK_RETRIES / "
            "MIGRATION_LOCK_RETRY_TOTAL, and run make migrate again."
        ) from exc
    except Exception as exc:
        if not isinstance(exc, SQLAlchemyError | OSError | RuntimeError) and not failed_revision(
            exc
        ):
            # A bug worth its traceback, or a caller's own control flow (test tools stop
            # `alembic revision` with an exception of theirs): it passes through unchanged.
            raise
        if _lost_connection(exc):
            raise CommandError(
                f"Lost the connection to MySQL during revision {failing_revision(progress, exc)}: "
                f"{_first_line(exc)}. The server ended the session (and the migration lock with "
                f"it). {_where(progress)} Check why (server restart, failover, KILL) and run "
                f"make migrate again. {HINT_VERBOSE}"
            ) from exc
        if _errno(exc) in READ_ONLY:
            raise CommandError(
                f"Revision {failing_revision(progress, exc)} failed: the database is read-only "
                f"({_first_line(exc)}). Migrations must run on the primary: point "
                f"MIGRATION_DATABASE_URL (or DATABASE_URL) at it. {_where(progress)}"
            ) from exc
        if failed_revision(exc) is not None or progress.revision is not None:
            rerun = (
                ""
                if committed_objects(progress)
                else "Fix the cause and run make migrate again (make current shows the version). "
            )
            raise CommandError(
                f"Revision {failing_revision(progress, exc)} failed: {_first_line(exc)}. "
                f"{_where(progress)} {rerun}{HINT_VERBOSE}"
            ) from exc
        raise CommandError(f"Migration run failed: {_first_line(exc)}. {HINT_VERBOSE}") from exc
