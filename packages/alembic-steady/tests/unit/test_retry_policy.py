"""runner/retries.py: escalating lock timeouts, when to give up, the pauses, and the retry loop."""

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.util import CommandError
from sqlalchemy.util import greenlet_spawn
from support import FakeConnection, FakeDialect, LockTimeout, Settings, failing

from alembic_steady.runner import retries
from alembic_steady.runner.progress import Progress
from alembic_steady.runner.retries import LockRetriesExhausted, RetryPolicy, pause, with_retries

# -- timeout_ms: a quarter of the limit first, doubling up to it -----------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 250.0), (2, 500.0), (3, 1000.0), (4, 1000.0), (12, 1000.0)],
)
def test_timeout_escalates_from_a_quarter_up_to_the_limit(attempt: int, expected: float) -> None:
    assert RetryPolicy(1000, 30, 300).timeout_ms(attempt) == expected


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_zero_waits_the_whole_limit(attempt: int) -> None:
    assert RetryPolicy(1000, 30, 300).timeout_ms(attempt) == 1000


def test_no_limit_stays_no_limit_for_attempt_zero() -> None:
    assert RetryPolicy(0, 30, 300).timeout_ms(0) == 0


@pytest.mark.parametrize(("limit", "attempt"), [(2, 1), (3, 1), (1, 1), (1, 2)])
def test_an_escalated_timeout_is_never_below_one_millisecond(limit: float, attempt: int) -> None:
    # A quarter (or half) of these is below 1 ms; PostgreSQL reads "0ms" as no limit at all.
    assert RetryPolicy(limit, 30, 300).timeout_ms(attempt) == 1.0


def test_policy_from_settings_reads_the_duration_and_the_bounds() -> None:
    settings = Settings(
        migration_lock_timeout="2s", migration_lock_retries=5, migration_lock_retry_total=60.0
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(2000.0, 5, 60.0)


# -- attempts_left -------------------------------------------------------------------------


def test_attempts_left_until_the_attempt_count_is_reached() -> None:
    policy = RetryPolicy(1000, 3, 300)
    now = time.monotonic()
    assert [policy.attempts_left(attempt, now) for attempt in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]


def test_attempts_left_until_the_total_time_is_spent() -> None:
    policy = RetryPolicy(1000, 30, 10)
    assert policy.attempts_left(1, time.monotonic() - 9)
    assert not policy.attempts_left(1, time.monotonic() - 10.5)


def test_no_retries_without_a_lock_timeout() -> None:
    assert not RetryPolicy(0, 30, 300).attempts_left(1, time.monotonic())


# -- pause: jittered 0.5-1.5 around 0.2 s doubling to 5 s -------------------------------------


@pytest.mark.parametrize(
    ("attempt", "backoff"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0), (9, 5.0)],
)
def test_pause_backoff_doubles_from_a_fifth_of_a_second_to_five(
    monkeypatch: pytest.MonkeyPatch, attempt: int, backoff: float
) -> None:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return low

    monkeypatch.setattr(retries, "random", SimpleNamespace(uniform=uniform))
    assert pause(attempt) == pytest.approx(backoff * 0.5)
    monkeypatch.setattr(retries, "random", SimpleNamespace(uniform=lambda low, high: high))
    assert pause(attempt) == pytest.approx(backoff * 1.5)
    assert asked == [(0.5, 1.5)]


def test_pause_stays_within_its_jitter_bounds() -> None:
    for attempt, backoff in ((1, 0.2), (3, 0.8), (20, 5.0)):
        for _ in range(200):
            assert backoff * 0.5 <= pause(attempt) <= backoff * 1.5


# -- sleep ---------------------------------------------------------------------------------


def test_sleep_without_an_event_loop_sleeps_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retries, "time", SimpleNamespace(sleep=slept.append))
    retries.sleep(0.25)
    assert slept == [0.25]


def test_sleep_in_a_greenlet_awaits_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retries, "time", SimpleNamespace(sleep=slept.append))
    asyncio.run(greenlet_spawn(retries.sleep, 0))
    assert slept == []  # asyncio.sleep ran instead, so signals are handled meanwhile


# -- with_retries --------------------------------------------------------------------------


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses with_retries took (none is really taken)."""
    pauses: list[float] = []
    monkeypatch.setattr(retries, "sleep", pauses.append)
    return pauses


DEFAULT_POLICY = RetryPolicy(1000, 30, 300)


def run(
    attempt_once: object,
    *,
    dialect: FakeDialect,
    connection: FakeConnection | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: Progress | None = None,
    what: object = lambda: "Revision b",
    in_transaction: bool = True,
) -> object:
    return with_retries(
        connection or FakeConnection(log=dialect.events),
        dialect,
        policy,
        progress or Progress(),
        what,
        attempt_once,
        in_transaction=in_transaction,
    )


def test_a_first_attempt_that_succeeds_runs_once_under_a_quarter_of_the_limit(
    slept: list[float],
) -> None:
    dialect = FakeDialect()
    assert run(failing(0, LockTimeout, dialect.events), dialect=dialect) == "done"
    assert dialect.attempts == [1]  # attempt 1: a quarter of the limit, not the whole of it
    assert dialect.events == ["lock_timeout 1", "attempt"]
    assert slept == []


def test_lock_timeouts_are_retried_under_escalating_timeouts(slept: list[float]) -> None:
    dialect = FakeDialect()
    assert run(failing(2, LockTimeout, dialect.events), dialect=dialect) == "done"
    assert dialect.attempts == [1, 2, 3]
    assert len(slept) == 2
    assert 0.1 <= slept[0] <= 0.3 and 0.2 <= slept[1] <= 0.6


def test_a_bound_the_session_holds_already_is_not_set_again(slept: list[float]) -> None:
    # A walk's hundreds of steps on one session: one round trip, not one per step.
    dialect = FakeDialect()
    connection = FakeConnection(log=dialect.events)
    for _ in range(3):
        run(failing(0, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == [1]
    retries.forget_lock_bound(connection)  # a new run: the session may hold another bound
    run(failing(0, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == [1, 1]


def test_a_failed_attempt_sets_its_bound_again_on_the_next_run(slept: list[float]) -> None:
    # The rollback after a failure undoes a set_config made in its transaction.
    dialect = FakeDialect()
    connection = FakeConnection(log=dialect.events)
    with pytest.raises(ValueError):
        run(failing(1, ValueError, dialect.events), dialect=dialect, connection=connection)
    run(failing(0, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == [1, 1]


def test_a_step_bounding_its_own_lock_wait_keeps_its_bound_on_every_attempt(
    slept: list[float],
) -> None:
    # ops.py's brief strong locks: escalating to MIGRATION_LOCK_TIMEOUT would queue the app's
    # writes behind each attempt for that long.
    dialect = FakeDialect()
    connection = FakeConnection(log=dialect.events)
    connection.info[retries.OWN_LOCK_TIMEOUT] = "50ms"
    run(failing(2, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == []  # the runner never set lock_timeout itself
    assert dialect.events.count("attempt") == 3 and len(slept) == 2


def test_in_a_transaction_a_failed_attempt_is_rolled_back_before_the_blockers_are_read(
    slept: list[float],
) -> None:
    dialect = FakeDialect()
    progress = Progress(statements=["CREATE TABLE x (id int)", "ALTER TABLE item ADD y int"])
    run(failing(1, LockTimeout, dialect.events), dialect=dialect, progress=progress)
    assert dialect.events == [
        "lock_timeout 1",
        "attempt",
        "may_retry",
        "rollback",
        "describe_blockers",
        "commit",  # the pause is taken with no transaction open
        "lock_timeout 2",
        "attempt",
    ]
    assert dialect.described == ["ALTER TABLE item ADD y int"]  # the last statement run


def test_outside_a_transaction_nothing_is_rolled_back_or_committed(slept: list[float]) -> None:
    dialect = FakeDialect()
    run(failing(1, LockTimeout, dialect.events), dialect=dialect, in_transaction=False)
    assert "rollback" not in dialect.events and "commit" not in dialect.events
    assert dialect.described == [""]  # no statement recorded yet
    assert dialect.attempts == [1, 2]


def test_giving_up_raises_lock_retries_exhausted_with_attempts_and_blockers(
    slept: list[float],
) -> None:
    dialect = FakeDialect()
    with pytest.raises(LockRetriesExhausted) as raised:
        run(
            failing(99, LockTimeout, dialect.events),
            dialect=dialect,
            policy=RetryPolicy(1000, 3, 300),
        )
    assert raised.value.attempts == 3
    assert raised.value.blockers == "pid 42 (application_name 'api', idle in transaction)"
    assert isinstance(raised.value.__cause__, LockTimeout)
    assert str(raised.value).startswith("lock timeout after 3 attempts in ")
    assert dialect.attempts == [1, 2, 3]
    assert len(slept) == 2  # no pause after the last attempt


def test_giving_up_when_the_total_time_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1000.0}

    def sleep(seconds: float) -> None:
        clock["now"] += 4.0

    monkeypatch.setattr(retries, "sleep", sleep)
    monkeypatch.setattr(retries, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    dialect = FakeDialect()
    with pytest.raises(LockRetriesExhausted) as raised:
        run(
            failing(99, LockTimeout, dialect.events),
            dialect=dialect,
            policy=RetryPolicy(1000, 30, 10),
        )
    # Attempts at 0, 4, 8 and 12 s: the fourth fails past the 10 s allowed, with 26 left.
    assert raised.value.attempts == 4
    assert raised.value.seconds == pytest.approx(12.0)


def test_without_a_lock_timeout_nothing_is_bounded_nor_retried(slept: list[float]) -> None:
    dialect = FakeDialect()
    with pytest.raises(LockRetriesExhausted) as raised:
        run(
            failing(99, LockTimeout, dialect.events),
            dialect=dialect,
            policy=RetryPolicy(0, 30, 300),
        )
    assert raised.value.attempts == 1
    assert dialect.attempts == []  # no lock_timeout set: 0 means no limit
    assert slept == []


def test_other_errors_are_raised_at_once(slept: list[float]) -> None:
    dialect = FakeDialect()
    with pytest.raises(ZeroDivisionError):
        run(failing(1, ZeroDivisionError, dialect.events), dialect=dialect)
    assert dialect.events == ["lock_timeout 1", "attempt"]
    assert slept == []


def test_a_revision_the_dialect_may_not_retry_raises_its_lock_timeout(
    slept: list[float],
) -> None:
    dialect = FakeDialect(may_retry=False)
    with pytest.raises(LockTimeout):
        run(failing(1, LockTimeout, dialect.events), dialect=dialect)
    assert dialect.events == ["lock_timeout 1", "attempt", "may_retry"]
    assert slept == []


def test_the_attempt_is_named_when_it_failed_not_before(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    # The revision is known only once the attempt runs it: a name asked for up front read
    # "Revision None".
    progress = Progress()
    asked: list[str | None] = []

    def what() -> str:
        asked.append(progress.revision)
        return f"Revision {progress.revision}"

    def attempt() -> str:
        progress.revision = "b0b0 (add price)"
        if not asked:
            raise LockTimeout
        return "done"

    caplog.set_level(logging.WARNING, logger="alembic_steady")
    assert run(attempt, dialect=FakeDialect(), progress=progress, what=what) == "done"
    assert asked == ["b0b0 (add price)"]
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("Revision b0b0 (add price): attempt 1 waited 250ms for a lock: ")
    assert "pid 42 (application_name 'api', idle in transaction)" in message
    assert message.endswith(f"Retrying in {slept[0]:.1f}s.")


def test_what_is_not_asked_when_the_attempt_succeeds(slept: list[float]) -> None:
    def what() -> str:
        raise AssertionError("asked for a name with nothing to log")

    assert run(failing(0, LockTimeout, []), dialect=FakeDialect(), what=what) == "done"


# -- the edges of the bounds ---------------------------------------------------------------


def test_an_invalid_lock_timeout_is_named_by_its_setting() -> None:
    with pytest.raises(CommandError) as raised:
        RetryPolicy.from_settings(Settings(migration_lock_timeout="soon"))
    assert str(raised.value).startswith(
        "Invalid database settings (MIGRATION_LOCK_TIMEOUT: 'soon' is not a duration)."
    )


def test_a_one_millisecond_limit_is_a_limit_and_is_retried(slept: list[float]) -> None:
    assert RetryPolicy(1, 30, 300).attempts_left(1, time.monotonic())
    dialect = FakeDialect()
    run(failing(1, LockTimeout, dialect.events), dialect=dialect, policy=RetryPolicy(1, 30, 300))
    assert dialect.attempts == [1, 2]  # bounded on every attempt, and tried again


def test_no_attempt_is_left_once_exactly_the_total_time_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retries, "time", SimpleNamespace(monotonic=lambda: 1010.0))
    assert RetryPolicy(1000, 30, 10).attempts_left(1, 1000.5)
    assert not RetryPolicy(1000, 30, 10).attempts_left(1, 1000.0)


class RecordingDialect(FakeDialect):
    """Also records the connection and the progress each call was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[tuple[str, object]] = []

    def set_lock_timeout(self, connection: Any, policy: Any, attempt: int) -> str:
        self.handed.append(("set_lock_timeout", connection))
        return super().set_lock_timeout(connection, policy, attempt)

    def may_retry(self, progress: Progress) -> bool:
        self.handed.append(("may_retry", progress))
        return super().may_retry(progress)

    def describe_blockers(self, connection: Any, statement: str) -> str:
        self.handed.append(("describe_blockers", connection))
        return super().describe_blockers(connection, statement)


def test_the_dialect_is_handed_the_runs_connection_and_progress(slept: list[float]) -> None:
    # The lock bound is set, and the blockers are read, on the session that waited; whether a
    # retry is allowed depends on what this revision committed.
    dialect = RecordingDialect()
    connection = FakeConnection(log=dialect.events)
    progress = Progress()
    run(
        failing(1, LockTimeout, dialect.events),
        dialect=dialect,
        connection=connection,
        progress=progress,
    )
    assert dialect.handed == [
        ("set_lock_timeout", connection),
        ("may_retry", progress),
        ("describe_blockers", connection),
        ("set_lock_timeout", connection),
    ]


def test_a_run_after_an_escalated_one_starts_again_from_a_quarter(slept: list[float]) -> None:
    # The session still holds the escalated bound of the run before: it is lowered again.
    dialect = FakeDialect()
    connection = FakeConnection(log=dialect.events)
    run(failing(2, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    run(failing(0, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == [1, 2, 3, 1]


def test_a_bound_the_session_held_is_named_when_its_attempt_fails(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    dialect = FakeDialect()
    connection = FakeConnection(log=dialect.events)
    run(failing(0, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    caplog.set_level(logging.WARNING, logger="alembic_steady")
    run(failing(1, LockTimeout, dialect.events), dialect=dialect, connection=connection)
    assert dialect.attempts == [1, 2]  # attempt 1 of the second run kept the bound held
    [record] = caplog.records
    assert record.getMessage().startswith("Revision b: attempt 1 waited 250ms for a lock: ")
