"""runner/progress.py: where a run stands, as every way it can stop words it."""

import pytest

from alembic_steady.runner.progress import Progress

STEPS = "its steps up to an autocommit_block()"
STOPPED = "Its statement was cancelled on the server and the migration lock released."


def running(*statements: str, committed: int = 0, at: tuple[str, ...] = ("a",)) -> Progress:
    progress = Progress()
    progress.start(at, "b0b0 (add price)")
    progress.statements.extend(statements)
    progress.committed = committed
    return progress


def test_start_names_the_revision_and_forgets_the_previous_attempt() -> None:
    progress = Progress(statements=["OLD"], committed=1, leftover="public.ix_old")
    progress.start(("a",), "b0b0 (add price)")
    assert progress == Progress(at=("a",), revision="b0b0 (add price)")


def test_applied_moves_the_version_and_remembers_the_last_revision() -> None:
    progress = running("ALTER TABLE item ADD price int", committed=1)
    progress.leftover = "public.ix"
    progress.applied(("d", "c"))
    assert progress == Progress(at=("c", "d"), last="b0b0 (add price)")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (None, "this run changed nothing"),
        ((), "the database's version stays at base"),
        (("a",), "the database's version stays at a"),
        (("a", "x"), "the database's version stays at a, x"),
    ],
)
def test_where(at: tuple[str, ...] | None, expected: str) -> None:
    assert Progress(at=at).where() == expected


def test_interrupted_between_revisions() -> None:
    assert Progress().interrupted(STEPS, STOPPED) == (
        "no revision was running; this run changed nothing."
    )
    assert Progress(at=("a",)).interrupted(STEPS, STOPPED) == (
        "no revision was running; the database's version stays at a."
    )


def test_interrupted_revision_was_rolled_back() -> None:
    assert running("ALTER TABLE item ADD price int").interrupted(STEPS, STOPPED) == (
        "revision b0b0 (add price) was rolled back; the database's version stays at a. " + STOPPED
    )


def test_interrupted_revision_names_what_was_committed() -> None:
    progress = running(
        "CREATE TABLE t (id int)", "CREATE INDEX CONCURRENTLY ix ON t (id)", committed=1
    )
    assert progress.interrupted(STEPS, STOPPED) == (
        "revision b0b0 (add price) was stopped part way: its steps up to an autocommit_block() "
        "were committed (CREATE TABLE t (id int)), the rest rolled back; the database's version "
        "stays at a. " + STOPPED
    )


def test_committed_part_is_only_the_committed_statements() -> None:
    progress = running("ONE", "TWO", "THREE", committed=2)
    assert progress.committed_part() == "ONE; TWO"
    assert running("ONE", committed=0).committed_part() == ""


def test_committed_part_flattens_whitespace() -> None:
    assert running("CREATE  TABLE\n  t (\n id int\n)", committed=1).committed_part() == (
        "CREATE TABLE t ( id int )"
    )


def test_long_statements_are_shortened_to_120_characters() -> None:
    long = "UPDATE item SET note = '" + "x" * 200 + "'"
    part = running(long, committed=1).committed_part()
    assert len(part) == 120
    assert part == long[:117] + "..."
    exactly = "y" * 120
    assert running(exactly, committed=1).committed_part() == exactly


def test_a_statement_one_character_too_long_is_shortened() -> None:
    over = "z" * 121
    assert running(over, committed=1).committed_part() == "z" * 117 + "..."


def test_a_backfill_records_one_statement_committed_with_its_rows_so_far() -> None:
    progress = running("ALTER TABLE item ADD price int", committed=1)
    committed = progress.committed_batches("UPDATE item SET price = 0")
    assert progress.statements[1] == "UPDATE item SET price = 0 (no batch yet)"
    assert progress.committed == 1  # nothing of the backfill committed yet
    committed(500)
    committed(1200)
    assert progress.statements == [
        "ALTER TABLE item ADD price int",
        "UPDATE item SET price = 0 (at least 1200 rows)",
    ]
    assert progress.committed == 2
    assert progress.batched_rows == 1200  # rows changed, not the sum of the running totals
    second = progress.committed_batches("UPDATE item SET tax = 0")
    second(300)
    assert progress.batched_rows == 1500
    assert (progress.committed, progress.statements[2]) == (
        3,
        "UPDATE item SET tax = 0 (at least 300 rows)",
    )
