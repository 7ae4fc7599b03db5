"""dialects/mysql.py, the parts that need no server: the lock name, lock_wait_timeout seconds,
DDL accounting, error numbers, messages, and the SQL it sends (on a recording connection)."""

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from support import (
    FakeConnection,
    PyMySQLError,
    Settings,
    make_project,
    mysql_error,
    run_statement,
    wrapped,
)

from alembic_steady import MAKE
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
