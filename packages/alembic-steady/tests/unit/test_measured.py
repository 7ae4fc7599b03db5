"""dialects/measured.py: what a watch records of a revision's statements, which of them are the
revision's own, the locks held while each runs, and which hold a table's writers up."""

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from alembic_steady.dialects.measured import (
    Listed,
    Measured,
    Risk,
    TableSize,
    Watched,
    events_of,
    held_during,
    revision_statement,
    risks,
    running_revision,
)
from alembic_steady.runner.progress import PROGRESS, Progress


def on(run: Progress | None) -> Any:
    """A connection as the watch's listeners get it: the runner's record in its info."""
    return SimpleNamespace(info={} if run is None else {PROGRESS: run})


def running(revision: str | None, *statements: str) -> Progress:
    run = Progress()
    run.revision, run.statements = revision, list(statements)
    return run


# -- what a watch records ------------------------------------------------------------------


def test_a_statement_is_measured_with_nothing_found_unless_told() -> None:
    measured = Measured("ALTER TABLE item ADD x int", in_transaction=True, transaction=2)
    assert (measured.locks, measured.rewrites, measured.scans) == ([], [], [])
    assert measured.algorithm is None and measured.revision is None
    # Each statement its own lists: one's locks are not another's.
    measured.locks.append(("item", "AccessExclusiveLock"))
    assert Measured("SELECT 1", in_transaction=False, transaction=0).locks == []


def test_a_revision_watched_keeps_the_longest_hold_of_each_lock() -> None:
    watched = Watched()
    assert (watched.statements, watched.rows, watched.held, watched.probing) == ([], 0, {}, 0.0)
    watched.hold(("item", "ShareLock"), 0.5)
    watched.hold(("item", "ShareLock"), 0.25)
    watched.hold(("orders", "ShareLock"), 0.0)
    assert watched.held == {("item", "ShareLock"): 0.5, ("orders", "ShareLock"): 0.0}
    watched.hold(("item", "ShareLock"), 2.0)
    assert watched.held[("item", "ShareLock")] == 2.0
    assert Watched().held == {}


def test_a_table_size_is_its_rows_and_bytes() -> None:
    assert TableSize(rows=3, bytes=8192) == TableSize(3, 8192)
    with pytest.raises(AttributeError):
        TableSize(3, 8192).rows = 4  # type: ignore[misc]


# -- where a watch listens, and to which revision ------------------------------------------


def test_a_watch_listens_on_the_engine_of_what_it_is_given() -> None:
    engine = create_async_engine("postgresql+asyncpg://app@db.internal/shop")  # never connects
    assert events_of(engine) is engine.sync_engine
    sync = create_engine("sqlite://")
    with sync.connect() as connection:
        assert events_of(connection) is sync


def test_the_running_revision_is_its_id_without_its_doc() -> None:
    assert running_revision(on(running("0b1c2d3e4f50 (create item)"))) == "0b1c2d3e4f50"
    assert running_revision(on(running("a1 (add a column to item)"))) == "a1"
    assert running_revision(on(running("a1"))) == "a1"
    assert running_revision(on(running(None))) is None  # between revisions
    assert running_revision(on(running(""))) is None
    assert running_revision(on(None)) is None  # a connection the runner does not run


# -- the revision's own statements --------------------------------------------------------


def test_each_statement_the_runner_records_is_the_revisions_once() -> None:
    run, listed = running("a1 (add x)"), Listed()
    assert (listed.revision, listed.count) == (None, 0)
    conn = on(run)
    # The runner's own query before the revision's first statement: not one of its.
    assert not revision_statement(conn, "SELECT 1", listed)
    run.statements.append("ALTER TABLE item ADD x int")
    assert revision_statement(conn, "alter  TABLE item ADD x int", listed) is False  # case
    assert revision_statement(conn, "  ALTER TABLE item ADD x int", listed)
    assert (listed.revision, listed.count) == ("a1 (add x)", 1)
    # The same record again: a statement the runner runs around it (a check, a retry's SET).
    assert not revision_statement(conn, "ALTER TABLE item ADD x int", listed)
    run.statements.append("CREATE INDEX ix ON item (x)")
    assert not revision_statement(conn, "SELECT indexrelid FROM pg_index", listed)
    assert listed.count == 1
    assert revision_statement(conn, "CREATE INDEX ix ON item (x)", listed)
    assert listed.count == 2


def test_a_statement_is_told_by_its_first_word_only() -> None:
    # The runner records what the revision asked; the driver may send it reworded.
    listed = Listed()
    conn = on(running("a1", "UPDATE item SET x = 1 WHERE id = %(id)s"))
    assert revision_statement(conn, "UPDATE item SET x = 1 WHERE id = $1", listed)
    listed = Listed()
    assert not revision_statement(on(running("a1", "UPDATE item SET x = 1")), "", listed)
    assert listed.count == 0
    assert revision_statement(on(running("a1", "")), "", Listed())


def test_the_count_starts_again_with_each_revision() -> None:
    listed = Listed()
    assert revision_statement(on(running("a1", "CREATE TABLE t (x int)")), "CREATE t", listed)
    assert revision_statement(on(running("b2", "DROP TABLE t")), "DROP TABLE t", listed)
    assert (listed.revision, listed.count) == ("b2", 1)
    # A revision whose first statement is not recorded yet counts none seen.
    assert not revision_statement(on(running("c3")), "DROP TABLE t", listed)
    assert (listed.revision, listed.count) == ("c3", 0)


def test_no_statement_is_a_revisions_outside_a_run() -> None:
    listed = Listed()
    assert not revision_statement(on(None), "ALTER TABLE item ADD x int", listed)
    assert (listed.revision, listed.count) == (None, 0)


# -- the locks held while a statement runs ------------------------------------------------


def statement(
    transaction: int, *locks: tuple[str, str], in_transaction: bool = True, **kw: Any
) -> Measured:
    return Measured("...", in_transaction, transaction, locks=list(locks), **kw)


def test_a_transaction_holds_its_earlier_statements_locks() -> None:
    statements = [
        statement(0, ("item", "AccessExclusiveLock")),
        statement(0, ("orders", "ShareLock"), ("item", "RowExclusiveLock")),
        statement(1, ("orders", "RowExclusiveLock")),
        statement(1),
    ]
    assert held_during(statements, 0) == {"item": "AccessExclusiveLock"}
    # A relation locked twice: the later statement's mode is the one said.
    assert held_during(statements, 1) == {"item": "RowExclusiveLock", "orders": "ShareLock"}
    # The next transaction began with none of the first one's.
    assert held_during(statements, 2) == {"orders": "RowExclusiveLock"}
    assert held_during(statements, 3) == {"orders": "RowExclusiveLock"}


def test_a_statement_outside_a_transaction_holds_only_its_own() -> None:
    statements = [
        statement(0, ("item", "ShareLock"), in_transaction=False),
        statement(0, ("orders", "ShareUpdateExclusiveLock"), in_transaction=False),
    ]
    assert held_during(statements, 1) == {"orders": "ShareUpdateExclusiveLock"}
    assert held_during([statement(0, in_transaction=False)], 0) == {}


# -- the risks ----------------------------------------------------------------------------

WRITERS_WAIT = {"ShareLock", "AccessExclusiveLock"}.__contains__


def test_a_rewrite_is_a_risk_whatever_the_lock() -> None:
    found = risks([statement(0), statement(0, rewrites=["item", "orders"])], WRITERS_WAIT)
    assert found == [Risk(1, "item", None), Risk(1, "orders", None)]
    assert found[0].said(str.upper) == "statement 2 rewrites item"


def test_a_whole_table_read_is_a_risk_under_a_lock_that_stops_writers() -> None:
    statements = [
        statement(0, ("item", "AccessExclusiveLock")),
        # SET NOT NULL: reads item whole, under the lock the statement before took.
        statement(0, scans=["item"]),
        # A concurrent build reads orders whole under a lock writers pass.
        statement(1, ("orders", "ShareUpdateExclusiveLock"), scans=["orders"]),
        # Read whole under no lock of the transaction's: the catalog, say.
        statement(1, scans=["audit"]),
        statement(2, ("orders", "ShareLock"), scans=["orders", "item"]),
    ]
    found = risks(statements, WRITERS_WAIT)
    assert found == [Risk(1, "item", "AccessExclusiveLock"), Risk(4, "orders", "ShareLock")]
    assert [risk.said(lambda mode: f"<{mode}>") for risk in found] == [
        "statement 2 reads item whole under <AccessExclusiveLock>",
        "statement 5 reads orders whole under <ShareLock>",
    ]


def test_no_statement_no_risk() -> None:
    assert risks([], WRITERS_WAIT) == []
    assert risks([statement(0, ("item", "AccessExclusiveLock"))], WRITERS_WAIT) == []
