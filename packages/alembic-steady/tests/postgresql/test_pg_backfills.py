"""Backfills outside the deploy on a real PostgreSQL (authoring/backfill_queue.py and
tools/backfill.py): a pre revision queues one, `backfill run` fills the rows in batches while
the post revision that needs it refuses until it is done; a plain upgrade runs it between the
phases; killed mid-run (SIGKILL, SIGTERM), the runner resumes from its last committed batch and
updates no row twice; it gives way to a lock the application holds; pause and resume; the
printed script refuses."""

import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import checks_run
import demo_project
import pytest
from pg_sessions import session_holding
from queries import execute, heads, rows
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from test_pg_phases import run_alembic

from alembic_steady import Project, StaticSettings
from alembic_steady.authoring.backfill_queue import _batch_sql, run_job
from alembic_steady.runner.api import Migrations
from alembic_steady.runner.backfill_jobs import jobs
from alembic_steady.testing.walk import on_connection
from alembic_steady.tools import backup

# After the demo chain (a1 widget, b2 its index, c3 price): d4 (pre) adds `n`, a counter, and
# queues the backfill that adds 1 to it on every row; p1 (post) needs that backfill finished and
# then makes n NOT NULL. A row updated twice holds 2.
D4_UP = (
    '    op.add_column("widget", sa.Column("n", sa.Integer, nullable=True))\n'
    '    op.queue_backfill("widget", {"n": "coalesce(n, 0) + 1"}, where="true", '
    'name="widget.n", batch_size=500, pause=0)'
)
D4_DOWN = '    op.cancel_backfill("widget.n")\n    op.drop_column("widget", "n")'
P1_UP = '    op.require_backfill("widget.n")\n    op.set_not_null("widget", "n")'
P1_DOWN = '    op.alter_column("widget", "n", nullable=True)'
ROWS = 60_000
MODELS = demo_project.MODELS.replace(
    '    sa.Column("price", sa.Integer, nullable=True),',
    '    sa.Column("price", sa.Integer, nullable=True),\n    sa.Column("n", sa.Integer, '
    "nullable=False),",
)


@pytest.fixture(scope="module")
def project() -> Project:
    project = demo_project.write("postgresql", name="backfills", models=MODELS)
    demo_project.add_revision(project.versions, "d4", "c3", D4_UP, D4_DOWN, "add n")
    demo_project.add_revision(
        project.versions, "p1", None, P1_UP, P1_DOWN, "n required", labels=("post",), depends="d4"
    )
    return project


def filled(project: Project, url: URL, count: int = ROWS) -> None:
    """At c3 with `count` rows, then the pre phase (d4: the job queued, nothing filled yet)."""
    Migrations(project).upgrade("c3", url=url)
    execute(
        url,
        f"INSERT INTO widget (name) SELECT 'w' || g FROM generate_series(1, {count}) AS g",
    )
    Migrations(project).upgrade(phase="pre", url=url)


def counters(url: URL) -> list[tuple[int | None, int]]:
    return rows(url, "SELECT n, count(*) FROM widget GROUP BY n ORDER BY n NULLS FIRST")


def job(url: URL) -> tuple[str, int]:
    [(state, done)] = rows(url, "SELECT state, rows_done FROM alembic_version_backfills")
    return state, done


def cli(project: Project, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return demo_project.module_cli(project, "backfill", *args, url=url)


def test_the_post_phase_waits_for_the_backfill_the_runner_then_fills_every_row_once(
    project: Project, database_url: URL
) -> None:
    filled(project, database_url)
    assert job(database_url) == ("queued", 0)
    assert counters(database_url) == [(None, ROWS)]
    status = cli(project, database_url, "status")
    assert "widget.n: queued, 0 rows done (queued by d4 (add n))" in status.stdout, status.stdout

    early = demo_project.module_cli(project, "upgrade", "--phase", "post", url=database_url)
    assert early.returncode == 1
    assert "the backfill widget.n is not finished (queued, 0 rows done)" in early.stdout
    assert (
        f"run `python -m {project.package}.migrations backfill run`, then `python -m"
        in early.stdout
    )
    assert heads(database_url) == {"d4"}

    ran = cli(project, database_url, "run")
    assert ran.returncode == 0, ran.stdout
    assert f"backfill widget.n: {ROWS}/{ROWS} rows (100%)" in ran.stdout
    assert counters(database_url) == [(1, ROWS)]
    assert job(database_url) == ("done", ROWS)
    again = cli(project, database_url, "run")
    assert "No backfill to run." in again.stdout and counters(database_url) == [(1, ROWS)]

    late = demo_project.module_cli(project, "upgrade", "--phase", "post", url=database_url)
    assert late.returncode == 0, late.stdout
    assert heads(database_url) == {"p1"}  # p1 depends on d4: Alembic keeps one row


def test_a_plain_upgrade_runs_the_backfill_between_the_phases(
    project: Project, database_url: URL
) -> None:
    Migrations(project).upgrade("c3", url=database_url)
    execute(
        database_url, "INSERT INTO widget (name) SELECT 'w' || g FROM generate_series(1, 1200) g"
    )
    Migrations(project).upgrade("heads", url=database_url)
    assert heads(database_url) == {"p1"}  # p1 depends on d4: Alembic keeps one row
    assert counters(database_url) == [(1, 1200)]
    assert job(database_url) == ("done", 1200)


def test_killed_mid_run_it_resumes_from_its_last_batch_and_updates_no_row_twice(
    project: Project, database_url: URL
) -> None:
    filled(project, database_url)
    argv = [sys.executable, "-m", f"{project.package}.migrations", "backfill", "run"]
    for kill in [signal.SIGKILL, signal.SIGTERM] * 5:
        before = job(database_url)[1]
        runner = demo_project.started(project, argv, database_url)
        # Observed: a batch past the ones before this run committed.
        while job(database_url)[1] <= before and runner.poll() is None:
            time.sleep(0.005)
        assert runner.poll() is None, "the run ended before it could be killed mid-way"
        runner.send_signal(kill)
        output, _ = runner.communicate(timeout=60)
        if kill == signal.SIGTERM:
            assert runner.returncode == 1, output
            assert "stopped after its last batch (running)" in output, output
        state, done = job(database_url)
        assert state == "running" and before < done < ROWS
        # Every committed batch's rows hold 1, the rest NULL: none applied twice, none lost.
        assert counters(database_url) == [(None, ROWS - done), (1, done)]
    finished = cli(project, database_url, "run")
    assert finished.returncode == 0, finished.stdout
    assert counters(database_url) == [(1, ROWS)]
    assert job(database_url) == ("done", ROWS)


def test_two_runners_at_once_take_turns_and_update_no_row_twice(
    project: Project, database_url: URL
) -> None:
    """A CronJob's run overlapping one started by hand: each batch locks the job's row, so the
    second waits and goes on after the first one's batch."""
    filled(project, database_url)
    argv = [sys.executable, "-m", f"{project.package}.migrations", "backfill", "run"]
    runners = [demo_project.started(project, argv, database_url) for _ in range(2)]
    outputs = [runner.communicate(timeout=120)[0] for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], outputs
    assert counters(database_url) == [(1, ROWS)]
    assert job(database_url) == ("done", ROWS)


def test_pause_stops_the_runner_and_resume_lets_it_go_on(
    project: Project, database_url: URL
) -> None:
    filled(project, database_url)
    # 50 ms between batches: the run lasts seconds, longer than the pause command's start.
    execute(database_url, "UPDATE alembic_version_backfills SET pause = 0.05")
    argv = [sys.executable, "-m", f"{project.package}.migrations", "backfill", "run"]
    runner = demo_project.started(project, argv, database_url)
    while job(database_url)[1] == 0:
        time.sleep(0.005)
    paused = cli(project, database_url, "pause", "widget.n")
    assert paused.returncode == 0 and "backfill widget.n: paused" in paused.stdout
    output, _ = runner.communicate(timeout=60)
    assert "backfill widget.n: paused" in output, output
    state, done = job(database_url)
    assert state == "paused" and done < ROWS
    assert "widget.n: paused" in cli(project, database_url, "status").stdout
    assert cli(project, database_url, "resume", "widget.n").returncode == 0
    assert cli(project, database_url, "run").returncode == 0
    assert counters(database_url) == [(1, ROWS)]
    unknown = cli(project, database_url, "pause", "nope")
    assert unknown.returncode == 1 and "No backfill named nope" in unknown.stdout


def test_a_batch_gives_way_to_a_lock_the_application_holds(
    project: Project, database_url: URL
) -> None:
    filled(project, database_url, count=2000)
    with session_holding(database_url, "SELECT * FROM widget WHERE id = 700 FOR UPDATE"):
        argv = [sys.executable, "-m", f"{project.package}.migrations", "backfill", "run"]
        runner = demo_project.started(project, argv, database_url)
        assert runner.stdout is not None
        seen = ""
        while "giving way" not in seen:
            line = runner.stdout.readline()
            assert line, seen
            seen += line
        assert job(database_url)[1] == 500  # the batch before the locked row committed
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, seen + output
    assert counters(database_url) == [(1, 2000)]


def test_the_printed_script_queues_and_refuses_as_a_run_does(
    project: Project, database_url: URL
) -> None:
    # `make sql` from c3: the queue's table and the job in d4; p1 checks the job first.
    Migrations(project).upgrade("c3", url=database_url)
    sql = run_alembic(project, None, "upgrade", "c3:heads", "--sql")
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE IF NOT EXISTS alembic_version_backfills" in sql.stdout
    assert "INSERT INTO alembic_version_backfills" in sql.stdout
    statements = [s for s in sql.stdout.split(";\n\n") if s.strip() not in ("", "BEGIN", "COMMIT")]
    with pytest.raises(Exception, match=r"the backfill widget\.n is not finished"):
        for statement in statements:
            execute(database_url, statement)
    assert heads(database_url) == {"d4"}  # the script stopped at p1's check


def test_the_built_in_tests_pass_on_a_history_with_a_queued_backfill(server_url: URL) -> None:
    """The walk runs the queued backfill where its post revision requires it (a plain upgrade's
    order), and the stairway takes both revisions down and up again."""
    project = demo_project.write("postgresql", name="backfills_checks", models=MODELS)
    demo_project.add_revision(project.versions, "d4", "c3", D4_UP, D4_DOWN, "add n")
    demo_project.add_revision(
        project.versions, "p1", None, P1_UP, P1_DOWN, "n required", labels=("post",), depends="d4"
    )
    run = checks_run.run_checks({"backfilled": project}, server_url)
    assert run.not_passed() == set(), run.output


def test_make_rehearse_runs_the_backfill_the_post_revision_requires_on_the_copy(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    """The copy is upgraded as a plain `make migrate` would: the job runs in p1's place, and its
    rows are counted; the source keeps its queued job."""
    filled(project, database_url, count=3000)
    configured = replace(project, settings=lambda: StaticSettings(database_url))
    assert backup.main(configured, [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    result = demo_project.module_cli(project, "rehearse", f"file={dump}", url=database_url)
    assert result.returncode == 0, result.stdout
    assert re.search(r"p1 \(n required\): [\d.]+ s, 3000 row\(s\) changed", result.stdout), (
        result.stdout
    )
    assert job(database_url) == ("queued", 0) and heads(database_url) == {"d4"}


def test_a_run_ends_at_the_highest_key_it_found_and_the_post_phase_takes_the_rows_after(
    project: Project, database_url: URL
) -> None:
    """The old release goes on inserting rows without the column while the job runs (and until
    the rollout ends): a run leaves the rows inserted after it started, so it ends; the post
    revision updates them, once the old release is gone, each once."""
    filled(project, database_url, 3000)
    inserted: list[int] = []

    def old_release_inserts(rows_done: int) -> None:
        if not inserted:  # after the first batch: 200 rows past the run's end
            # From a session of its own (another thread: this one runs the job's event loop).
            late = "INSERT INTO widget (name) SELECT 'late' || g FROM generate_series(1, 200) g"
            insert = threading.Thread(target=execute, args=(database_url, late))
            insert.start()
            insert.join()
            inserted.append(rows_done)

    def run(connection: Connection) -> str:
        (job,) = jobs(connection, "widget.n")
        return run_job(connection, job, on_commit=old_release_inserts)

    assert on_connection(database_url, run) == "done"
    assert counters(database_url) == [(None, 200), (1, 3000)]
    assert job(database_url) == ("done", 3000)
    post = demo_project.module_cli(project, "upgrade", "--phase", "post", url=database_url)
    assert post.returncode == 0, post.stdout
    assert "backfill widget.n: rows were written since it finished; updating them now" in (
        post.stdout
    )
    assert counters(database_url) == [(1, 3200)]
    assert heads(database_url) == {"p1"}


def test_each_batch_after_the_first_starts_at_the_jobs_position_in_the_keys_index(
    project: Project, database_url: URL
) -> None:
    """The position is an index condition, not a filter over the table from its first row: a
    batch's cost does not grow with the rows done."""
    filled(project, database_url, 1000)

    def plans(connection: Connection) -> dict[bool, str]:
        (job,) = jobs(connection, "widget.n")
        connection.exec_driver_sql(
            "UPDATE alembic_version_backfills SET last_key = '500', state = 'running'"
        )
        found = {}
        for after_last in (False, True):
            sql = _batch_sql(connection, job, "integer", after_last=after_last)
            statement = text("EXPLAIN " + sql)
            params = {"name": job.name, "size": 500, "upto": "1000"}
            found[after_last] = "\n".join(connection.execute(statement, params).scalars())
        connection.rollback()
        return found

    found = on_connection(database_url, plans)
    assert re.search(r"Index Cond: \(\(id > ", found[True]), found[True]
    assert not re.search(r"Index Cond: \(\(id > ", found[False]), found[False]  # the join form


# A table keyed by uuid, as many are: PostgreSQL has no max() or min() for uuid, which the
# batches, the run's end and op.backfill must do without.
TOKEN_UP = (
    '    op.execute("CREATE TABLE token (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), '
    'n int, m int)")\n'
    '    op.queue_backfill("token", {"n": "coalesce(n, 0) + 1"}, where="true", '
    'name="token.n", batch_size=300, pause=0)'
)
TOKEN_DOWN = '    op.cancel_backfill("token.n")\n    op.drop_table("token")'
# On a random key the rows inserted after the run may sort behind its position: the post
# revision fills them itself (docs/deploy-phases.md), then copies n into m.
TOKEN_POST_UP = (
    '    op.require_backfill("token.n")\n'
    '    op.backfill("token", {"n": "1"}, where="n IS NULL", batch_size=300)\n'
    '    op.backfill("token", {"m": "n"}, where="m IS NULL", batch_size=300)'
)


def test_a_table_keyed_by_uuid_is_backfilled_by_the_queue_and_by_op_backfill(
    database_url: URL,
) -> None:
    project = demo_project.write("postgresql", name="backfills_uuid")
    demo_project.add_revision(project.versions, "d4", "c3", TOKEN_UP, TOKEN_DOWN, "token")
    demo_project.add_revision(
        project.versions, "p1", None, TOKEN_POST_UP, "    pass", "m", labels=("post",), depends="d4"
    )
    Migrations(project).upgrade(phase="pre", url=database_url)
    execute(database_url, "INSERT INTO token (n) SELECT NULL FROM generate_series(1, 1000)")
    ran = cli(project, database_url, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "backfill token.n: 1000/1000 rows (100%)" in ran.stdout, ran.stdout
    execute(database_url, "INSERT INTO token (n) SELECT NULL FROM generate_series(1, 10)")
    late = demo_project.module_cli(project, "upgrade", "--phase", "post", url=database_url)
    assert late.returncode == 0, late.stdout + late.stderr
    assert rows(database_url, "SELECT n, m, count(*) FROM token GROUP BY n, m") == [(1, 1, 1010)]
    assert heads(database_url) == {"p1"}
