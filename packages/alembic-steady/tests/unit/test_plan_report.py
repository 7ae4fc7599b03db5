"""tools/plan.py's reports, from a plan already measured (no database)."""

from sqlalchemy.engine import make_url

from alembic_steady.dialects.base import for_url
from alembic_steady.dialects.measured import Measured
from alembic_steady.tools.plan import Report, RevisionPlan, as_markdown

ALTER = Measured("ALTER TABLE item ADD x int", True, 0, [("item", "AccessExclusiveLock")])


def report(*plans: RevisionPlan) -> Report:
    dialect = for_url(make_url("postgresql+asyncpg://app@db/shop"))
    return Report(["a1"], "PostgreSQL 18.1", 100_000, {}, list(plans), dialect)


def test_a_revision_that_runs_no_statement_gets_a_line_not_an_empty_table() -> None:
    """A data migration whose loop finds no row on the empty copy runs nothing there."""
    text = as_markdown(
        report(
            RevisionPlan("b2", "copy rows", None, [], []),
            RevisionPlan("c3", "add x", None, [ALTER], []),
        )
    )
    empty, measured = text.split("#### `c3`")
    assert "No statement runs on the scratch copy." in empty and "| # |" not in empty
    assert "| 1 | `ALTER TABLE item ADD x int` | ACCESS EXCLUSIVE on item |" in measured
