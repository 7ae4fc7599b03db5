"""dialects/postgresql.py, the parts that need no server: the lock key, statement parsing,
SQLSTATE classification, messages, and the SQL it sends (on a recording connection)."""

import zlib
from collections.abc import Callable
from typing import Any

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from support import (
    FakeConnection,
    PgError,
    Settings,
    lock_timeout_pg,
    make_project,
    pg_error,
    run_statement,
    wrapped,
)

from alembic_steady import MAKE
from alembic_steady.dialects import LockLost
from alembic_steady.dialects.postgresql import (
    POOLER_HINT,
    InvalidIndex,
    PostgreSQL,
    _concurrent_index,
    _key_parts,
    lock_key,
    sqlstate,
)
from alembic_steady.runner.progress import Progress
from alembic_steady.runner.retries import RetryPolicy

PG = PostgreSQL()
SETTINGS = Settings()

# -- the advisory lock key -----------------------------------------------------------------


@pytest.mark.parametrize("package", ["shop", "billing", "a_very_long_service_name_" * 4])
def test_lock_key_is_the_crc_of_the_package_shifted_to_a_signed_value(package: str) -> None:
    key = lock_key(package)
    assert key == zlib.crc32(f"alembic:{package}".encode()) - 2**31
    assert -(2**31) <= key < 2**31
    assert lock_key(package) == key  # stable across calls (and processes: no hash())


def test_lock_keys_differ_between_packages() -> None:
    assert len({lock_key(name) for name in ("shop", "billing", "users", "shop2")}) == 4


@pytest.mark.parametrize("package", ["shop", "billing", "users", "x"])
def test_key_parts_are_the_two_oids_pg_locks_shows(package: str) -> None:
    key = lock_key(package)
    parts = _key_parts(package)
    assert set(parts) == {"classid", "objid"}
    assert all(0 <= part < 2**32 for part in parts.values())
    unsigned = parts["classid"] << 32 | parts["objid"]
    assert unsigned - (2**64 if unsigned >= 2**63 else 0) == key


def test_a_negative_key_has_all_high_bits_set() -> None:
    package = next(name for name in ("shop", "billing", "users", "x", "y") if lock_key(name) < 0)
    assert _key_parts(package)["classid"] == 2**32 - 1


# -- CREATE INDEX CONCURRENTLY -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY ix_item_name ON item (name)", ("ix_item_name", "item")),
        ("create index concurrently IX_Item ON Item (name)", ("ix_item", "Item")),
        ('CREATE INDEX CONCURRENTLY "Ix Mixed" ON "Item" (name)', ("Ix Mixed", '"Item"')),
        (
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_sku ON shop.item (sku)",
            ("uq_sku", "shop.item"),
        ),
        (
            'CREATE INDEX CONCURRENTLY ix ON ONLY "my schema"."Item" USING btree (a)',
            ("ix", '"my schema"."Item"'),
        ),
        ("\n  CREATE INDEX\n CONCURRENTLY ix$1 ON t$ (a)", ("ix$1", "t$")),
    ],
)
def test_concurrent_index_statements_name_index_and_table(
    sql: str, expected: tuple[str, str]
) -> None:
    assert _concurrent_index(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX ix ON item (name)",
        "CREATE INDEX CONCURRENTLY ON item (name)",  # unnamed: PostgreSQL picks the name
        "DROP INDEX CONCURRENTLY ix",
        "REINDEX INDEX CONCURRENTLY ix",
        "SELECT 'CREATE INDEX CONCURRENTLY ix ON item (name)'",
        "ALTER TABLE item ADD COLUMN x int",
    ],
)
def test_other_statements_are_no_concurrent_index(sql: str) -> None:
    assert _concurrent_index(sql) is None


# -- SQLSTATE ------------------------------------------------------------------------------


def test_sqlstate_of_the_drivers_error() -> None:
    assert sqlstate(pg_error("55P03")) == "55P03"
    assert sqlstate(PgError("x", "25006")) == "25006"


def test_sqlstate_walks_the_cause_and_the_context() -> None:
    try:
        try:
            raise pg_error("57P01")
        except Exception as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as caused:
        assert sqlstate(caused) == "57P01"
    try:
        try:
            raise pg_error("08006")
        except Exception:
            raise KeyError("while handling") from None
    except KeyError as suppressed:
        assert sqlstate(suppressed) == "08006"  # __context__ stays even when suppressed
    try:
        try:
            raise PgError("x", "53300")
        except Exception:
            raise ValueError("during") from None
    except ValueError as during:
        assert sqlstate(during) == "53300"


def test_sqlstate_is_none_without_one() -> None:
    assert sqlstate(ValueError("x")) is None
    assert sqlstate(wrapped(ValueError("no code"))) is None
    assert sqlstate(PgError("x", None)) is None


def test_a_lock_timeout_is_sqlalchemys_error_with_55p03() -> None:
    assert PG.is_lock_timeout(lock_timeout_pg())


@pytest.mark.parametrize(
    "error",
    [
        pg_error("57014", "canceling statement due to statement timeout"),
        PgError("canceling statement due to lock timeout", "55P03"),  # not through SQLAlchemy
        wrapped(ValueError("no sqlstate")),
        ValueError("55P03"),
    ],
)
def test_other_errors_are_no_lock_timeout(error: BaseException) -> None:
    assert not PG.is_lock_timeout(error)


@pytest.mark.parametrize(
    "error",
    [
        pg_error("57P01", "terminating connection due to administrator command"),
        pg_error("57P02"),
        pg_error("57P03"),
        pg_error("08006", "connection failure"),
        pg_error("08003"),
        wrapped(ValueError("gone"), invalidated=True),
        ConnectionResetError("reset by peer"),
        RuntimeError("the connection is closed"),
    ],
)
def test_lost_connection(error: BaseException) -> None:
    assert PG.lost_connection(error)


@pytest.mark.parametrize(
    "error", [lock_timeout_pg(), pg_error("25006"), ValueError("boom"), wrapped(KeyError("k"))]
)
def test_not_a_lost_connection(error: BaseException) -> None:
    assert not PG.lost_connection(error)


def test_read_only() -> None:
    assert PG.read_only(pg_error("25006", "cannot execute ALTER TABLE in a read-only transaction"))
    assert not PG.read_only(pg_error("55P03"))
    assert not PG.read_only(ValueError("read-only"))


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (pg_error("42P05", 'prepared statement "__asyncpg_stmt_1__" already exists'), True),
        (pg_error("26000", 'prepared statement "__asyncpg_stmt_2__" does not exist'), True),
        (pg_error("26000", "invalid statement name"), False),
        (pg_error("55P03", "prepared statement"), False),
        (ValueError("prepared statement"), False),
    ],
)
def test_through_pooler(error: BaseException, hint: bool) -> None:
    assert PG.through_pooler(error) == (POOLER_HINT if hint else None)


def extension_error(sqlstate: str, message: str, statement: str) -> OperationalError:
    return OperationalError(statement, {}, PgError(message, sqlstate))


PRE_15 = (
    'could not open extension control file "/usr/share/postgresql/14/extension/pgcrypto.control": '
    "No such file or directory"
)


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (
            extension_error(
                "0A000",
                'extension "uuid-ossp" is not available',
                'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"',
            ),
            "uuid-ossp",
        ),
        (extension_error("58P01", PRE_15, "create extension pgcrypto"), "pgcrypto"),
        # Not in English: the name as the statement writes it.
        (
            extension_error("0A000", "Erweiterung nicht verfügbar", "CREATE EXTENSION PgCrypto"),
            "pgcrypto",
        ),
    ],
)
def test_an_unavailable_uuid_extension_points_at_gen_random_uuid(
    error: BaseException, name: str
) -> None:
    fix = PG.unavailable_extension(error, MAKE)
    assert fix is not None
    assert fix.startswith(f'This PostgreSQL server does not ship the extension "{name}": ')
    assert "gen_random_uuid()" in fix and "built in since PostgreSQL 13" in fix
    assert "make db-up" in fix and "make migrate again" in fix


@pytest.mark.parametrize(
    "error",
    [
        extension_error("0A000", "not supported", "ALTER TABLE item ADD COLUMN x int"),
        extension_error("42501", "permission denied to create extension", "CREATE EXTENSION x"),
        ValueError("CREATE EXTENSION x"),
    ],
)
def test_other_errors_are_no_unavailable_extension(error: BaseException) -> None:
    assert PG.unavailable_extension(error, MAKE) is None


# -- messages ------------------------------------------------------------------------------


def test_first_line_is_the_drivers_first_line_with_the_class() -> None:
    error = pg_error("42P01", 'relation "nope" does not exist\nLINE 1: SELECT * FROM nope')
    assert PG.first_line(error) == 'OperationalError: relation "nope" does not exist'


def test_first_line_of_a_plain_error() -> None:
    assert PG.first_line(ValueError("  bad value\nmore")) == "ValueError: bad value"
    assert PG.first_line(TimeoutError()) == "TimeoutError"


def test_where_between_revisions() -> None:
    assert PG.where(Progress(), MAKE) == "This run changed nothing."
    assert PG.where(Progress(at=("a",)), MAKE) == "The database's version stays at a."


def running(*statements: str, committed: int = 0, leftover: str | None = None) -> Progress:
    progress = Progress()
    progress.start(("a",), "b0b0 (add index)")
    progress.statements.extend(statements)
    progress.committed, progress.leftover = committed, leftover
    return progress


def test_where_nothing_was_committed() -> None:
    assert PG.where(running("ALTER TABLE item ADD x int"), MAKE) == (
        "Nothing of it was applied; the database's version stays at a."
    )


def test_where_steps_were_committed() -> None:
    progress = running(
        "CREATE TABLE t (id int)", "CREATE INDEX CONCURRENTLY ix ON t (id)", committed=1
    )
    assert PG.where(progress, MAKE) == (
        "The revision's transaction was rolled back, but these steps of it were already "
        "committed (autocommit_block() commits what ran before it and what runs in it): "
        "CREATE TABLE t (id int). The database's version stays at a, so the next run starts the "
        "revision again: keep those steps rerun-safe (IF NOT EXISTS)."
    )


def test_where_an_invalid_index_was_left() -> None:
    progress = running("CREATE INDEX CONCURRENTLY ix ON t (id)", leftover="public.ix")
    assert PG.where(progress, MAKE) == (
        "Its transaction was rolled back; the database's version stays at a. The failed CREATE "
        "INDEX CONCURRENTLY left the INVALID index public.ix; the next run drops it and builds "
        "it again."
    )


def test_where_steps_were_committed_and_an_invalid_index_was_left() -> None:
    progress = running(
        "CREATE TABLE t (id int)",
        "CREATE INDEX CONCURRENTLY ix ON t (id)",
        committed=1,
        leftover="public.ix",
    )
    where = PG.where(progress, MAKE)
    assert "already committed" in where and "CREATE TABLE t (id int)" in where
    assert where.endswith(
        "left the INVALID index public.ix; the next run drops it and builds it again."
    )


def test_offline_preamble_sets_the_whole_limits() -> None:
    settings = Settings(migration_lock_timeout="2s", migration_statement_timeout="10min")
    assert PG.offline_preamble(settings, RetryPolicy(2000, 30, 300)) == [
        "SET lock_timeout = '2s'",
        "SET statement_timeout = '10min'",
    ]


def test_connect_args_bound_the_connection_and_name_the_session() -> None:
    assert PG.connect_args(Settings(db_connect_timeout=7.5), "shop migrations") == {
        "timeout": 7.5,
        "server_settings": {"application_name": "shop migrations"},
    }


URL_WITH_PASSWORD = URL.create(
    "postgresql+asyncpg", "app", "s3cret-pw", "db.internal", 5432, "shop"
)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pg_error("53300", "sorry, too many clients already"), "max_connections are used up"),
        (pg_error("42P05", 'prepared statement "s" already exists'), "pool_mode=transaction"),
        (ConnectionRefusedError("Connect call failed"), "Cannot connect to PostgreSQL"),
        (TimeoutError(), "no answer within 10s"),
    ],
)
def test_connect_failure_names_the_target_without_the_password(
    error: BaseException, words: str
) -> None:
    message = str(PG.connect_failure(error, URL_WITH_PASSWORD, SETTINGS, MAKE))
    assert words in message
    assert "database shop on db.internal:5432 as app" in message
    assert "s3cret-pw" not in message


def test_connect_failure_says_how_to_start_the_server() -> None:
    error = ConnectionRefusedError("Connect call failed")
    message = str(PG.connect_failure(error, URL_WITH_PASSWORD, SETTINGS, MAKE))
    assert "(make db-up)" in message


# -- the SQL it sends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "value"), [(1, "250ms"), (2, "500ms"), (3, "1000ms"), (0, "1000ms")]
)
def test_set_lock_timeout_sets_the_escalated_value_for_the_session(
    attempt: int, value: str
) -> None:
    connection = FakeConnection()
    bound = PG.set_lock_timeout(connection, RetryPolicy(1000, 30, 300), attempt)
    assert bound == value
    assert connection.sql == [
        ("SELECT set_config('lock_timeout', :value, false)", {"value": value})
    ]


def test_a_positive_lock_timeout_under_a_millisecond_is_never_sent_as_no_limit() -> None:
    connection = FakeConnection()
    PG.set_lock_timeout(connection, RetryPolicy(0.5, 30, 300), 0)
    assert connection.sql[0][1] != {"value": "0ms"}


def test_set_statement_timeout_for_the_session_and_commits() -> None:
    connection = FakeConnection()
    PG.set_statement_timeout(connection, Settings(migration_statement_timeout="5min"))
    assert connection.sql == [
        ("SELECT set_config('statement_timeout', :value, false)", {"value": "5min"})
    ]
    assert connection.log == ["execute", "commit"]


def test_caller_timeouts_are_local_to_the_callers_transaction() -> None:
    connection = FakeConnection()
    settings = Settings(migration_lock_timeout="2s", migration_statement_timeout="1min")
    PG.set_caller_timeouts(connection, settings, RetryPolicy(2000, 30, 300))
    assert connection.sql == [
        ("SELECT set_config(:name, :value, true)", {"name": "statement_timeout", "value": "1min"}),
        ("SELECT set_config(:name, :value, true)", {"name": "lock_timeout", "value": "2s"}),
    ]
    assert "commit" not in connection.log


def test_the_callers_lock_is_a_transaction_lock_bounded_by_the_lock_wait() -> None:
    connection = FakeConnection()
    PG.acquire_caller_lock(
        connection, make_project(package="shop"), Settings(migration_lock_wait=2.5)
    )
    assert connection.sql == [
        ("SELECT set_config('lock_timeout', :wait, true)", {"wait": "2500ms"}),
        ("SELECT pg_advisory_xact_lock(:key)", {"key": lock_key("shop")}),
    ]


def test_verify_lock_asks_for_this_sessions_lock() -> None:
    connection = FakeConnection(results=[[(1,)]])
    PG.verify_lock(connection, make_project(package="shop"))
    [(sql, params)] = connection.sql
    assert "pid = pg_backend_pid()" in sql
    assert params == _key_parts("shop")


def test_verify_lock_raises_when_the_lock_is_gone() -> None:
    connection = FakeConnection(results=[[(0,)]])
    with pytest.raises(LockLost):
        PG.verify_lock(connection, make_project(package="shop"))


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        ((True, "off"), "read-only standby"),
        ((False, "on"), "default_transaction_read_only = on"),
    ],
)
def test_require_writable_refuses_a_standby_or_a_read_only_role(
    row: tuple[bool, str], refusal: str
) -> None:
    with pytest.raises(CommandError, match=refusal):
        PG.require_writable(FakeConnection(results=[[row]]))


def test_require_writable_passes_a_primary() -> None:
    connection = FakeConnection(results=[[(False, "off")]])
    PG.require_writable(connection)
    assert connection.log == ["execute", "commit"]


def test_blockers_are_the_sessions_locking_the_tables_the_statement_names() -> None:
    rows = [(4242, "api", "idle in transaction", 8.1, "item")]
    connection = FakeConnection(results=[rows])
    line = PG.describe_blockers(connection, 'ALTER TABLE "Item" ADD COLUMN price int')
    assert line == (
        "table item held by pid 4242 (application_name 'api', idle in transaction, "
        "transaction open 8.1s)"
    )
    names = connection.sql[0][1]["names"]
    assert "Item" in names and "price" in names and names == sorted(names)


def test_a_blocker_on_the_version_table_is_named_so() -> None:
    rows = [(7, "", "", 1.0, "alembic_version")]
    line = PG.describe_blockers(FakeConnection(results=[rows]), "UPDATE alembic_version SET x")
    assert line == (
        "the version row (alembic_version) held by pid 7 (application_name '', unknown state, "
        "transaction open 1.0s)"
    )


def test_without_table_locks_the_oldest_transactions_are_named() -> None:
    connection = FakeConnection(results=[[], [(9, "worker", "active", 30.0)]])
    line = PG.describe_blockers(connection, "CREATE INDEX CONCURRENTLY ix ON t (a)")
    assert line == (
        "older transactions: pid 9 (application_name 'worker', active, transaction open 30.0s)"
    )


def test_when_nobody_holds_a_lock_any_more_it_says_so() -> None:
    line = PG.describe_blockers(FakeConnection(), "ALTER TABLE t ADD x int")
    assert line == "a lock held by another session (none seen holding it any more)"


# -- statements of a revision --------------------------------------------------------------


def no_retry(attempt: Callable[[], Any], where: str) -> Any:
    raise AssertionError("retried in a transaction")


def test_a_statement_in_the_revisions_transaction_just_runs() -> None:
    progress = running("CREATE TABLE t (id int)")
    result = run_statement(
        PG, FakeConnection(), "ALTER TABLE t ADD x int", lambda: "ran", progress, no_retry
    )
    assert result == "ran"
    assert progress.statements == ["CREATE TABLE t (id int)", "ALTER TABLE t ADD x int"]
    assert progress.committed == 0


def test_offline_a_statement_just_runs() -> None:
    progress = running()
    ran = run_statement(PG, None, "ALTER TABLE t ADD x int", lambda: "ran", progress, no_retry)
    assert ran == "ran"
    assert progress.statements == ["ALTER TABLE t ADD x int"]


def test_a_statement_in_an_autocommit_block_is_retried_alone_and_committed() -> None:
    connection = FakeConnection(isolation_level="AUTOCOMMIT")
    progress = running("CREATE TABLE t (id int)")
    seen: list[tuple[int, str]] = []

    def retry(attempt: Callable[[], Any], where: str) -> Any:
        seen.append((progress.committed, where))
        return attempt()

    result = run_statement(
        PG, connection, "ALTER TYPE mood ADD VALUE 'ok'", lambda: "ran", progress, retry
    )
    assert result == "ran"
    # Entering the block committed what ran before it; the statement commits once it ran.
    assert seen == [(1, "outside a transaction")]
    assert progress.committed == 2
    assert connection.sql == []  # no index to look after


def test_a_failed_statement_in_an_autocommit_block_is_not_counted_as_committed() -> None:
    connection = FakeConnection(isolation_level="AUTOCOMMIT")
    progress = running("CREATE TABLE t (id int)")

    def retry(attempt: Callable[[], Any], where: str) -> Any:
        raise lock_timeout_pg()

    with pytest.raises(OperationalError, match="lock timeout"):
        statement = "ALTER TYPE mood ADD VALUE 'ok'"
        run_statement(PG, connection, statement, lambda: None, progress, retry)
    assert progress.committed == 1


def test_a_concurrent_index_build_drops_an_invalid_leftover_first_and_checks_the_new_one() -> None:
    # Lookups: before the build (INVALID leftover), after it (valid).
    connection = FakeConnection(
        results=[[(False, "public.ix")], [], [(True, "public.ix")]], isolation_level="AUTOCOMMIT"
    )
    progress = running()
    run_statement(
        PG,
        connection,
        "CREATE INDEX CONCURRENTLY ix ON item (name)",
        lambda: connection.log.append("build"),
        progress,
        lambda attempt, where: attempt(),
    )
    assert connection.log == ["execute", "execute", "build", "execute"]
    lookup, drop, check = connection.sql
    assert lookup[1] == check[1] == {"index": "ix", "table": "item"}
    assert drop == ("DROP INDEX CONCURRENTLY IF EXISTS public.ix", None)
    assert progress.committed == 1


def test_a_concurrent_index_left_invalid_is_an_error() -> None:
    connection = FakeConnection(results=[[], [(False, "public.ix")]], isolation_level="AUTOCOMMIT")
    with pytest.raises(InvalidIndex, match=r"index public\.ix is INVALID"):
        run_statement(
            PG,
            connection,
            "CREATE INDEX CONCURRENTLY ix ON item (name)",
            lambda: None,
            running(),
            lambda attempt, where: attempt(),
        )


def test_a_failed_concurrent_index_build_notes_its_leftover() -> None:
    connection = FakeConnection(results=[[], [(False, "public.ix")]], isolation_level="AUTOCOMMIT")
    progress = running()

    def retry(attempt: Callable[[], Any], where: str) -> Any:
        attempt()
        raise lock_timeout_pg()

    with pytest.raises(OperationalError, match="lock timeout"):
        run_statement(
            PG,
            connection,
            "CREATE INDEX CONCURRENTLY ix ON item (name)",
            lambda: None,
            progress,
            retry,
        )
    assert progress.leftover == "public.ix"
    assert progress.committed == 0
