"""The runner against a real MySQL or MariaDB as users meet it, without a render: replicas racing
a revision longer than one GET_LOCK wait, a metadata lock retried then explained, a statement
bounded by MIGRATION_STATEMENT_TIMEOUT, half-applied revisions named statement by statement,
connection failures explained, and native ENUM and JSON columns through autogenerate, `check`
and the stairway. Most runs go through `python -m <package>.migrations`, as a Job runs it, so
the exit status and the one-line message are what is asserted.
"""

import importlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import alembic
import demo_project
import pymysql
import pytest
from alembic import command
from alembic.util import CommandError
from mysql_queries import cli, tables
from queries import execute, heads, rows
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, Walk, on_connection


@pytest.fixture(scope="module")
def project() -> Project:
    """The demo chain (a1 create widget, b2 index, c3 add price), for revisions planted on it."""
    return demo_project.write("mysql", name="live")


@pytest.fixture
def planted(project: Project) -> Iterator[list[Path]]:
    """Revisions a test plants on the chain, removed after it."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def plant(planted: list[Path], project: Project, upgrade: str, downgrade: str = "    pass") -> None:
    """Revision d4 on top of c3."""
    planted.append(demo_project.add_revision(project.versions, "d4", "c3", upgrade, downgrade))


def session(url: URL) -> "pymysql.connections.Connection[pymysql.cursors.Cursor]":
    """Another session on the test database, as an app's connection is."""
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
    )


# -- the migration lock ---------------------------------------------------------------------

SLOW = """\
    # Each run writes a row (a DDL statement below commits it): the rows count the runs.
    op.execute("INSERT INTO widget (name) VALUES ('slow revision ran')")
    # Longer than one GET_LOCK wait (1 s): waiters must keep waiting, not go ahead.
    op.execute("SELECT SLEEP(2)")
    op.create_table("slow", sa.Column("id", sa.Integer, primary_key=True))"""


def test_eight_replicas_racing_a_slow_revision_apply_it_once(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """Eight replicas start at once, the last revision taking longer than one GET_LOCK wait:
    every replica exits 0, each revision ran once, one version row is left."""
    plant(planted, project, SLOW, '    op.drop_table("slow")')
    started = time.monotonic()
    outcomes = demo_project.race(project, database_url, 8)
    codes = [status for status, _ in outcomes]
    print(f"8 concurrent upgrades on MySQL: exit codes {codes}, {time.monotonic() - started:.1f}s")
    assert codes == [0] * 8, "\n".join(output for _, output in outcomes)
    assert rows(database_url, "SELECT version_num FROM alembic_version") == [("d4",)]
    ran = rows(database_url, "SELECT COUNT(*) FROM widget WHERE name = 'slow revision ran'")
    assert ran == [(1,)]


def test_a_lost_migration_lock_stops_the_run_before_the_next_revision(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """A proxy that resets the session between statements (ProxySQL, a pooler) drops its
    GET_LOCK: here revision d4 lets it go as such a reset does. A replica could now take the lock
    and migrate alongside, so the run stops before e5, naming the lost lock and the way round."""
    Migrations(project).upgrade(url=database_url)
    plant(planted, project, '    op.execute("DO RELEASE_ALL_LOCKS()")')
    planted.append(
        demo_project.add_revision(
            project.versions,
            "e5",
            "d4",
            '    op.create_table("after_the_loss", sa.Column("id", sa.Integer, primary_key=True))',
            '    op.drop_table("after_the_loss")',
        )
    )
    status, output = cli(project, database_url, "upgrade")
    assert status == 1, output
    assert "The migration lock is no longer held by this run (found out after revision d4" in (
        output
    ), output
    assert "MIGRATION_DATABASE_URL" in output, output
    assert heads(database_url) == {"d4"}
    assert "after_the_loss" not in tables(database_url)


# -- lock waits and statement timeouts ------------------------------------------------------


def test_lock_wait_timeout_is_retried_then_explained(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """An app's open transaction holds a metadata lock on widget: the ALTER waits at most
    MIGRATION_LOCK_TIMEOUT per attempt, is retried, then fails naming that session, and the
    same command goes through once the session ends."""
    Migrations(project).upgrade(url=database_url)
    plant(planted, project, '    op.add_column("widget", sa.Column("note", sa.String(20)))')
    blocker = session(database_url)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM widget")
        cursor.execute("SELECT CONNECTION_ID()")
        (blocker_id,) = cursor.fetchone() or (None,)
    bounded = {"MIGRATION_LOCK_TIMEOUT": "1s", "MIGRATION_LOCK_RETRIES": "2"}
    try:
        status, output = cli(project, database_url, "upgrade", **bounded)
    finally:
        blocker.close()
    assert status == 1, output
    assert "could not get its lock in 2 attempts" in output, output
    assert f"connection {blocker_id}" in output
    assert "Nothing of it was applied" in output
    assert heads(database_url) == {"c3"}
    # The blocker gone, the same command goes through.
    status, output = cli(project, database_url, "upgrade", **bounded)
    assert status == 0, output
    assert heads(database_url) == {"d4"}


def test_a_revision_whose_ddl_committed_is_not_retried(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """d4 creates a table (committed at once: MySQL's DDL commits itself), then its ALTER of
    widget times out behind an app's transaction. Trying d4 again would run its committed part a
    second time (a data statement twice; here a CREATE TABLE that fails on the table it made), so
    there is one attempt, however many MIGRATION_LOCK_RETRIES allows, and the message names the
    lock timeout and what stays committed."""
    Migrations(project).upgrade(url=database_url)
    plant(
        planted,
        project,
        '    op.create_table("gadget", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.add_column("widget", sa.Column("note", sa.String(20)))',
    )
    blocker = session(database_url)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM widget")
    bounded = {"MIGRATION_LOCK_TIMEOUT": "1s", "MIGRATION_LOCK_RETRIES": "5"}
    try:
        status, output = cli(project, database_url, "upgrade", **bounded)
    finally:
        blocker.close()
    assert status == 1, output
    assert "Retrying" not in output, output
    assert "Lock wait timeout exceeded" in output, output
    assert "these statements of the revision were already committed: CREATE TABLE gadget" in output
    assert heads(database_url) == {"c3"}
    assert "gadget" in tables(database_url)


def test_statement_timeout_bounds_a_statement(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """A 5 s statement under MIGRATION_STATEMENT_TIMEOUT=1s is stopped well before it ends."""
    Migrations(project).upgrade(url=database_url)
    plant(planted, project, '    op.execute("SELECT SLEEP(5)")')
    started = time.monotonic()
    status, output = cli(project, database_url, "upgrade", MIGRATION_STATEMENT_TIMEOUT="1s")
    assert status == 1, output
    assert time.monotonic() - started < 4.5
    assert "Revision d4" in output and "failed" in output, output
    assert heads(database_url) == {"c3"}


# -- signals ---------------------------------------------------------------------------------


def module_upgrade(project: Project) -> list[str]:
    """The module CLI's upgrade, as a Job runs it."""
    return [sys.executable, "-m", f"{project.package}.migrations", "upgrade"]


def runner_statement(url: URL, like: str) -> list[tuple[object, ...]]:
    """The sessions of the test database running a statement that starts with `like`."""
    return rows(
        url,
        "SELECT ID, STATE FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
        f"AND INFO LIKE '{like}%%' AND ID <> CONNECTION_ID()",
    )


@pytest.mark.parametrize("way", ["alembic", "module CLI"])
def test_sigterm_stops_the_statement_on_the_server(
    project: Project, database_url: URL, planted: list[Path], way: str
) -> None:
    """SIGTERM while the ALTER waits behind an app's transaction: the runner ends its statement
    on the server before it exits, so the ALTER does not run once the app lets go, the message
    says so, the lock is free and the same command then goes through."""
    Migrations(project).upgrade(url=database_url)
    add_note = '    op.add_column("widget", sa.Column("note", sa.String(20)))'
    plant(planted, project, add_note, '    op.drop_column("widget", "note")')
    blocker = session(database_url)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM widget")
    # `alembic upgrade` is what `make migrate` runs, the module CLI what a Job runs.
    ini = str(demo_project.alembic_ini(project))
    process = demo_project.started(
        project,
        [sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"]
        if way == "alembic"
        else module_upgrade(project),
        database_url,
        # One attempt waits 15 s: longer than the test, so only the signal ends it.
        MIGRATION_LOCK_TIMEOUT="60s",
    )
    try:
        deadline = time.monotonic() + 30
        while not runner_statement(database_url, "ALTER TABLE widget ADD"):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        # The app lets go: an ALTER left running on the server would go ahead now.
        blocker.commit()
        blocker.close()
    deadline = time.monotonic() + 10
    while runner_statement(database_url, "ALTER TABLE widget ADD") and time.monotonic() < deadline:
        time.sleep(0.05)
    columns = rows(
        database_url,
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'widget'",
    )
    assert ("note",) not in columns
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "Interrupted" in line]
    assert "Interrupted by SIGTERM: revision d4 (d4) was rolled back" in line, line
    assert "stays at c3" in line and "stopped on the server" in line, line
    assert heads(database_url) == {"c3"}
    # The lock went with the session: the next run gets it at once, and applies d4.
    status, output = cli(project, database_url, "upgrade", MIGRATION_LOCK_WAIT="3")
    assert status == 0, output
    assert heads(database_url) == {"d4"}


DIES_INSIDE = """\
    op.execute("INSERT INTO widget (name) VALUES ('once')")
    op.add_column("widget", sa.Column("note", sa.String(20)))
    # The runner dies here: the ALTER committed itself and the INSERT before it.
    op.execute("SELECT SLEEP(60)")"""


def test_a_replica_does_not_rerun_what_a_dead_runner_committed(
    project: Project, database_url: URL, planted: list[Path]
) -> None:
    """The runner is killed inside d4 (SIGKILL: an OOM kill, a lost node) after its ALTER
    committed; the server ends its session. The replica that takes the lock next stops, naming
    what d4 committed, instead of inserting the row again; once stamped, runs go through."""
    Migrations(project).upgrade(url=database_url)
    plant(planted, project, DIES_INSIDE, '    op.drop_column("widget", "note")')
    process = demo_project.started(project, module_upgrade(project), database_url)
    deadline = time.monotonic() + 30
    while not (running := runner_statement(database_url, "SELECT SLEEP")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()
    process.communicate()
    # The server notices the client gone at its own pace: the operator's KILL stands in for it.
    execute(database_url, f"KILL {running[0][0]}")
    while runner_statement(database_url, "SELECT SLEEP"):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    status, output = cli(project, database_url, "upgrade")
    assert status == 1, output
    assert (
        "A previous run stopped inside revision d4 (d4) (c3 -> d4, " in output
        and "it had committed INSERT INTO widget, and was running (so may have applied) ALTER "
        "TABLE widget ADD COLUMN note VARCHAR. The version row still says c3"
        in output
        and "make stamp rev=d4" in output
        and "make stamp rev=c3" in output
    ), output
    assert rows(database_url, "SELECT COUNT(*) FROM widget WHERE name = 'once'") == [(1,)]
    assert heads(database_url) == {"c3"}

    # Repaired by hand (d4's last statement changes nothing): stamped, the record is gone.
    alembic_run(project, database_url, "stamp", revision="d4")
    status, output = cli(project, database_url, "upgrade")
    assert status == 0, output
    assert "Nothing to apply: the database is at d4." in output
    assert rows(database_url, "SELECT COUNT(*) FROM alembic_steady_progress") == [(0,)]


SESSION_SETTINGS = (
    "SELECT @@SESSION.wait_timeout, @@SESSION.lock_wait_timeout, "
    "@@SESSION.innodb_lock_wait_timeout, @@SESSION.max_statement_time"
)


def test_the_session_goes_back_to_a_pool_with_its_own_timeouts(
    project: Project, database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's pooled engine (or a proxy) hands the session the runner used to the app next:
    with the server's timeouts, not the runner's."""
    module = importlib.import_module(f"{project.package}.migrations")
    timeouts = {"migration_lock_timeout": "3s", "migration_statement_timeout": "7s"}
    monkeypatch.setattr(module, "SETTINGS", replace(module.SETTINGS, **timeouts))
    # The session as the runner gives it back: a pooler or a pool keeps it for the next client
    # (NullPool then closes it, so nothing outlives the event loop the run had).
    engine = create_async_engine(database_url, poolclass=NullPool)
    released: list[tuple[object, ...]] = []

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(dbapi_connection: Any, record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(SESSION_SETTINGS)
        released.append(tuple(cursor.fetchone()))

    config = Migrations(project).alembic_config()
    config.attributes["connection"] = engine
    config.attributes["command"] = "upgrade"
    command.upgrade(config, "head")
    fresh = rows(database_url, SESSION_SETTINGS)
    assert released and set(released) == set(fresh), (released, fresh)
    assert heads(database_url) == {"c3"}


# -- failures explained ---------------------------------------------------------------------

GADGET = """\
    op.create_table("gadget", sa.Column("id", sa.Integer, primary_key=True))
    op.create_index("ix_gadget_id", "gadget", ["id"])
"""


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
    project: Project, database_url: URL, planted: list[Path], failing: str, committed: str
) -> None:
    Migrations(project).upgrade(url=database_url)
    plant(planted, project, GADGET + failing, '    op.drop_table("gadget")')
    status, output = cli(project, database_url, "upgrade")
    assert status == 1, output
    assert f"already committed: {committed}" in output, output
    assert "version row was NOT advanced" in output and "c3" in output
    assert "make stamp rev=d4" in output
    assert heads(database_url) == {"c3"}
    assert tables(database_url) == {"widget", "gadget"}
    # A rerun (a Job's retry) would repeat what was committed: it stops, naming it.
    status, output = cli(project, database_url, "upgrade")
    assert status == 1, output
    assert f"it had committed {committed.rstrip('.')}. The version row still says c3" in output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "wrong-secret"}, "Access denied"),
        ({"database": "no_such_db_here"}, "Unknown database"),
        ({"host": "127.0.0.1", "port": 9}, "Can't connect to MySQL server"),
    ],
    ids=["wrong password", "unknown database", "unreachable"],
)
def test_connection_failures_are_explained_without_the_password(
    project: Project, database_url: URL, change: dict[str, str | int], expected: str
) -> None:
    status, output = cli(project, database_url.set(**change), "upgrade")  # type: ignore[arg-type]
    assert status == 1, output
    assert expected in output, output
    assert "wrong-secret" not in output
    assert "Traceback" not in output


def test_unknown_revision_is_explained(project: Project, database_url: URL) -> None:
    status, output = cli(project, database_url, "upgrade", "0123456789ab")
    assert status == 1
    assert "no revision file defines it" in output, output


# -- native ENUM and JSON columns -----------------------------------------------------------

ORDER_MODELS = """
import enum

import sqlalchemy as sa


class Status(enum.Enum):
    open = "open"
    shipped = "shipped"
    lost = "lost"


metadata = sa.MetaData()
order = sa.Table(
    "order", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("status", sa.Enum(Status), nullable=False),
    sa.Column("data", sa.JSON, nullable=True),
)
"""

CREATE_ORDER = (
    "a1",
    '    op.create_table("order", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("status", sa.Enum("open", "shipped", name="status"), nullable=False), '
    'sa.Column("data", sa.JSON, nullable=True))',
    '    op.drop_table("order")',
)


def order_project(name: str, chain: demo_project.Chain) -> Project:
    """Models whose enum has a third value ("lost"); a chain that starts with two. With
    Alembic's plain revision template, so autogenerate can write revisions."""
    project = demo_project.write("mysql", name=name, chain=chain, models=ORDER_MODELS)
    template = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
    shutil.copy(template, project.migrations / "script.py.mako")
    return project


def status_type(url: URL) -> str:
    found = rows(
        url,
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'order' AND COLUMN_NAME = 'status'",
    )
    return str(found[0][0])


def alembic_run(project: Project, url: URL, name: str, **kwargs: object) -> None:
    """`alembic check` / `alembic revision --autogenerate` through the project's env.py."""
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = name
    getattr(command, name)(config, **kwargs)


def test_native_enum_and_json_columns_autogenerate_and_round_trip(
    database_url: URL, server_clients: Clients
) -> None:
    """A new enum value is drift `check` sees and autogenerate writes; the revision applied,
    nothing differs, the JSON row came through the table copy, and the chain walks base to head
    with every revision down and up again."""
    project = order_project("enums", [CREATE_ORDER])
    Migrations(project).upgrade(url=database_url)
    assert status_type(database_url) == "enum('open','shipped')"
    on_connection(
        database_url,
        lambda c: c.execute(
            text("""INSERT INTO `order` (status, data) VALUES ('open', '{"k": [1, 2]}')""")
        ),
    )
    with pytest.raises(CommandError, match="models differ from the migrations") as drift:
        alembic_run(project, database_url, "check")
    assert "'lost'" in str(drift.value)

    alembic_run(project, database_url, "revision", message="order lost", autogenerate=True)
    (written,) = set(project.versions.glob("*order_lost.py"))
    assert "'lost'" in written.read_text(encoding="utf-8")
    Migrations(project).upgrade(url=database_url)
    alembic_run(project, database_url, "check")  # no drift left: no exception
    assert status_type(database_url) == "enum('open','shipped','lost')"
    ((status, data),) = rows(database_url, "SELECT status, data FROM `order`")
    assert status == "open" and json.loads(str(data)) == {"k": [1, 2]}

    server_clients.empty(database_url)
    walked = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, walked, stairway=True)
    assert (walked.upgrade_failure, walked.stairway_failure) == (None, None)


def test_the_stairway_sees_an_enum_value_a_downgrade_leaves(database_url: URL) -> None:
    """A downgrade that forgets to take the new value out of a native enum fails the stairway,
    which names the revision and the column type it left."""
    add_lost = (
        "b2",
        '    op.alter_column("order", "status", existing_nullable=False, '
        'existing_type=sa.Enum("open", "shipped", name="status"), '
        'type_=sa.Enum("open", "shipped", "lost", name="status"))',
        "    pass",
    )
    project = order_project("enum_stairs", [CREATE_ORDER, add_lost])
    walked = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, walked, stairway=True)
    assert walked.upgrade_failure is None
    failure = walked.stairway_failure or ""
    assert failure.startswith("revision b2"), failure
    assert "enum('open','shipped','lost')" in failure, failure


def test_a_revision_file_accepts_its_stairway_finding_and_a_one_way_downgrade(
    database_url: URL,
) -> None:
    """The same enum value left by the downgrade, accepted in the revision's file; a later
    revision whose downgrade cannot run, marked one-way: the walk passes and lists both."""
    keep_lost = (
        "b2",
        "    # migration-tests: accept stairway: old releases may still write 'lost'\n"
        '    op.alter_column("order", "status", existing_nullable=False, '
        'existing_type=sa.Enum("open", "shipped", name="status"), '
        'type_=sa.Enum("open", "shipped", "lost", name="status"))',
        "    pass",
    )
    one_way = (
        "c3",
        "    # migration-tests: one-way: the rows it deletes are gone\n"
        "    op.execute(\"DELETE FROM `order` WHERE status = 'lost'\")",
        '    raise NotImplementedError("deleted rows cannot come back")',
    )
    project = order_project("enum_accepted", [CREATE_ORDER, keep_lost, one_way])
    walked = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, walked, stairway=True)
    assert (walked.upgrade_failure, walked.stairway_failure) == (None, None)
    accepted = "\n".join(walked.accepted)
    assert len(walked.accepted) == 2, accepted
    assert "revision b2" in accepted and "enum('open','shipped','lost')" in accepted
    assert "(accepted: old releases may still write 'lost')" in accepted
    assert "revision c3" in accepted and "one-way, not taken down (the rows it deletes" in accepted
