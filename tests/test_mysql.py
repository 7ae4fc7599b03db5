"""The mysql option for real: a project rendered with database=mysql, every Make target driven
against a MySQL/MariaDB server (seed 1's workflow), racing replicas, a revision failing half way,
and the generated test suite.

The server is the one TEST_MYSQL_URL names (a user that may create and drop databases, e.g.
mysql://root@127.0.0.1:3306/mysql); `.ci/run` sets it when 127.0.0.1:3306 answers. Without it the
whole module is skipped, and the skip reason says so in the summary: there is no embedded MySQL.
"""

import os
import re
import shutil
import subprocess
import sys
import time
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

HALF_FAILING = '''"""half failing

Revision ID: ab00000000ff
Revises: @down@
"""

import sqlalchemy as sa
from alembic import op

revision = "ab00000000ff"
down_revision = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("gadget", sa.Column("id", sa.Integer(), primary_key=True))
    op.create_index("ix_gadget_id", "gadget", ["id"])
@failing@


def downgrade() -> None:
    op.drop_table("gadget")
'''


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
    rows = sql(
        database,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
    )
    return {str(row[0]) for row in rows} - {"alembic_version"}


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


def test_seed_one_url_and_db_parts(project: Path, db: str) -> None:
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
    # A table and its index: two DDL statements, which MySQL commits one by one.
    assert "WARNING: this revision runs 2 DDL statements" in generated
    new = versions(project)[-1]
    assert "# REVIEW: this revision runs 2 DDL statements" in new.read_text(encoding="utf-8")
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


ORDER = """import enum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Status(enum.Enum):
    open = "open"
    shipped = "shipped"


class Order(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    status: Status = Field(sa_column=sa.Column(sa.Enum(Status), nullable=False))
    data: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
"""


@pytest.mark.usefixtures("clean_versions")
def test_native_enum_and_json_columns(project: Path, env: dict[str, str], db: str) -> None:
    model = project / "src" / "my_service" / "models" / "widget.py"  # removed after the test
    model.write_text(ORDER, encoding="utf-8")
    must(make(project, "migrate", env=env))
    must(make(project, "migration", "msg=add order", env=env))
    must(make(project, "migrate", env=env))
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))
    columns = sql(
        db,
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'order' ORDER BY ORDINAL_POSITION",
    )
    assert ("status", "enum('open','shipped')") in columns
    sql(db, """INSERT INTO `order` (status, data) VALUES ('open', '{"k": [1, 2]}')""")
    # A new enum value is a change `make check` sees and `make migration` writes.
    model.write_text(
        ORDER.replace('    shipped = "shipped"\n', '    shipped = "shipped"\n    lost = "lost"\n'),
        encoding="utf-8",
    )
    assert make(project, "check", env=env).returncode != 0
    must(make(project, "migration", "msg=order lost", env=env))
    must(make(project, "migrate", env=env))
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))
    must(make(project, "rollback", "steps=2", env=env))
    assert "order" not in tables(db)


SLOW = '''"""slow

Revision ID: ab00000000aa
Revises: @down@
"""

import sqlalchemy as sa
from alembic import op

revision = "ab00000000aa"
down_revision = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Longer than one GET_LOCK wait (1 s): waiters must keep waiting, not go ahead.
    op.execute("SELECT SLEEP(2)")
    op.create_table("slow", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("slow")
'''


@pytest.mark.usefixtures("clean_versions")
def test_eight_concurrent_migrates_leave_one_version_row(
    project: Path, env: dict[str, str], db: str
) -> None:
    head = re.findall(r'^revision: str = "(\w+)"', versions(project)[-1].read_text(), re.M)[0]
    planted = versions(project)[-1].with_name("20990101_0000_ab00000000aa_slow.py")
    planted.write_text(SLOW.replace("@down@", head), encoding="utf-8")
    started = time.monotonic()
    racers = [
        subprocess.Popen(
            ["make", "--no-print-directory", "migrate"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    elapsed = time.monotonic() - started
    codes = [racer.returncode for racer in racers]
    print(f"8 concurrent make migrate on MySQL: exit codes {codes}, {elapsed:.1f}s in all")
    assert codes == [0] * 8, "\n".join(outputs)
    assert version(db) == ["ab00000000aa"]
    # Each revision ran once, in whichever runner got the lock first.
    assert sum(output.count("Running upgrade") for output in outputs) == 2


@pytest.mark.usefixtures("clean_versions")
@pytest.mark.parametrize(
    ("failing", "committed"),
    [
        # A data statement, then a DDL statement that fails: MySQL committed the INSERT too
        # (DDL commits what came before it, even when it fails itself).
        (
            '    op.execute("INSERT INTO gadget (id) VALUES (1)")\n'
            '    op.add_column("no_such_table", sa.Column("x", sa.Integer()))',
            "CREATE TABLE gadget; CREATE INDEX ix_gadget_id ON gadget; INSERT INTO gadget.",
        ),
        # A data statement failing after the DDL: the DDL stays committed.
        (
            '    op.execute("INSERT INTO no_such_table (id) VALUES (1)")',
            "CREATE TABLE gadget; CREATE INDEX ix_gadget_id ON gadget.",
        ),
    ],
    ids=["ddl fails", "dml fails"],
)
def test_revision_failing_half_way_names_what_was_committed(
    project: Path, env: dict[str, str], db: str, failing: str, committed: str
) -> None:
    must(make(project, "migrate", env=env))
    before = version(db)
    planted = versions(project)[-1].with_name("20990101_0000_ab00000000ff_half_failing.py")
    body = HALF_FAILING.replace("@down@", before[0]).replace("@failing@", failing)
    planted.write_text(body, encoding="utf-8")
    failed = make(project, "migrate", env=env)
    assert failed.returncode != 0
    assert f"already committed: {committed}" in failed.stdout
    assert "version row was NOT advanced" in failed.stdout and before[0] in failed.stdout
    assert "make stamp rev=ab00000000ff" in failed.stdout
    assert version(db) == before
    assert tables(db) == {"item", "gadget"}


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("mysql://root:wrong-secret@{host}:{port}/{db}", "Access denied"),
        ("mysql://{auth}@{host}:{port}/no_such_db_here", "Unknown database"),
        ("mysql://{auth}@127.0.0.1:9/{db}", "Can't connect to MySQL server"),
        ("mysql+mysqldb://{auth}@{host}:{port}/{db}", "unsupported scheme"),
        ("not a url", "DATABASE_URL is not a valid URL"),
    ],
    ids=["wrong password", "unknown database", "unreachable", "bad scheme", "not a url"],
)
def test_bad_inputs_are_explained_without_the_password(
    project: Path, db: str, database_url: str, expected: str
) -> None:
    auth = USER + (f":{PASSWORD}" if PASSWORD else "")
    named = database_url.format(host=HOST, port=PORT, db=db, auth=auth)
    result = make(project, "migrate", env=clean_env(DATABASE_URL=named))
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout
    assert "wrong-secret" not in result.stdout
    assert "Traceback" not in result.stdout


def test_unknown_revision_is_explained(project: Path, env: dict[str, str]) -> None:
    result = make(project, "migrate", "rev=0123456789ab", env=env)
    assert result.returncode != 0
    assert "no revision file defines it" in result.stdout


def test_backup_restore_and_dbshell(project: Path, db: str) -> None:
    # A user with a password, so the option file carries one: never on the command line or output.
    user, secret = f"tmpl_{uuid.uuid4().hex[:8]}", f"s3cr{uuid.uuid4().hex[:8]}"
    sql("", f"CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}'")
    sql("", f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{secret}'")
    try:
        for host in ("%", "localhost"):
            sql("", f"GRANT ALL ON `{db}`.* TO '{user}'@'{host}'")
        env = clean_env(DATABASE_URL=f"mysql://{user}:{secret}@{HOST}:{PORT}/{db}")
        must(make(project, "migrate", env=env))
        sql(db, "INSERT INTO item (name) VALUES ('kept')")
        backup = must(make(project, "backup", env=env))
        assert secret not in backup
        dump = Path(re.findall(r"Backup written to (\S+)", backup)[0])
        assert dump.stat().st_mode & 0o777 == 0o600
        assert dump.parent.stat().st_mode & 0o777 == 0o700
        assert "dump" in dump.read_text(encoding="utf-8")[:200].lower()
        sql(db, "DROP TABLE item")
        restored = must(make(project, "restore", f"file={dump}", env=env))
        assert secret not in restored
        assert sql(db, "SELECT name FROM item") == [("kept",)]
        shell = must(make(project, "dbshell", "args=-N -e 'SELECT COUNT(*) FROM item'", env=env))
        assert shell.splitlines()[-1].strip() == "1"
        assert "1" in must(make(project, "psql", "args=-N -e 'SELECT 1'", env=env))
    finally:
        for host in ("%", "localhost"):
            sql("", f"DROP USER IF EXISTS '{user}'@'{host}'")


def test_lint_migrations_says_squawk_is_postgresql_only(project: Path) -> None:
    output = must(make(project, "lint-migrations"))
    assert "PostgreSQL SQL only" in output


def test_db_up_without_docker(project: Path, env: dict[str, str]) -> None:
    # This machine has no Docker engine: db-up checks the configured server instead.
    answered = make(project, "db-up", env=env)
    if "Docker" in answered.stdout and "running in Docker" in answered.stdout:
        pytest.skip("a Docker engine answers here: db-up started compose's MySQL")
    assert answered.returncode == 0 and "nothing to start" in answered.stdout
    nowhere = make(project, "db-up", env=clean_env(DATABASE_URL="mysql://root@127.0.0.1:9/x"))
    assert nowhere.returncode != 0
    assert "there is no embedded MySQL" in nowhere.stdout and "DATABASE_URL=" in nowhere.stdout


def test_ci_workflow_runs_against_a_mysql_service(project: Path) -> None:
    workflow = project / ".github" / "workflows" / "ci.yml"
    schema = [sys.executable, "-m", "check_jsonschema", "--builtin-schema"]
    must(run(project, *schema, "vendor.github-workflows", str(workflow)))
    text = workflow.read_text(encoding="utf-8")
    assert "image: mysql:8.4" in text and "TEST_DATABASE_URL: mysql://" in text
    assert "make db-up" not in text  # the service is the database; compose would clash on 3306


def test_generated_tests_pass(project: Path) -> None:
    result = make(project, "test", env=clean_env(TEST_DATABASE_URL=url("mysql")))
    assert result.returncode == 0, result.stdout
    assert "MySQL used:" in result.stdout and " passed" in result.stdout
    assert " skipped" not in result.stdout


ALTER_ITEM = '''"""alter item

Revision ID: ab00000000bb
Revises: @down@
"""

import sqlalchemy as sa
from alembic import op

revision = "ab00000000bb"
down_revision = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    @body@


def downgrade() -> None:
    pass
'''


def plant(project: Path, body: str) -> None:
    head = re.findall(r'^revision: str = "(\w+)"', versions(project)[-1].read_text(), re.M)[0]
    planted = versions(project)[-1].with_name("20990101_0000_ab00000000bb_alter_item.py")
    planted.write_text(ALTER_ITEM.replace("@down@", head).replace("@body@", body), "utf-8")


@pytest.mark.usefixtures("clean_versions")
def test_lock_wait_timeout_is_retried_then_explained(
    project: Path, env: dict[str, str], db: str
) -> None:
    must(make(project, "migrate", env=env))
    before = version(db)
    plant(project, 'op.add_column("item", sa.Column("price", sa.Integer()))')
    # Another session reads the table in an open transaction: it holds a metadata lock that the
    # ALTER waits for.
    blocker = pymysql.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=db)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM item")
        cursor.execute("SELECT CONNECTION_ID()")
        (blocker_id,) = cursor.fetchone() or (None,)
    bounded = {**env, "MIGRATION_LOCK_TIMEOUT": "1s", "MIGRATION_LOCK_RETRIES": "2"}
    try:
        failed = make(project, "migrate", env=bounded)
    finally:
        blocker.close()
    assert failed.returncode != 0
    assert "could not get its lock in 2 attempts" in failed.stdout, failed.stdout
    assert f"connection {blocker_id}" in failed.stdout
    assert "Nothing of it was applied" in failed.stdout
    assert version(db) == before
    # The blocker gone, the same command goes through.
    must(make(project, "migrate", env=bounded))
    assert version(db) == ["ab00000000bb"]


@pytest.mark.usefixtures("clean_versions")
def test_statement_timeout_bounds_a_statement(project: Path, env: dict[str, str], db: str) -> None:
    must(make(project, "migrate", env=env))
    before = version(db)
    plant(project, 'op.execute("SELECT SLEEP(5)")')
    started = time.monotonic()
    failed = make(project, "migrate", env={**env, "MIGRATION_STATEMENT_TIMEOUT": "1s"})
    assert failed.returncode != 0
    assert time.monotonic() - started < 4.5
    assert "Revision ab00000000bb" in failed.stdout and "failed" in failed.stdout
    assert version(db) == before


def test_generated_tests_fail_without_a_server(project: Path) -> None:
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


# No Docker engine runs here: a `docker` on PATH answers `docker info` and records every call.
DOCKER_SHIM = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
exit 0
"""


def test_db_up_uses_docker_compose_mysql_when_docker_answers(project: Path, tmp_path: Path) -> None:
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


def test_db_reset_sql_heads_and_aliases(project: Path, env: dict[str, str], db: str) -> None:
    must(make(project, "migrate", env=env))
    assert "Rev:" in must(make(project, "heads", env=env))
    assert "(head)" in must(make(project, "migration-current", env=env))
    assert "Rev:" in must(make(project, "migration-history", env=env))
    # The SQL for review needs no database (nothing listens on port 9).
    offline = clean_env(DATABASE_URL="mysql://root@127.0.0.1:9/nowhere")
    script = must(make(project, "sql", env=offline))
    assert "SET SESSION lock_wait_timeout" in script
    assert "CREATE TABLE item" in script and "AUTO_INCREMENT" in script
    refused = make(project, "db-reset", env={**env, "ENVIRONMENT": "production"})
    assert refused.returncode != 0 and "ENVIRONMENT is production" in refused.stdout
    assert tables(db) == {"item"}
    must(make(project, "db-reset", env=env))
    assert tables(db) == set() and sql(db, "SELECT 1") == [(1,)]
    must(make(project, "migration-stamp", "rev=base", env=env))
