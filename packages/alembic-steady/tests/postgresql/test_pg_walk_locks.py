"""The walk measures each revision on tables holding generated rows: a rewrite, or a whole-table
read under a lock that stops writers, fails `test_no_long_lock_on_an_existing_table` naming the
revision, the statement and the marker that accepts it; a brief lock does not; the toolkit's
own zero-downtime operations pass."""

import demo_project
import pytest
from pg_safety_support import new_database
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.testing import checks
from alembic_steady.testing.walk import Harness, Walk

CHAIN = [
    (
        "l1",
        '    op.create_table("box", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("size", sa.Integer), sa.Column("label", sa.String(20)))',
        '    op.drop_table("box")',
    ),
    # Brief: a nullable column, a constant default, a widened varchar.
    (
        "l2",
        '    op.add_column("box", sa.Column("note", sa.String(), nullable=True))\n'
        '    op.add_column("box", sa.Column("kind", sa.String(), server_default="a", '
        "nullable=False))\n"
        '    op.alter_column("box", "label", type_=sa.String(40))',
        '    op.alter_column("box", "label", type_=sa.String(20))\n'
        '    op.drop_column("box", "kind")\n    op.drop_column("box", "note")',
    ),
    # A rewrite: int to bigint.
    (
        "l3",
        '    op.alter_column("box", "size", type_=sa.BigInteger())',
        '    op.alter_column("box", "size", type_=sa.Integer())',
    ),
    # A whole-table read under ACCESS EXCLUSIVE: a plain SET NOT NULL.
    (
        "l4",
        '    op.execute("UPDATE box SET size = 0 WHERE size IS NULL")\n'
        '    op.alter_column("box", "size", nullable=False)',
        '    op.alter_column("box", "size", nullable=True)',
    ),
    # The toolkit's way: a NOT VALID check validated apart, then SET NOT NULL without a read.
    (
        "l5",
        "    op.execute(\"UPDATE box SET label = 'x' WHERE label IS NULL\")\n"
        '    op.set_not_null("box", "label")',
        '    op.drop_not_null("box", "label")',
    ),
    # Accepted after review, in the file.
    (
        "l6",
        '    op.alter_column("box", "note", type_=sa.Text(), postgresql_using="note::text")\n'
        '    op.execute("ALTER TABLE box ALTER COLUMN note TYPE varchar(10)")\n'
        "    # migration-tests: accept rewrite of box: a small table, reviewed",
        '    op.alter_column("box", "note", type_=sa.String())',
    ),
]


@pytest.fixture(scope="module")
def walked(server_url: URL) -> Walk:
    project: Project = demo_project.write("postgresql", name="walk_locks", chain=CHAIN)
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        outcome = Walk(url)
        Harness(project).walk_base_to_head(url, outcome, stairway=True)
        return outcome


def test_rewrites_and_long_reads_of_tables_with_rows_are_named(walked: Walk) -> None:
    assert walked.upgrade_failure is None, walked.upgrade_failure
    assert not walked.stairway_failures, walked.stairway_failures
    found = walked.long_locks
    assert len(found) == 2, found
    l3, l4 = found
    assert l3.startswith("revision l3 (") and "statement 1 rewrites box" in l3, l3
    assert "ALTER TABLE box ALTER COLUMN size TYPE BIGINT" in l3, l3
    assert "`# migration-tests: accept rewrite of box: <why>`" in l3, l3
    assert l4.startswith("revision l4 (") and "reads box whole under ACCESS EXCLUSIVE" in l4, l4
    assert "accept long lock on box" in l4, l4
    # Measured once per revision, not again on the stairway's second upgrade.
    assert walked.locks_checked == {"l1", "l2", "l3", "l4", "l5", "l6"}


def test_an_accepted_rewrite_is_listed_not_failed(walked: Walk) -> None:
    (listed,) = [line for line in walked.accepted if line.startswith("revision l6 (")]
    assert "rewrites box (a small table, reviewed)" in listed, walked.accepted


def test_the_generated_test_fails_naming_each(walked: Walk) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        checks.test_no_long_lock_on_an_existing_table(walked)
    message = str(failed.value)
    assert message.startswith("2 long lock(s) on existing tables:"), message
    assert "\n- revision l3 (" in message and "\n- revision l4 (" in message, message


# The stairway compares an enum's values in order: a downgrade that restores the same values in
# another order is named (an order the application may sort by).
ENUM_ORDER = [
    (
        "m1",
        "    op.execute(\"CREATE TYPE mood AS ENUM ('sad', 'happy')\")",
        '    op.execute("DROP TYPE mood")',
    ),
    (
        "m2",
        "    op.execute(\"ALTER TYPE mood ADD VALUE 'calm' BEFORE 'happy'\")",
        '    op.execute("DROP TYPE mood")\n'
        "    op.execute(\"CREATE TYPE mood AS ENUM ('happy', 'sad')\")",
    ),
]


def test_a_downgrade_that_reorders_an_enums_values_is_named(server_url: URL) -> None:
    project = demo_project.write("postgresql", name="enum_order", chain=ENUM_ORDER)
    with new_database(server_url) as name:
        outcome = Walk(server_url.set(database=name))
        Harness(project).walk_base_to_head(outcome.url, outcome, stairway=True)
    (finding,) = outcome.stairway_failures
    assert finding.startswith("revision m2 ("), finding
    assert "leaves [type public.mood happy,sad]" in finding, finding
    assert "misses [type public.mood sad,happy]" in finding, finding
