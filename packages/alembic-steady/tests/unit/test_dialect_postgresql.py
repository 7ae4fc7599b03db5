"""dialects/postgresql.py, the parts that need no server: the lock key, statement parsing,
SQLSTATE classification, messages, and the SQL it sends (on a recording connection)."""

import asyncio
import zlib
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
    PgError,
    Settings,
    lock_timeout_pg,
    make_project,
    pg_error,
    run_statement,
    wrapped,
)

from alembic_steady import MAKE
from alembic_steady.dialects import LockLost, postgresql
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


# -- messages in full ----------------------------------------------------------------------

HINT = "Run with VERBOSE=1 (alembic --raiseerr) for the full traceback."
TARGET = "database shop on db.internal:5432 as app"


def connect_failure(error: BaseException, settings: Any = SETTINGS) -> str:
    return str(PG.connect_failure(error, URL_WITH_PASSWORD, settings, MAKE))


def test_too_many_connections_in_full() -> None:
    assert connect_failure(pg_error("53300", "sorry, too many clients already")) == (
        f"PostgreSQL ({TARGET}) refused the connection: OperationalError: sorry, too many "
        "clients already. Its max_connections are used up; a migration run needs one "
        "connection (replicas waiting for the migration lock hold one each). Free connections "
        "or raise max_connections, then run again."
    )


def test_a_pooler_refusing_the_connection_in_full() -> None:
    error = pg_error("42P05", 'prepared statement "s" already exists')
    assert connect_failure(error) == (
        f'OperationalError: prepared statement "s" already exists ({TARGET}): {POOLER_HINT}'
    )


def test_a_missing_database_in_full() -> None:
    assert connect_failure(pg_error("3D000", 'database "shop" does not exist')) == (
        f'Cannot connect to PostgreSQL ({TARGET}): OperationalError: database "shop" does not '
        'exist. Create it (CREATE DATABASE "shop", or make db-reset in development), or fix the '
        "name in DATABASE_URL or DB_NAME, then run again."
    )


def test_an_unreachable_server_in_full() -> None:
    assert connect_failure(ConnectionRefusedError("Connect call failed")) == (
        f"Cannot connect to PostgreSQL ({TARGET}): ConnectionRefusedError: Connect call failed. "
        "Check DATABASE_URL or DB_* (or MIGRATION_DATABASE_URL; environment or .env) and that "
        f"the server runs (make db-up). {HINT}"
    )
    assert connect_failure(TimeoutError(), Settings(db_connect_timeout=2.5)).startswith(
        f"Cannot connect to PostgreSQL ({TARGET}): no answer within 2.5s. Check"
    )


@pytest.mark.parametrize(
    ("kind", "in_place", "warning"),
    [
        ("widens", True, "a catalog change under a brief ACCESS EXCLUSIVE lock, no rewrite"),
        (
            "widens",
            False,
            "rewrites the table and its indexes under an ACCESS EXCLUSIVE lock (reads and writes "
            "wait until it ends); on a large table add a new column, backfill it and switch over "
            "instead",
        ),
        (
            "narrows",
            False,
            "can lose data (values that do not fit fail the upgrade, or are cut if you add a USING "
            "clause); the table is scanned and rewritten under an ACCESS EXCLUSIVE lock",
        ),
        (
            "narrows",
            True,
            "can lose data (values that do not fit fail the upgrade, or are cut if you add a USING "
            "clause); the table is scanned and rewritten under an ACCESS EXCLUSIVE lock",
        ),
        (
            "converts",
            True,
            "can lose data or fail on values that do not convert; the table is rewritten under an "
            "ACCESS EXCLUSIVE lock",
        ),
    ],
)
def test_type_change_warnings(kind: str, in_place: bool, warning: str) -> None:
    assert PG.type_change(kind, in_place=in_place) == warning


EXTENSION_FIX = (
    'This PostgreSQL server does not ship the extension "{name}": run the migrations on a server '
    "that has it (point DATABASE_URL, or TEST_DATABASE_URL for the tests, at one, or start "
    "Docker's: make db-up with a Docker engine running; without one it starts an embedded server "
    "that lacks some extensions), then run make migrate again."
)


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (
            extension_error("0A000", 'extension "postgis" is not available', "CREATE EXTENSION x"),
            EXTENSION_FIX.format(name="postgis"),
        ),
        (
            extension_error(
                "0A000",
                'extension "uuid-ossp" is not available',
                'CREATE EXTENSION "uuid-ossp"',
            ),
            EXTENSION_FIX.format(name="uuid-ossp")
            + " For UUIDs, gen_random_uuid() is built in since PostgreSQL 13: use it instead of "
            "uuid-ossp's uuid_generate_v4() and drop the CREATE EXTENSION.",
        ),
        (
            extension_error("58P01", PRE_15, "CREATE EXTENSION pgcrypto"),
            EXTENSION_FIX.format(name="pgcrypto")
            + " If it is there for gen_random_uuid(), that is built in since PostgreSQL 13: drop "
            "the CREATE EXTENSION.",
        ),
    ],
)
def test_unavailable_extension_in_full(error: BaseException, fix: str) -> None:
    assert PG.unavailable_extension(error, MAKE) == fix


def test_the_extension_the_server_names_wins_over_the_one_written() -> None:
    # CREATE EXTENSION ... CASCADE: a dependency is what is missing.
    error = extension_error(
        "0A000", 'extension "postgis_raster" is not available', "CREATE EXTENSION x CASCADE"
    )
    assert PG.unavailable_extension(error, MAKE) == EXTENSION_FIX.format(name="postgis_raster")


def test_a_quoted_extension_name_is_kept_as_written_without_its_quotes() -> None:
    error = extension_error("0A000", "Erweiterung nicht verfügbar", 'CREATE EXTENSION "Geo-X"')
    assert PG.unavailable_extension(error, MAKE) == EXTENSION_FIX.format(name="Geo-X")


def test_the_failed_statement_is_found_under_an_error_whose_statement_is_not_sql() -> None:
    class Wrapper(Exception):
        statement = ("not", "sql")

    try:
        try:
            raise extension_error("0A000", "nicht verfügbar", "CREATE EXTENSION postgis")
        except OperationalError as inner:
            raise Wrapper("while upgrading") from inner
    except Wrapper as outer:
        assert PG.unavailable_extension(outer, MAKE) == EXTENSION_FIX.format(name="postgis")


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        (
            (True, "off"),
            "The database is a read-only standby (pg_is_in_recovery() is true): migrations must "
            "run on the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it.",
        ),
        (
            (False, "on"),
            "The database is read-only for this role (default_transaction_read_only = on): "
            "migrate as a role or database where it is off, or point MIGRATION_DATABASE_URL at "
            "the primary.",
        ),
    ],
)
def test_require_writable_refusals_in_full(row: tuple[bool, str], refusal: str) -> None:
    connection = FakeConnection(results=[[row]])
    with pytest.raises(CommandError) as raised:
        PG.require_writable(connection)
    assert str(raised.value) == refusal
    assert connection.sql == [
        ("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')", None)
    ]


def test_verify_lock_sql_in_full() -> None:
    connection = FakeConnection(results=[[(1,)]])
    PG.verify_lock(connection, make_project(package="shop"))
    assert connection.sql[0][0] == (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = "
        "pg_backend_pid() AND classid = :classid AND objid = :objid AND objsubid = 1"
    )


def test_blockers_sql_and_several_of_them() -> None:
    rows = [(41, "api", "active", 2.0, "item"), (42, "", "idle in transaction", 9.5, "item")]
    connection = FakeConnection(results=[rows])
    assert PG.describe_blockers(connection, "ALTER TABLE item ADD x int") == (
        "table item held by pid 41 (application_name 'api', active, transaction open 2.0s); "
        "table item held by pid 42 (application_name '', idle in transaction, transaction open "
        "9.5s)"
    )
    assert connection.sql[0][0] == (
        "SELECT DISTINCT ON (a.pid) a.pid, coalesce(a.application_name, ''), "
        "coalesce(a.state, ''), extract(epoch FROM now() - coalesce(a.xact_start, "
        "a.query_start))::numeric(10,1), c.relname FROM pg_locks l JOIN pg_class c ON c.oid = "
        "l.relation JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'relation' AND "
        "l.granted AND l.pid <> pg_backend_pid() AND c.relname = ANY(CAST(CAST(:names AS "
        "text[]) AS name[])) ORDER BY a.pid, a.xact_start LIMIT 3"
    )


def test_a_statement_naming_no_table_asks_only_for_older_transactions() -> None:
    rows = [(9, "worker", "active", 30.0), (11, "cron", "", 4.0)]
    connection = FakeConnection(results=[rows])
    assert PG.describe_blockers(connection, "(1)") == (
        "older transactions: pid 9 (application_name 'worker', active, transaction open 30.0s); "
        "pid 11 (application_name 'cron', unknown state, transaction open 4.0s)"
    )
    assert connection.sql == [
        (
            "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), extract(epoch FROM "
            "now() - xact_start)::numeric(10,1) FROM pg_stat_activity WHERE xact_start IS NOT "
            "NULL AND pid <> pg_backend_pid() AND datname = current_database() ORDER BY "
            "xact_start LIMIT 3",
            None,
        )
    ]


INDEX_LOOKUP = (
    "SELECT i.indisvalid, format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c "
    "ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = "
    "CAST(CAST(:index AS text) AS name) AND i.indrelid = to_regclass(:table)"
)


def test_an_invalid_leftover_is_looked_up_by_its_stored_name_and_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = FakeConnection(
        results=[[(False, "public.ix")], [], [(True, "public.ix")]], isolation_level="AUTOCOMMIT"
    )
    with caplog.at_level("WARNING", logger="alembic_steady"):
        run_statement(
            PG,
            connection,
            'CREATE INDEX CONCURRENTLY "IX" ON item (name)',
            lambda: None,
            running(),
            lambda attempt, where: attempt(),
        )
    assert connection.sql[0] == (INDEX_LOOKUP, {"index": "IX", "table": "item"})
    assert caplog.messages == [
        "Index public.ix is INVALID, left by an earlier build that failed or was stopped: "
        "dropping it and building it again."
    ]


def test_a_valid_index_is_neither_dropped_nor_refused() -> None:
    connection = FakeConnection(
        results=[[(True, "public.ix")], [(True, "public.ix")]], isolation_level="AUTOCOMMIT"
    )
    run_statement(
        PG,
        connection,
        "CREATE INDEX CONCURRENTLY ix ON item (name)",
        lambda: None,
        running(),
        lambda attempt, where: attempt(),
    )
    assert [sql for sql, _ in connection.sql] == [INDEX_LOOKUP, INDEX_LOOKUP]


def test_an_index_left_invalid_in_full() -> None:
    connection = FakeConnection(results=[[], [(False, "public.ix")]], isolation_level="AUTOCOMMIT")
    with pytest.raises(InvalidIndex) as raised:
        run_statement(
            PG,
            connection,
            "CREATE INDEX CONCURRENTLY ix ON item (name)",
            lambda: None,
            running(),
            lambda attempt, where: attempt(),
        )
    assert str(raised.value) == (
        "index public.ix is INVALID after CREATE INDEX CONCURRENTLY; the next run drops and "
        "builds it again"
    )


@pytest.mark.parametrize(
    ("after", "leftover"), [([], None), ([(True, "public.ix")], None), ([(False, "s.ix")], "s.ix")]
)
def test_a_failed_build_notes_only_an_invalid_index_it_left(
    after: list[tuple[Any, ...]], leftover: str | None
) -> None:
    connection = FakeConnection(results=[[], after], isolation_level="AUTOCOMMIT")
    progress = running()

    def retry(attempt: Callable[[], Any], where: str) -> Any:
        attempt()
        raise lock_timeout_pg()

    with pytest.raises(OperationalError, match="lock timeout"):
        run_statement(
            PG,
            connection,
            "CREATE INDEX CONCURRENTLY ix ON s.item (a)",
            lambda: None,
            progress,
            retry,
        )
    assert progress.leftover == leftover
    assert progress.committed == 0
    assert connection.sql[-1] == (INDEX_LOOKUP, {"index": "ix", "table": "s.item"})


def test_a_failed_build_on_a_lost_connection_keeps_its_own_error() -> None:
    class Gone(FakeConnection):
        def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
            if len(self.sql) >= 1:
                raise pg_error("08006", "connection lost")
            return super().execute(statement, params)

    progress = running()

    def retry(attempt: Callable[[], Any], where: str) -> Any:
        attempt()
        raise lock_timeout_pg()

    with pytest.raises(OperationalError, match="lock timeout"):
        run_statement(
            PG,
            Gone(isolation_level="AUTOCOMMIT"),
            "CREATE INDEX CONCURRENTLY ix ON item (a)",
            lambda: None,
            progress,
            retry,
        )
    assert progress.leftover is None


# -- the migration lock ----------------------------------------------------------------------

PROTECT = (
    "SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN ('idle_session_timeout', "
    "'idle_in_transaction_session_timeout')"
)


def test_acquire_lock_protects_the_session_and_takes_the_projects_lock() -> None:
    connection = FakeConnection(results=[[], [(True,)]])
    settings = Settings(migration_lock_wait=0)
    asyncio.run(
        PG.acquire_lock(FakeAsyncConnection(connection), make_project(package="shop"), settings)
    )
    assert connection.sql == [
        (PROTECT, None),
        ("SELECT pg_try_advisory_lock(:key)", {"key": lock_key("shop")}),
    ]
    assert connection.log == ["execute", "commit", "execute", "commit"]


HOLDERS = (
    "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), extract(epoch FROM "
    "now() - a.backend_start)::int FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = "
    "l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid AND l.objid = "
    ":objid AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = "
    "current_database())"
)


@pytest.mark.parametrize(
    ("holders", "named_holder"),
    [
        (
            [(77, "shop migrations", "active", 40)],
            " (pid 77, application_name 'shop migrations', active, connected 40s)",
        ),
        (
            [(78, "", "idle", 5), (79, "x", "active", 1)],
            " (pid 78, application_name '', idle, connected 5s; an idle holder is often a session "
            "a transaction-mode pooler kept after a run through it: end it with "
            "pg_terminate_backend(78) if no migration runs)",
        ),
        ([(80, "", "", 3)], " (pid 80, application_name '', unknown state, connected 3s)"),
        ([], ""),
    ],
)
def test_a_lock_still_held_when_the_wait_is_over_names_its_holder(
    holders: list[tuple[Any, ...]], named_holder: str
) -> None:
    connection = FakeConnection(results=[[], [(False,)], holders])
    settings = Settings(migration_lock_wait=0)
    with pytest.raises(CommandError) as raised:
        asyncio.run(
            PG.acquire_lock(FakeAsyncConnection(connection), make_project(package="shop"), settings)
        )
    assert str(raised.value) == (
        f"Another migration{named_holder} still holds the lock after 0s. Wait for it to finish, "
        "or raise MIGRATION_LOCK_WAIT."
    )
    assert connection.sql[-1] == (HOLDERS, _key_parts("shop"))
    assert connection.log[-1] == "commit"


def test_release_lock_gives_the_session_back_with_the_servers_timeouts() -> None:
    connection = FakeConnection()
    asyncio.run(PG.release_lock(FakeAsyncConnection(connection), make_project(package="shop")))
    assert connection.log == ["rollback", "execute", "execute", "commit"]
    assert connection.sql == [
        (
            "SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN "
            "('lock_timeout', 'statement_timeout', 'idle_session_timeout', "
            "'idle_in_transaction_session_timeout', 'search_path')",
            None,
        ),
        ("SELECT pg_advisory_unlock(:key)", {"key": lock_key("shop")}),
    ]


def test_a_tenant_schemas_run_holds_a_lock_of_its_own() -> None:
    # Tenants of one database migrate side by side; replicas migrating one tenant serialise.
    connection = FakeConnection()
    project = replace(make_project(package="shop"), schema="acme")
    asyncio.run(PG.release_lock(FakeAsyncConnection(connection), project))
    assert connection.sql[-1] == ("SELECT pg_advisory_unlock(:key)", {"key": lock_key("shop/acme")})
    assert lock_key("shop/acme") != lock_key("shop")


def test_release_lock_on_a_lost_connection_gives_up_quietly() -> None:
    class Gone(FakeConnection):
        def rollback(self) -> None:
            raise pg_error("08006", "connection lost")

    asyncio.run(PG.release_lock(FakeAsyncConnection(Gone()), make_project(package="shop")))


def test_postgresql_may_always_retry_a_revision_its_transaction_rolled_back() -> None:
    # Steps committed by an autocommit_block() are rerun-safe by the rules `where` states.
    assert PG.may_retry(running("CREATE TABLE t (id int)", committed=1))


def test_forget_temporary_tables_drops_the_sessions_own() -> None:
    connection = FakeConnection()
    PG.forget_temporary_tables(connection)
    [(sql, _)] = connection.sql
    assert "WHERE c.relnamespace = pg_my_temp_schema() AND c.relkind IN ('r', 'p')" in sql
    assert "EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I CASCADE', r.relname);" in sql


class LockNeverFree(FakeConnection):
    """pg_try_advisory_lock answers false until `granted_on` tries were made (never: 0)."""

    def __init__(self, granted_on: int = 0) -> None:
        super().__init__()
        self.granted_on = granted_on
        self.tries = 0

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        result = super().execute(statement, params)
        if str(statement).startswith("SELECT pg_try_advisory_lock"):
            self.tries += 1
            result.rows = [(self.tries == self.granted_on,)]
        return result


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between tries, on a clock only they advance; the jitter at its middle."""
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock[0] += seconds

    monkeypatch.setattr(postgresql, "asyncio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(postgresql, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(postgresql, "random", SimpleNamespace(uniform=lambda a, b: (a + b) / 2))
    return slept


def test_waiting_for_the_lock_backs_off_from_50ms_to_a_second(pauses: list[float]) -> None:
    connection = LockNeverFree(granted_on=8)
    settings = Settings(migration_lock_wait=30)
    asyncio.run(
        PG.acquire_lock(FakeAsyncConnection(connection), make_project(package="shop"), settings)
    )
    # Jittered between half and all of 50 ms, doubling, at most a second: here the middle.
    assert pauses == [0.0375, 0.075, 0.15, 0.3, 0.6, 0.75, 0.75]
    assert connection.tries == 8
    # Each try ends its transaction: no snapshot is held while waiting.
    assert connection.log.count("commit") == 1 + 8


def test_the_last_pause_ends_at_the_lock_wait(pauses: list[float]) -> None:
    connection = LockNeverFree()
    settings = Settings(migration_lock_wait=3)
    with pytest.raises(CommandError, match="still holds the lock after 3s"):
        asyncio.run(
            PG.acquire_lock(FakeAsyncConnection(connection), make_project(package="shop"), settings)
        )
    assert pauses[:8] == [0.0375, 0.075, 0.15, 0.3, 0.6, 0.75, 0.75, 0.3375]
    assert sum(pauses) == pytest.approx(3)


class Preparer:
    @staticmethod
    def quote_identifier(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'


def tenant_connection(results: list[list[tuple[Any, ...]]]) -> FakeConnection:
    connection = FakeConnection(results)
    connection.dialect = SimpleNamespace(  # type: ignore[attr-defined]
        identifier_preparer=Preparer(), default_schema_name="public"
    )
    return connection


def test_a_new_tenant_schema_is_made_then_alone_on_the_search_path() -> None:
    connection = tenant_connection([[(0,)]])
    PG.enter_schema(connection, 'Acme "EU"')
    assert connection.sql == [
        ("SELECT count(*) FROM pg_namespace WHERE nspname = :schema", {"schema": 'Acme "EU"'}),
        ('CREATE SCHEMA "Acme ""EU"""', None),
        ('SET search_path TO "Acme ""EU"""', None),
    ]
    assert connection.log[-1] == "commit"  # kept past the revisions' transactions
    assert connection.dialect.default_schema_name == 'Acme "EU"'  # type: ignore[attr-defined]


def test_an_existing_tenant_schema_is_not_made_again() -> None:
    # CREATE SCHEMA IF NOT EXISTS would still need the CREATE privilege on the database.
    connection = tenant_connection([[(1,)]])
    PG.enter_schema(connection, "acme")
    assert [sql for sql, _ in connection.sql][1:] == ['SET search_path TO "acme"']
