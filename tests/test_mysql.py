"""The mysql option as a render has it: a project rendered with database=mysql, its settings (one
URL or the DB_* parts), seed 1's workflow through every Make target, the Make aliases and chores,
Docker Compose's MySQL, the CI workflow and the generated test suite.

What the toolkit does on MySQL (the GET_LOCK lock and replicas racing, lock-wait retries and the
statement timeout, half-applied revisions, connection failures, native ENUM and JSON through
autogenerate and the stairway, backup/restore/shell privacy, db-reset, offline SQL) is proven
without a render in packages/alembic-steady/tests/mysql/.

The server is the one TEST_MYSQL_URL names (a user that may create and drop databases, e.g.
mysql://root@127.0.0.1:3306/mysql); `.ci/run` sets it when 127.0.0.1:3306 answers. Without it the
whole module is skipped, and the skip reason says so in the summary: there is no embedded MySQL.
"""

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest
import yaml

from .conftest import bake, clean_env, install, make, must, run, versions

NAMED = os.environ.get("TEST_MYSQL_URL")
if not NAMED:
    pytest.skip(
        "MySQL tests NOT run: no server named. Set TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/"
        "mysql (.ci/run does when 127.0.0.1:3306 answers)",
        allow_module_level=True,
    )
SERVER = urlsplit(str(NAMED))
HOST, PORT = SERVER.hostname or "127.0.0.1", SERVER.port or 3306
USER, PASSWORD = SERVER.username or "root", SERVER.password or ""

WIDGET = """from sqlmodel import Field, SQLModel


class Widget(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=80, index=True)
"""


def sql(database: str, statement: str) -> list[tuple[object, ...]]:
    connection = pymysql.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=database or None
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            rows = list(cursor.fetchall())
        connection.commit()
        return rows
    finally:
        connection.close()


def url(database: str, scheme: str = "mysql") -> str:
    auth = USER + (f":{PASSWORD}" if PASSWORD else "")
    return f"{scheme}://{auth}@{HOST}:{PORT}/{database}"


def tables(database: str) -> set[str]:
    """The project's tables: not Alembic's version table, nor the runner's record of a revision
    part way (alembic_steady_progress)."""
    rows = sql(
        database,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
    )
    runners = {"alembic_version", "alembic_version_checksums", "alembic_steady_progress"}
    return {str(row[0]) for row in rows} - runners


def version(database: str) -> list[str]:
    return [str(row[0]) for row in sql(database, "SELECT version_num FROM alembic_version")]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mysql project for the module, rendered and installed once."""
    return install(bake(tmp_path_factory.mktemp("mysql"), database="mysql"))


@pytest.fixture
def db() -> Iterator[str]:
    """A database of this test's own, uniquely named (runs may share the server)."""
    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    sql("", f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        sql("", f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def env(db: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=url(db, "mysql+pymysql"))


@pytest.fixture
def clean_versions(project: Path) -> Iterator[None]:
    """Revisions a test adds are removed after it, so each test sees the rendered chain."""
    before = set(versions(project))
    yield
    for path in set(versions(project)) - before:
        path.unlink()
    for model in (project / "src" / "my_service" / "models").glob("widget.py"):
        model.unlink()


def test_settings_one_url_or_db_parts(project: Path, db: str) -> None:
    # Seed 1's env.py builds mysql+pymysql://DB_USER:DB_PASSWORD@DB_HOST:DB_PORT/DB_NAME.
    parts = clean_env(DB_HOST=HOST, DB_PORT=str(PORT), DB_USER=USER, DB_NAME=db)
    if PASSWORD:
        parts["DB_PASSWORD"] = PASSWORD
    output = must(make(project, "migrate", env=parts))
    assert f"Database '{db}' on {HOST}:{PORT} as {USER}" in output
    assert output.count("Context impl MySQLImpl.") == 1, output  # one run, one set of lines
    assert tables(db) == {"item"}
    for scheme in ("mysql", "mysql+pymysql", "mariadb", "mysql+aiomysql"):
        current = must(make(project, "current", env=clean_env(DATABASE_URL=url(db, scheme))))
        assert "(head)" in current, scheme
    # Without DB_PORT the default is MySQL's 3306.
    if PORT == 3306:
        default_port = {k: v for k, v in parts.items() if k != "DB_PORT"}
        assert "(head)" in must(make(project, "current", env=default_port))
    # The settings refuse what no dialect runs on, naming the variable, never its value.
    for named, expected in (
        (f"mysql+mysqldb://root:wrong-secret@{HOST}:{PORT}/{db}", "unsupported scheme"),
        ("not a url", "DATABASE_URL is not a valid URL"),
    ):
        refused = make(project, "migrate", env=clean_env(DATABASE_URL=named))
        assert refused.returncode != 0
        assert expected in refused.stdout, refused.stdout
        assert "wrong-secret" not in refused.stdout
        assert "Traceback" not in refused.stdout


@pytest.mark.usefixtures("clean_versions")
def test_seed_one_workflow(project: Path, env: dict[str, str], db: str) -> None:
    """migrate, migration (autogenerate), check, rollback, stamp, history, merge."""
    must(make(project, "migrate", env=env))
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))
    assert "no revision written" in must(make(project, "migration", "msg=nothing", env=env))

    models = project / "src" / "my_service" / "models"
    (models / "widget.py").write_text(WIDGET, encoding="utf-8")
    drift = make(project, "check", env=env)
    assert drift.returncode != 0 and "widget" in drift.stdout
    generated = must(make(project, "migration", "msg=add widget", env=env))
    # A new table and its index are one step to review, not "several DDL statements" (the
    # warning stays for statements that can fail apart: the toolkit's unit tests).
    assert "DDL statements" not in generated
    new = versions(project)[-1]
    assert "DDL statements" not in new.read_text(encoding="utf-8")
    must(make(project, "migrate", env=env))
    assert tables(db) == {"item", "widget"}
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))

    must(make(project, "rollback", env=env))
    assert tables(db) == {"item"}
    must(make(project, "migrate", env=env))
    head = version(db)
    must(make(project, "rollback", "rev=base", env=env))
    assert tables(db) == set()
    must(make(project, "stamp", "rev=head", env=env))
    assert version(db) == head and tables(db) == set()
    must(make(project, "stamp", "rev=base", env=env))
    must(make(project, "migrate", env=env))
    assert "Rev:" in must(make(project, "history", env=env))

    # Two developers branch from the same head; `make merge` joins them.
    head_id = head[0]
    must(make(project, "migration-empty", "msg=backfill a", env=env))
    alembic = [".venv/bin/alembic", "revision", "-m", "backfill b", "--head", head_id, "--splice"]
    must(run(project, *alembic, env=env))
    check = make(project, "check", env=env)
    assert check.returncode != 0 and "more than one head" in check.stdout
    must(make(project, "merge", "msg=merge backfills", env=env))
    must(make(project, "migrate", env=env))
    assert len(version(db)) == 1
    assert "(head)" in must(make(project, "current", env=env))


def test_ci_workflow_runs_against_a_mysql_service(project: Path) -> None:
    workflow = project / ".github" / "workflows" / "ci.yml"
    schema = [sys.executable, "-m", "check_jsonschema", "--builtin-schema"]
    must(run(project, *schema, "vendor.github-workflows", str(workflow)))
    text = workflow.read_text(encoding="utf-8")
    assert "image: mysql:8.4" in text and "TEST_DATABASE_URL: mysql://" in text
    assert "make db-up" not in text  # the service is the database; compose would clash on 3306


def test_generated_tests_pass_and_fail_without_a_server(project: Path) -> None:
    result = make(project, "test", env=clean_env(TEST_DATABASE_URL=url("mysql")))
    assert result.returncode == 0, result.stdout
    assert "MySQL used:" in result.stdout and " passed" in result.stdout
    assert " skipped" not in result.stdout

    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0
    ):
        pytest.skip("a Docker engine answers here: the generated tests would start MySQL in it")
    # No server named either: a TEST_DATABASE_URL this run was given (a PostgreSQL's) is dropped.
    env = {k: v for k, v in clean_env().items() if k != "TEST_DATABASE_URL"}
    result = make(project, "test", env=env)
    assert result.returncode != 0
    assert "set TEST_DATABASE_URL=mysql://" in result.stdout
    assert "start a Docker engine" in result.stdout
    assert " skipped" not in result.stdout


# No Docker engine runs here: a `docker` on PATH answers `docker info` (unless DOCKER_ANSWERS=no)
# and records every call.
DOCKER_SHIM = """#!/bin/sh
[ "$DOCKER_ANSWERS" = no ] && exit 1
echo "$*" >> "$DOCKER_CALLS"
exit 0
"""


def test_db_up_uses_docker_compose_mysql_when_docker_answers(
    project: Path, tmp_path: Path, db: str
) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM, encoding="utf-8")
    (shim / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    env = clean_env(PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", DOCKER_CALLS=str(calls))
    dotenv = project / ".env"
    try:
        up = must(make(project, "db-up", env=env))
        assert "MySQL running in Docker" in up
        assert calls.read_text().splitlines() == ["info", "compose up --detach --wait db"]
        # compose.yaml's server is the one .env (copied from .env.example) names.
        compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
        database = compose["services"]["db"]
        settings = dict(
            line.split("=", 1)
            for line in dotenv.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")
        )
        assert database["image"].startswith("mysql:")
        assert database["environment"]["MYSQL_ROOT_PASSWORD"] == settings["DB_PASSWORD"]
        assert database["environment"]["MYSQL_DATABASE"] == settings["DB_NAME"]
        assert settings["DB_USER"] == "root" and settings["DB_PORT"] == "3306"
        calls.unlink()
        must(make(project, "db-down", env=env))
        assert calls.read_text().splitlines() == ["info", "compose down"]
    finally:
        dotenv.unlink(missing_ok=True)
    # Without a Docker engine, db-up checks the configured server instead (the toolkit's
    # `devdb start`; its messages are proven in the toolkit's MySQL tier).
    no_docker = {**env, "DOCKER_ANSWERS": "no", "DATABASE_URL": url(db)}
    assert "nothing to start" in must(make(project, "db-up", env=no_docker))


def test_aliases_and_chores(project: Path, env: dict[str, str], db: str) -> None:
    """The seeds' names and the chores' targets reach the toolkit with their arguments (what
    the chores do is proven in the toolkit's MySQL tier)."""
    must(make(project, "migrate", env=env))
    assert "Rev:" in must(make(project, "heads", env=env))
    assert "(head)" in must(make(project, "migration-current", env=env))
    assert "Rev:" in must(make(project, "migration-history", env=env))
    # The SQL for review needs no database (nothing listens on port 9).
    offline = clean_env(DATABASE_URL="mysql://root@127.0.0.1:9/nowhere")
    assert "CREATE TABLE item" in must(make(project, "sql", env=offline))
    assert "PostgreSQL SQL only" in must(make(project, "lint-migrations"))

    sql(db, "INSERT INTO item (name) VALUES ('kept')")
    backup = must(make(project, "backup", env=env))
    dump = Path(re.findall(r"Backup written to (\S+)", backup)[0])
    assert dump.parent == project / "backups"
    sql(db, "DROP TABLE item")
    must(make(project, "restore", f"file={dump}", env=env))
    assert sql(db, "SELECT name FROM item") == [("kept",)]
    shell = must(make(project, "dbshell", "args=-N -e 'SELECT COUNT(*) FROM item'", env=env))
    assert shell.splitlines()[-1].strip() == "1"
    assert "1" in must(make(project, "psql", "args=-N -e 'SELECT 1'", env=env))

    must(make(project, "db-reset", env=env))
    assert tables(db) == set() and sql(db, "SELECT 1") == [(1,)]
    must(make(project, "migration-stamp", "rev=base", env=env))
