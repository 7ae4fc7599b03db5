"""The fleet runner against a real PostgreSQL: tenant schemas of one database and other
databases migrated by worker processes through the module CLI, as a Job runs it; those at head
skipped; a locked target, a target whose data a revision rejects, and a runner stopped midway."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import demo_project
import pytest
from pg_sessions import session_holding
from queries import execute, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing import checks
from alembic_steady.testing.plugin import new_database
from alembic_steady.testing.walk import Harness, Walk

# d4 seeds one row per tenant (a data migration: run twice, it would leave two), e5 makes names
# unique (a tenant holding duplicates rejects it).
SEEDED = [
    ("d4", "    op.execute(\"INSERT INTO widget (name) VALUES ('seed')\")", "    pass", "seed"),
    (
        "e5",
        '    op.create_unique_constraint("uq_widget_name", "widget", ["name"])',
        '    op.drop_constraint("uq_widget_name", "widget")',
        "unique names",
    ),
]
HEAD = ["e5"]


# The models as e5 leaves them.
MODELS = demo_project.MODELS.replace(
    '    sa.Index("ix_widget_name", "name"),',
    '    sa.Index("ix_widget_name", "name"),\n'
    '    sa.UniqueConstraint("name", name="uq_widget_name"),',
)


@pytest.fixture(scope="module")
def project() -> Project:
    assert MODELS != demo_project.MODELS
    return demo_project.with_revisions("postgresql", "fleet", SEEDED, models=MODELS)


@pytest.fixture
def other_database(server_clients: Clients, server_url: URL) -> Iterator[URL]:
    with new_database(server_clients, server_url) as url:
        yield url


fleet = demo_project.fleet_run


def by_target(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["target"]: entry for entry in report["targets"]}


def seeds(url: URL, schema: str) -> int:
    return int(rows(url, f"SELECT count(*) FROM \"{schema}\".widget WHERE name = 'seed'")[0][0])


def at(url: URL, schema: str) -> list[str]:
    return [row[0] for row in rows(url, f'SELECT version_num FROM "{schema}".alembic_version')]


def test_tenants_and_databases_reach_head_and_those_at_head_are_skipped(
    project: Project, database_url: URL, other_database: URL, tmp_path: Path
) -> None:
    migrations = Migrations(project)
    migrations.upgrade(url=database_url, schema="done")  # at head already
    migrations.upgrade("a1", url=database_url, schema="Part Way")  # quoted, part way
    lines = ["schema=done", "schema=Part Way", "new_tenant", f"database={other_database.database}"]
    run, report = fleet(project, database_url, tmp_path, lines, "upgrade", "--parallel", "2")
    assert run.returncode == 0, run.stdout
    found = by_target(report)
    assert found["schema=done"]["outcome"] == "at head"
    assert found["schema=Part Way"] | {"seconds": 0} == {
        "target": "schema=Part Way",
        "outcome": "upgraded",
        "before": ["a1"],
        "after": HEAD,
        "seconds": 0,
        "error": None,
        "wave": "canary",  # the first target not at head
    }
    assert found["schema=new_tenant"]["before"] == []  # a new tenant: its schema is made
    assert found["schema=new_tenant"]["wave"] == "wave 1"
    for schema in ("done", "Part Way", "new_tenant"):
        assert at(database_url, schema) == HEAD
        assert seeds(database_url, schema) == 1
    assert at(other_database, "public") == HEAD
    # Only the tenants' schemas were touched: the database's own holds no table.
    assert rows(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]
    status, report = fleet(project, database_url, tmp_path, lines, "status")
    assert status.returncode == 0, status.stdout
    assert {entry["outcome"] for entry in report["targets"]} == {"at head"}


def test_status_names_what_is_behind_and_exits_1(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("c3", url=database_url, schema="behind")
    migrations.upgrade(url=database_url, schema="ahead")
    execute(database_url, "UPDATE ahead.alembic_version SET version_num = 'f6newer'")
    lines = ["behind", "unborn", "ahead"]
    run, report = fleet(project, database_url, tmp_path, lines, "status")
    assert run.returncode == 1
    assert [(e["target"], e["outcome"], e["before"]) for e in report["targets"]] == [
        ("schema=behind", "behind", ["c3"]),
        ("schema=unborn", "behind", []),
        ("schema=ahead", "unknown revision", ["f6newer"]),
    ]
    assert report["targets"][2]["error"] == "at f6newer, which no revision file here has"
    # Status changes nothing: no schema made, no revision applied.
    assert rows(database_url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'unborn'") == [
        (0,)
    ]
    assert at(database_url, "behind") == ["c3"]


def test_a_rejecting_tenant_fails_alone_with_its_cause_and_a_rerun_picks_it_up(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("c3", url=database_url, schema="dupes")
    execute(database_url, "INSERT INTO dupes.widget (name) VALUES ('twin'), ('twin')")
    lines = ["first", "dupes", "last"]
    run, report = fleet(project, database_url, tmp_path, lines, "upgrade", "--on-error", "continue")
    assert run.returncode == 1
    found = by_target(report)
    assert found["schema=dupes"]["outcome"] == "failed"
    assert "uq_widget_name" in found["schema=dupes"]["error"]
    # The failing revision rolled back; the one before it stays (each commits on its own).
    assert found["schema=dupes"]["after"] == ["d4"]
    assert at(database_url, "first") == at(database_url, "last") == HEAD
    execute(database_url, "DELETE FROM dupes.widget WHERE name = 'twin'")
    rerun, report = fleet(project, database_url, tmp_path, lines, "upgrade")
    assert rerun.returncode == 0, rerun.stdout
    assert [e["outcome"] for e in report["targets"]] == ["at head", "upgraded", "at head"]
    assert [seeds(database_url, s) for s in ("first", "dupes", "last")] == [1, 1, 1]


def test_a_failing_canary_stops_the_rollout_before_any_other_target(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    Migrations(project).upgrade("c3", url=database_url, schema="canary")
    execute(database_url, "INSERT INTO canary.widget (name) VALUES ('twin'), ('twin')")
    lines = ["canary", "second", "third"]
    run, report = fleet(project, database_url, tmp_path, lines, "upgrade", "--on-error", "continue")
    assert run.returncode == 1
    assert [e["outcome"] for e in report["targets"]] == ["failed", "not run", "not run"]
    schemas = rows(database_url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE '%d'")
    assert ("second",) not in schemas and ("third",) not in schemas


def test_on_error_stop_starts_no_target_after_a_failure(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    Migrations(project).upgrade("c3", url=database_url, schema="bad")
    execute(database_url, "INSERT INTO bad.widget (name) VALUES ('twin'), ('twin')")
    lines = ["good", "bad", *[f"later{n}" for n in range(4)]]
    # One worker: "bad" (wave 1's first) fails before any later target starts.
    run, report = fleet(project, database_url, tmp_path, lines, "upgrade", "--parallel", "1")
    assert run.returncode == 1
    assert [e["outcome"] for e in report["targets"]] == ["upgraded", "failed", *["not run"] * 4]


def test_a_locked_tenant_is_retried_then_reported_naming_the_blocker(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("c3", url=database_url, schema="locked")
    lines = ["free", "locked"]
    hold = "LOCK TABLE locked.widget IN ACCESS EXCLUSIVE MODE"
    with session_holding(database_url, hold, application_name="reporting job"):
        run, report = fleet(
            project,
            database_url,
            tmp_path,
            lines,
            "upgrade",
            "--on-error",
            "continue",
            "--canary",
            "0",
            MIGRATION_LOCK_TIMEOUT="50ms",
            MIGRATION_LOCK_RETRIES="2",
            MIGRATION_LOCK_RETRY_TOTAL="2",
        )
    assert run.returncode == 1
    found = by_target(report)
    assert found["schema=free"]["outcome"] == "upgraded"
    assert found["schema=locked"]["outcome"] == "failed"
    assert "reporting job" in found["schema=locked"]["error"]
    assert at(database_url, "locked") == ["c3"]


def started_fleet(
    project: Project, url: URL, targets: Path, output: Path
) -> "subprocess.Popen[str]":
    """The fleet in the background, its output to a file (a killed runner's workers may live on,
    holding a pipe open)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"{project.package}.migrations",
            "fleet",
            "upgrade",
            "--targets",
            str(targets),
            "--canary",
            "0",
            "--parallel",
            "2",
        ],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "MIGRATION_LOCK_TIMEOUT": "100ms",
            "MIGRATION_LOCK_RETRIES": "1000",
            "MIGRATION_LOCK_RETRY_TOTAL": "300",
        },
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def waiting_on_lock(url: URL, package: str) -> int:
    """Sessions of the fleet's workers waiting for a lock: seen in pg_stat_activity."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
        f"application_name = '{package} migrations'"
    )
    return int(rows(url, query)[0][0])


def reached(url: URL, schema: str) -> bool:
    query = f"SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename = 'widget'"
    return rows(url, query) == [(1,)] and at(url, schema) == HEAD


def wait_until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not observed in time"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_runner_stopped_midway_cancels_or_finishes_and_a_rerun_runs_nothing_twice(
    project: Project, database_url: URL, tmp_path: Path, signum: int
) -> None:
    migrations = Migrations(project)
    for schema in ("held", "t1", "t2"):
        migrations.upgrade("a1", url=database_url, schema=schema)
    targets = tmp_path / "targets"
    targets.write_text("held\nt1\nt2\nt3\n", encoding="utf-8")
    hold = "LOCK TABLE held.widget IN ACCESS EXCLUSIVE MODE"
    with session_holding(database_url, hold, application_name="long report"):
        runner = started_fleet(project, database_url, targets, tmp_path / "output")
        try:
            wait_until(lambda: waiting_on_lock(database_url, project.package) >= 1)
            # Tenants migrate side by side: the others reach head while one waits.
            wait_until(lambda: all(reached(database_url, s) for s in ("t1", "t2", "t3")))
            runner.send_signal(signum)
            runner.wait(timeout=60)
        finally:
            runner.kill()
        output = (tmp_path / "output").read_text()
        if signum == signal.SIGTERM:
            # The worker's statement was cancelled on the server and the lock released.
            assert runner.returncode == 128 + signum, output
            assert "held" in output and "interrupted" in output, output
            assert waiting_on_lock(database_url, project.package) == 0
            assert at(database_url, "held") == ["a1"]
        else:
            assert runner.returncode == -signum
    # SIGKILL left the worker on its target: it finishes once the lock is free, then sees its
    # input closed and exits. The rerun waits for it (the target's own lock) and applies nothing
    # twice.
    rerun, _report = fleet(project, database_url, tmp_path, ["held", "t1", "t2", "t3"], "upgrade")
    assert rerun.returncode == 0, rerun.stdout
    for schema in ("held", "t1", "t2", "t3"):
        assert at(database_url, schema) == HEAD
        assert seeds(database_url, schema) == 1


def test_bad_targets_get_a_line_number_and_change_nothing(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    targets = tmp_path / "targets"
    for content, says in [
        ("ok\nflavour=x\n", "line 2: expected schema=NAME, database=NAME, NAME or a database URL"),
        ("ok\nschema=ok\n", "line 2: schema=ok is line 1's target too"),
        ("# nothing\n\n", "No targets"),
        ("nosuch+driver://u:secret@h/db\n", "line 1: a URL no dialect takes"),
    ]:
        targets.write_text(content, encoding="utf-8")
        run = demo_project.module_cli(
            project, "fleet", "upgrade", "--targets", str(targets), url=database_url
        )
        assert run.returncode == 1 and says in run.stdout, run.stdout
        assert "secret" not in run.stdout
    missing = demo_project.module_cli(
        project, "fleet", "status", "--targets", str(tmp_path / "none"), url=database_url
    )
    assert missing.returncode == 1 and "Cannot read the targets file" in missing.stdout
    assert rows(database_url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ok'") == [(0,)]


def test_targets_from_a_query_and_a_shard_of_them(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    execute(
        database_url,
        "CREATE TABLE public.tenants (name text)",
        "INSERT INTO public.tenants VALUES ('ta'), ('tb'), ('tc'), ('td')",
    )
    query = "SELECT name FROM public.tenants ORDER BY name"
    run = demo_project.module_cli(
        project,
        "fleet",
        "upgrade",
        "--targets-query",
        query,
        "--shard",
        "1/2",
        url=database_url,
    )
    assert run.returncode == 0, run.stdout
    made = rows(database_url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't_' ORDER BY 1")
    assert made == [("tb",), ("td",)]  # every second target from the second
    bad = demo_project.module_cli(
        project, "fleet", "status", "--targets-query", "SELECT nope", url=database_url
    )
    assert bad.returncode == 1 and "The targets query failed" in bad.stdout, bad.stdout


def test_a_tenant_schema_is_refused_on_a_callers_connection(
    project: Project, database_url: URL
) -> None:
    from alembic.util import CommandError

    from alembic_steady.testing.walk import on_connection

    def upgrade(connection: Any) -> None:
        Migrations(project).upgrade(connection=connection, schema="acme")

    with pytest.raises(CommandError, match="pass url= with schema="):
        on_connection(database_url, upgrade)


def test_status_with_drift_names_the_tenant_whose_schema_differs_from_the_models(
    project: Project, database_url: URL, tmp_path: Path
) -> None:
    migrations = Migrations(project)
    for schema in ("same", "edited"):
        migrations.upgrade(url=database_url, schema=schema)
    execute(database_url, "ALTER TABLE edited.widget DROP COLUMN price")  # by hand, unrecorded
    lines = ["same", "edited", "behind"]
    migrations.upgrade("a1", url=database_url, schema="behind")
    run, report = fleet(project, database_url, tmp_path, lines, "status", "--drift")
    assert run.returncode == 1
    found = by_target(report)
    assert found["schema=same"]["outcome"] == "at head", found["schema=same"]["error"]
    assert found["schema=edited"]["outcome"] == "drifted"
    assert "op.add_column('widget', sa.Column('price'" in found["schema=edited"]["error"]
    assert found["schema=behind"]["outcome"] == "behind"  # not compared: not at head
    plain, report = fleet(project, database_url, tmp_path, lines[:2], "status")
    assert plain.returncode == 0  # without --drift, revisions only


def test_status_reads_every_tenant_of_a_database_in_one_session(
    project: Project, database_url: URL, other_database: URL
) -> None:
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from alembic_steady.dialects.postgresql import PostgreSQL
    from alembic_steady.fleet.status import read_all
    from alembic_steady.fleet.targets import parse_all

    migrations = Migrations(project)
    for n in range(0, 30, 3):
        migrations.upgrade(url=database_url, schema=f"t{n:02}")
    lines = [f"t{n:02}" for n in range(30)] + [f"database={other_database.database}"]
    targets = parse_all(lines, database_url, "postgresql", "test")
    opened: list[object] = []

    def count(*_: object) -> None:
        opened.append(1)

    event.listen(Pool, "connect", count)
    try:
        found = read_all(targets, project, project.settings(), PostgreSQL())
    finally:
        event.remove(Pool, "connect", count)
    assert len(opened) == 2  # one per database, whatever the number of tenants
    assert [found[t].heads for t in targets[:4]] == [tuple(HEAD), (), (), tuple(HEAD)]
    assert found[targets[-1]].heads == ()


def with_tenants(project: Project, folder: Path) -> Project:
    """The project with `tenant-schemas = true` in its pyproject.toml."""
    (folder / "pyproject.toml").write_text(
        "[tool.alembic-steady]\ntenant-schemas = true\n", encoding="utf-8"
    )
    return replace(project, root=folder)


def test_the_built_in_fleet_test_migrates_two_tenants_where_the_project_has_them(
    project: Project, database_url: URL, other_database: URL, tmp_path: Path
) -> None:
    # By default a fleet of databases: the walk's, at head, read at head; no tenant schema made.
    walked = Walk(other_database)
    Migrations(project).upgrade("heads", url=other_database)
    checks.test_a_fleet_reaches_head(Harness(project), walked, database_url)
    assert rows(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]  # the run's own database is left alone
    no_tenant = "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_a'"
    assert rows(other_database, no_tenant) == [(0,)]
    tenants = Harness(with_tenants(project, tmp_path))
    checks.test_a_fleet_reaches_head(tenants, walked, database_url)
    where = "SELECT table_schema FROM information_schema.tables WHERE table_name = 'widget'"
    assert sorted(rows(database_url, where)) == [("tenant_a",), ("tenant_b",)]


def test_the_built_in_fleet_test_fails_where_the_walk_did_not_reach_head(
    project: Project, database_url: URL
) -> None:
    walked = Walk(database_url, upgrade_failure="c3: no such table")
    with pytest.raises(pytest.fail.Exception, match="cannot migrate the fleet: c3: no such table"):
        checks.test_a_fleet_reaches_head(Harness(project), walked, database_url)


def test_the_built_in_fleet_test_names_a_revision_that_leaves_its_tenants_schema(
    database_url: URL, other_database: URL, tmp_path: Path
) -> None:
    leak = '    op.execute("CREATE TABLE IF NOT EXISTS public.leak (id int)")'
    leaky = demo_project.with_revisions(
        "postgresql", "fleet_leak", [("d4", leak, '    op.execute("DROP TABLE public.leak")', "")]
    )
    harness = Harness(with_tenants(leaky, tmp_path))
    with pytest.raises(AssertionError) as failed:
        checks.test_a_fleet_reaches_head(harness, Walk(other_database), database_url)
    message = str(failed.value)
    assert "a tenant's revisions made ['leak'] in the database's own schema." in message
    assert "name no schema in a revision (not `public.`" in message


def test_the_module_cli_migrates_one_tenant_alone(project: Project, database_url: URL) -> None:
    Migrations(project).upgrade("c3", url=database_url, schema="other")
    run = demo_project.module_cli(project, "upgrade", "--schema", "signed up", url=database_url)
    assert run.returncode == 0, run.stdout
    assert at(database_url, "signed up") == HEAD
    assert at(database_url, "other") == ["c3"]  # no other tenant touched
