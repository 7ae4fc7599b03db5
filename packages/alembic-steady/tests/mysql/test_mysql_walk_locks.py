"""The walk measures each revision on MySQL tables holding generated rows: an ALTER that copies
the table (ALGORITHM=COPY) fails `test_no_long_lock_on_an_existing_table`, naming the revision
and the marker that accepts it; one MySQL does in place without a lock (INSTANT) does not."""

import demo_project
from sqlalchemy.engine import URL

from alembic_steady.testing.walk import Harness, Walk

CHAIN = [
    (
        "w1",
        '    op.create_table("box", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("size", sa.Integer))',
        '    op.drop_table("box")',
    ),
    # INSTANT: a nullable column at the end.
    (
        "w2",
        '    op.add_column("box", sa.Column("note", sa.String(20), nullable=True))',
        '    op.drop_column("box", "note")',
    ),
    # COPY: int to text.
    (
        "w3",
        '    op.alter_column("box", "size", type_=sa.String(20), existing_type=sa.Integer())',
        '    op.alter_column("box", "size", type_=sa.Integer(), existing_type=sa.String(20))',
    ),
]


def test_a_table_copy_on_a_table_with_rows_is_named(database_url: URL) -> None:
    project = demo_project.write("mysql", name="walk_locks", chain=CHAIN)
    outcome = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, outcome, stairway=True)
    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert not outcome.stairway_failures, outcome.stairway_failures
    (found,) = outcome.long_locks
    assert found.startswith("revision w3 (") and "statement 1 rewrites box" in found, found
    assert "accept rewrite of box" in found, found
    assert outcome.locks_checked == {"w1", "w2", "w3"}
