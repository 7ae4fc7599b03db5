"""`plan` (make plan) on a real MySQL or MariaDB: for each ALTER of the pending revisions, the
algorithm the server would use (INSTANT, INPLACE, COPY), the weakest lock it accepts with it and
whether it rewrites the table, probed on an empty twin of the table in a scratch database that
the target's revisions build; the target is only read."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import demo_project
import pytest
from mysql_queries import tables
from queries import execute, heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.base import for_url
from alembic_steady.dialects.clients import Clients
from alembic_steady.dialects.measured import Measured
from alembic_steady.dialects.mysql_watch import TWIN, parse
from alembic_steady.runner.api import Migrations
from alembic_steady.runner.settings import load_settings
from alembic_steady.tools import plan

ROWS = 300
# The pending revisions: an ALTER of each kind the server tells apart, and one it cannot probe.
PENDING = [
    (
        "d4",
        '    op.add_column("widget", sa.Column("note", sa.String(50), server_default="0%"))',
        '    op.drop_column("widget", "note")',
        "add a nullable column",
    ),
    (
        "e5",
        '    op.alter_column("widget", "price", type_=sa.String(20), existing_nullable=True)',
        '    op.alter_column("widget", "price", type_=sa.Integer(), existing_nullable=True)',
        "price as text",
    ),
    (
        "f6",
        '    op.create_index("ix_widget_price", "widget", ["price"])',
        '    op.drop_index("ix_widget_price", table_name="widget")',
        "index price",
    ),
    (
        "g7",
        '    op.execute("ALTER TABLE widget FORCE")\n    op.rename_table("widget", "gadget")',
        '    op.rename_table("gadget", "widget")',
        "rebuild and rename",
    ),
]
COLUMNS = "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
TABLES = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"


@pytest.fixture(scope="module")
def planned() -> Project:
    return demo_project.with_revisions("mysql", "plan", PENDING)


@pytest.fixture(scope="module")
def target(planned: Project, server_url: URL, server_clients: Clients) -> Iterator[URL]:
    """A database at c3 with ROWS widgets, analyzed (TABLE_ROWS is what the plan reads)."""
    with demo_project.databases(server_url, server_clients, "plan") as urls:
        url = urls["plan"]
        Migrations(planned).upgrade("c3", url=url)
        execute(
            url,
            "INSERT INTO widget (name, price) WITH RECURSIVE n (i) AS "
            f"(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) "
            "SELECT CONCAT('w', i), i FROM n",
            "ANALYZE TABLE widget",
        )
        yield url


def cli(project: Project, url: URL, *args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`python -m <package>.migrations ARGS` run in `folder` (where a project's pyproject.toml
    is read from: the demo project has no source tree); stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", f"{project.package}.migrations", *args],
        cwd=folder,
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": url.render_as_string(hide_password=False),
        },
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        check=False,
    )


def revision_block(output: str, revision: str) -> str:
    """The lines the text plan gives `revision`, from its header to the next one's."""
    found = re.search(rf"^{revision} \(.*?(?=^\w+ \(|\Z)", output, re.M | re.S)
    assert found, output
    return found.group(0)


def facts(block: str, number: int) -> tuple[str, str]:
    """Statement `number` of a revision's block: its SQL and its line of facts."""
    found = re.search(rf"^  {number}\. (.*)\n     (.*)$", block, re.M)
    assert found, block
    return found.group(1), found.group(2)


def unchanged(target: URL) -> None:
    """The target as the fixture left it: at c3, its tables, columns and rows, no scratch left."""
    assert heads(target) == {"c3"}
    assert tables(target) == {"widget"}
    assert rows(target, f"{COLUMNS}DATABASE() AND TABLE_NAME = 'widget' ORDER BY 1") == [
        ("id", "int"),
        ("name", "varchar"),
        ("price", "int"),
    ]
    prices = ROWS * (ROWS + 1) // 2  # 1 to ROWS
    assert rows(target, "SELECT COUNT(*), SUM(price) FROM widget") == [(ROWS, prices)]
    pattern = f"{target.database}\\_plan\\_%%"  # the driver formats %
    assert rows(target, f"SHOW DATABASES LIKE '{pattern}'") == []


def test_the_plan_tells_each_alters_algorithm_lock_and_rewrite(
    planned: Project, target: URL, tmp_path: Path
) -> None:
    result = cli(planned, target, "plan", folder=tmp_path)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "The database is at c3. 4 pending revision(s)" in output, output
    d4, e5, f6, g7 = (revision_block(output, revision) for revision, *_ in PENDING)
    # A nullable column at the end: instant, a brief metadata lock only. (The driver's %% are
    # shown as the statement's %, and the probe ran it as the driver does.)
    assert facts(d4, 1) == (
        "ALTER TABLE widget ADD COLUMN note VARCHAR(50) DEFAULT '0%'",
        f"LOCK=NONE on widget ({ROWS} rows); ALGORITHM=INSTANT; on its own (committed alone)",
    ), d4
    assert "no lock that stops writers" in d4, d4
    # INT to VARCHAR: a copy of the table, writes stopped while it runs.
    sql, line = facts(e5, 1)
    assert sql.startswith("ALTER TABLE widget MODIFY price VARCHAR(20)"), e5
    assert re.fullmatch(
        rf"LOCK=(SHARED|EXCLUSIVE) on widget \({ROWS} rows\); rewrites widget; ALGORITHM=COPY; "
        r"on its own \(committed alone\)",
        line,
    ), e5
    assert f"rewrite or read whole widget ({ROWS} rows): long" in e5, e5
    # An index: built in place, reads and writes going on.
    assert facts(f6, 1) == (
        "CREATE INDEX ix_widget_price ON widget (price)",
        f"LOCK=NONE on widget ({ROWS} rows); ALGORITHM=INPLACE; on its own (committed alone)",
    ), f6
    # A rebuild in place (a new InnoDB table id) rewrites the table, online.
    assert facts(g7, 1) == (
        "ALTER TABLE widget FORCE",
        f"LOCK=NONE on widget ({ROWS} rows); rewrites widget; ALGORITHM=INPLACE; "
        "on its own (committed alone)",
    ), g7
    # A rename: nothing told rather than something wrong.
    assert facts(g7, 2) == ("ALTER TABLE widget RENAME TO gadget", "on its own (committed alone)")
    # Alembic's version table is not the revision's doing.
    assert "alembic_version" not in output and "_plan_probe_" not in output, output
    unchanged(target)


def test_json_says_the_same(planned: Project, target: URL, tmp_path: Path) -> None:
    result = cli(planned, target, "plan", "--format", "json", folder=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert found["at"] == ["c3"] and found["risky_rows"] == plan.DEFAULT_RISKY_ROWS
    assert found["risky"] == []  # ROWS: below the default
    said = [
        (r["revision"], s["algorithm"], s["locks"], s["rewrites"], s["in_transaction"])
        for r in found["revisions"]
        for s in r["statements"]
    ]
    lock = {"relation": "widget", "mode": "LOCK=NONE", "rows": ROWS}
    copy_lock = said[1][2][0]
    assert copy_lock["mode"] in ("LOCK=SHARED", "LOCK=EXCLUSIVE"), said
    assert said == [
        ("d4", "INSTANT", [lock], [], False),
        ("e5", "COPY", [copy_lock], ["widget"], False),
        ("f6", "INPLACE", [lock], [], False),
        ("g7", "INPLACE", [lock], ["widget"], False),
        ("g7", None, [], [], False),
    ]
    assert [s["transaction"] for s in found["revisions"][3]["statements"]] == [0, 1]
    assert found["revisions"][1]["longest"]["work"] == {"widget": ROWS}
    unchanged(target)


@pytest.fixture
def risky(planned: Project, tmp_path: Path) -> Iterator[Path]:
    """A folder whose pyproject.toml sets plan-risky-rows below the target's rows; the revision
    files restored after."""
    (tmp_path / "pyproject.toml").write_text("[tool.alembic-steady]\nplan-risky-rows = 100\n")
    files = {path: path.read_text() for path in planned.versions.glob("*.py")}
    yield tmp_path
    for path, text in files.items():
        path.write_text(text)


def accept(project: Project, revision: str, reason: str) -> None:
    path = project.versions / f"{revision}.py"
    path.write_text(path.read_text() + f"# migration-tests: accept rewrite of widget: {reason}\n")


def test_fail_on_risky_stops_on_a_rewrite_of_a_large_table_until_accepted(
    planned: Project, target: URL, risky: Path
) -> None:
    stopped = cli(planned, target, "plan", "--fail-on", "risky", folder=risky)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    rewrite = f"RISKY: statement 1 rewrites widget ({ROWS} rows > 100)"
    assert rewrite in revision_block(stopped.stdout, "e5"), stopped.stdout  # the copy
    assert rewrite in revision_block(stopped.stdout, "g7"), stopped.stdout  # the rebuild
    assert "accept rewrite of TABLE" in stopped.stderr
    # An instant column or an online index is never risky, whatever the rows.
    for revision in ("d4", "f6"):
        assert "RISKY" not in revision_block(stopped.stdout, revision), stopped.stdout
    accept(planned, "e5", "a night deploy")
    still = cli(planned, target, "plan", "--fail-on", "risky", folder=risky)
    assert still.returncode == 1, still.stdout + still.stderr
    e5 = revision_block(still.stdout, "e5")
    assert f"statement 1 rewrites widget ({ROWS} rows > 100): accepted (a night deploy)" in e5
    assert "RISKY" not in e5 and rewrite in revision_block(still.stdout, "g7"), still.stdout
    accept(planned, "g7", "online rebuild")
    passed = cli(planned, target, "plan", "--fail-on", "risky", folder=risky)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "RISKY" not in passed.stdout, passed.stdout
    unchanged(target)


def test_the_probes_leave_no_twin_behind(
    planned: Project, server_url: URL, server_clients: Clients
) -> None:
    """Measured in this process on a database of the test's own, as the plan's scratch one: the
    runner's session afterwards holds the revisions' tables and nothing of the probes."""
    with demo_project.databases(server_url, server_clients, "scratch") as urls:
        url = urls["scratch"]
        Migrations(planned).upgrade("c3", url=url)
        project = replace(planned, settings=lambda: StaticSettings(url))
        revisions = Migrations(project).pending({"c3"})
        settings = load_settings(project.settings)
        measured = plan.measure(project, for_url(url), url, settings, revisions)
        assert {name for (name,) in rows(url, TABLES)} == {
            "gadget",
            "alembic_version",
            "alembic_version_checksums",
            "alembic_steady_progress",
        }
    algorithms: list[list[Any]] = [[s.algorithm for s in statements] for statements in measured]
    assert algorithms == [["INSTANT"], ["COPY"], ["INPLACE"], ["INPLACE", None]]
    first: Measured = measured[0][0]
    assert first.locks == [("widget", "NONE")] and not first.in_transaction


def test_what_the_probe_runs_in_place_of_each_statement() -> None:
    """The statement on the twin (TWIN in its place), with the statement's own ALGORITHM= and
    LOCK= taken out; None where the twin cannot show it."""

    def probed(sql: str) -> tuple[str, str | None, str | None] | None:
        change = parse(sql)
        if change is None:
            return None
        return " ".join(change.sql.replace(TWIN, "T").split()), change.algorithm, change.lock

    assert probed("ALTER TABLE `app`.`wid``get` ADD COLUMN x INT") == (
        "ALTER TABLE T ADD COLUMN x INT",
        None,
        None,
    )
    quoted = parse("ALTER TABLE `app`.`wid``get` ADD x INT")
    assert quoted is not None and (quoted.schema, quoted.table) == ("app", "wid`get")
    assert probed("ALTER TABLE w ADD x INT, ALGORITHM=INPLACE, LOCK = NONE;") == (
        "ALTER TABLE T ADD x INT",
        "INPLACE",
        "NONE",
    )
    assert probed("ALTER TABLE w ALGORITHM=COPY, ADD lock_until INT") == (
        "ALTER TABLE T ADD lock_until INT",
        "COPY",
        None,
    )
    assert probed("CREATE UNIQUE INDEX ix ON w (a, b) LOCK=SHARED") == (
        "ALTER TABLE T ADD UNIQUE INDEX ix (a, b)",
        None,
        "SHARED",
    )
    assert probed("DROP INDEX `ix` ON w") == ("ALTER TABLE T DROP INDEX `ix`", None, None)
    assert probed("ALTER TABLE w RENAME COLUMN a TO b") == (
        "ALTER TABLE T RENAME COLUMN a TO b",
        None,
        None,
    )
    for untold in (
        "ALTER TABLE w RENAME TO v",
        "ALTER TABLE w RENAME v",
        "ALTER TABLE w EXCHANGE PARTITION p0 WITH TABLE v",
        "RENAME TABLE w TO v, v2 TO w",
        "ALTER TABLE w ALGORITHM=INPLACE",
        "DROP TABLE w",
        "UPDATE w SET x = 1",
    ):
        assert parse(untold) is None, untold
