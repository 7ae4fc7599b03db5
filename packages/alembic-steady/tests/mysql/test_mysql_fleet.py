"""The fleet runner on MySQL/MariaDB: each tenant is a database (a schema is one there); their
revisions are read in one session per server, each database migrates under its own named lock,
and one that rejects a revision fails alone, its committed DDL reported as it stands."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import demo_project
import pytest
from queries import execute, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations

UNIQUE = [
    (
        "d4",
        '    op.create_unique_constraint("uq_widget_name", "widget", ["name"])',
        '    op.drop_constraint("uq_widget_name", "widget", type_="unique")',
        "unique names",
    )
]


@pytest.fixture(scope="module")
def project() -> Project:
    return demo_project.with_revisions("mysql", "fleet", UNIQUE)


@pytest.fixture
def databases(server_clients: Clients, server_url: URL) -> Iterator[list[URL]]:
    with demo_project.databases(server_url, server_clients, "one", "two") as urls:
        yield [urls["one"], urls["two"]]


def fleet(
    project: Project, url: URL, tmp_path: Path, lines: list[str], *args: str
) -> tuple[int, str, dict[str, Any]]:
    run, report = demo_project.fleet_run(project, url, tmp_path, lines, *args)
    return run.returncode, run.stdout, report


def test_databases_on_one_server_reach_head_and_a_rejecting_one_fails_alone(
    project: Project, database_url: URL, databases: list[URL], tmp_path: Path
) -> None:
    one, two = databases
    Migrations(project).upgrade("c3", url=two)
    execute(two, "INSERT INTO widget (name) VALUES ('twin'), ('twin')")
    lines = [str(one.database), f"database={two.database}", "schema=nope"]
    (tmp_path / "targets").write_text("\n".join(lines), encoding="utf-8")
    refused = demo_project.module_cli(
        project, "fleet", "status", "--targets", str(tmp_path / "targets"), url=database_url
    )
    assert refused.returncode == 1
    assert "line 3: schema= targets are PostgreSQL's: on MySQL name a database=" in refused.stdout
    lines = lines[:2]
    code, output, report = fleet(
        project, database_url, tmp_path, lines, "upgrade", "--on-error", "continue"
    )
    assert code == 1, output
    first, second = report["targets"]
    assert (first["outcome"], first["after"]) == ("upgraded", ["d4"])
    assert (second["outcome"], second["before"], second["after"]) == ("failed", ["c3"], ["c3"])
    assert "Duplicate entry" in second["error"]
    assert rows(one, "SELECT version_num FROM alembic_version") == [("d4",)]
    execute(two, "DELETE FROM widget")
    code, output, report = fleet(project, database_url, tmp_path, lines, "upgrade")
    assert code == 0, output
    assert [t["outcome"] for t in report["targets"]] == ["at head", "upgraded"]
    code, _, report = fleet(project, database_url, tmp_path, lines, "status")
    assert code == 0 and {t["outcome"] for t in report["targets"]} == {"at head"}
