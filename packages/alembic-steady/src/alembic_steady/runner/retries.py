"""Lock-timeout retries: a statement waits for a table lock only briefly, then its revision is
rolled back and tried again, so app queries queued behind a waiting ALTER never stall for long.

Each attempt waits at most its lock timeout (a quarter of MIGRATION_LOCK_TIMEOUT at first,
doubling up to it), then sleeps a jittered, growing pause with no transaction open, so the
blocker and the app go on. Every failed attempt logs one line naming the session in the way. The
dialect says how a lock wait is bounded, how its end is reported, and whether a revision may be
tried again (on MySQL not once a DDL statement of it committed).
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.util import await_only

from ..project import MigrationSettings
from .progress import Progress
from .settings import duration_ms

if TYPE_CHECKING:
    from ..dialects.base import Dialect

log = logging.getLogger("alembic_steady")
_FIRST_PAUSE, _LONGEST_PAUSE = 0.2, 5.0


@dataclass(frozen=True)
class RetryPolicy:
    lock_timeout_ms: float  # the longest one attempt waits for a lock; 0 = no limit, no retries
    attempts: int
    total_seconds: float

    @classmethod
    def from_settings(cls, settings: MigrationSettings) -> "RetryPolicy":
        return cls(
            duration_ms("migration_lock_timeout", settings.migration_lock_timeout),
            settings.migration_lock_retries,
            settings.migration_lock_retry_total,
        )

    def timeout_ms(self, attempt: int) -> float:
        """Escalating: a quarter of the limit first, doubling up to it; attempt 0 is the whole
        limit (0: none)."""
        if attempt <= 0:
            return self.lock_timeout_ms
        escalated: float = self.lock_timeout_ms / 4 * 2 ** (attempt - 1)
        return max(1.0, min(self.lock_timeout_ms, escalated))

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


# Set in a connection's `info` by a step that bounds its own lock wait (authoring/ops.py's brief
# strong locks): the runner's retries then keep that bound instead of escalating the timeout.
OWN_LOCK_TIMEOUT = "alembic_steady.own_lock_timeout"

# The bound this module last set on the session, as (milliseconds, words): a step whose bound is
# the same sets nothing (a test walk's hundreds of steps each paid a round trip for it). Dropped
# when an attempt fails, since the rollback that follows may undo the setting (PostgreSQL's
# set_config is transactional), and at the start of each run (forget_lock_bound).
_LOCK_BOUND = "alembic_steady.lock_bound"


def forget_lock_bound(connection: Connection) -> None:
    """Make the next attempt set its lock bound: the session may hold another (a pooled
    connection's earlier run, or the reset at its end)."""
    connection.info.pop(_LOCK_BOUND, None)


def _bound_lock_waits(
    connection: Connection, dialect: "Dialect", policy: RetryPolicy, attempt: int
) -> str:
    wanted = policy.timeout_ms(attempt)
    held = connection.info.get(_LOCK_BOUND)
    if held is not None and held[0] == wanted:
        return str(held[1])
    words = dialect.set_lock_timeout(connection, policy, attempt)
    connection.info[_LOCK_BOUND] = (wanted, words)
    return words


def with_retries(
    connection: Connection,
    dialect: "Dialect",
    policy: RetryPolicy,
    progress: Progress,
    what: Callable[[], str],
    attempt_once: Callable[[], Any],
    in_transaction: bool,
) -> Any:
    """Run `attempt_once` under escalating lock timeouts until it gets its locks or the policy
    gives up (LockRetriesExhausted). In a transaction, a failed attempt is rolled back and the
    pause is taken with none open. `what` names the attempt in the log line of a failed one
    (asked then: the revision is known only once it runs)."""
    started = time.monotonic()
    attempt = 1
    while True:
        bound = str(connection.info.get(OWN_LOCK_TIMEOUT, ""))
        if not bound and policy.lock_timeout_ms > 0:
            bound = _bound_lock_waits(connection, dialect, policy, attempt)
        try:
            return attempt_once()
        except Exception as exc:
            forget_lock_bound(connection)
            if not dialect.is_lock_timeout(exc) or not dialect.may_retry(progress):
                raise
            if in_transaction:
                connection.rollback()
            blockers = dialect.describe_blockers(connection, (progress.statements or [""])[-1])
            if in_transaction:
                connection.commit()
            if not policy.attempts_left(attempt, started):
                raise LockRetriesExhausted(attempt, time.monotonic() - started, blockers) from exc
            wait = pause(attempt)
            log.warning(
                "%s: attempt %d waited %s for a lock: %s. Retrying in %.1fs.",
                what(),
                attempt,
                bound,
                blockers,
                wait,
            )
            sleep(wait)
            attempt += 1
