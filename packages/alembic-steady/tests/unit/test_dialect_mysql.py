"""dialects/mysql.py, the parts that need no server: the lock name, lock_wait_timeout seconds,
DDL accounting, error numbers, messages, and the SQL it sends (on a recording connection)."""

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from support import (
    FakeAsyncConnection,
    FakeConnection,
    PyMySQLError,
    Settings,
    make_project,
    mysql_error,
    run_statement,
    wrapped,
)

from alembic_steady import MAKE
from alembic_steady.dialects import mysql, mysql_progress
from alembic_steady.dialects.base import LockLost
from alembic_steady.dialects.mysql import (
    MySQL,
    committed_objects,
    errno,
    is_ddl,
    lock_name,
    name_statement,
    timeout_seconds,
)
from alembic_steady.runner.progress import Progress
from alembic_steady.runner.retries import RetryPolicy

MY = MySQL()

# -- the lock name -------------------------------------------------------------------------


def test_lock_name_is_per_package_and_database() -> None:
    assert lock_name("shop", "shop_prod") == "alembic:shop:shop_prod"
    assert lock_name("shop", None) == "alembic:shop:"
    assert lock_name("shop", "a") != lock_name("shop", "b") != lock_name("billing", "b")


def test_a_name_of_64_characters_is_kept() -> None:
    database = "d" * (64 - len("alembic:shop:"))
    assert lock_name("shop", database) == f"alembic:shop:{database}"


def test_a_longer_name_is_hashed_to_64_characters() -> None:
    database = "d" * (65 - len("alembic:shop:"))
    name = lock_name("shop", database)
    full = f"alembic:shop:{database}"
    assert name == "alembic:" + hashlib.sha256(full.encode()).hexdigest()[:56]
    assert len(name) == 64
    assert lock_name("shop", database + "x") != name
    assert lock_name("shop", database) == name


# -- lock_wait_timeout in whole seconds ----------------------------------------------------


@pytest.mark.parametrize(
    ("limit_ms", "attempt", "seconds"),
    [
        (1000, 1, 1),  # 250 ms rounds up to the least MySQL can say
        (1000, 0, 1),
        (8000, 1, 2),
        (8000, 2, 4),
        (8000, 3, 8),
        (8000, 9, 8),
        (10_000, 1, 3),  # 2.5 s rounds up
        (1500, 0, 2),
        (1, 1, 1),
    ],
)
def test_timeout_seconds_are_whole_and_at_least_one(
    limit_ms: float, attempt: int, seconds: int
) -> None:
    assert timeout_seconds(RetryPolicy(limit_ms, 30, 300), attempt) == seconds


@pytest.mark.parametrize("attempt", [0, 1, 5])
def test_no_limit_is_mysqls_largest_timeout(attempt: int) -> None:
    assert timeout_seconds(RetryPolicy(0, 30, 300), attempt) == 31_536_000


# -- DDL accounting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "ddl"),
    [
        ("CREATE TABLE widget (id INT)", True),
        ("  alter table widget add column price int", True),
        ("DROP INDEX ix ON widget", True),
        ("RENAME TABLE a TO b", True),
        ("TRUNCATE widget", True),
        ("\nCreate INDEX ix ON widget (a)", True),
        ("INSERT INTO widget (id) VALUES (1)", False),
        ("UPDATE widget SET a = 1", False),
        ("SELECT 'CREATE TABLE x'", False),
        ("CREATED_AT", False),
        ("ALTERNATIVE", False),
    ],
)
def test_is_ddl(sql: str, ddl: bool) -> None:
    assert is_ddl(sql) is ddl


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("CREATE TABLE `widget` (\n  id INT NOT NULL\n)", "CREATE TABLE widget"),
        (
            "ALTER TABLE widget ADD COLUMN price INTEGER",
            "ALTER TABLE widget ADD COLUMN price INTEGER",
        ),
        ("  CREATE INDEX ix_w ON widget (a, b)", "CREATE INDEX ix_w ON widget"),
        ("DROP TABLE widget;", "DROP TABLE widget"),
        ("INSERT INTO widget (id) VALUES (1)", "INSERT INTO widget"),
    ],
)
def test_name_statement_is_the_statement_up_to_its_column_list(sql: str, name: str) -> None:
    assert name_statement(sql) == name


def test_a_long_statement_name_is_shortened_to_100_characters() -> None:
    name = name_statement("ALTER TABLE widget " + "ADD COLUMN c INT, " * 20)
    assert len(name) == 100 and name.endswith("...")


def running(*statements: str, committed: int = 0) -> Progress:
    progress = Progress()
    progress.start(("a",), "b0b0c0d0 (add widget)")
    progress.statements.extend(statements)
    progress.committed = committed
    return progress


def test_committed_objects_name_the_committed_statements_only() -> None:
    progress = running(
        "CREATE TABLE widget (id INT)", "CREATE INDEX ix ON widget (id)", committed=1
    )
    assert committed_objects(progress) == ["CREATE TABLE widget"]


def no_retry(attempt: Callable[[], Any], where: str) -> Any:
    raise AssertionError("MySQL never retries a statement alone")


def test_dml_runs_in_the_revisions_transaction() -> None:
    progress = running()
    assert (
        run_statement(
            MY, FakeConnection(), "INSERT INTO t (a) VALUES (1)", lambda: "ran", progress, no_retry
        )
        == "ran"
    )
    assert progress.statements == ["INSERT INTO t (a) VALUES (1)"] and progress.committed == 0


def test_ddl_commits_what_ran_before_it_and_itself() -> None:
    progress = running("INSERT INTO t (a) VALUES (1)")
    committed_while_running: list[int] = []

    def run() -> str:
        committed_while_running.append(progress.committed)
        return "ran"

    assert (
        run_statement(MY, FakeConnection(), "ALTER TABLE t ADD b INT", run, progress, no_retry)
        == "ran"
    )
    assert committed_while_running == [1]
    assert progress.committed == 2


def test_a_failed_ddl_leaves_only_what_ran_before_it_committed() -> None:
    progress = running("CREATE TABLE t (a INT)")

    def run() -> None:
        raise mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction")

    with pytest.raises(OperationalError, match="Lock wait timeout"):
        run_statement(MY, FakeConnection(), "ALTER TABLE t ADD b INT", run, progress, no_retry)
    assert progress.committed == 1


def test_may_retry_only_while_nothing_is_committed() -> None:
    assert MY.may_retry(running("ALTER TABLE t ADD b INT"))
    assert not MY.may_retry(
        running("CREATE TABLE t (a INT)", "ALTER TABLE t ADD b INT", committed=1)
    )


# -- error numbers -------------------------------------------------------------------------


def test_errno_is_pymysqls_first_argument() -> None:
    assert errno(mysql_error(1205)) == 1205


@pytest.mark.parametrize(
    "error",
    [
        PyMySQLError(1205, "not wrapped by SQLAlchemy"),
        wrapped(PyMySQLError("1205", "a string")),
        wrapped(PyMySQLError()),
        wrapped(ValueError("plain")),
        ValueError(1205),
    ],
)
def test_errno_is_none_without_one(error: BaseException) -> None:
    assert errno(error) is None


def test_a_lock_wait_timeout_is_1205() -> None:
    assert MY.is_lock_timeout(mysql_error(1205, "Lock wait timeout exceeded"))
    assert not MY.is_lock_timeout(mysql_error(1213, "Deadlock found"))
    assert not MY.is_lock_timeout(ValueError("1205"))


@pytest.mark.parametrize("number", [2006, 2013, 1927, 1053, 2002, 2003])
def test_lost_connection_by_number(number: int) -> None:
    assert MY.lost_connection(mysql_error(number))


def test_lost_connection_through_the_chain_or_otherwise() -> None:
    try:
        try:
            raise mysql_error(2013, "Lost connection to MySQL server during query")
        except Exception as inner:
            raise RuntimeError("while running the revision") from inner
    except RuntimeError as outer:
        assert MY.lost_connection(outer)
    assert MY.lost_connection(wrapped(ValueError("gone"), invalidated=True))
    assert MY.lost_connection(ConnectionResetError())
    assert not MY.lost_connection(mysql_error(1205))
    assert not MY.lost_connection(ValueError("connection is closed"))


@pytest.mark.parametrize(("number", "read_only"), [(1290, True), (1792, True), (1205, False)])
def test_read_only_by_number(number: int, read_only: bool) -> None:
    assert MY.read_only(mysql_error(number)) is read_only


def test_first_line_in_pymysqls_format() -> None:
    error = mysql_error(1146, "Table 'shop.nope' doesn't exist")
    assert MY.first_line(error) == "PyMySQLError 1146: Table 'shop.nope' doesn't exist"


def test_first_line_of_other_errors() -> None:
    assert MY.first_line(wrapped(ValueError("bad\nsecond"))) == "OperationalError: bad"
    assert MY.first_line(ValueError("  plain  ")) == "ValueError: plain"
    assert MY.first_line(TimeoutError()) == "TimeoutError"


# -- where a failed revision leaves the database -------------------------------------------


def test_where_between_revisions() -> None:
    assert MY.where(Progress(at=()), MAKE) == "The database's version stays at base."


def test_where_nothing_was_committed() -> None:
    assert MY.where(running("ALTER TABLE t ADD b INT"), MAKE) == (
        "Nothing of it was applied; the database's version stays at a."
    )


def test_where_ddl_was_committed_names_it_and_the_stamp_command() -> None:
    progress = running(
        "CREATE TABLE `widget` (id INT)",
        "CREATE INDEX ix ON widget (id)",
        "ALTER TABLE widget ADD b INT",
        committed=2,
    )
    where = MY.where(progress, MAKE)
    assert where == (
        "MySQL commits each DDL statement on its own, and these statements of the revision were "
        "already committed: CREATE TABLE widget; CREATE INDEX ix ON widget. The version row was "
        "NOT advanced: the database's version stays at a. To recover, either finish the revision "
        "by hand (run its remaining statements) and `make stamp rev=b0b0c0d0`, or undo what was "
        "committed (e.g. DROP the objects above) and `make stamp rev=a`: until then make migrate "
        "refuses to run the revision again. Keep one DDL statement per revision on MySQL to "
        "avoid this."
    )


def test_where_uses_the_given_command_words() -> None:
    words = make_project(package="shop").module_commands
    where = MY.where(running("CREATE TABLE t (a INT)", committed=1), words)
    assert "until then python -m shop.migrations upgrade refuses" in where


# -- connecting and the SQL it sends -------------------------------------------------------


def test_connect_args_bound_the_connection_and_name_the_program() -> None:
    assert MY.connect_args(Settings(db_connect_timeout=4.0), "shop migrations") == {
        "connect_timeout": 4.0,
        "program_name": "shop migrations",
    }


def test_offline_preamble_bounds_lock_waits_with_the_whole_limit() -> None:
    assert MY.offline_preamble(Settings(), RetryPolicy(3000, 30, 300)) == [
        "SET SESSION lock_wait_timeout = 3"
    ]
    assert MY.offline_preamble(Settings(), RetryPolicy(0, 30, 300)) == [
        "SET SESSION lock_wait_timeout = 31536000"
    ]


@pytest.mark.parametrize(("attempt", "seconds"), [(1, 2), (2, 4), (3, 8), (0, 8)])
def test_set_lock_timeout_bounds_metadata_and_row_locks(attempt: int, seconds: int) -> None:
    connection = FakeConnection()
    assert MY.set_lock_timeout(connection, RetryPolicy(8000, 30, 300), attempt) == f"{seconds}s"
    assert connection.sql == [
        (
            "SET SESSION lock_wait_timeout = :s, innodb_lock_wait_timeout = :s",
            {"s": seconds},
        )
    ]


@pytest.mark.parametrize(
    ("version", "sql", "params"),
    [
        ("10.11.6-MariaDB", "SET SESSION max_statement_time = :s", {"s": 90.0}),
        ("8.4.3", "SET SESSION max_execution_time = :ms", {"ms": 90000}),
    ],
)
def test_set_statement_timeout_per_server(version: str, sql: str, params: dict[str, Any]) -> None:
    connection = FakeConnection(results=[[(version,)]])
    MY.set_statement_timeout(connection, Settings(migration_statement_timeout="90s"))
    assert connection.sql[1] == (sql, params)
    assert connection.log[-1] == "commit"


URL_WITH_PASSWORD = URL.create("mysql+aiomysql", "app", "s3cret-pw", "db.internal", 3306, "shop")


@pytest.mark.parametrize(
    ("number", "fix"),
    [
        (1045, "Check the user and password in DATABASE_URL or DB_USER/DB_PASSWORD"),
        (1049, "Create it (CREATE DATABASE `shop`"),
        (1040, "Its max_connections are used up"),
        (2003, "that the server runs (make db-up)"),
    ],
)
def test_connect_failure_names_the_fix_without_the_password(number: int, fix: str) -> None:
    message = str(
        MY.connect_failure(mysql_error(number, "refused"), URL_WITH_PASSWORD, Settings(), MAKE)
    )
    assert message.startswith(
        f"Cannot connect to MySQL (database shop on db.internal:3306 as app): PyMySQLError "
        f"{number}: refused. "
    )
    assert fix in message
    assert "s3cret-pw" not in message


def test_connect_failure_messages_in_full() -> None:
    def message(number: int) -> str:
        error = mysql_error(number, "refused")
        return str(MY.connect_failure(error, URL_WITH_PASSWORD, Settings(), MAKE))

    start = "Cannot connect to MySQL (database shop on db.internal:3306 as app): PyMySQLError"
    end = ", then run again. Run with VERBOSE=1 (alembic --raiseerr) for the full traceback."
    assert message(1045) == (
        f"{start} 1045: refused. Check the user and password in DATABASE_URL or "
        f"DB_USER/DB_PASSWORD{end}"
    )
    assert message(1049) == (
        f"{start} 1049: refused. Create it (CREATE DATABASE `shop`, or make db-reset in "
        f"development), or fix the name in DATABASE_URL or DB_NAME{end}"
    )
    assert message(1203) == (
        f"{start} 1203: refused. Its max_connections are used up; a migration run needs one "
        f"connection. Free connections or raise max_connections{end}"
    )
    assert message(2003) == (
        f"{start} 2003: refused. Check DATABASE_URL or DB_* (or MIGRATION_DATABASE_URL; "
        f"environment or .env) and that the server runs (make db-up){end}"
    )


def test_a_connect_without_an_answer_names_the_timeout() -> None:
    message = str(
        MY.connect_failure(
            TimeoutError(), URL_WITH_PASSWORD, Settings(db_connect_timeout=2.5), MAKE
        )
    )
    assert message.startswith(
        "Cannot connect to MySQL (database shop on db.internal:3306 as app): no answer within "
        "2.5s. Check DATABASE_URL"
    )


def test_errno_reads_only_sqlalchemys_wrapped_driver_errors() -> None:
    class Carrier(Exception):
        orig = PyMySQLError(1205, "not SQLAlchemy's")

    assert errno(Carrier()) is None
    assert errno(OperationalError("SELECT 1", {}, None)) is None


@pytest.mark.parametrize(("length", "kept"), [(99, True), (100, True), (101, False)])
def test_a_statement_name_of_100_characters_is_kept_whole(length: int, kept: bool) -> None:
    sql = "DROP TABLE " + "w" * (length - len("DROP TABLE "))
    assert name_statement(sql) == (sql if kept else sql[:97] + "...")


@pytest.mark.parametrize(("limit_ms", "seconds"), [(2001, 3), (2000, 2), (4004, 5)])
def test_timeout_seconds_round_up_any_fraction_of_a_second(limit_ms: int, seconds: int) -> None:
    assert timeout_seconds(RetryPolicy(limit_ms, 30, 300), 0) == seconds


def test_set_statement_timeout_asks_the_servers_version_first() -> None:
    connection = FakeConnection(results=[[("8.0.36",)]])
    MySQL().set_statement_timeout(connection, Settings(migration_statement_timeout="2s"))
    assert connection.sql[0] == ("SELECT VERSION()", None)


def test_a_statement_timeout_that_is_no_duration_is_named() -> None:
    connection = FakeConnection(results=[[("8.0.36",)]])
    with pytest.raises(CommandError, match=r"MIGRATION_STATEMENT_TIMEOUT: 'soon' is not a"):
        MySQL().set_statement_timeout(connection, Settings(migration_statement_timeout="soon"))


@pytest.mark.parametrize(
    ("version", "reset"),
    [
        (None, ""),
        ("10.11.6-MariaDB", ", SESSION max_statement_time = DEFAULT"),
        ("8.4.3", ", SESSION max_execution_time = DEFAULT"),
    ],
)
def test_release_lock_gives_the_session_back_with_the_servers_timeouts(
    version: str | None, reset: str
) -> None:
    my = MySQL()
    if version is not None:
        my.set_statement_timeout(FakeConnection(results=[[(version,)]]), Settings())
    connection = FakeConnection(results=[[], [("shop",)]])
    asyncio.run(my.release_lock(FakeAsyncConnection(connection), make_project(package="app")))
    assert connection.log[0] == "rollback" and connection.log[-1] == "commit"
    assert connection.sql == [
        (
            "SET SESSION wait_timeout = DEFAULT, SESSION lock_wait_timeout = DEFAULT, "
            f"SESSION innodb_lock_wait_timeout = DEFAULT{reset}",
            None,
        ),
        ("SELECT DATABASE()", None),
        ("SELECT RELEASE_LOCK(:name)", {"name": "alembic:app:shop"}),
    ]


# -- the record of a revision a run is inside of (mysql_progress) --------------------------


def test_the_first_ddl_creates_the_record_table_and_each_ddl_records_before_it_runs() -> None:
    my = MySQL()
    connection = FakeConnection()
    progress = running()
    progress.to = ("b0b0c0d0",)
    seen: list[int] = []

    def run() -> None:
        seen.append(len(connection.sql))

    run_statement(my, connection, "CREATE TABLE `widget` (id INT)", run, progress, no_retry)
    run_statement(my, connection, "INSERT INTO widget (id) VALUES (1)", run, progress, no_retry)
    run_statement(my, connection, "CREATE INDEX ix ON widget (id)", run, progress, no_retry)
    statements = [sql.split(" (")[0] for sql, _ in connection.sql]
    assert statements == [
        "CREATE TABLE IF NOT EXISTS alembic_steady_progress",
        "INSERT INTO alembic_steady_progress",
        "INSERT INTO alembic_steady_progress",
    ]
    assert seen == [2, 2, 3]  # each record is written before its statement runs
    assert [params for _, params in connection.sql[1:]] == [
        {
            "revision": "b0b0c0d0 (add widget)",
            "from_revisions": "a",
            "to_revisions": "b0b0c0d0",
            "committed": "",
            "running": "CREATE TABLE widget",
        },
        {
            "revision": "b0b0c0d0 (add widget)",
            "from_revisions": "a",
            "to_revisions": "b0b0c0d0",
            "committed": "CREATE TABLE widget; INSERT INTO widget",
            "running": "CREATE INDEX ix ON widget",
        },
    ]


def test_the_records_key_is_the_revision_cut_to_its_column() -> None:
    connection = FakeConnection()
    progress = Progress()
    progress.start((), "r" * 300)
    mysql_progress.before_ddl(connection, progress, [], "CREATE TABLE t")
    assert connection.sql[0][1] == {
        "revision": "r" * 255,
        "from_revisions": "base",
        "to_revisions": "base",
        "committed": "",
        "running": "CREATE TABLE t",
    }


def test_the_records_key_outside_a_revision_is_empty() -> None:
    connection = FakeConnection()
    mysql_progress.done(connection, Progress())
    assert connection.sql == [
        ("DELETE FROM alembic_steady_progress WHERE revision = :revision", {"revision": ""})
    ]


def test_create_makes_the_record_table_beside_alembic_version() -> None:
    connection = FakeConnection()
    mysql_progress.create(connection)
    assert connection.sql == [
        (
            "CREATE TABLE IF NOT EXISTS alembic_steady_progress (revision VARCHAR(255) NOT NULL "
            "PRIMARY KEY, from_revisions VARCHAR(255) NOT NULL, to_revisions VARCHAR(255) NOT "
            "NULL, committed TEXT NOT NULL, running TEXT NOT NULL, updated_at DATETIME NOT NULL)",
            None,
        )
    ]


@pytest.mark.parametrize(("count", "found"), [(0, False), (1, True)])
def test_exists_asks_information_schema(count: int, found: bool) -> None:
    connection = FakeConnection(results=[[(count,)]])
    assert mysql_progress.exists(connection) is found
    assert connection.sql == [
        (
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :table",
            {"table": "alembic_steady_progress"},
        )
    ]


def test_done_deletes_the_revisions_record() -> None:
    connection = FakeConnection()
    mysql_progress.done(connection, running())
    assert connection.sql == [
        (
            "DELETE FROM alembic_steady_progress WHERE revision = :revision",
            {"revision": "b0b0c0d0 (add widget)"},
        )
    ]


def test_settle_keeps_a_record_of_what_was_committed() -> None:
    connection = FakeConnection()
    mysql_progress.settle(connection, running(), ["CREATE TABLE widget"])
    assert connection.log == ["rollback", "execute", "commit"]
    sql, params = connection.sql[0]
    assert sql.startswith("INSERT INTO alembic_steady_progress")
    assert params is not None
    assert (params["committed"], params["running"]) == ("CREATE TABLE widget", "")


def test_settle_deletes_the_record_when_nothing_was_committed() -> None:
    connection = FakeConnection()
    mysql_progress.settle(connection, running(), [])
    assert connection.log == ["rollback", "execute", "commit"]
    assert connection.sql[0][0].startswith("DELETE FROM alembic_steady_progress WHERE")


@pytest.mark.parametrize(("count", "deleted"), [(0, False), (1, True)])
def test_forget_clears_every_record_when_the_table_exists(count: int, deleted: bool) -> None:
    connection = FakeConnection(results=[[(count,)]])
    mysql_progress.forget(connection)
    assert connection.sql[1:] == (
        [("DELETE FROM alembic_steady_progress", None)] if deleted else []
    )
    assert connection.log[-1] == ("commit" if deleted else "execute")


def test_no_record_lets_the_run_go_on() -> None:
    connection = FakeConnection()
    mysql_progress.refuse_unfinished(connection, MAKE)
    assert connection.sql == [
        (
            "SELECT revision, from_revisions, to_revisions, committed, running, updated_at FROM "
            "alembic_steady_progress ORDER BY updated_at LIMIT 1",
            None,
        )
    ]
    assert connection.log == ["execute", "commit"]


RECORD = ("b0b0 (add widget)", "a0a0", "b0b0", "CREATE TABLE widget", "", "2026-01-02 03:04:05")


@pytest.mark.parametrize(
    ("committed", "running_now", "what"),
    [
        ("CREATE TABLE widget", "", "it had committed CREATE TABLE widget"),
        ("", "", "it had committed none of it"),
        (
            "CREATE TABLE widget",
            "CREATE INDEX ix ON widget",
            "it had committed CREATE TABLE widget, and was running (so may have applied) "
            "CREATE INDEX ix ON widget",
        ),
    ],
)
def test_a_record_stops_the_run_and_says_how_to_repair(
    committed: str, running_now: str, what: str
) -> None:
    record = (*RECORD[:3], committed, running_now, RECORD[5])
    connection = FakeConnection(results=[[record]])
    with pytest.raises(CommandError) as raised:
        mysql_progress.refuse_unfinished(connection, MAKE)
    assert str(raised.value) == (
        "A previous run stopped inside revision b0b0 (add widget) (a0a0 -> b0b0, "
        f"2026-01-02 03:04:05 UTC): {what}. The version row still says a0a0: running the "
        "revision again would repeat what was committed. Finish it by hand and `make stamp "
        "rev=b0b0`, or undo what it committed and `make stamp rev=a0a0`; either clears this "
        "record (alembic_steady_progress)."
    )
    assert connection.log == ["execute", "commit"]


@pytest.mark.parametrize("count", [0, 1])
def test_refuse_unfinished_reads_the_record_only_when_its_table_exists(count: int) -> None:
    my = MySQL()
    connection = FakeConnection(results=[[(count,)], []])
    my.refuse_unfinished(connection, running(), MAKE)
    assert len(connection.sql) == 1 + count
    assert connection.log[:2] == ["execute", "commit"]
    # Once the table is known to exist, a revision's end deletes its record.
    my.revision_done(connection, running())
    assert connection.sql[-1][0].startswith("DELETE") is bool(count)


def test_a_failed_revision_settles_its_record() -> None:
    my = MySQL()
    my.refuse_unfinished(FakeConnection(results=[[(1,)], []]), running(), MAKE)
    connection = FakeConnection()
    my.revision_failed(connection, running("CREATE TABLE t (a INT)", committed=1))
    assert connection.log == ["rollback", "execute", "commit"]
    assert connection.sql[0][1] is not None
    assert connection.sql[0][1]["committed"] == "CREATE TABLE t"


def test_a_failed_revision_without_a_record_table_or_revision_writes_nothing() -> None:
    connection = FakeConnection()
    MySQL().revision_failed(connection, running("CREATE TABLE t (a INT)", committed=1))
    my = MySQL()
    my.refuse_unfinished(FakeConnection(results=[[(1,)], []]), running(), MAKE)
    my.revision_failed(connection, Progress())
    assert connection.log == []


def test_a_failed_revision_on_a_lost_connection_gives_up_quietly() -> None:
    class Gone(FakeConnection):
        def rollback(self) -> None:
            raise mysql_error(2013, "Lost connection")

    my = MySQL()
    my.refuse_unfinished(FakeConnection(results=[[(1,)], []]), running(), MAKE)
    my.revision_failed(Gone(), running("CREATE TABLE t (a INT)", committed=1))


def test_forget_unfinished_clears_the_records() -> None:
    connection = FakeConnection(results=[[(1,)]])
    MY.forget_unfinished(connection)
    assert connection.sql[-1] == ("DELETE FROM alembic_steady_progress", None)


def test_autogenerate_leaves_the_record_table_out() -> None:
    options: dict[str, Any] = {"process_revision_directives": None}
    MY.autogenerate_options(options, writing_revision=False)
    include = options["include_name"]
    assert not include("alembic_steady_progress", "table", {})
    assert not include("alembic_version_checksums", "table", {})
    assert include("widget", "table", {})
    assert include("alembic_steady_progress", "column", {})
    assert options["process_revision_directives"] is None


def test_where_names_every_revision_the_step_was_heading_to() -> None:
    progress = Progress()
    progress.start(("a",), "m1 (merge)", to=("b1", "b2"))
    progress.statements.append("CREATE TABLE t (a INT)")
    progress.committed = 1
    assert "`make stamp rev=b1, b2`, or undo" in MY.where(progress, MAKE)


COPY = (
    "MySQL copies the table (ALGORITHM=COPY), and writes wait until it ends; on a large table add "
    "a new column, backfill it and switch over instead"
)


@pytest.mark.parametrize(
    ("kind", "in_place", "warning"),
    [
        (
            "widens",
            True,
            "in place while the column's length prefix stays the same (a VARCHAR up to 255 "
            f"bytes), else {COPY}",
        ),
        ("widens", False, COPY),
        (
            "narrows",
            False,
            f"can lose data (in strict mode values that do not fit fail the upgrade); {COPY}",
        ),
        (
            "narrows",
            True,
            "can lose data (in strict mode values that do not fit fail the upgrade); ",
        ),
        ("converts", False, f"can lose data or fail on values that do not convert; {COPY}"),
        ("converts", True, f"can lose data or fail on values that do not convert; {COPY}"),
    ],
)
def test_type_change_warnings(kind: str, in_place: bool, warning: str) -> None:
    assert MY.type_change(kind, in_place=in_place).startswith(warning)
    assert MY.type_change(kind, in_place=in_place).endswith(COPY)


# -- the SQL of the checks and the caller's lock -------------------------------------------


@pytest.mark.parametrize("read_only", [0, 1])
def test_require_writable_refuses_a_read_only_server(read_only: int) -> None:
    connection = FakeConnection(results=[[(read_only,)]])
    if read_only:
        with pytest.raises(CommandError) as raised:
            MY.require_writable(connection)
        assert str(raised.value) == (
            "The server is read-only (read_only = ON, as a replica is): migrations must run on "
            "the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it."
        )
    else:
        MY.require_writable(connection)
    assert connection.sql == [("SELECT @@global.read_only", None)]
    assert connection.log == ["execute", "commit"]


def test_describe_blockers_names_the_open_transactions() -> None:
    connection = FakeConnection(results=[[(12, "app", "Sleep", 3), (14, "report", "Query", 1)]])
    assert MY.describe_blockers(connection, "ALTER TABLE t ADD b INT") == (
        "sessions with open transactions: connection 12 (user 'app', Sleep, transaction open "
        "3s); connection 14 (user 'report', Query, transaction open 1s)"
    )
    assert connection.sql[0][0] == (
        "SELECT p.ID, p.USER, p.COMMAND, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) FROM "
        "information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = "
        "t.trx_mysql_thread_id WHERE p.ID <> CONNECTION_ID() ORDER BY t.trx_started LIMIT 3"
    )


def test_describe_blockers_without_any() -> None:
    assert MY.describe_blockers(FakeConnection(), "ALTER TABLE t ADD b INT") == (
        "a lock held by another session (none seen holding it any more)"
    )


@pytest.mark.parametrize("held", [0, 1, None])
def test_verify_lock_asks_whether_this_session_holds_it(held: int | None) -> None:
    connection = FakeConnection(results=[[("shop",)], [(held,)]])
    if held:
        MY.verify_lock(connection, make_project(package="app"))
    else:
        with pytest.raises(LockLost):
            MY.verify_lock(connection, make_project(package="app"))
    assert connection.sql == [
        ("SELECT DATABASE()", None),
        ("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()", {"name": "alembic:app:shop"}),
    ]


def test_acquire_caller_lock_waits_up_to_migration_lock_wait() -> None:
    connection = FakeConnection(results=[[("shop",)], [(1,)]])
    MY.acquire_caller_lock(
        connection, make_project(package="app"), Settings(migration_lock_wait=7.5)
    )
    assert connection.sql[1] == (
        "SELECT GET_LOCK(:name, :wait)",
        {"name": "alembic:app:shop", "wait": 7.5},
    )


@pytest.mark.parametrize(
    ("holder", "named_holder"),
    [
        (
            [(12, "app", "10.0.0.3", "Sleep", 40)],
            " (connection 12, user 'app'@'10.0.0.3', Sleep, for 40s)",
        ),
        ([], ""),
    ],
)
def test_a_lock_held_elsewhere_names_its_holder(
    holder: list[tuple[Any, ...]], named_holder: str
) -> None:
    connection = FakeConnection(results=[[("shop",)], [(0,)], holder])
    with pytest.raises(CommandError) as raised:
        MY.acquire_caller_lock(
            connection, make_project(package="app"), Settings(migration_lock_wait=2)
        )
    assert str(raised.value) == (
        f"Another migration{named_holder} still holds the lock 'alembic:app:shop' after 2s. "
        "Wait for it to finish, or raise MIGRATION_LOCK_WAIT."
    )
    assert connection.sql[2] == (
        "SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME FROM information_schema.PROCESSLIST p "
        "WHERE p.ID = IS_USED_LOCK(:name)",
        {"name": "alembic:app:shop"},
    )


def test_set_caller_timeouts_bounds_only_the_lock_waits_with_the_whole_limit() -> None:
    connection = FakeConnection()
    MY.set_caller_timeouts(connection, Settings(), RetryPolicy(8000, 30, 300))
    assert connection.sql == [
        ("SET SESSION lock_wait_timeout = :s, innodb_lock_wait_timeout = :s", {"s": 8})
    ]


def test_writing_a_revision_wraps_the_projects_hook_with_the_mixed_ddl_warning() -> None:
    calls: list[Any] = []

    def process(context: Any, revision: Any, directives: list[Any]) -> None:
        calls.append(directives)

    options: dict[str, Any] = {"process_revision_directives": process}
    MY.autogenerate_options(options, writing_revision=True)
    hook = options["process_revision_directives"]
    assert hook is not process and set(options) == {"process_revision_directives", "include_name"}
    hook(None, None, [])
    assert calls == [[]]


def test_an_unfinished_revision_stops_the_run_with_the_projects_commands() -> None:
    record = (*RECORD[:5], RECORD[5])
    connection = FakeConnection(results=[[(1,)], [record]])
    words = replace(MAKE, stamp="alembic stamp")
    with pytest.raises(CommandError, match=r"`alembic stamp rev=b0b0`, or undo"):
        MySQL().refuse_unfinished(connection, running(), words)


def test_acquire_lock_keeps_the_session_alive_and_takes_the_databases_lock() -> None:
    connection = FakeConnection(results=[[], [("shop",)], [(1,)]])
    project, settings = make_project(package="app"), Settings(migration_lock_wait=0)
    asyncio.run(MY.acquire_lock(FakeAsyncConnection(connection), project, settings))
    assert connection.sql == [
        ("SET SESSION wait_timeout = 31536000", None),
        ("SELECT DATABASE()", None),
        ("SELECT GET_LOCK(:name, :wait)", {"name": "alembic:app:shop", "wait": 0.0}),
    ]
    # No transaction stays open while it waits.
    assert connection.log == ["execute", "commit", "execute", "execute", "commit"]


def test_a_lock_still_held_when_the_wait_is_over_names_its_holder() -> None:
    holder = (12, "app", "10.0.0.3", "Sleep", 40)
    connection = FakeConnection(results=[[], [("shop",)], [(0,)], [holder]])
    project, settings = make_project(package="app"), Settings(migration_lock_wait=0)
    with pytest.raises(CommandError) as raised:
        asyncio.run(MY.acquire_lock(FakeAsyncConnection(connection), project, settings))
    assert str(raised.value) == (
        "Another migration (connection 12, user 'app'@'10.0.0.3', Sleep, for 40s) still holds "
        "the lock 'alembic:app:shop' after 0s. Wait for it to finish, or raise "
        "MIGRATION_LOCK_WAIT."
    )
    assert connection.log[-1] == "commit"


def test_the_walk_puts_no_generated_rows_on_mysql() -> None:
    filler = MY.table_filler(FakeConnection(), {})
    assert filler.filled == [] and filler.given == {}
    with pytest.raises(CommandError) as raised:
        MY.table_filler(FakeConnection(), {"orders": None, "item": "INSERT INTO item ..."})
    assert str(raised.value) == (
        "The walk puts no generated rows on MySQL, so the `rows for` and `no rows for` markers "
        "of item, orders have nothing to act on: remove those lines."
    )


class LockNeverFree(FakeConnection):
    """GET_LOCK waits as long as it is told, on a clock only it advances, and never gets it."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        result = super().execute(statement, params)
        if str(statement).startswith("SELECT GET_LOCK") and params is not None:
            self.waits.append(params["wait"])
            self.clock[0] += params["wait"]
            result.rows = [(0,)]
        elif str(statement) == "SELECT DATABASE()":
            result.rows = [("shop",)]
        return result


def test_waiting_for_the_lock_asks_a_second_at_a_time_up_to_the_lock_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(mysql, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    connection = LockNeverFree(clock)
    project, settings = make_project(package="app"), Settings(migration_lock_wait=2.5)
    with pytest.raises(CommandError, match=r"still holds the lock 'alembic:app:shop' after 2\.5s"):
        asyncio.run(MY.acquire_lock(FakeAsyncConnection(connection), project, settings))
    # At most a second per GET_LOCK: a signal is handled between them.
    assert connection.waits == [1.0, 1.0, 0.5]
    assert connection.sql[-1][1] == {"name": "alembic:app:shop"}  # who holds it, asked by name


# -- stopping a statement on the server (a signal): KILL from a second connection ----------

ALIVE = "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = :id"


class OtherConnection(FakeConnection):
    """The second connection: PROCESSLIST answers `infos` in turn (a row per answer: the
    session's running statement, None when idle; no row once it is gone)."""

    def __init__(self, infos: list[Any], kill_error: BaseException | None = None) -> None:
        super().__init__()
        self.infos = infos
        self.kill_error = kill_error

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        result = super().execute(statement, params)
        if str(statement) == ALIVE:
            info = self.infos.pop(0) if self.infos else "gone"
            result.rows = [] if info == "gone" else [(info,)]
        elif str(statement).startswith("KILL") and self.kill_error is not None:
            raise self.kill_error
        return result


class Engine:
    """An AsyncEngine whose connect() hands out `connection`."""

    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    def connect(self) -> "Engine":
        return self

    async def __aenter__(self) -> FakeAsyncConnection:
        return FakeAsyncConnection(self.connection)

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(mysql, "asyncio", SimpleNamespace(sleep=sleep))
    return pauses


def stop(connection: FakeConnection, progress: Progress) -> str:
    async def stopping() -> str:
        session = FakeConnection(results=[[(42,)]])
        stopper = await MySQL().server_stopper(
            FakeAsyncConnection(session),
            Engine(connection),
            progress,
        )
        assert session.sql == [("SELECT CONNECTION_ID()", None)] and session.log[-1] == "commit"
        return await stopper()

    return asyncio.run(stopping())


def test_a_running_statement_is_killed_and_waited_for(paused: list[float]) -> None:
    other = OtherConnection(["ALTER TABLE t ADD b INT", "ALTER TABLE t ADD b INT", "gone"])
    progress = running("CREATE TABLE t (a INT)", "ALTER TABLE t ADD b INT", committed=1)
    assert stop(other, progress) == (
        "Its statement was stopped on the server (KILL 42) and the migration lock released."
    )
    assert [sql for sql, _ in other.sql[:4]] == [ALIVE, "KILL 42", ALIVE, ALIVE]
    assert other.sql[0][1] == {"id": 42}
    assert paused == [0.05]  # polled while it rolled back
    # The record says what stays: the CREATE, not the ALTER that was stopped.
    record = other.sql[-1][1]
    assert record is not None and record["committed"] == "CREATE TABLE t"


def test_an_idle_session_after_a_ddl_statement_had_committed_it(paused: list[float]) -> None:
    other = OtherConnection([None, "gone"])
    progress = running("CREATE TABLE t (a INT)", "ALTER TABLE t ADD b INT", committed=1)
    assert stop(other, progress) == (
        "Its session was ended on the server (KILL 42) and the migration lock released."
    )
    assert progress.committed == 2
    record = other.sql[-1][1]
    assert record is not None
    assert record["committed"] == "CREATE TABLE t; ALTER TABLE t ADD b INT"


def test_an_idle_session_after_a_data_statement_committed_nothing_more(
    paused: list[float],
) -> None:
    other = OtherConnection([None, "gone"])
    progress = running("INSERT INTO t (a) VALUES (1)")
    stop(other, progress)
    assert progress.committed == 0


def test_a_session_already_gone_is_not_killed(paused: list[float]) -> None:
    other = OtherConnection(["gone", "gone"])
    assert stop(other, Progress()) == (
        "Its session was ended on the server (KILL 42) and the migration lock released."
    )
    assert [sql for sql, _ in other.sql] == [ALIVE, ALIVE]  # no revision: no record to settle
    assert paused == []


def test_a_session_that_ended_before_its_kill_is_fine(paused: list[float]) -> None:
    other = OtherConnection(["SELECT 1", "gone"], kill_error=mysql_error(1094, "Unknown thread"))
    assert stop(other, Progress()).startswith("Its statement was stopped on the server (KILL 42)")


def test_a_kill_refused_says_how_to_end_the_session(paused: list[float]) -> None:
    refused = mysql_error(1095, "You are not owner of thread 42")
    other = OtherConnection(["ALTER TABLE t ADD b INT"], kill_error=refused)
    assert stop(other, running("ALTER TABLE t ADD b INT")) == (
        "Its statement could not be stopped on the server (PyMySQLError 1095: You are not owner "
        "of thread 42): it may still run, and commit, holding the migration lock: end it with "
        "KILL 42."
    )


def test_a_statement_still_rolling_back_after_30s_holds_the_lock(
    paused: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = iter([0.0, 30.0, 30.1])  # the deadline itself still waits
    monkeypatch.setattr(mysql, "time", SimpleNamespace(monotonic=lambda: next(readings)))
    other = OtherConnection(["ALTER TABLE t ADD b INT"] * 4)
    assert stop(other, running("ALTER TABLE t ADD b INT")) == (
        "Its session was killed on the server (KILL 42) and still rolls back its statement: "
        "the migration lock is held until that ends."
    )
    assert paused == [0.05]


def test_only_an_ending_ddl_statement_counts_as_committed_by_an_idle_session(
    paused: list[float],
) -> None:
    other = OtherConnection([None, "gone"])
    progress = running(
        "INSERT INTO t (a) VALUES (1)", "CREATE TABLE u (a INT)", "INSERT INTO u (a) VALUES (1)"
    )
    stop(other, progress)
    assert progress.committed == 0


def test_the_wait_for_the_killed_session_asks_by_its_id(paused: list[float]) -> None:
    other = OtherConnection(["ALTER TABLE t ADD b INT", "ALTER TABLE t ADD b INT", "gone"])
    stop(other, Progress())
    assert [params for sql, params in other.sql if sql == ALIVE] == [{"id": 42}] * 3


def test_a_tenant_schema_on_mysql_is_refused_naming_databases() -> None:
    with pytest.raises(CommandError) as refused:
        MY.enter_schema(FakeConnection(), "acme")  # type: ignore[arg-type]
    assert str(refused.value) == (
        "Tenant schemas are PostgreSQL's; on MySQL a schema is a database: name each tenant's "
        "database as a target (database=NAME or a URL)."
    )


def test_the_schema_snapshot_goes_back_to_a_checkpoint() -> None:
    from alembic_steady.dialects.mysql_schema import MySQLSchema

    schema = MySQLSchema.__new__(MySQLSchema)
    schema.rows = {("table", "widget", "")}
    restore = schema.checkpoint()
    schema.rows = set()
    restore()
    assert schema.rows == {("table", "widget", "")}
