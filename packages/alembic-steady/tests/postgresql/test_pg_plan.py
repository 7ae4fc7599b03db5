"""`plan` (make plan) on a real PostgreSQL: what the pending revisions will do to the configured
database, measured on a scratch copy its revisions build, with the target only read; the same
lock modes `rehearse` measures on a full copy of the data."""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import demo_project
import pytest
from pg_safety_support import new_database, state
from pg_sessions import session_holding
from queries import execute, rows
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from test_pg_tools import configured

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection
from alembic_steady.tools import backup, plan

ROWS = 2_000
STOP_WRITERS = {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}
HEAD = ({"alembic_version", "widget"}, {"c3"})
# A session holding the template CREATE DATABASE copies: no database can be made meanwhile.
HOLD_TEMPLATE = "COMMENT ON DATABASE template1 IS 'held by a test'"
# The pending revisions, each a classic case a reviewer must see before the deploy.
PENDING = [
    (
        "d4",
        '    op.add_column("widget", sa.Column("note", sa.String(), nullable=True))',
        '    op.drop_column("widget", "note")',
        "add a nullable column",
    ),
    (
        "e5",
        '    op.alter_column("widget", "price", type_=sa.BigInteger())',
        '    op.alter_column("widget", "price", type_=sa.Integer())',
        "widen price",
    ),
    (
        "f6",
        '    op.execute("UPDATE widget SET price = 0 WHERE price IS NULL")\n'
        '    op.alter_column("widget", "price", nullable=False)',
        '    op.alter_column("widget", "price", nullable=True)',
        "price not null",
    ),
    (
        "g7",
        '    op.create_index_concurrently("ix_widget_price", "widget", ["price"])',
        '    op.drop_index_concurrently("ix_widget_price", table_name="widget")',
        "index price",
    ),
    (
        "h8",
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("UPDATE widget SET name = upper(name)")',
        "    pass",
        "names upper case",
    ),
]


def cli(project: Project, url: URL, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return demo_project.module_cli(project, *args, url=url, env=env)


@pytest.fixture(scope="module")
def planned() -> Project:
    return demo_project.with_revisions("postgresql", "plan", PENDING)


@contextmanager
def at_c3_with_rows(project: Project, server_url: URL, rows: int) -> Iterator[URL]:
    """A new database of `project` at c3 with `rows` widgets, analyzed (the statistics a plan
    reads); dropped afterwards."""
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        Migrations(project).upgrade("c3", url=url)
        execute(
            url,
            f"INSERT INTO widget (name) SELECT 'w' || g FROM generate_series(1, {rows}) g",
        )
        execute(url, "ANALYZE widget")
        yield url


@pytest.fixture(scope="module")
def target(planned: Project, server_url: URL) -> Iterator[URL]:
    """A database at c3 with ROWS widgets."""
    with at_c3_with_rows(planned, server_url, ROWS) as url:
        yield url


def plan_within(
    project: Project, url: URL, seconds: float, **env: str
) -> subprocess.CompletedProcess[str] | None:
    """`plan` in a process of its own; None when it has not answered within `seconds` (told
    apart from a slow answer by the caller's assertion, not by the timeout's own error)."""
    try:
        return demo_project.module_cli(project, "plan", url=url, env=env, timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def scratch_left(url: URL) -> list[str]:
    def read(connection: Connection) -> list[str]:
        query = text("SELECT datname FROM pg_database WHERE datname LIKE :pattern")
        return list(connection.execute(query, {"pattern": f"{url.database}\\_plan\\_%"}).scalars())

    found: list[str] = on_connection(url, read)
    return found


def revision_block(output: str, revision: str) -> str:
    """The lines the text plan gives `revision`, from its header to the next one's."""
    found = re.search(rf"^{revision} \(.*?(?=^\w+ \(|\Z)", output, re.M | re.S)
    assert found, output
    return found.group(0)


def test_the_plan_lists_each_statement_with_its_locks_rewrites_and_rows(
    planned: Project, target: URL
) -> None:
    """Read while another session holds ACCESS EXCLUSIVE on the target's table (a deploy, a
    VACUUM FULL): the plan never waits on it, as it takes no lock on the target's tables."""
    with session_holding(target, "LOCK TABLE widget IN ACCESS EXCLUSIVE MODE"):
        result = cli(planned, target, "plan")
    output = result.stdout
    assert result.returncode == 0, output
    assert "The database is at c3. 5 pending revision(s)" in output
    d4, e5, f6, g7, h8 = (revision_block(output, revision) for revision, *_ in PENDING)
    # A nullable column: a brief ACCESS EXCLUSIVE, in the revision's transaction.
    assert "ACCESS EXCLUSIVE on widget (2,000 rows); in the revision's transaction" in d4, d4
    assert "rewrites widget" not in d4 and "brief" in d4, d4
    # A type change rewrites the table, under the same lock, for as long as that takes.
    assert "rewrites widget" in e5 and "long, as long as that takes" in e5, e5
    # SET NOT NULL reads the whole table under ACCESS EXCLUSIVE (its second statement).
    assert re.search(
        r"2\. ALTER TABLE widget ALTER COLUMN price SET NOT NULL\n.*reads widget whole", f6
    ), f6
    assert "rewrites widget" not in f6, f6
    # A concurrent index: its own lock, which writers pass, committed on its own; the runner's
    # own check for a leftover index is not the revision's statement.
    assert "1. CREATE INDEX CONCURRENTLY" in g7, g7
    assert "SHARE UPDATE EXCLUSIVE on widget (2,000 rows); reads widget whole; on its own" in g7, g7
    assert "pg_index" not in g7 and "no lock that stops writers" in g7, g7
    # Outside a transaction, too quick on an empty table for a sampler: run once more in one.
    assert "ROW EXCLUSIVE on widget (2,000 rows); reads widget whole; on its own" in h8, h8
    # The target: only read.
    assert state(target) == HEAD
    assert rows(target, "SELECT count(*), count(price) FROM widget") == [(ROWS, 0)]
    assert not scratch_left(target)


def test_json_and_markdown_say_the_same(planned: Project, target: URL) -> None:
    as_json = cli(planned, target, "plan", "--format", "json")
    assert as_json.returncode == 0, as_json.stdout
    plan = json.loads(as_json.stdout)
    assert plan["at"] == ["c3"]
    assert [r["revision"] for r in plan["revisions"]] == [revision for revision, *_ in PENDING]
    (statement,) = plan["revisions"][1]["statements"]
    assert statement["rewrites"] == ["widget"] and statement["in_transaction"] is True
    assert {"relation": "widget", "mode": "ACCESS EXCLUSIVE", "rows": ROWS} in statement["locks"]
    assert plan["revisions"][1]["longest"]["work"] == {"widget": ROWS}
    assert plan["risky"] == []  # 2,000 rows: below the default 100,000
    markdown = cli(planned, target, "plan", "--format", "md")
    assert markdown.returncode == 0, markdown.stdout
    assert "#### `e5` widen price" in markdown.stdout
    assert "| 1 | `ALTER TABLE widget ALTER COLUMN price TYPE BIGINT` |" in markdown.stdout


def test_each_revision_carries_the_findings_squawk_gave_its_own_sql(
    planned: Project, target: URL, tmp_path: Path
) -> None:
    """squawk reads the revisions' SQL while they run on the scratch copy; each revision lists
    what squawk said of its own file. squawk comes with the rendered projects, not with the
    toolkit: a stand-in on PATH answers as squawk does (gcc lines, exit 1 when it finds
    something), naming each file it read."""
    stand_in = tmp_path / "squawk"
    stand_in.write_text(
        '#!/bin/sh\nfor f in "$@"; do case "$f" in *.sql) '
        'echo "$f:1:1: warning: read $(basename "$f")";; esac; done\nexit 1\n'
    )
    stand_in.chmod(0o755)
    result = cli(planned, target, "plan", PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stdout
    for revision, *_ in PENDING:
        block = revision_block(result.stdout, revision)
        assert f"  squawk: warning: read {revision}.sql\n" in block, block
        assert block.count("squawk:") == 1, block
    assert not scratch_left(target)


@pytest.fixture
def risky(planned: Project, target: URL, tmp_path: Path) -> Iterator[Project]:
    """The project with plan-risky-rows below the target's rows; its files restored after."""
    (tmp_path / "pyproject.toml").write_text("[tool.alembic-steady]\nplan-risky-rows = 1000\n")
    files = {path: path.read_text() for path in planned.versions.glob("*.py")}
    yield replace(configured(planned, target), root=tmp_path)
    for path, original in files.items():
        path.write_text(original)


def test_fail_on_risky_stops_on_a_rewrite_or_a_long_lock_of_a_large_table_until_accepted(
    risky: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan.main(risky, ["--fail-on", "risky"]) == 1
    out, err = capsys.readouterr()
    assert "RISKY: statement 1 rewrites widget (2,000 rows > 1,000)" in revision_block(out, "e5")
    assert (
        "RISKY: statement 2 reads widget whole under ACCESS EXCLUSIVE (2,000 rows > 1,000)"
        in revision_block(out, "f6")
    ), out
    # A brief ACCESS EXCLUSIVE (a nullable column) is no risk, nor a concurrent build's read.
    assert out.count("RISKY") == 2, out
    assert "accept rewrite of TABLE" in err
    # Without --fail-on, the same findings, exit 0.
    assert plan.main(risky, []) == 0
    capsys.readouterr()
    for revision, marker in (("e5", "rewrite of"), ("f6", "long lock on")):
        path = risky.versions / f"{revision}.py"
        path.write_text(
            path.read_text() + f"# migration-tests: accept {marker} widget: a night deploy\n"
        )
    assert plan.main(risky, ["--fail-on", "risky"]) == 0
    out, _ = capsys.readouterr()
    assert "statement 1 rewrites widget (2,000 rows > 1,000): accepted (a night deploy)" in out
    assert "RISKY" not in out


def test_a_target_at_head_has_nothing_to_plan(planned: Project, server_url: URL) -> None:
    """The scratch database is made while the target is read; with nothing pending the plan
    stops making it rather than wait for it: it answers while a session holds the template
    CREATE DATABASE copies (the server cannot make one meanwhile), and leaves none."""
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        Migrations(planned).upgrade(url=url)
        with session_holding(server_url, HOLD_TEMPLATE):
            result = plan_within(planned, url, 15)
        assert result, "it waited for a scratch database it had no use for"
        assert result.returncode == 0, result.stdout
        assert "The database is at h8. No pending revisions" in result.stdout
        assert not scratch_left(url)


def test_a_target_it_cannot_read_ends_the_plan_without_waiting_for_the_scratch_database(
    planned: Project, server_url: URL
) -> None:
    """The scratch database, being made while the target is read, is stopped when the read
    fails: the plan answers while the server cannot make one, and leaves none."""
    missing = server_url.set(database="no_such_database_here")
    scratch = server_url.render_as_string(hide_password=False)
    with session_holding(server_url, HOLD_TEMPLATE):
        answered = plan_within(planned, missing, 15, PLAN_SCRATCH_URL=scratch)
    assert answered, "it waited for a scratch database it had no use for"
    assert answered.returncode == 1 and "Nothing planned:" in answered.stdout, answered.stdout
    assert ".." not in answered.stdout
    left = rows(server_url, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_plan\\_%'")
    assert not [name for (name,) in left if name.startswith(f"{server_url.database}_plan_")]


# A revision that takes a session-level advisory lock outside a transaction, drops a table and
# lets the lock go: the probe runs the statements once more and rolls back, which keeps such a
# lock, and the real run then waited for the probe's session for ever.
SESSION_LOCKED = [
    (
        "d4",
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("SELECT pg_advisory_lock(424242)")\n'
        '        op.execute("DROP TABLE widget")\n'
        '        op.execute("SELECT pg_advisory_unlock(424242)")',
        "    pass",
        "drop widget under an advisory lock",
    )
]


def test_a_lock_the_probe_took_for_its_session_is_let_go_and_a_dropped_table_is_named(
    server_url: URL,
) -> None:
    project = demo_project.with_revisions("postgresql", "plan_session_lock", SESSION_LOCKED)
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        Migrations(project).upgrade("c3", url=url)
        answered = plan_within(project, url, 30)
        assert answered, "the real run waited for the lock the probe's session kept"
        assert answered.returncode == 0, answered.stdout
        block = revision_block(answered.stdout, "d4")
        # Named as it was before the statement dropped it, not by its oid.
        assert (
            "ACCESS EXCLUSIVE on public.widget" in block or "ACCESS EXCLUSIVE on widget" in block
        ), block
        assert not re.search(r" on \d+\b", block), block
        assert not scratch_left(url)


# A data migration reading the rows it changes, then a change of schema: on the empty copy the
# first finds no row and runs none of its UPDATEs.
READS_ROWS = [
    (
        "d4",
        "    bind = op.get_bind()\n"
        '    for (key,) in bind.execute(sa.text("SELECT id FROM widget")).all():\n'
        '        bind.execute(sa.text("UPDATE widget SET name = name WHERE id = :i"), {"i": key})',
        "    pass",
        "touch each widget",
    ),
    (
        "e5",
        '    op.add_column("widget", sa.Column("note", sa.String(), nullable=True))',
        '    op.drop_column("widget", "note")',
        "add a nullable column",
    ),
]


def test_a_revision_whose_queries_read_rows_is_said_to_depend_on_them(server_url: URL) -> None:
    """On the empty copy a data migration's query finds no row, so the plan cannot list what
    it does with them: it says so, naming the table and its rows on the target."""
    project = demo_project.with_revisions("postgresql", "plan_reads_rows", READS_ROWS)
    with at_c3_with_rows(project, server_url, 50) as url:
        answered = cli(project, url, "plan")
        assert answered.returncode == 0, answered.stdout
        said = re.compile(
            r"reads rows of (public\.)?widget \([\d,]+ rows\): on the empty copy its queries "
            r"found none, so what it does with them is not in this plan \(make rehearse runs "
            r"it on the data\)"
        )
        assert said.search(revision_block(answered.stdout, "d4")), answered.stdout
        assert "reads rows of" not in revision_block(answered.stdout, "e5"), answered.stdout
        data = json.loads(cli(project, url, "plan", "--format", "json").stdout)
        assert [plan["queries"] for plan in data["revisions"]] in (
            [["widget"], []],
            [["public.widget"], []],
        ), data


# The way to ALTER TYPE ... ADD VALUE before autocommit_block(), still in many histories: the
# revision commits its transaction itself, and what follows runs statement by statement.
COMMITS_ITSELF = [
    (
        "d4",
        '    op.execute("COMMIT")\n'
        '    op.execute("ALTER TABLE widget ADD COLUMN x int")\n'
        '    op.execute("BEGIN")\n'
        '    op.execute("ALTER TABLE widget ADD COLUMN y int")',
        '    op.drop_column("widget", "y")\n    op.drop_column("widget", "x")',
        "commit, alter widget, begin again, alter it",
    )
]


def test_a_statement_after_the_revision_commits_itself_is_measured_on_its_own(
    server_url: URL,
) -> None:
    """After a raw COMMIT the ALTER runs outside any transaction, its lock let go as it ends:
    read as if in the revision's transaction, it showed no lock at all."""
    project = demo_project.with_revisions("postgresql", "plan_commits_itself", COMMITS_ITSELF)
    with at_c3_with_rows(project, server_url, 50) as url:
        answered = cli(project, url, "plan")
        assert answered.returncode == 0, answered.stdout
        block = revision_block(answered.stdout, "d4")
        altered = block.split("ALTER TABLE widget ADD COLUMN x int", 1)[-1].splitlines()[1]
        assert re.search(r"ACCESS EXCLUSIVE on (public\.)?widget \(\d+ rows\)", altered), block
        assert "on its own (committed alone)" in altered, block
        # From a BEGIN of its own on, the revision is in a transaction again, until the end.
        again = block.split("ADD COLUMN y int", 1)[-1].splitlines()[1]
        assert re.search(r"ACCESS EXCLUSIVE on (public\.)?widget \(\d+ rows\)", again), block
        assert "in the revision's transaction" in again, block
        begun = block.split("BEGIN", 1)[-1].splitlines()[1]
        assert "in the revision's transaction" in begun, block


def test_bad_input_is_refused_with_the_fix(planned: Project, target: URL) -> None:
    far = target.set(host="db.example.com")
    result = cli(planned, far, "plan", PLAN_SCRATCH_URL="not a url")
    assert result.returncode == 1
    assert "PLAN_SCRATCH_URL is not a valid URL" in result.stdout, result.stdout
    unknown = cli(planned, target.set(database="no_such_database_here"), "plan")
    assert unknown.returncode == 1 and "Nothing planned:" in unknown.stdout, unknown.stdout


def test_its_lock_modes_agree_with_a_rehearsal_on_the_full_copy(
    planned: Project, target: URL, tmp_path: Path
) -> None:
    """Lock modes do not depend on rows: the plan's, measured on an empty copy, are those
    `rehearse` measures with every row restored, revision by revision."""
    assert backup.main(configured(planned, target), [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    rehearsed = cli(planned, target, "rehearse", f"file={dump}")
    assert rehearsed.returncode == 0, rehearsed.stdout
    measured: dict[str, set[tuple[str, str]]] = {}
    for line in rehearsed.stdout.splitlines():
        if header := re.match(r"^(\w+) \(.*\): \d+\.\d\d s", line):
            revision = header.group(1)
            measured[revision] = set()
        elif held := re.match(r"^    ([A-Z ]+) on (\S+), held", line):
            measured[revision].add((held.group(2), held.group(1)))
    planned_json = json.loads(cli(planned, target, "plan", "--format", "json").stdout)
    plans = {
        r["revision"]: {
            (lock["relation"], lock["mode"]) for s in r["statements"] for lock in s["locks"]
        }
        for r in planned_json["revisions"]
    }
    assert set(measured) == set(plans) == {"d4", "e5", "f6", "g7", "h8"}, rehearsed.stdout
    for revision, held in measured.items():
        # What the rehearsal saw was predicted, and the same locks that stop writers. (Outside a
        # transaction the rehearsal samples a statement's locks while it runs, and may miss a
        # weak one held a millisecond; the plan runs it again in a transaction to read them.)
        assert held <= plans[revision], (revision, held, plans[revision])
        strong = {lock for lock in plans[revision] if lock[1] in STOP_WRITERS}
        assert {lock for lock in held if lock[1] in STOP_WRITERS} == strong, revision
    # Here, where no statement outside a transaction is that quick, they are the same.
    assert plans == measured
