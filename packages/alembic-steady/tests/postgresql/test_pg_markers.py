"""What a revision accepts in its own file (`# migration-tests:` lines, testing/markers.py): a
one-way downgrade, a stairway finding kept with a reason, a table the walk leaves empty, a
table's own rows. The same chain without its lines fails each way the lines accept; with them the
walk passes and lists every accepted item, in the outcome and at the end of a pytest run."""

from dataclasses import replace
from pathlib import Path

import demo_project
import pytest
from checks_run import run_checks
from sqlalchemy.engine import URL

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.clients import Clients
from alembic_steady.testing.walk import Harness, Walk, on_connection
from alembic_steady.tools import backup

ONE_WAY = "    # migration-tests: one-way: enum values cannot be removed\n"
KEPT = "    # migration-tests: accept stairway: the old release still reads the type\n"
NO_ROWS = "    # migration-tests: no rows for invoice: its status is only ever open or paid\n"
ROWS = "    # migration-tests: rows for bill: INSERT INTO bill (status) VALUES ('open'), ('paid')\n"


def chain(marked: bool) -> demo_project.Chain:
    def lines(*markers: str) -> str:
        return "".join(markers) if marked else ""

    # A status that is only ever 'open' or 'paid', backfilled into a NOT NULL flag: a generated
    # row (status '0xxx...') fails the backfill's NOT NULL, as no real row would.
    def backfilled(table: str) -> str:
        return (
            f'    op.execute("ALTER TABLE {table} ADD COLUMN paid boolean")\n'
            f"    op.execute(\"UPDATE {table} SET paid = (status = 'paid') "
            "WHERE status IN ('open', 'paid')\")\n"
            f'    op.execute("ALTER TABLE {table} ALTER COLUMN paid SET NOT NULL")'
        )

    return [
        (
            "m1",
            "    op.execute(\"CREATE TYPE mood AS ENUM ('sad', 'happy')\")",
            '    op.execute("DROP TYPE mood")',
        ),
        (
            "m2",
            lines(ONE_WAY) + "    op.execute(\"ALTER TYPE mood ADD VALUE 'meh'\")",
            '    raise NotImplementedError("enum values cannot be removed")',
        ),
        (
            "m3",
            lines(KEPT) + "    op.execute(\"CREATE TYPE kept AS ENUM ('a')\")",
            "    pass",
        ),
        (
            "m4",
            '    op.execute("CREATE TABLE invoice (id serial PRIMARY KEY, status text NOT NULL)")\n'
            '    op.execute("CREATE TABLE bill (id serial PRIMARY KEY, status text NOT NULL)")',
            '    op.execute("DROP TABLE invoice, bill")',
        ),
        (
            "m5",
            lines(NO_ROWS, ROWS) + backfilled("invoice") + "\n" + backfilled("bill"),
            '    op.execute("ALTER TABLE invoice DROP COLUMN paid")\n'
            '    op.execute("ALTER TABLE bill DROP COLUMN paid")',
        ),
    ]


@pytest.fixture(scope="module")
def marked() -> Project:
    return demo_project.write("postgresql", name="marked", chain=chain(marked=True))


@pytest.fixture(scope="module")
def unmarked() -> Project:
    return demo_project.write("postgresql", name="unmarked", chain=chain(marked=False))


def walked(project: Project, url: URL) -> Walk:
    outcome = Walk(url)
    Harness(project).walk_base_to_head(url, outcome, stairway=True)
    return outcome


def test_without_its_lines_the_chain_fails_each_way_they_accept(
    unmarked: Project, database_url: URL
) -> None:
    outcome = walked(unmarked, database_url)
    findings = "\n".join(outcome.stairway_failures)
    assert "revision m2" in findings and "enum values cannot be removed" in findings, findings
    assert "revision m3" in findings and "kept" in findings, findings
    failure = outcome.upgrade_failure or ""
    assert failure.startswith("upgrade to revision m5 "), failure
    assert 'column "paid" of relation "invoice" contains null values' in failure
    assert outcome.accepted == []


def test_with_them_the_walk_passes_and_lists_what_they_accept(
    marked: Project, database_url: URL
) -> None:
    outcome = walked(marked, database_url)
    assert outcome.upgrade_failure is None and outcome.stairway_failures == [], outcome
    accepted = "\n".join(outcome.accepted)
    assert len(outcome.accepted) == 4, accepted
    assert "revision m2" in accepted and "one-way, not taken down (enum values" in accepted
    assert "revision m3" in accepted and "downgrade leaves" in accepted
    assert "(accepted: the old release still reads the type)" in accepted
    assert "no generated rows for invoice (its status is only ever open or paid)" in accepted
    assert "its own rows for bill" in accepted

    def tables(connection: object) -> tuple[int, list[str]]:
        run = connection.exec_driver_sql  # type: ignore[attr-defined]
        return (
            run("SELECT count(*) FROM invoice").scalar_one(),
            [status for (status,) in run("SELECT status FROM bill ORDER BY id")],
        )

    assert on_connection(database_url, tables) == (0, ["open", "paid"])


BAD_ROWS = [
    (
        "n1",
        "    # migration-tests: rows for sheet: INSERT INTO sheet (title) VALUES (NULL)\n"
        '    op.execute("CREATE TABLE sheet (id serial PRIMARY KEY, title text NOT NULL)")',
        '    op.execute("DROP TABLE sheet")',
    ),
    ("n2", "    # migration-tests: no rows for shet: misspelt\n    pass", "    pass"),
]


def test_rows_refused_or_a_table_never_made_fail_the_walk_naming_the_line(
    database_url: URL, server_clients: Clients
) -> None:
    project = demo_project.write("postgresql", name="marked_badly", chain=BAD_ROWS)
    failure = walked(project, database_url).upgrade_failure or ""
    assert "rows for sheet` line gives were refused" in failure, failure
    assert 'null value in column "title"' in failure

    server_clients.empty(database_url)
    project = demo_project.write("postgresql", name="marked_unknown", chain=BAD_ROWS[1:])
    failure = walked(project, database_url).upgrade_failure or ""
    assert failure.startswith("no revision creates shet, which a `# migration-tests: "), failure


def test_a_test_run_lists_what_the_lines_accept_at_its_end(
    marked: Project, server_url: URL
) -> None:
    run = run_checks({"marked": marked}, server_url)
    # (Its models are the demo's widget, which this chain does not make: that test fails.)
    assert run.outcome("test_stairway", "marked") == "PASSED", run.output
    assert run.outcome("test_upgrade_base_to_head_one_revision_at_a_time", "marked") == "PASSED"
    tail = run.output[run.output.index("Accepted by `# migration-tests:` lines (4):") :]
    assert tail.count("\n- revision m") == 4, tail


def test_make_rehearse_lists_an_accepted_difference_and_stops_there(
    marked: Project, database_url: URL, tmp_path: Path
) -> None:
    # From the top: m5 and m4 go down and up again; m3's downgrade leaves its type, which its
    # line accepts, so the rehearsal lists it and stops there (as the walk lists it).
    configured = replace(marked, settings=lambda: StaticSettings(database_url))
    assert backup.main(configured, [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    result = demo_project.module_cli(marked, "rehearse", f"file={dump}", url=database_url)
    assert result.returncode == 0, result.stdout
    accepted = result.stdout.split("Accepted by its `# migration-tests:` line: ")[1]
    # Its downgrade left the type: the upgrade after it cannot create it again.
    assert accepted.startswith("the upgrade of revision m3 failed: "), result.stdout
    assert 'type "kept" already exists' in accepted
    assert "(accepted: the old release still reads the type); the 2 revision(s) below" in accepted
