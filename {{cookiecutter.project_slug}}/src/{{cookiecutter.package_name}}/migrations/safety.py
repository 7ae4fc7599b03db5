"""What keeps a migration run safe: settings checks, production guards, the advisory lock, and
short error messages that name the cause and the fix without printing a secret."""

import os
import traceback
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..settings import Settings, get_settings

# One key per project: replicas of this service serialise, other services on the server do not.
LOCK_KEY = zlib.crc32(b"alembic:{{ cookiecutter.package_name }}") - 2**31
VERSIONS_DIR = Path(__file__).parent / "versions"
HINT_VERBOSE = "Run with VERBOSE=1 (alembic --raiseerr) for the full traceback."


def load_settings() -> Settings:
    """The settings, or a one-line answer naming the variable that is wrong (never its value)."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise CommandError(
            f"Invalid database settings ({problems}). Fix them in the environment or in .env."
        ) from None


def command_name(config: Config) -> str | None:
    """The Alembic command being run (`upgrade`, `check`, ...), or None when unknown."""
    if "command" in config.attributes:
        return str(config.attributes["command"])
    cmd = getattr(config.cmd_opts, "cmd", None)
    return cmd[0].__name__ if cmd else None


def refuse_in_production(command: str | None, settings: Settings) -> None:
    """Rollbacks and stamps in production need CONFIRM=yes, so nobody loses data by a typo."""
    if settings.environment != "production" or command not in ("downgrade", "stamp"):
        return
    if os.environ.get("CONFIRM") != "yes":
        raise CommandError(
            f"Refusing to {command} in production: it can lose data or hide unapplied migrations. "
            "Take a backup (make backup), then run again with CONFIRM=yes."
        )


def acquire_session_lock(connection: Connection, settings: Settings) -> None:
    """Wait (bounded) for the project's advisory lock on a dedicated connection.

    The lock is session-level, so `autocommit_block()` inside a revision cannot drop it; it is
    released when this connection closes. Processes that waited then find the new head and do
    nothing, instead of failing on tables another replica just created.
    """
    _set(connection, "lock_timeout", f"{int(settings.migration_lock_wait * 1000)}ms", local=False)
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
    connection.commit()


def acquire_transaction_lock(connection: Connection, settings: Settings) -> None:
    """The same lock for an injected connection: held until the caller's transaction ends."""
    _set(connection, "lock_timeout", f"{int(settings.migration_lock_wait * 1000)}ms", local=True)
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    apply_timeouts(connection, settings, local=True)


def apply_timeouts(connection: Connection, settings: Settings, *, local: bool = False) -> None:
    """Bound how long each migration statement waits for table locks and runs.

    Set only once the advisory lock is held, so waiting for another replica is not cut short.
    """
    connection.execute(
        text(
            "SELECT set_config('lock_timeout', :lock, :local), "
            "set_config('statement_timeout', :statement, :local)"
        ),
        {
            "lock": settings.migration_lock_timeout,
            "statement": settings.migration_statement_timeout,
            "local": local,
        },
    )
    if not local:
        connection.commit()


def _set(connection: Connection, name: str, value: str, *, local: bool) -> None:
    # set_config() takes bound values, where SET does not.
    connection.execute(
        text("SELECT set_config(:name, :value, :local)"),
        {"name": name, "value": value, "local": local},
    )


def require_known_revisions(current: tuple[str, ...], script: ScriptDirectory) -> None:
    """A version row that no revision file defines (a deleted file, a branch not pulled)."""
    unknown = [rev for rev in current if not _defined(script, rev)]
    if unknown:
        raise CommandError(
            f"The database is at {', '.join(unknown)}, which no revision file defines: pull or "
            "restore that revision file, or reset the record with "
            "`alembic stamp --purge <known revision>`."
        )


def _defined(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def require_database_at_head(current: tuple[str, ...], script: ScriptDirectory) -> None:
    """Before comparing models with the database, make sure the comparison means something."""
    heads = script.get_heads()
    if len(heads) > 1:
        raise CommandError(
            f"There is more than one head ({', '.join(sorted(heads))}): run `make merge` first."
        )
    if set(current) != set(heads):
        raise CommandError(
            f"The database is at {', '.join(current) or 'base'}, behind head "
            f"{', '.join(heads)}: run `make migrate` first."
        )


def refuse_upgrade_below_current(
    current: tuple[str, ...], script: ScriptDirectory, destination: object
) -> None:
    """`alembic upgrade <older revision>` silently does nothing; say how to go down instead."""
    if not current or not isinstance(destination, str | None):
        return
    if destination is None:  # Alembic's name for base
        destination, below = "base", True
    else:
        try:
            target = script.get_revision(destination)
        except Exception:
            return  # relative (+1), symbolic (heads) or unknown: Alembic answers those itself
        if target is None or target.revision in current:
            return
        ancestors = {rev.revision for rev in script.iterate_revisions(current, "base")}
        below = target.revision in ancestors
    if below:
        raise CommandError(
            f"{destination} is below the database's revision ({', '.join(current)}), and an "
            f"upgrade never goes down. To go back, run `make rollback rev={destination}` "
            "(in production with CONFIRM=yes, after make backup)."
        )


def _describe_target(url: URL) -> str:
    where = f"{url.host or 'local socket'}" + (f":{url.port}" if url.port else "")
    return f"database {url.database or '(default)'} on {where} as {url.username or '(default)'}"


@asynccontextmanager
async def connect(engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncConnection]:
    """A connection, or a short answer saying which server refused it and what to check."""
    try:
        connection = await engine.connect()
    except Exception as exc:
        timeout = settings.db_connect_timeout
        reason = _first_line(exc) if str(exc) else f"no answer within {timeout:g}s"
        raise CommandError(
            f"Cannot connect to PostgreSQL ({_describe_target(engine.url)}): {reason}. "
            "Check DATABASE_URL or DB_* (environment or .env) and that the server runs "
            f"(make db-up). {HINT_VERBOSE}"
        ) from exc
    try:
        yield connection
    finally:
        await connection.close()


def _failed_revision(exc: BaseException) -> str | None:
    """The revision file (and line) whose code raised, found in the traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.parent == VERSIONS_DIR:
            return f"{path.name}, line {frame.lineno}"
    return None


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


@contextmanager
def clear_errors(settings: Settings) -> Iterator[None]:
    """Turn the failures users meet into a few lines that name the cause and the fix.

    Alembic prints a `CommandError` as `FAILED: ...` and exits 1; the original exception stays
    chained for `--raiseerr`. Each revision runs in its own transaction, so a failure leaves the
    database at the last revision that succeeded.
    """
    try:
        yield
    except CommandError as exc:
        # Alembic names the revision it cannot find, but not where the known ones are listed.
        if isinstance(exc.__cause__, ResolutionError):
            raise CommandError(
                f"{exc}: no revision file defines it. `make history` lists the revisions, "
                "`make heads` the heads."
            ) from exc
        raise
    except Exception as exc:
        revision = _failed_revision(exc)
        if revision is not None:
            raise CommandError(
                f"Revision {revision} failed: {_first_line(exc)}. Nothing of it was applied; "
                f"the database stays at the last good revision (make current). Fix the revision "
                f"and run make migrate again. {HINT_VERBOSE}"
            ) from exc
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if isinstance(exc, DBAPIError) and sqlstate == "55P03":
            raise CommandError(
                f"Another migration still holds the lock after {settings.migration_lock_wait:g}s. "
                "Wait for it to finish, or raise MIGRATION_LOCK_WAIT."
            ) from exc
        if isinstance(exc, SQLAlchemyError | OSError):
            raise CommandError(f"Migration run failed: {_first_line(exc)}. {HINT_VERBOSE}") from exc
        # Anything else is a bug worth its traceback, or a caller's own control flow (test tools
        # stop `alembic revision` with an exception of theirs): it passes through unchanged.
        raise
