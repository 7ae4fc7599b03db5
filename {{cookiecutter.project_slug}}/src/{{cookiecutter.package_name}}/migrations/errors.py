"""Failures turned into one-line answers that name the real cause, where the database stands and
the fix, without printing a secret. Alembic prints a `CommandError` as `FAILED: ...` and exits 1
(also with --raiseerr, which adds the traceback); the original exception stays chained."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..settings import Settings
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
from .retries import LockRetriesExhausted

TOO_MANY_CONNECTIONS = "53300"
READ_ONLY = "25006"
# admin_shutdown (pg_terminate_backend), crash_shutdown, cannot_connect_now; class 08 is
# "connection exception".
CONNECTION_LOST = ("57P01", "57P02", "57P03")
# duplicate_prepared_statement, invalid_sql_statement_name: what a transaction-mode pooler does
# to asyncpg's prepared statements.
POOLER = ("42P05", "26000")

POOLER_HINT = (
    "the connection goes through a pooler in transaction mode (PgBouncer's "
    "pool_mode=transaction), which shares server sessions between clients. Migrations need a "
    "direct or session-pooled connection: set MIGRATION_DATABASE_URL to one."
)


def _through_pooler(exc: BaseException) -> bool:
    return _sqlstate(exc) in POOLER and "prepared statement" in str(exc)


def _sqlstate(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (getattr(seen, "orig", None), seen):
            state = getattr(candidate, "sqlstate", None)
            if isinstance(state, str):
                return state
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


@asynccontextmanager
async def connect(engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncConnection]:
    """A connection, or a short answer saying which server refused it and what to check."""
    try:
        connection = await engine.connect()
    except Exception as exc:
        target = describe_target(engine.url)
        if _sqlstate(exc) == TOO_MANY_CONNECTIONS:
            raise CommandError(
                f"PostgreSQL ({target}) refused the connection: {_first_line(exc)}. Its "
                "max_connections are used up; a migration run needs one connection (replicas "
                "waiting for the migration lock hold one each). Free connections or raise "
                "max_connections, then run again."
            ) from exc
        if _through_pooler(exc):
            raise CommandError(f"{_first_line(exc)} ({target}): {POOLER_HINT}") from exc
        timeout = settings.db_connect_timeout
        reason = _first_line(exc) if str(exc) else f"no answer within {timeout:g}s"
        raise CommandError(
            f"Cannot connect to PostgreSQL ({target}): {reason}. Check DATABASE_URL or DB_* "
            "(or MIGRATION_DATABASE_URL; environment or .env) and that the server runs "
            f"(make db-up). {HINT_VERBOSE}"
        ) from exc
    try:
        yield connection
    finally:
        await connection.close()


def _lost_connection(exc: BaseException) -> bool:
    state = _sqlstate(exc)
    if state is not None and (state in CONNECTION_LOST or state.startswith("08")):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError) or "connection is closed" in str(exc)


def _where(progress: Progress) -> str:
    """Where the database stands after the current revision stopped part way, as sentences."""
    if progress.revision is None:
        return f"{cap(progress.where())}."
    committed = progress.committed_part()
    leftover = (
        f" The failed CREATE INDEX CONCURRENTLY left the INVALID index {progress.leftover}; "
        "the next run drops it and builds it again."
        if progress.leftover
        else ""
    )
    if committed:
        return (
            "The revision's transaction was rolled back, but these steps of it were already "
            "committed (autocommit_block() commits what ran before it and what runs in it): "
            f"{committed}. {cap(progress.where())}, so the "
            "next run starts the revision again: keep those steps rerun-safe (IF NOT EXISTS)."
            + leftover
        )
    if leftover:
        return f"Its transaction was rolled back; {progress.where()}.{leftover}"
    return f"Nothing of it was applied; {progress.where()}."


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
            f"{progress.last or '(none)'}): its session was reset, as a pooler in transaction "
            f"mode does. Stopped; {progress.where()}. Migrate through a direct or "
            "session-pooled connection (MIGRATION_DATABASE_URL) and run make migrate again."
        ) from exc
    except LockRetriesExhausted as exc:
        raise CommandError(
            f"Revision {progress.revision} could not get its lock in {exc.attempts} attempts "
            f"over {exc.seconds:.0f}s (lock_timeout up to {settings.migration_lock_timeout}): "
            f"{exc.blockers}. {_where(progress)} End the blocking transaction "
            "(or pg_terminate_backend(pid)), or raise MIGRATION_LOCK_RETRIES / "
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
                "Lost the connection to PostgreSQL during revision "
                f"{failing_revision(progress, exc)}: "
                f"{_first_line(exc)}. The server ended the session (and the migration lock with "
                f"it). {_where(progress)} Check why (server restart, failover, "
                f"pg_terminate_backend, a pooler) and run make migrate again. {HINT_VERBOSE}"
            ) from exc
        if _through_pooler(exc):
            raise CommandError(f"{_first_line(exc)}: {POOLER_HINT} {_where(progress)}") from exc
        if _sqlstate(exc) == READ_ONLY:
            raise CommandError(
                f"Revision {failing_revision(progress, exc)} failed: the database is read-only "
                f"({_first_line(exc)}). Migrations must run on the primary: point "
                f"MIGRATION_DATABASE_URL (or DATABASE_URL) at it. {_where(progress)}"
            ) from exc
        if command == "downgrade" and (failed_revision(exc) or progress.revision):
            # Its own advice: the upgrade's would send the user to make migrate.
            raise CommandError(
                f"The downgrade of revision {failing_revision(progress, exc)} failed: "
                f"{_first_line(exc)}. {_where(progress)} Fix that revision's downgrade() (data "
                "the upgrade changed may not fit the old schema: move it back first), then run "
                f"make rollback again; make current shows the version. {HINT_VERBOSE}"
            ) from exc
        if failed_revision(exc) is not None or progress.revision is not None:
            raise CommandError(
                f"Revision {failing_revision(progress, exc)} failed: {_first_line(exc)}. "
                f"{_where(progress)} Fix the cause and run make migrate again (make current "
                f"shows the version). {HINT_VERBOSE}"
            ) from exc
        raise CommandError(f"Migration run failed: {_first_line(exc)}. {HINT_VERBOSE}") from exc


def offline_failure(exc: BaseException) -> CommandError:
    """`make sql`: the revision that cannot be rendered as SQL without a database, and why."""
    where = failed_revision(exc) or "a revision"
    return CommandError(
        f"{where} cannot be rendered as SQL offline: {_first_line(exc)}. It needs a database "
        "(op.get_bind(), or data it reads): render the revisions before and after it apart "
        f"(make sql rev=from:to) and review this one by hand. {HINT_VERBOSE}"
    )
