"""The migration lock: a named lock (`GET_LOCK`) per project and database, held by the migration
session.

MySQL's named locks belong to the session, not to a transaction: they survive every COMMIT (and
the implicit commit of each DDL statement) and go when the session ends. Their names are
server-wide, so the name carries the database's: two databases of one server migrate
independently, replicas of one service on one database serialise. Waiters call `GET_LOCK` with a
wait of at most a second at a time, up to MIGRATION_LOCK_WAIT, so a signal is handled meanwhile;
the runner checks it still holds the lock before each revision and at the end.
"""

import hashlib
import time

from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import Settings

# MySQL refuses lock names longer than 64 characters; a long database name is hashed instead.
_MAX_NAME = 64
_LONGEST_POLL = 1.0


class LockLost(Exception):
    """The session no longer holds the migration lock (its connection was replaced or reset)."""


def lock_name(database: str | None) -> str:
    """E.g. "alembic:{{ cookiecutter.package_name }}:shop": per project and database."""
    name = f"alembic:{{ cookiecutter.package_name }}:{database or ''}"
    if len(name) <= _MAX_NAME:
        return name
    return "alembic:" + hashlib.sha256(name.encode()).hexdigest()[: _MAX_NAME - 8]


def _name(connection: Connection) -> str:
    return lock_name(connection.execute(text("SELECT DATABASE()")).scalar_one())


def protect_session(connection: Connection) -> None:
    """Keep the server from closing this session while it idles between revisions or retries
    (wait_timeout): the lock would go with it, unnoticed."""
    connection.execute(text("SET SESSION wait_timeout = 31536000"))
    connection.commit()


async def acquire(connection: AsyncConnection, settings: Settings) -> None:
    """Wait for the lock, at most a second per GET_LOCK call and MIGRATION_LOCK_WAIT in all."""
    await connection.run_sync(protect_session)
    name = await connection.run_sync(_name)
    deadline = time.monotonic() + settings.migration_lock_wait
    while True:
        remaining = deadline - time.monotonic()
        wait = max(0.0, min(_LONGEST_POLL, remaining))
        result = await connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}
        )
        held = result.scalar_one() == 1
        await connection.commit()  # no transaction open while waiting
        if held:
            return
        if deadline - time.monotonic() <= 0:
            holders = await connection.run_sync(describe_holders, name)
            await connection.commit()
            raise CommandError(
                f"Another migration{holders} still holds the lock {name!r} after "
                f"{settings.migration_lock_wait:g}s. Wait for it to finish, or raise "
                "MIGRATION_LOCK_WAIT."
            )


async def release(connection: AsyncConnection) -> None:
    """Release before the connection closes (closing alone releases it too)."""
    try:
        await connection.rollback()
        await connection.run_sync(release_sync)
        await connection.commit()
    except Exception:  # the connection is gone, and with it the lock
        return


def release_sync(connection: Connection) -> None:
    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _name(connection)})


def describe_holders(connection: Connection, name: str) -> str:
    """Who holds the lock, e.g. " (connection 12, user 'app'@'10.0.0.3', Sleep, connected 40s)"."""
    row = connection.execute(
        text(
            "SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME FROM information_schema.PROCESSLIST p "
            "WHERE p.ID = IS_USED_LOCK(:name)"
        ),
        {"name": name},
    ).first()
    if row is None:
        return ""
    conn_id, user, host, state, age = row
    return f" (connection {conn_id}, user {user!r}@{host!r}, {state}, for {age}s)"


def verify_held(connection: Connection) -> None:
    """Raise LockLost unless this very session holds the lock."""
    held = connection.execute(
        text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"), {"name": _name(connection)}
    ).scalar_one()
    if not held:
        raise LockLost


def acquire_transaction_lock(connection: Connection, settings: Settings) -> None:
    """The same lock on a caller's connection, waited for at most MIGRATION_LOCK_WAIT seconds.

    It is a session lock: env.py releases it when the run ends (a transaction does not)."""
    name = _name(connection)
    wait = settings.migration_lock_wait
    got = connection.execute(
        text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}
    ).scalar_one()
    if got != 1:
        raise CommandError(
            f"Another migration{describe_holders(connection, name)} still holds the lock "
            f"{name!r} after {wait:g}s. Wait for it to finish, or raise MIGRATION_LOCK_WAIT."
        )
