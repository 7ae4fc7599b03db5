"""The stairway's rolled-back downgrade: where a second upgrade would start exactly where the
first did, the downgrade runs as `make rollback` runs it, is compared inside its transaction and
rolled back, and the walk goes on from the revision as its one upgrade left it. It still names
what a downgrade leaves and a downgrade that fails, and the next revision upgrades from there.
Where a rollback cannot stand for the second upgrade (an autocommit_block(), rows of a table
there before, an object the snapshot does not read), the downgrade commits and the revision is
upgraded again, which catches what only that second upgrade meets.

Each revision's upgrade appends its id to a file: how many times the walk ran it.
"""

from pathlib import Path

import demo_project
from queries import heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, Walk


def counted(path: Path, revision: str, body: str) -> str:
    """An upgrade `body` (four-space indented lines) that first notes one run of `revision`."""
    return f'    with open(r"{path}", "a") as runs:\n        runs.write("{revision}\\n")\n{body}'


def walked(project: Project, url: URL) -> Walk:
    outcome = Walk(url)
    Harness(project).walk_base_to_head(url, outcome, stairway=True)
    return outcome


def runs(path: Path) -> dict[str, int]:
    """How many times each revision's upgrade ran."""
    noted = path.read_text(encoding="utf-8").split() if path.exists() else []
    return {revision: noted.count(revision) for revision in dict.fromkeys(noted)}


def finding_of(outcome: Walk, revision: str) -> str:
    (finding,) = [f for f in outcome.stairway_failures if f.startswith(f"revision {revision} ")]
    return finding


def test_a_base_revisions_downgrade_rolled_back_still_names_what_it_leaves(
    database_url: URL, tmp_path: Path
) -> None:
    # The first revision's downgrade forgets the enum type its table used; the next revision
    # upgrades from the first as its one upgrade left it (the type there once, the table too).
    ran = tmp_path / "runs"
    chain = [
        (
            "m1",
            counted(
                ran,
                "m1",
                "    op.execute(\"CREATE TYPE mood AS ENUM ('calm', 'tense')\")\n"
                '    op.execute("CREATE TABLE diary (id int PRIMARY KEY, mood mood)")',
            ),
            '    op.execute("DROP TABLE diary")',
        ),
        (
            "m2",
            counted(ran, "m2", '    op.execute("CREATE TABLE entry (id int PRIMARY KEY)")'),
            '    op.execute("DROP TABLE entry")',
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_left", chain=chain)
    outcome = walked(project, database_url)

    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert len(outcome.stairway_failures) == 1, outcome.stairway_failures
    left = finding_of(outcome, "m1")
    assert "downgrade leaves [type public.mood calm,tense]" in left, left
    assert "make rollback" in left, left
    assert heads(database_url) == {"m2"}
    tables = rows(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {"diary", "entry"} <= {name for (name,) in tables}
    # Each upgrade ran once: the downgrades were rolled back, and nothing was walked again.
    assert runs(ran) == {"m1": 1, "m2": 1}
    # The records of applied revisions came back with the rollback: make migrate finds the
    # database at head, its files as they ran.
    checksums = rows(database_url, "SELECT revision FROM alembic_version_checksums")
    assert {revision for (revision,) in checksums} == {"m1", "m2"}
    Migrations(project).upgrade(url=database_url)
    assert heads(database_url) == {"m2"}


def test_a_base_revisions_failing_downgrade_is_named_and_the_next_revision_upgrades(
    database_url: URL, tmp_path: Path
) -> None:
    ran = tmp_path / "runs"
    chain = [
        (
            "n1",
            counted(ran, "n1", '    op.execute("CREATE TABLE ledger (id int PRIMARY KEY)")'),
            '    op.execute("SELECT 1 / 0")\n    op.execute("DROP TABLE ledger")',
        ),
        (
            "n2",
            counted(ran, "n2", '    op.execute("ALTER TABLE ledger ADD COLUMN note text")'),
            '    op.execute("ALTER TABLE ledger DROP COLUMN note")',
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_down_fails", chain=chain)
    outcome = walked(project, database_url)

    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    failed = finding_of(outcome, "n1")
    assert "downgrade failed" in failed and "division by zero" in failed, failed
    assert "Fix that revision's downgrade()" in failed, failed
    assert [f for f in outcome.stairway_failures if "n2" in f.split(" ", 2)[1]] == []
    assert heads(database_url) == {"n2"}
    columns = rows(
        database_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger'",
    )
    assert {name for (name,) in columns} == {"id", "note"}
    assert runs(ran)["n2"] == 1


def test_a_downgrade_with_an_autocommit_block_is_committed_and_upgraded_again(
    database_url: URL, tmp_path: Path
) -> None:
    # Its DROP INDEX CONCURRENTLY commits before the block: a rollback after it would leave the
    # revision without its index, and every revision after it.
    ran = tmp_path / "runs"
    chain = [
        (
            "q1",
            counted(
                ran,
                "q1",
                '    op.execute("CREATE TABLE parcel (id int PRIMARY KEY, code text)")\n'
                '    op.execute("CREATE INDEX ix_parcel_code ON parcel (code)")',
            ),
            "    with op.get_context().autocommit_block():\n"
            '        op.execute("DROP INDEX CONCURRENTLY ix_parcel_code")\n'
            '    op.execute("DROP TABLE parcel")',
        ),
        (
            "q2",
            counted(ran, "q2", '    op.execute("ALTER TABLE parcel ADD COLUMN weight int")'),
            '    op.execute("ALTER TABLE parcel DROP COLUMN weight")',
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_autocommit", chain=chain)
    outcome = walked(project, database_url)

    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert outcome.stairway_failures == [], outcome.stairway_failures
    assert heads(database_url) == {"q2"}
    indexes = rows(database_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'parcel'")
    assert {name for (name,) in indexes} == {"parcel_pkey", "ix_parcel_code"}
    assert runs(ran) == {"q1": 2, "q2": 1}


def test_rows_an_upgrade_adds_to_a_table_there_before_meet_the_second_upgrade(
    database_url: URL,
) -> None:
    # The downgrade keeps the row its upgrade added: a second upgrade fails on it, which a
    # rolled-back downgrade (the schema is as before) would never show.
    chain = [
        (
            "s1",
            '    op.execute("CREATE TABLE setting (name text PRIMARY KEY, value text)")',
            '    op.execute("DROP TABLE setting")',
        ),
        (
            "s2",
            "    op.execute(\"INSERT INTO setting VALUES ('theme', 'dark')\")",
            "    pass",
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_rows", chain=chain)
    outcome = walked(project, database_url)

    found = finding_of(outcome, "s2")
    assert "second upgrade failed" in found and "duplicate key" in found, found


def test_an_object_the_snapshot_does_not_read_meets_the_second_upgrade(database_url: URL) -> None:
    # A base revision's downgrade forgets its collation: the schema the stairway compares is
    # as before, and only the second upgrade meets the collation again.
    chain = [
        (
            "c1",
            "    op.execute('CREATE COLLATION plain FROM \"C\"')\n"
            '    op.execute("CREATE TABLE word (id int PRIMARY KEY)")',
            '    op.execute("DROP TABLE word")',
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_unread", chain=chain)
    outcome = walked(project, database_url)

    found = finding_of(outcome, "c1")
    assert "second upgrade failed" in found and "already exists" in found, found


def test_after_a_rolled_back_finding_the_next_revision_is_judged_on_its_own(
    database_url: URL,
) -> None:
    # p2's downgrade drops an index that was there before it: named, and rolled back, so the
    # index is there for p3, whose correct round trip over its table must not be blamed.
    chain = [
        (
            "p1",
            '    op.execute("CREATE TABLE keep (id int PRIMARY KEY, code text)")\n'
            '    op.execute("CREATE INDEX ix_keep_code ON keep (code)")',
            '    op.execute("DROP TABLE keep")',
        ),
        (
            "p2",
            '    op.execute("CREATE TABLE extra (id int PRIMARY KEY)")',
            '    op.execute("DROP TABLE extra")\n    op.execute("DROP INDEX ix_keep_code")',
        ),
        (
            "p3",
            '    op.execute("ALTER TABLE keep ADD COLUMN label text")',
            '    op.execute("ALTER TABLE keep DROP COLUMN label")',
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_too_much", chain=chain)
    outcome = walked(project, database_url)

    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert len(outcome.stairway_failures) == 1, outcome.stairway_failures
    missed = finding_of(outcome, "p2")
    assert "misses [" in missed and "CREATE INDEX ix_keep_code" in missed, missed
    assert heads(database_url) == {"p3"}
    indexes = rows(database_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'keep'")
    assert {name for (name,) in indexes} == {"keep_pkey", "ix_keep_code"}


def test_an_upgrade_that_empties_a_table_there_before_meets_the_second_upgrade(
    database_url: URL,
) -> None:
    # TRUNCATE counts no row: the table's new file tells it. The second upgrade finds the queue
    # empty, as `make migrate` after `make rollback` would, and says so.
    chain = [
        (
            "t1",
            '    op.execute("CREATE TABLE job (id int PRIMARY KEY)")',
            '    op.execute("DROP TABLE job")',
        ),
        (
            "t2",
            '    op.execute("""DO $$ BEGIN IF NOT EXISTS (SELECT FROM job) THEN '
            'RAISE \'no job to move\'; END IF; END $$""")\n'
            '    op.execute("TRUNCATE job")',
            "    pass",
        ),
    ]
    project = demo_project.write("postgresql", name="rollback_truncate", chain=chain)
    outcome = walked(project, database_url)

    found = finding_of(outcome, "t2")
    assert "second upgrade failed" in found and "no job to move" in found, found
