"""The chores on a real MySQL or MariaDB, without a render: backup and restore through the mysql
clients with the password kept private, the shell, the offline SQL for review, and the
development database (reset, and start where MySQL has no embedded server). Each runs as
`python -m <package>.migrations <chore>`, the command the Make targets call.
"""

import io
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import demo_project
import pytest
from alembic import command
from mysql_queries import cli, tables
from queries import execute, heads, rows
from sqlalchemy import text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection

CHAIN = demo_project.CHAIN["mysql"]


@pytest.fixture(scope="module")
def project() -> Project:
    """The demo chain: widget (id, name, price) and its index."""
    return demo_project.write("mysql", name="tools")


@pytest.fixture
def user_url(database_url: URL) -> Iterator[URL]:
    """The test database as a user with a password (all rights on it, none elsewhere), so the
    clients' option file carries one: it must reach neither a command line nor the output."""
    user, secret = f"steady_{uuid.uuid4().hex[:8]}", f"s3cr{uuid.uuid4().hex[:8]}"
    hosts = ("%", "localhost")
    admin = [f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{secret}'" for host in hosts]
    admin += [f"GRANT ALL ON `{database_url.database}`.* TO '{user}'@'{host}'" for host in hosts]
    on_connection(database_url, lambda c: [c.execute(text(s)) for s in admin])
    try:
        yield database_url.set(username=user, password=secret)
    finally:
        drops = [f"DROP USER IF EXISTS '{user}'@'{host}'" for host in hosts]
        on_connection(database_url, lambda c: [c.execute(text(s)) for s in drops])


@pytest.fixture
def folder() -> Iterator[Path]:
    """A private temporary folder (not pytest's tmp_path, whose base folder pytest makes 0700,
    locking out an embedded server that other tiers run from below it)."""
    with tempfile.TemporaryDirectory(prefix="steady-backups-") as name:
        yield Path(name)


def test_backup_restore_and_shell_keep_the_password_private(
    project: Project, user_url: URL, folder: Path
) -> None:
    secret = str(user_url.password)
    Migrations(project).upgrade(url=user_url)
    on_connection(user_url, lambda c: c.execute(text("INSERT INTO widget (name) VALUES ('kept')")))

    status, backup = cli(project, user_url, "backup", str(folder / "backups"))
    assert status == 0, backup
    assert secret not in backup
    dump = Path(re.findall(r"Backup written to (\S+)", backup)[0])
    assert dump.stat().st_mode & 0o777 == 0o600
    assert dump.parent.stat().st_mode & 0o777 == 0o700
    assert "dump" in dump.read_text(encoding="utf-8")[:200].lower()

    on_connection(user_url, lambda c: c.execute(text("DROP TABLE widget")))
    status, restored = cli(project, user_url, "restore", str(dump))
    assert status == 0, restored
    assert secret not in restored
    assert rows(user_url, "SELECT name FROM widget") == [("kept",)]

    status, shell = cli(project, user_url, "shell", "-N", "-e", "SELECT COUNT(*) FROM widget")
    assert status == 0, shell
    assert shell.splitlines()[-1].strip() == "1"
    assert secret not in shell


# A revision after the demo chain: a table referring to widget, a view on it, an index on widget.
LATER = (
    "d4",
    '    op.create_table("gadget", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("widget_id", sa.Integer, sa.ForeignKey("widget.id")))\n'
    '    op.execute("CREATE VIEW gadget_names AS SELECT gadget.id, widget.name FROM gadget '
    'JOIN widget ON widget.id = gadget.widget_id")\n'
    '    op.create_index("ix_widget_price", "widget", ["price"])',
    '    op.drop_index("ix_widget_price", table_name="widget")\n'
    '    op.execute("DROP VIEW gadget_names")\n'
    '    op.drop_table("gadget")',
)


@pytest.fixture(scope="module")
def later_project() -> Project:
    """The demo chain and LATER after it."""
    return demo_project.write("mysql", name="restore_later", chain=[*CHAIN, LATER])


@pytest.fixture
def past_the_dump(later_project: Project, database_url: URL, folder: Path) -> tuple[URL, Path]:
    """A database backed up at c3 (one widget, 'kept'), then migrated on to d4 (a gadget, the
    widget renamed)."""
    migrations = Migrations(later_project)
    migrations.upgrade("c3", url=database_url)
    execute(database_url, "INSERT INTO widget (id, name) VALUES (1, 'kept')")
    status, output = cli(later_project, database_url, "backup", str(folder))
    assert status == 0, output
    (dump,) = folder.glob("*.sql")
    migrations.upgrade(url=database_url)
    execute(
        database_url,
        "INSERT INTO gadget VALUES (1, 1)",
        "UPDATE widget SET name = 'changed since'",
    )
    assert tables(database_url) == {"widget", "gadget", "gadget_names"}
    return database_url, dump


def test_a_restore_takes_away_what_later_migrations_made(
    later_project: Project, past_the_dump: tuple[URL, Path]
) -> None:
    url, dump = past_the_dump
    status, restored = cli(later_project, url, "restore", str(dump))
    assert status == 0, restored
    assert f"Restored {dump} into {url.database}" in restored
    assert tables(url) == {"widget"}
    assert heads(url) == {"c3"}
    assert rows(url, "SELECT id, name FROM widget") == [(1, "kept")]
    indexes = rows(
        url,
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'widget'",
    )
    assert {name for (name,) in indexes} == {"PRIMARY", "ix_widget_name"}
    # From the dump's revision on, as if the later revision had never run.
    Migrations(later_project).upgrade(url=url)
    assert heads(url) == {"d4"}
    assert rows(url, "SELECT COUNT(*) FROM gadget") == [(0,)]


def test_a_dump_cut_short_is_refused_before_anything_is_dropped(
    later_project: Project, past_the_dump: tuple[URL, Path]
) -> None:
    """MySQL cannot roll a half-loaded dump back: a file without mysqldump's last line is
    refused before the restore drops anything."""
    url, dump = past_the_dump
    whole = dump.read_bytes()
    cut = dump.with_name("cut.sql")
    cut.write_bytes(whole[: whole.index(b"INSERT INTO")])
    status, refused = cli(later_project, url, "restore", str(cut))
    assert status == 1, refused
    assert f"Nothing restored: {cut} is not a complete mysqldump file" in refused, refused
    assert tables(url) == {"widget", "gadget", "gadget_names"}
    assert heads(url) == {"d4"}
    assert rows(url, "SELECT name FROM widget") == [("changed since",)]


def client_command_line(marker: str, deadline: float) -> list[str]:
    """The command line of the running mysql client whose arguments include `marker`, read
    from /proc as `ps` shows it to every user of the machine; [] if none appeared in time."""
    while time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().decode(errors="replace").split("\0")
            except OSError:  # the process ended meanwhile
                continue
            if marker in args and any(a.startswith("--defaults-extra-file=") for a in args):
                return args
        time.sleep(0.02)
    return []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc")
def test_the_client_gets_the_password_in_a_private_option_file(
    project: Project, user_url: URL
) -> None:
    """While the shell runs, its command line names an option file (mode 0600) and no password;
    the file is gone once the shell ends."""
    secret = str(user_url.password)
    marker = f"SELECT SLEEP(1) AS {user_url.username}"
    running = subprocess.Popen(
        [sys.executable, "-m", f"{project.package}.migrations", "shell", "-N", "-e", marker],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": user_url.render_as_string(hide_password=False),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        args = client_command_line(marker, time.monotonic() + 10)
        assert args, "the mysql client was never seen running"
        named = next(a for a in args if a.startswith("--defaults-extra-file="))
        option_file = Path(named.removeprefix("--defaults-extra-file="))
        mode = option_file.stat().st_mode & 0o777
    finally:
        output = running.communicate(timeout=30)[0]
    assert running.returncode == 0, output
    assert not any(secret in arg for arg in args), args
    assert mode == 0o600
    assert secret not in output and not option_file.exists()


def test_offline_sql_carries_the_lock_wait_timeout(project: Project) -> None:
    """The SQL for review needs no database (nothing listens on port 9), and carries the bound
    an online run sets."""
    nowhere = URL.create("mysql+aiomysql", "root", host="127.0.0.1", port=9, database="nowhere")
    config = Migrations(project).alembic_config(url=nowhere)
    config.output_buffer = io.StringIO()
    config.attributes["command"] = "upgrade"
    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()
    assert "SET SESSION lock_wait_timeout" in script
    assert "CREATE TABLE widget" in script and "AUTO_INCREMENT" in script


def test_db_reset_refuses_in_production_then_recreates_the_database(
    project: Project, database_url: URL
) -> None:
    Migrations(project).upgrade(url=database_url)
    status, refused = cli(project, database_url, "devdb", "reset", ENVIRONMENT="production")
    assert status == 1 and "ENVIRONMENT is production" in refused, refused
    assert tables(database_url) == {"widget"}
    status, reset = cli(project, database_url, "devdb", "reset", ENVIRONMENT="development")
    assert status == 0, reset
    assert tables(database_url) == set() and rows(database_url, "SELECT 1") == [(1,)]


def test_db_up_without_docker_checks_the_configured_server(
    project: Project, database_url: URL
) -> None:
    """MySQL has no embedded server: `devdb start` (make db-up without Docker) checks that the
    configured server answers, else says how to point at one."""
    status, answered = cli(project, database_url, "devdb", "start")
    assert status == 0 and "nothing to start" in answered, answered
    status, nowhere = cli(project, database_url.set(port=9), "devdb", "start")
    assert status == 1
    assert "there is no embedded MySQL" in nowhere and "DATABASE_URL=" in nowhere, nowhere
