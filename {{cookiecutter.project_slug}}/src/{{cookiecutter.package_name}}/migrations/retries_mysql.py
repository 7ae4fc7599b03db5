"""Lock-wait retries: a statement waits for a metadata lock only briefly (lock_wait_timeout), then
its revision is rolled back and tried again, so app queries queued behind a waiting ALTER never
stall for long.

MySQL commits each DDL statement on its own, so a revision is tried again only while nothing of it
is committed, that is when its first DDL statement timed out; later, the failure is explained
instead (see errors.py). Each attempt waits at most MIGRATION_LOCK_TIMEOUT in whole seconds (MySQL
has no finer unit), then sleeps a jittered, growing pause with no transaction open. Every failed
attempt logs one line naming the sessions with open transactions, the likely blockers.
"""

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from alembic.runtime.migration import MigrationContext, RevisionStep
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, MissingGreenlet
from sqlalchemy.util import await_only

from ..settings import Settings
from .progress import Progress
from .settings_loading import duration_ms

log = logging.getLogger(__name__.rsplit(".", 1)[0])
# ER_LOCK_WAIT_TIMEOUT: a metadata lock (lock_wait_timeout) or a row lock
# (innodb_lock_wait_timeout) not granted in time.
LOCK_WAIT_TIMEOUT = 1205
_FIRST_PAUSE, _LONGEST_PAUSE = 0.2, 5.0
# lock_wait_timeout's largest value (a year): MIGRATION_LOCK_TIMEOUT=0, no limit.
_NO_LIMIT = 31_536_000
# Sessions with an open InnoDB transaction: whoever holds a table's metadata lock is among them.
_BLOCKERS = text(
    "SELECT p.ID, p.USER, p.COMMAND, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
    "FROM information_schema.INNODB_TRX t "
    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
    "WHERE p.ID <> CONNECTION_ID() ORDER BY t.trx_started LIMIT 3"
)


@dataclass(frozen=True)
class RetryPolicy:
    lock_timeout_ms: float  # the longest one attempt waits for a lock; 0 = no limit, no retries
    attempts: int
    total_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            duration_ms("migration_lock_timeout", settings.migration_lock_timeout),
            settings.migration_lock_retries,
            settings.migration_lock_retry_total,
        )

    def timeout_seconds(self, attempt: int) -> int:
        """Escalating: a quarter of the limit first, doubling up to it; at least 1 s (MySQL's
        lock_wait_timeout counts whole seconds, and 0 would mean "do not wait at all")."""
        if self.lock_timeout_ms <= 0:
            return _NO_LIMIT
        limit = self.lock_timeout_ms / 1000
        seconds: float = min(limit, limit / 4 * 2 ** (attempt - 1))
        return max(1, math.ceil(seconds))

    def attempts_left(self, attempt: int, started: float) -> bool:
        return (
            self.lock_timeout_ms > 0
            and attempt < self.attempts
            and time.monotonic() - started < self.total_seconds
        )


class LockRetriesExhausted(Exception):
    """A statement still could not get its lock after every attempt the policy allows."""

    def __init__(self, attempts: int, seconds: float, blockers: str) -> None:
        super().__init__(f"lock wait timeout after {attempts} attempts in {seconds:.0f}s")
        self.attempts, self.seconds, self.blockers = attempts, seconds, blockers


def errno(exc: BaseException) -> int | None:
    """The server's error number (PyMySQL's first argument), e.g. 1205."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None) if isinstance(exc, DBAPIError) else None
    return args[0] if args and isinstance(args[0], int) else None


def is_lock_timeout(exc: BaseException) -> bool:
    return errno(exc) == LOCK_WAIT_TIMEOUT


def set_lock_timeout(connection: Connection, seconds: int) -> None:
    """Bound both waits a migration statement can meet: metadata locks (DDL) and row locks (DML)."""
    connection.execute(
        text("SET SESSION lock_wait_timeout = :s, innodb_lock_wait_timeout = :s"), {"s": seconds}
    )


def describe_blockers(connection: Connection) -> str:
    """The sessions with open transactions, e.g. "connection 12 (user 'app', Sleep, transaction
    open 3s)": MySQL does not say who held the metadata lock once the wait has ended."""
    rows = connection.execute(_BLOCKERS).all()
    if rows:
        return "sessions with open transactions: " + "; ".join(
            f"connection {conn_id} (user {user!r}, {state}, transaction open {age}s)"
            for conn_id, user, state, age in rows
        )
    return "a lock held by another session (none seen holding it any more)"


def pause(attempt: int) -> float:
    backoff: float = min(_LONGEST_PAUSE, _FIRST_PAUSE * 2 ** (attempt - 1))
    return backoff * random.uniform(0.5, 1.5)


def sleep(seconds: float) -> None:
    """Sleep on the event loop when there is one, so a signal is handled meanwhile."""
    pause = asyncio.sleep(seconds)
    try:
        await_only(pause)
    except MissingGreenlet:  # a caller's sync connection, no event loop of ours
        pause.close()
        time.sleep(seconds)


def with_retries(
    connection: Connection,
    policy: RetryPolicy,
    progress: Progress,
    what: Callable[[], str],
    attempt_once: Callable[[], Any],
) -> Any:
    """Run `attempt_once` (one revision, in its transaction) under escalating lock-wait
    timeouts until it gets its locks or the policy gives up (LockRetriesExhausted). A revision
    some DDL statement of which was committed is not tried again: the error says what stands."""
    started = time.monotonic()
    attempt = 1
    while True:
        if policy.lock_timeout_ms > 0:
            set_lock_timeout(connection, policy.timeout_seconds(attempt))
        try:
            return attempt_once()
        except Exception as exc:
            if not is_lock_timeout(exc) or progress.committed:
                raise
            connection.rollback()
            blockers = describe_blockers(connection)
            connection.commit()
            if not policy.attempts_left(attempt, started):
                raise LockRetriesExhausted(attempt, time.monotonic() - started, blockers) from exc
            wait = pause(attempt)
            log.warning(
                "%s: attempt %d waited %ds for a lock: %s. Retrying in %.1fs.",
                what(),
                attempt,
                policy.timeout_seconds(attempt),
                blockers,
                wait,
            )
            sleep(wait)
            attempt += 1


class OneRevisionAtATime:
    """Wraps Alembic's upgrade/downgrade `fn` so each run_migrations() applies one revision.

    The whole list of steps is computed once, from the heads at the start, so relative targets
    (+1, -2) keep their meaning; a failed attempt leaves its step first in line.
    """

    def __init__(self, fn: Callable[..., Iterable[RevisionStep]], progress: Progress) -> None:
        self._fn, self._progress = fn, progress
        self._pending: list[RevisionStep] | None = None
        self.offered: RevisionStep | None = None

    def __call__(self, heads: tuple[str, ...], context: MigrationContext) -> Iterator[Any]:
        if self._pending is None:
            self._pending = list(self._fn(heads, context))
        self.offered = self._pending[0] if self._pending else None
        if self.offered is not None:
            script = self.offered.revision
            self._progress.start(tuple(heads), f"{script.revision} ({script.doc})")
            yield self.offered
            self._pending.pop(0)  # reached only once the step's transaction has committed


def wraps_alembic_command(fn: object) -> TypeGuard[Callable[..., Iterable[RevisionStep]]]:
    """Alembic's own upgrade/downgrade `fn`, which may be applied a revision at a time; a
    caller's own `fn` (a test walk, say) runs untouched."""
    return getattr(fn, "__module__", None) == "alembic.command" and getattr(
        fn, "__name__", None
    ) in ("upgrade", "downgrade")


def set_statement_timeout(connection: Connection, settings: Settings) -> None:
    """MIGRATION_STATEMENT_TIMEOUT for every statement: max_statement_time (seconds) on MariaDB,
    max_execution_time (milliseconds; MySQL bounds only SELECTs with it) on MySQL. Set once the
    migration lock is held."""
    limit_ms = duration_ms("migration_statement_timeout", settings.migration_statement_timeout)
    version = str(connection.execute(text("SELECT VERSION()")).scalar_one())
    if "mariadb" in version.lower():
        connection.execute(text("SET SESSION max_statement_time = :s"), {"s": limit_ms / 1000})
    else:
        connection.execute(text("SET SESSION max_execution_time = :ms"), {"ms": int(limit_ms)})
    connection.commit()
