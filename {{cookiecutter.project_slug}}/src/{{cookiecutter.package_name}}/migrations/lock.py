"""The migration lock: one PostgreSQL advisory lock per project, held on the migration connection.

Waiting for it holds no snapshot: a replica that waited inside `pg_advisory_lock()` would keep one
open, and `CREATE INDEX CONCURRENTLY` on the lock holder waits for every older snapshot, a cycle
PostgreSQL does not detect. So waiters poll `pg_try_advisory_lock()` between short sleeps with no
statement or transaction open. The lock is session-level (an `autocommit_block()` keeps it), its
session is immune to the server's idle timeouts, and the runner checks it still holds it before
each revision and at the end.
"""

import asyncio
import random
import time
import zlib

from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import Settings

# One key per project: replicas of this service serialise, other services on the server do not.
LOCK_KEY = zlib.crc32(b"alembic:{{ cookiecutter.package_name }}") - 2**31
# pg_locks shows a bigint advisory key as two oids: the high and the low 32 bits.
_CLASSID, _OBJID = (LOCK_KEY % 2**64) >> 32, LOCK_KEY % 2**32
_HOLDERS = text(
    "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), "
    "extract(epoch FROM now() - a.backend_start)::int "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid "
    "AND l.objid = :objid AND l.objsubid = 1 AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)
_FIRST_POLL, _LONGEST_POLL = 0.05, 1.0


class LockLost(Exception):
    """The session no longer holds the migration lock (its connection was replaced or reset)."""


def protect_session(connection: Connection) -> None:
    """Keep the server from closing this session while it idles between revisions or retries:
    the lock would go with it, unnoticed, and a second runner would apply the same revision."""
    connection.execute(
        text(
            "SELECT set_config(name, '0', false) FROM pg_settings "
            "WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout')"
        )
    )
    connection.commit()


async def acquire(connection: AsyncConnection, settings: Settings) -> None:
    """Poll for the lock with jittered backoff, for at most MIGRATION_LOCK_WAIT seconds."""
    await connection.run_sync(protect_session)
    deadline = time.monotonic() + settings.migration_lock_wait
    pause = _FIRST_POLL
    while True:
        result = await connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
        )
        held = bool(result.scalar_one())
        await connection.commit()  # no transaction, hence no snapshot, while waiting
        if held:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            holders = await connection.run_sync(describe_holders)
            await connection.commit()
            raise CommandError(
                f"Another migration{holders} still holds the lock after "
                f"{settings.migration_lock_wait:g}s. Wait for it to finish, or raise "
                "MIGRATION_LOCK_WAIT."
            )
        await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.0)))
        pause = min(pause * 2, _LONGEST_POLL)


async def release(connection: AsyncConnection) -> None:
    """Unlock before the connection closes. Closing alone releases it on a direct connection,
    but a pooler keeps the server session, and the lock with it, for its next client."""
    try:
        await connection.rollback()
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        await connection.commit()
    except Exception:  # the connection is gone, and with it the lock
        return


def describe_holders(connection: Connection) -> str:
    """Who holds the lock, e.g. " (pid 123, application_name 'x', active, connected 40s)"."""
    rows = connection.execute(_HOLDERS, {"classid": _CLASSID, "objid": _OBJID}).all()
    return "".join(
        f" (pid {pid}, application_name {name!r}, {state or 'unknown state'}, connected {age}s"
        + (
            "; an idle holder is often a session a transaction-mode pooler kept after a run "
            f"through it: end it with pg_terminate_backend({pid}) if no migration runs"
            if state == "idle"
            else ""
        )
        + ")"
        for pid, name, state, age in rows[:1]
    )


def verify_held(connection: Connection) -> None:
    """Raise LockLost unless this very session holds the lock."""
    held = connection.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = :classid AND objid = :objid "
            "AND objsubid = 1"
        ),
        {"classid": _CLASSID, "objid": _OBJID},
    ).scalar_one()
    if not held:
        raise LockLost


def acquire_transaction_lock(connection: Connection, settings: Settings) -> None:
    """The same lock on a caller's connection: held until the caller's transaction ends.

    The caller's transaction is open already, so waiting here holds its snapshot whatever we do;
    a bounded wait is what is left to get right.
    """
    connection.execute(
        text("SELECT set_config('lock_timeout', :wait, true)"),
        {"wait": f"{int(settings.migration_lock_wait * 1000)}ms"},
    )
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
