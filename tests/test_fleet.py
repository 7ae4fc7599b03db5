"""A fleet (issue #28) as a render has it: `make fleet-migrate` and `make fleet-status` on a live
server (tenant schemas and a database, targets from a file or a query, the rollout's options),
a bad targets line and Make values that stay data, the Kubernetes Indexed Job's pods and its
report Job run outside a cluster, and the mysql render's fleet of databases.

What the fleet runner does under faults (locks, rejected data, signals) is proven in the
toolkit's own tiers; here, what only a render has: its Make targets, manifests and docs."""

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .conftest import Server, bake, clean_env, install, make, must, run

TENANTS = ("acme", "globex", "initech")


@pytest.fixture(scope="module")
def main(server: Server) -> Iterator[str]:
    """The settings' database: the tenant schemas live in it."""
    with server.new_database("tmpl_fleet") as name:
        yield name


@pytest.fixture(scope="module")
def other(server: Server) -> Iterator[str]:
    """A database beside it on the same server, a `database=` target."""
    with server.new_database("tmpl_fleet_db") as name:
        yield name


@pytest.fixture(scope="module")
def env(server: Server, main: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(main))


def schemas_with_item(server: Server, database: str) -> set[str]:
    rows = server.fetch(
        database, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'item'"
    )
    return {row[0] for row in rows}


def by_target(report: str) -> dict[str, dict[str, Any]]:
    return {entry["target"]: entry for entry in json.loads(report)["targets"]}


def test_help_lists_the_fleet_targets(default_project: Path) -> None:
    output = must(make(default_project, "help"))
    for target in ("fleet-migrate", "fleet-status"):
        assert re.search(rf"^  {target} +\S.*targets=FILE", output, re.M), output


def test_fleet_migrate_then_status(
    default_project: Path,
    server: Server,
    main: str,
    other: str,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    targets = tmp_path / "tenants.txt"
    lines = [*(f"schema={tenant}" for tenant in TENANTS), f"database={other}"]
    targets.write_text("# the fleet\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    options = ("parallel=2", "canary=1", "wave=2", "format=json", f"report={report}")
    output = must(make(default_project, "fleet-migrate", f"targets={targets}", *options, env=env))
    assert "4 to upgrade in 3 group(s), 2 at a time" in output, output
    assert "fleet: [1/4] schema=acme upgraded in " in output, output
    entries = by_target(report.read_text(encoding="utf-8"))
    assert {name: entry["outcome"] for name, entry in entries.items()} == dict.fromkeys(
        lines, "upgraded"
    )
    # The canary first, then waves of 2: the options reached the runner.
    assert [entry["wave"] for entry in entries.values()] == ["canary", "wave 1", "wave 1", "wave 2"]
    heads = entries["schema=acme"]["after"]
    assert heads and all(entry["after"] == heads for entry in entries.values())
    # The tables are in each tenant's schema and in the other database, not in main's own.
    assert schemas_with_item(server, main) == set(TENANTS)
    assert server.tables(other) == {"item"}

    status = must(make(default_project, "fleet-status", f"targets={targets}", "format=md", env=env))
    for line in lines:
        assert f"| {line} | at head | {heads[0]} | {heads[0]} |" in status, status
    # A column added by hand in one tenant: drift=yes names that tenant alone.
    server.execute(main, "ALTER TABLE globex.item ADD COLUMN by_hand integer")
    drift = make(default_project, "fleet-status", f"targets={targets}", "drift=yes", env=env)
    server.execute(main, "ALTER TABLE globex.item DROP COLUMN by_hand")
    assert drift.returncode != 0
    assert re.findall(r"^(\S+) +drifted ", drift.stdout, re.M) == ["schema=globex"], drift.stdout
    assert "4 targets: 3 at head, 1 drifted" in drift.stdout
    # A rerun finds nothing to do.
    rerun = must(make(default_project, "fleet-migrate", f"targets={targets}", env=env))
    assert "0 to upgrade" in rerun and "4 targets: 4 at head" in rerun, rerun

    # Targets from a query: its quotes and `||` reach PostgreSQL as written.
    server.execute(main, "CREATE TABLE public.tenants (name text)")
    server.execute(main, "INSERT INTO public.tenants VALUES ('acme'), ('globex'), ('nobody')")
    query = "query=SELECT 'schema=' || name FROM public.tenants WHERE name <> 'nobody' ORDER BY 1"
    listed = must(make(default_project, "fleet-status", query, env=env))
    assert re.findall(r"^(schema=\w+) +at head", listed, re.M) == ["schema=acme", "schema=globex"]


def test_on_error_decides_whether_the_rest_runs(
    default_project: Path, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    # One target per wave, no canary; the second is a database that does not exist.
    targets = tmp_path / "targets"
    names = [f"s{uuid.uuid4().hex[:8]}" for _ in range(2)]
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    lines = [f"schema={names[0]}", f"database={missing}", f"schema={names[1]}"]
    targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = (f"targets={targets}", "canary=0", "wave=1", "format=json")
    stopped = make(default_project, "fleet-migrate", *common, env=env)
    assert stopped.returncode != 0
    assert outcomes(stopped.stdout) == dict(
        zip(lines, ["upgraded", "failed", "not run"], strict=True)
    )
    assert f'database "{missing}" does not exist' in stopped.stdout

    went_on = make(default_project, "fleet-migrate", *common, "on_error=continue", env=env)
    assert went_on.returncode != 0
    assert outcomes(went_on.stdout) == dict(
        zip(lines, ["at head", "failed", "upgraded"], strict=True)
    )


def outcomes(text: str) -> dict[str, str]:
    return {name: entry["outcome"] for name, entry in by_target(report_of(text)).items()}


def report_of(text: str) -> str:
    """The JSON report among a command's output (stdout and stderr together)."""
    start = text.index("{\n")
    end = text.index("\n}\n", start) + 3
    return text[start:end]


def test_a_bad_targets_line_is_named_and_changes_nothing(
    default_project: Path, server: Server, main: str, env: dict[str, str], tmp_path: Path
) -> None:
    fresh = f"fresh_{uuid.uuid4().hex[:8]}"
    targets = tmp_path / "targets"
    targets.write_text(f"schema={fresh}\nbogus=x\n", encoding="utf-8")
    result = make(default_project, "fleet-migrate", f"targets={targets}", env=env)
    assert result.returncode != 0
    assert f"FAILED: {targets}, line 2: expected schema=NAME, database=NAME" in result.stdout
    assert "Error 1" in result.stdout  # the command's own status: 1
    assert "Traceback" not in result.stdout and len(result.stdout.splitlines()) <= 2, result.stdout
    # Line 1 was good, but nothing ran: its schema was not even created.
    assert not server.fetch(main, f"SELECT 1 FROM pg_namespace WHERE nspname = '{fresh}'")

    # Neither targets= nor query= (nor fleet-targets-query in pyproject.toml): Make says which.
    for target in ("fleet-migrate", "fleet-status"):
        missing = make(default_project, target, env=env)
        assert missing.returncode != 0
        assert f"Missing targets=...: usage: make {target} targets=FILE" in missing.stdout


def test_values_given_to_make_stay_data(
    default_project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    for target, value, said in (
        ("fleet-migrate", f"targets=x; touch {marker}", f"targets file x; touch {marker}:"),
        ("fleet-migrate", f"targets=$(touch {marker})", f"targets file $(touch {marker}):"),
        ("fleet-status", f"query=SELECT 1 `touch {marker}`", "The targets query failed"),
        ("fleet-migrate", f"parallel=1; touch {marker}", f"'1; touch {marker}'"),
        ("fleet-migrate", f"on_error=stop$(touch {marker})", "invalid choice"),
        ("fleet-status", f"format=md' && touch {marker} '", "invalid choice"),
        ("fleet-status", f"drift=no; touch {marker}", f"drift=no; touch {marker}: use drift=yes"),
    ):
        given = (value,) if value.startswith(("targets=", "query=")) else ("query=SELECT 1", value)
        result = make(default_project, target, *given, env=env)
        assert result.returncode != 0, result.stdout
        assert said in result.stdout, result.stdout
        assert not marker.exists(), value


def pod_command(container: dict[str, Any], project: Path, files: dict[str, Path]) -> list[str]:
    """A container's command as its pod runs it: Kubernetes' $(VAR) taken from its env entries,
    the image's python the project's, the mounted files ours."""
    values = {entry["name"]: entry.get("value", "") for entry in container.get("env", [])}
    command = [
        re.sub(r"\$\((\w+)\)", lambda match: values[match.group(1)], part)
        for part in container["command"]
    ]
    assert command[0] == "python"
    return [str(project / ".venv" / "bin" / "python"), *(str(files.get(c, c)) for c in command[1:])]


def test_the_indexed_job_spreads_the_targets_and_the_report_job_reports(
    default_project: Path, server: Server, tmp_path: Path
) -> None:
    deploy = default_project / "deploy"
    config, job = yaml.safe_load_all((deploy / "fleet-job.yaml").read_text(encoding="utf-8"))
    (report_job,) = yaml.safe_load_all((deploy / "fleet-report-job.yaml").read_text("utf-8"))
    migrate = yaml.safe_load((deploy / "migrate-job.yaml").read_text(encoding="utf-8"))
    app = yaml.safe_load((deploy / "deployment.yaml").read_text(encoding="utf-8"))
    assert (config["kind"], job["kind"], report_job["kind"]) == ("ConfigMap", "Job", "Job")
    spec = job["spec"]
    pods = spec["completions"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == pods > 1
    module = ["python", "-m", "my_service.migrations", "fleet"]
    for manifest, action in ((job, "upgrade"), (report_job, "status")):
        pod = manifest["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = container["command"]
        assert command[:5] == [*module, action]
        assert command[command.index("--targets") + 1] == "/etc/fleet/targets"
        # The image, the Secret and the non-root user of the other manifests.
        migrator = migrate["spec"]["template"]["spec"]["containers"][0]
        assert (container["image"], container["envFrom"]) == (
            migrator["image"],
            migrator["envFrom"],
        )
        assert pod["securityContext"] == app["spec"]["template"]["spec"]["securityContext"]
        assert pod["restartPolicy"] == "Never"
        (volume,) = pod["volumes"]
        assert volume["configMap"]["name"] == config["metadata"]["name"]
        (mount,) = container["volumeMounts"]
        assert (mount["name"], mount["mountPath"]) == (volume["name"], "/etc/fleet")
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"][5:] == [
        "--targets", "/etc/fleet/targets", "--shard", f"$(JOB_COMPLETION_INDEX)/{pods}",
        "--format", "json",
    ]  # fmt: skip
    (index,) = container["env"]
    assert index["name"] == "JOB_COMPLETION_INDEX"
    annotation = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == annotation

    # Each pod's command, run here on the ConfigMap's targets as pod I of K would run it.
    mounted = tmp_path / "targets"
    mounted.write_text(config["data"]["targets"], encoding="utf-8")
    lines = [line for line in config["data"]["targets"].splitlines() if line.strip()]
    files = {"/etc/fleet/targets": mounted}
    with server.new_database("tmpl_fleet_job") as database:
        env = clean_env(DATABASE_URL=server.url(database))
        shares: list[list[str]] = []
        for pod_index in range(pods):
            container["env"][0]["value"] = str(pod_index)  # what the fieldRef gives pod I
            result = run(default_project, *pod_command(container, default_project, files), env=env)
            assert result.returncode == 0, result.stdout
            entries = by_target(report_of(result.stdout))
            assert {entry["outcome"] for entry in entries.values()} == {"upgraded"}
            shares.append(list(entries))
        # Every target in exactly one pod's share, every K-th from the I-th.
        assert sorted(line for share in shares for line in share) == sorted(lines)
        assert shares == [lines[pod_index::pods] for pod_index in range(pods)]

        reporter = report_job["spec"]["template"]["spec"]["containers"][0]
        report = run(default_project, *pod_command(reporter, default_project, files), env=env)
        assert report.returncode == 0, report.stdout
        assert f"{len(lines)} targets: {len(lines)} at head" in report.stdout
        assert report.stdout.count(" | at head | ") == len(lines), report.stdout


@pytest.fixture(scope="module")
def mysql() -> tuple[str, int, str, str]:
    named = os.environ.get("TEST_MYSQL_URL")
    if not named:
        pytest.skip(
            "MySQL fleet NOT run: no server named. Set TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/"
            "mysql (.ci/run does when 127.0.0.1:3306 answers)"
        )
    parts = urlsplit(named)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3306
    return host, port, parts.username or "root", parts.password or ""


def test_mysql_render_migrates_a_fleet_of_databases(
    mysql: tuple[str, int, str, str], tmp_path: Path
) -> None:
    import pymysql

    host, port, user, password = mysql

    def sql(statement: str) -> list[tuple[Any, ...]]:
        connection = pymysql.connect(host=host, port=port, user=user, password=password)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall())
        finally:
            connection.close()

    project = install(bake(tmp_path / "render", database="mysql"))
    names = [f"tmpl_fleet_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        sql(f"CREATE DATABASE `{name}`")
    try:
        auth = user + (f":{password}" if password else "")
        env = clean_env(DATABASE_URL=f"mysql://{auth}@{host}:{port}/{names[0]}")
        targets = tmp_path / "targets"
        targets.write_text(f"database={names[0]}\n{names[1]}\n", encoding="utf-8")
        output = must(make(project, "fleet-migrate", f"targets={targets}", env=env))
        assert "2 targets: 2 upgraded" in output, output
        for name in names:
            found = sql(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA = '{name}' AND TABLE_NAME = 'item'"
            )
            assert found, name
        status = must(make(project, "fleet-status", f"targets={targets}", "format=json", env=env))
        assert set(outcomes(status).values()) == {"at head"}
        # Tenant schemas are PostgreSQL's: the line is named, nothing runs.
        targets.write_text(f"database={names[0]}\nschema=acme\n", encoding="utf-8")
        refused = make(project, "fleet-migrate", f"targets={targets}", env=env)
        assert refused.returncode != 0
        assert "line 2: schema= targets are PostgreSQL's: on MySQL name a database=" in (
            refused.stdout
        )
        config, _ = yaml.safe_load_all((project / "deploy" / "fleet-job.yaml").read_text("utf-8"))
        assert all(line.startswith("database=") for line in config["data"]["targets"].split())
    finally:
        for name in names:
            sql(f"DROP DATABASE IF EXISTS `{name}`")
