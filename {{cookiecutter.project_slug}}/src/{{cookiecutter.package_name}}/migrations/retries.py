"""Lock-timeout retries: a statement waits for a table lock only briefly, then its revision is
rolled back and tried again, so app queries queued behind a waiting ALTER never stall for long.

Each attempt waits at most its lock_timeout (a quarter of MIGRATION_LOCK_TIMEOUT at first,
doubling up to it), then sleeps a jittered, growing pause with no transaction open, so the
blocker and the app go on. Every failed attempt logs one line naming the session in the way.
"""

import asyncio
import logging
import random
import re
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
LOCK_NOT_AVAILABLE = "55P03"
_FIRST_PAUSE, _LONGEST_PAUSE = 0.2, 5.0
_WORDS = re.compile(r'"([^"]+)"|\b([A-Za-z_][\w$]*)\b')
# Sessions holding a lock on a relation the failed statement names: the likely blockers.
_BLOCKERS = text(
    "SELECT DISTINCT ON (a.pid) a.pid, coalesce(a.application_name, ''), "
    "coalesce(a.state, ''), "
    "extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::numeric(10,1), "
    "c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'relation' AND l.granted "
    "AND l.pid <> pg_backend_pid() AND c.relname = ANY(:names) "
    "ORDER BY a.pid, a.xact_start LIMIT 3"
)

_OLDEST = text(
    "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), "
    "extract(epoch FROM now() - xact_start)::numeric(10,1) FROM pg_stat_activity "
    "WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
    "AND datname = current_database() ORDER BY xact_start LIMIT 3"
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

    def timeout_ms(self, attempt: int) -> int:
        """Escalating: a quarter of the limit first, doubling up to it."""
        return max(1, int(min(self.lock_timeout_ms, self.lock_timeout_ms / 4 * 2 ** (attempt - 1))))

    def attempts_left(self, attempt: int, started: float) -> bool:
        return (
            self.lock_timeout_ms > 0
            and attempt < self.attempts
            and time.monotonic() - started < self.total_seconds
        )


class LockRetriesExhausted(Exception):
    """A statement still could not get its lock after every attempt the policy allows."""

    def __init__(self, attempts: int, seconds: float, blockers: str) -> None:
        super().__init__(f"lock timeout after {attempts} attempts in {seconds:.0f}s")
        self.attempts, self.seconds, self.blockers = attempts, seconds, blockers


def is_lock_timeout(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return isinstance(exc, DBAPIError) and getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def set_lock_timeout(connection: Connection, milliseconds: float) -> None:
    connection.execute(
        text("SELECT set_config('lock_timeout', :value, false)"),
        {"value": f"{int(milliseconds)}ms"},
    )


def describe_blockers(connection: Connection, statement: str) -> str:
    """Who holds a lock on a relation `statement` names, e.g. "table item held by pid 123
    (application_name 'app', idle in transaction, transaction open 3.1s)".

    The timed-out statement no longer waits, so pg_blocking_pids() has nothing left to say; the
    sessions holding locks on the tables it names are the ones that were in its way."""
    names = sorted({quoted or bare for quoted, bare in _WORDS.findall(statement)})
    rows = connection.execute(_BLOCKERS, {"names": names}).all() if names else []
    if rows:
        where = "the version row (alembic_version)" if rows[0][4] == "alembic_version" else None
        return "; ".join(
            f"{where or 'table ' + relname} held by pid {pid} ({_session(app, state, age)})"
            for pid, app, state, age, relname in rows
        )
    # No table lock in the way: CREATE INDEX CONCURRENTLY waits for older snapshots instead.
    rows = connection.execute(_OLDEST).all()
    if rows:
        return "older transactions: " + "; ".join(
            f"pid {pid} ({_session(app, state, age)})" for pid, app, state, age in rows
        )
    return "a lock held by another session (none seen holding it any more)"


def _session(app: str, state: str, age: object) -> str:
    return f"application_name {app!r}, {state or 'unknown state'}, transaction open {age}s"


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
    in_transaction: bool,
) -> Any:
    """Run `attempt_once` under escalating lock timeouts until it gets its locks or the policy
    gives up (LockRetriesExhausted). In a transaction, a failed attempt is rolled back and the
    pause is taken with none open."""
    started = time.monotonic()
    attempt = 1
    while True:
        if policy.lock_timeout_ms > 0:
            set_lock_timeout(connection, policy.timeout_ms(attempt))
        try:
            return attempt_once()
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            if in_transaction:
                connection.rollback()
            blockers = describe_blockers(connection, (progress.statements or [""])[-1])
            if in_transaction:
                connection.commit()
            if not policy.attempts_left(attempt, started):
                raise LockRetriesExhausted(attempt, time.monotonic() - started, blockers) from exc
            wait = pause(attempt)
            log.warning(
                "%s: attempt %d waited %dms for a lock: %s. Retrying in %.1fs.",
                what(),
                attempt,
                policy.timeout_ms(attempt),
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


def set_statement_timeout(connection: Connection, settings: Settings, local: bool = False) -> None:
    """MIGRATION_STATEMENT_TIMEOUT for every statement; on a caller's connection (`local`, no
    retries there) MIGRATION_LOCK_TIMEOUT too. Set once the migration lock is held."""
    connection.execute(
        text("SELECT set_config('statement_timeout', :value, :local)"),
        {"value": settings.migration_statement_timeout, "local": local},
    )
    if local:
        connection.execute(
            text("SELECT set_config('lock_timeout', :value, true)"),
            {"value": settings.migration_lock_timeout},
        )
    else:
        connection.commit()
