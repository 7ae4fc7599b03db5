"""PostgreSQL: the advisory migration lock, lock_timeout retries, blocker reports, SQLSTATE
classification, and statements run outside a transaction (`autocommit_block()`).

The lock is one session-level advisory lock per project. Waiting for it holds no snapshot: a
replica that waited inside `pg_advisory_lock()` would keep one open, and `CREATE INDEX
CONCURRENTLY` on the lock holder waits for every older snapshot, a cycle PostgreSQL does not
detect. So waiters poll `pg_try_advisory_lock()` between short sleeps with no statement or
transaction open. The lock survives an `autocommit_block()`, its session is immune to the
server's idle timeouts, and the runner checks it still holds it before each revision and at the
end.

A failed or cancelled `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind: the next build
would fail on its name, and `IF NOT EXISTS` would skip it (a unique one then accepts duplicates).
So a leftover INVALID index of the same name is dropped before building, and the new index is
checked to be valid after.
"""

import asyncio
import logging
import math
import random
import re
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..project import Commands, MigrationSettings, Project
from ..runner.messages import HINT_VERBOSE, cap, describe_target
from ..runner.progress import Progress
from ..runner.retries import RetryPolicy
from .base import (
    NO_BLOCKER_SEEN,
    Dialect,
    LockLost,
    Retry,
    SchemaTracker,
    SquashObjects,
    TableFiller,
    first_in_chain,
)
from .clients import Clients
from .measured import BOOKKEEPING, TableSize, Watch

log = logging.getLogger("alembic_steady")

LOCK_NOT_AVAILABLE = "55P03"
TOO_MANY_CONNECTIONS = "53300"
INVALID_CATALOG_NAME = "3D000"  # the database does not exist
READ_ONLY = "25006"
# CREATE EXTENSION of one the server does not ship: feature_not_supported ("extension ... is not
# available", PostgreSQL 15+), undefined_file (its control file is missing, before 15).
EXTENSION_MISSING = ("0A000", "58P01")
# admin_shutdown (pg_terminate_backend), crash_shutdown, cannot_connect_now; class 08 is
# "connection exception".
CONNECTION_LOST = ("57P01", "57P02", "57P03")
# duplicate_prepared_statement, invalid_sql_statement_name: what a transaction-mode pooler does
# to asyncpg's prepared statements.
POOLER = ("42P05", "26000")
POOLER_HINT = (
    "the connection goes through a pooler in transaction mode (PgBouncer's "
    "pool_mode=transaction), which shares server sessions between clients. Migrations need a "
    "direct or session-pooled connection: set MIGRATION_DATABASE_URL to one."
)

_HOLDERS = text(
    "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), "
    "extract(epoch FROM now() - a.backend_start)::int "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid "
    "AND l.objid = :objid AND l.objsubid = 1 AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)
_FIRST_POLL, _LONGEST_POLL = 0.05, 1.0

# A name as PostgreSQL stores it: one longer than NAMEDATALEN-1 (63) bytes is cut there (in the
# server's encoding, never inside a character), as the server does to the names a statement
# writes, with a NOTICE. A longer parameter compared to a `name` column fails instead
# ("identifier too long"), so catalog lookups by a written name go through this cast.
AS_STORED = "CAST(CAST({} AS text) AS name)"

_WORDS = re.compile(r'"([^"]+)"|\b([A-Za-z_][\w$]*)\b')
# Sessions holding a lock on a relation the failed statement names: the likely blockers.
_BLOCKERS = text(
    "SELECT DISTINCT ON (a.pid) a.pid, coalesce(a.application_name, ''), "
    "coalesce(a.state, ''), "
    "extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::numeric(10,1), "
    "c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'relation' AND l.granted "
    "AND l.pid <> pg_backend_pid() AND c.relname = ANY(CAST(CAST(:names AS text[]) AS name[])) "
    "ORDER BY a.pid, a.xact_start LIMIT 3"
)
_OLDEST = text(
    "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), "
    "extract(epoch FROM now() - xact_start)::numeric(10,1) FROM pg_stat_activity "
    "WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
    "AND datname = current_database() ORDER BY xact_start LIMIT 3"
)

_NAME = r'(?:"[^"]+"|[\w$]+)'
_CREATE_EXTENSION = re.compile(
    rf"^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?({_NAME})", re.IGNORECASE
)
# The extension the server names (a CASCADE's dependency, say), where it speaks English.
_MISSING_EXTENSION = re.compile(
    r'extension "([^"]+)" is not available|extension control file "[^"]*/([^"/]+)\.control"'
)
_CONCURRENT_INDEX = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?({_NAME})"
    rf"\s+ON\s+(?:ONLY\s+)?({_NAME}(?:\.{_NAME})?)",
    re.IGNORECASE,
)
_INDEX = text(
    "SELECT i.indisvalid, format('%I.%I', n.nspname, c.relname) FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE c.relname = {AS_STORED.format(':index')} AND i.indrelid = to_regclass(:table)"
).execution_options(**{BOOKKEEPING: True})


def lock_key(package: str) -> int:
    """One advisory key per project: replicas of a service serialise, other services do not."""
    return zlib.crc32(f"alembic:{package}".encode()) - 2**31


def _key_parts(package: str) -> dict[str, int]:
    """pg_locks shows a bigint advisory key as two oids: the high and the low 32 bits."""
    key = lock_key(package)
    return {"classid": (key % 2**64) >> 32, "objid": key % 2**32}


class InvalidIndex(Exception):
    """A concurrent index build finished, yet PostgreSQL marks the index INVALID."""


def sqlstate(exc: BaseException) -> str | None:
    return first_in_chain(exc, _own_sqlstate)


def _own_sqlstate(exc: BaseException) -> str | None:
    for candidate in (getattr(exc, "orig", None), exc):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


# The schemas besides the default one that hold tables of the project's.
_OTHER_SCHEMAS = r"""
SELECT n.nspname FROM pg_namespace n
 WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'test_probe')
   AND n.nspname <> current_schema()
   AND EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p'))
 ORDER BY n.nspname
"""
# Each table's rows and bytes as the statistics hold them: the planner's estimate (set by VACUUM,
# ANALYZE, CREATE INDEX) or the live-row counter, whichever is larger (a table loaded since its
# last ANALYZE); pg_relation_size() would lock the table.
_TABLE_SIZES = """
SELECT c.oid::regclass::text,
       greatest(c.reltuples, coalesce(pg_stat_get_live_tuples(c.oid), 0))::bigint,
       c.relpages::bigint * current_setting('block_size')::bigint
  FROM pg_class c
 WHERE c.relkind IN ('r', 'p', 'm')
   AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                              'pg_toast'::regnamespace)
"""


class PostgreSQL(Dialect):
    name = "postgresql"
    server = "PostgreSQL"
    # Every scheme users paste from hosting providers, all driven through asyncpg.
    accepted_schemes = ("postgresql", "postgres", "postgresql+asyncpg")
    async_driver = "postgresql+asyncpg"
    expected_url = "postgresql://USER:PASSWORD@HOST:PORT/NAME"
    schemes_hint = "use postgresql:// (or postgres://, postgresql+asyncpg://)"
    committed_steps = "its steps up to an autocommit_block()"
    lock_timeout_setting = "lock_timeout"
    end_session = "pg_terminate_backend(pid)"
    lock_lost_cause = "its session was reset, as a pooler in transaction mode does"
    direct_connection = "a direct or session-pooled connection"
    lost_connection_causes = "server restart, failover, pg_terminate_backend, a pooler"
    committed_is_final = False
    databases_share_a_session = False

    # -- connecting --------------------------------------------------------------------------
    def connect_args(self, settings: MigrationSettings, session_name: str) -> dict[str, Any]:
        # Named in pg_stat_activity, and in the blocker lines of other runs.
        return {
            "timeout": settings.db_connect_timeout,
            "server_settings": {"application_name": session_name},
        }

    def connect_failure(
        self, exc: BaseException, url: URL, settings: MigrationSettings, commands: Commands
    ) -> CommandError:
        target = describe_target(url)
        if sqlstate(exc) == TOO_MANY_CONNECTIONS:
            return CommandError(
                f"PostgreSQL ({target}) refused the connection: {self.first_line(exc)}. Its "
                "max_connections are used up; a migration run needs one connection (replicas "
                "waiting for the migration lock hold one each). Free connections or raise "
                "max_connections, then run again."
            )
        pooler = self.through_pooler(exc)
        if pooler is not None:
            return CommandError(f"{self.first_line(exc)} ({target}): {pooler}")
        if sqlstate(exc) == INVALID_CATALOG_NAME:
            return CommandError(
                f"Cannot connect to PostgreSQL ({target}): {self.first_line(exc)}. Create it "
                f'(CREATE DATABASE "{url.database}", or make db-reset in development), or fix '
                "the name in DATABASE_URL or DB_NAME, then run again."
            )
        timeout = settings.db_connect_timeout
        reason = self.first_line(exc) if str(exc) else f"no answer within {timeout:g}s"
        return CommandError(
            f"Cannot connect to PostgreSQL ({target}): {reason}. Check DATABASE_URL or DB_* "
            "(or MIGRATION_DATABASE_URL; environment or .env) and that the server runs "
            f"({commands.db_up}). {HINT_VERBOSE}"
        )

    def require_writable(self, connection: Connection) -> None:
        standby, read_only = connection.execute(
            text("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')")
        ).one()
        connection.commit()
        if standby:
            raise CommandError(
                "The database is a read-only standby (pg_is_in_recovery() is true): migrations "
                "must run on the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it."
            )
        if read_only == "on":
            raise CommandError(
                "The database is read-only for this role (default_transaction_read_only = on): "
                "migrate as a role or database where it is off, or point MIGRATION_DATABASE_URL "
                "at the primary."
            )

    # -- the migration lock ------------------------------------------------------------------
    async def acquire_lock(
        self, connection: AsyncConnection, project: Project, settings: MigrationSettings
    ) -> None:
        """Poll for the lock with jittered backoff, for at most MIGRATION_LOCK_WAIT seconds."""
        await connection.run_sync(_protect_session)
        deadline = time.monotonic() + settings.migration_lock_wait
        pause = _FIRST_POLL
        key = lock_key(project.lock_name)
        while True:
            result = await connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            )
            held = bool(result.scalar_one())
            await connection.commit()  # no transaction, hence no snapshot, while waiting
            if held:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holders = await connection.run_sync(describe_holders, project.lock_name)
                await connection.commit()
                raise CommandError(
                    f"Another migration{holders} still holds the lock after "
                    f"{settings.migration_lock_wait:g}s. Wait for it to finish, or raise "
                    "MIGRATION_LOCK_WAIT."
                )
            await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 2, _LONGEST_POLL)

    async def release_lock(self, connection: AsyncConnection, project: Project) -> None:
        """Unlock before the connection closes. Closing alone releases it on a direct connection,
        but a pooler (or a caller's engine) keeps the server session, and the lock with it, for
        its next client: who also gets the server's timeouts back, not the runner's."""
        try:
            await connection.rollback()
            await connection.execute(_RESET_SESSION)
            await connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(project.lock_name)}
            )
            await connection.commit()
        except Exception:  # the connection is gone, and with it the lock
            return

    def verify_lock(self, connection: Connection, project: Project) -> None:
        held = connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid = :classid AND objid = :objid "
                "AND objsubid = 1"
            ),
            _key_parts(project.lock_name),
        ).scalar_one()
        if not held:
            raise LockLost

    def acquire_caller_lock(
        self, connection: Connection, project: Project, settings: MigrationSettings
    ) -> None:
        """Held until the caller's transaction ends. That transaction is open already, so
        waiting here holds its snapshot whatever we do; a bounded wait is what is left."""
        connection.execute(
            text("SELECT set_config('lock_timeout', :wait, true)"),
            {"wait": f"{int(settings.migration_lock_wait * 1000)}ms"},
        )
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(project.lock_name)}
        )

    # -- tenant schemas ----------------------------------------------------------------------
    def enter_schema(self, connection: Connection, schema: str) -> None:
        # Only the tenant's schema on the search path: a revision's unqualified ALTER of a table
        # the tenant lacks fails, rather than changing another schema's table of that name.
        # Made when missing (a new tenant), but looked up first: CREATE SCHEMA IF NOT EXISTS
        # asks for the CREATE privilege on the database even when the schema is there.
        quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
        exists = connection.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        ).scalar_one()
        if not exists:
            connection.execute(text(f"CREATE SCHEMA {quoted}"))
        connection.execute(text(f"SET search_path TO {quoted}"))
        connection.commit()
        # What Alembic and the inspector take as "no schema": the tenant's (the run's own
        # engine, never a caller's). Its version table is then found on the search path, and
        # autogenerate (`check`) compares the models with the tenant's tables, that version
        # table left out as in any database.
        connection.dialect.default_schema_name = schema

    # -- timeouts and retries ----------------------------------------------------------------
    def set_lock_timeout(self, connection: Connection, policy: RetryPolicy, attempt: int) -> str:
        # Rounded up: a bound under 1 ms sent as "0ms" would mean no limit at all.
        value = f"{math.ceil(policy.timeout_ms(attempt))}ms"
        connection.execute(
            text("SELECT set_config('lock_timeout', :value, false)"), {"value": value}
        )
        return value

    def set_statement_timeout(self, connection: Connection, settings: MigrationSettings) -> None:
        connection.execute(
            text("SELECT set_config('statement_timeout', :value, false)"),
            {"value": settings.migration_statement_timeout},
        )
        connection.commit()

    def set_caller_timeouts(
        self, connection: Connection, settings: MigrationSettings, policy: RetryPolicy
    ) -> None:
        """For the caller's transaction only (no retries there): both limits as SET LOCAL."""
        for name, value in (
            ("statement_timeout", settings.migration_statement_timeout),
            ("lock_timeout", settings.migration_lock_timeout),
        ):
            connection.execute(
                text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
            )

    def offline_preamble(self, settings: MigrationSettings, policy: RetryPolicy) -> list[str]:
        return [
            f"SET lock_timeout = '{settings.migration_lock_timeout}'",
            f"SET statement_timeout = '{settings.migration_statement_timeout}'",
        ]

    def is_lock_timeout(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", None)
        return isinstance(exc, DBAPIError) and getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE

    def describe_blockers(self, connection: Connection, statement: str) -> str:
        """Who holds a lock on a relation `statement` names, e.g. "table item held by pid 123
        (application_name 'app', idle in transaction, transaction open 3.1s)".

        The timed-out statement no longer waits, so pg_blocking_pids() has nothing left to say;
        the sessions holding locks on the tables it names are the ones that were in its way."""
        names = sorted({quoted or bare for quoted, bare in _WORDS.findall(statement)})
        rows = connection.execute(_BLOCKERS, {"names": names}).all() if names else []
        if rows:
            where = "the version row (alembic_version)" if rows[0][4] == "alembic_version" else None
            return "; ".join(
                f"{where or 'table ' + relname} held by pid {pid} ({_session(app, state, age)})"
                for pid, app, state, age, relname in rows
            )
        # No table lock in the way: CREATE INDEX CONCURRENTLY waits for older snapshots instead.
        rows = connection.execute(_OLDEST).all()
        if rows:
            return "older transactions: " + "; ".join(
                f"pid {pid} ({_session(app, state, age)})" for pid, app, state, age in rows
            )
        return NO_BLOCKER_SEEN

    # -- statements --------------------------------------------------------------------------
    def on_statement(
        self,
        connection: Connection | None,
        sql: str,
        run: Callable[[], Any],
        progress: Progress,
        retry: Retry,
    ) -> Any:
        """Statements in an `autocommit_block()` commit one by one: each is retried on a lock
        timeout on its own, recorded as committed, and a concurrent index build is made
        rerun-safe (an INVALID leftover dropped before, validity checked after)."""
        if connection is None or not in_autocommit(connection):
            return run()
        # Entering autocommit_block() committed everything the revision ran before.
        progress.committed = len(progress.statements) - 1
        index = _concurrent_index(sql)

        def attempt() -> Any:
            # Also before each retry: a build cut short by the lock timeout leaves one too.
            if index is not None:
                _drop_invalid_leftover(connection, *index)
            return run()

        try:
            result = retry(attempt, "outside a transaction")
        except Exception:
            if index is not None:
                _note_leftover(connection, *index, progress)
            raise
        progress.committed = len(progress.statements)
        if index is not None:
            _require_valid(connection, *index)
        return result

    # -- failures ----------------------------------------------------------------------------
    def first_line(self, exc: BaseException) -> str:
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__

    def lost_connection(self, exc: BaseException) -> bool:
        state = sqlstate(exc)
        if state is not None and (state in CONNECTION_LOST or state.startswith("08")):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return isinstance(exc, ConnectionError) or "connection is closed" in str(exc)

    def read_only(self, exc: BaseException) -> bool:
        return sqlstate(exc) == READ_ONLY

    def through_pooler(self, exc: BaseException) -> str | None:
        if sqlstate(exc) in POOLER and "prepared statement" in str(exc):
            return POOLER_HINT
        return None

    def unavailable_extension(self, exc: BaseException, commands: Commands) -> str | None:
        created = _CREATE_EXTENSION.match(_failed_statement(exc) or "")
        if sqlstate(exc) not in EXTENSION_MISSING or created is None:
            return None
        said = _MISSING_EXTENSION.search(str(exc))
        written = created.group(1)
        name = (said and (said.group(1) or said.group(2))) or (
            written[1:-1] if written.startswith('"') else written.lower()
        )
        uuids = {
            "uuid-ossp": " For UUIDs, gen_random_uuid() is built in since PostgreSQL 13: use it "
            "instead of uuid-ossp's uuid_generate_v4() and drop the CREATE EXTENSION.",
            "pgcrypto": " If it is there for gen_random_uuid(), that is built in since "
            "PostgreSQL 13: drop the CREATE EXTENSION.",
        }.get(name, "")
        return (
            f'This PostgreSQL server does not ship the extension "{name}": run the migrations '
            "on a server that has it (point DATABASE_URL, or TEST_DATABASE_URL for the tests, "
            f"at one, or start Docker's: {commands.db_up} with a Docker engine running; without "
            "one it starts an embedded server that lacks some extensions), then run "
            f"{commands.migrate} again.{uuids}"
        )

    def where(self, progress: Progress, commands: Commands) -> str:
        if progress.revision is None:
            return f"{cap(progress.where())}."
        committed = progress.committed_part()
        leftover = (
            f" The failed CREATE INDEX CONCURRENTLY left the INVALID index {progress.leftover}; "
            "the next run drops it and builds it again."
            if progress.leftover
            else ""
        )
        if committed:
            return (
                "The revision's transaction was rolled back, but these steps of it were already "
                "committed (autocommit_block() commits what ran before it and what runs in it): "
                f"{committed}. {cap(progress.where())}, so the next run starts the revision "
                "again: keep those steps rerun-safe (IF NOT EXISTS)." + leftover
            )
        if leftover:
            return f"Its transaction was rolled back; {progress.where()}.{leftover}"
        return f"Nothing of it was applied; {progress.where()}."

    # -- chores ------------------------------------------------------------------------------
    def clients(self) -> Clients:
        from .postgresql_clients import PostgreSQLClients

        return PostgreSQLClients()

    # -- the tests' walk ----------------------------------------------------------------------
    def schema_tracker(self, connection: Connection) -> SchemaTracker:
        from .postgresql_schema import PostgreSQLSchema

        return PostgreSQLSchema(connection)

    def forget_temporary_tables(self, connection: Connection) -> None:
        connection.exec_driver_sql(DROP_TEMPORARY_TABLES)

    def table_filler(self, connection: Connection, given: Mapping[str, str | None]) -> TableFiller:
        from .postgresql_rows import PostgreSQLRows

        return PostgreSQLRows(connection, given)

    # -- squashing ---------------------------------------------------------------------------
    insert_identity = " OVERRIDING SYSTEM VALUE"

    def project_schemas(self, connection: Connection) -> list[str | None]:
        return [None, *(name for (name,) in connection.execute(text(_OTHER_SCHEMAS)).all())]

    def schema_snapshot(self, connection: Connection) -> set[tuple[str, str]]:
        from .postgresql_schema import snapshot

        return snapshot(connection)

    def squash_objects(self, connection: Connection, metadata: MetaData) -> SquashObjects:
        from .postgresql_squash import squash_objects

        return squash_objects(connection, metadata)

    # -- measuring ---------------------------------------------------------------------------
    def watch(
        self,
        engine: AsyncEngine | Connection,
        url: URL,
        settings: MigrationSettings,
        *,
        probe: bool = False,
    ) -> AbstractContextManager[Watch]:
        from .postgresql_watch import watch

        return watch(engine, url, settings, probe)

    def table_sizes(self, connection: Connection) -> dict[str, TableSize]:
        return {
            name: TableSize(int(rows), int(size))
            for name, rows, size in connection.execute(text(_TABLE_SIZES))
        }

    def blocks_reads(self, mode: str) -> bool:
        return mode == "AccessExclusiveLock"

    def blocks_writes(self, mode: str) -> bool:
        from .postgresql_watch import blocks_writes

        return blocks_writes(mode)

    def mode_name(self, mode: str) -> str:
        from .postgresql_watch import mode_name

        return mode_name(mode)

    def begin_read_only(self, connection: Connection) -> None:
        connection.execute(text("SET TRANSACTION READ ONLY"))

    # -- authoring ---------------------------------------------------------------------------
    def autogenerate_options(self, options: dict[str, Any], writing_revision: bool) -> None:
        # Imported for its side effect: autogenerate then creates, alters and drops PostgreSQL
        # enum types along with the columns that use them, so downgrades leave no type behind.
        import alembic_postgresql_enum  # noqa: F401

    def type_change(self, kind: str, *, in_place: bool) -> str:
        if kind == "widens" and in_place:
            return "a catalog change under a brief ACCESS EXCLUSIVE lock, no rewrite"
        if kind == "widens":
            return (
                "rewrites the table and its indexes under an ACCESS EXCLUSIVE lock (reads and "
                "writes wait until it ends); on a large table add a new column, backfill it and "
                "switch over instead"
            )
        if kind == "narrows":
            return (
                "can lose data (values that do not fit fail the upgrade, or are cut if you add a "
                "USING clause); the table is scanned and rewritten under an ACCESS EXCLUSIVE lock"
            )
        return (
            "can lose data or fail on values that do not convert; the table is rewritten under "
            "an ACCESS EXCLUSIVE lock"
        )

    def offline_dialect(self, dialect: Any) -> None:
        from ..authoring.literals import render_json_literals

        render_json_literals(dialect)  # bulk_insert of JSON values


# The session's temporary relations (a revision's CREATE TEMPORARY TABLE lives until the session
# ends); the walk's own helper, pg_temp.alembic_steady_try, is a function and stays.
DROP_TEMPORARY_TABLES = r"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname FROM pg_class c
            WHERE c.relnamespace = pg_my_temp_schema() AND c.relkind IN ('r', 'p')
  LOOP
    EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I CASCADE', r.relname);
  END LOOP;
END $$
"""
# What the runner sets for its session (_protect_session, set_lock_timeout,
# set_statement_timeout), back to what the session started with.
_RESET_SESSION = text(
    "SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN ('lock_timeout', "
    "'statement_timeout', 'idle_session_timeout', 'idle_in_transaction_session_timeout', "
    "'search_path')"
)


def _protect_session(connection: Connection) -> None:
    """Keep the server from closing this session while it idles between revisions or retries:
    the lock would go with it, unnoticed, and a second runner would apply the same revision."""
    connection.execute(
        text(
            "SELECT set_config(name, '0', false) FROM pg_settings "
            "WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout')"
        )
    )
    connection.commit()


def describe_holders(connection: Connection, package: str) -> str:
    """Who holds the lock, e.g. " (pid 123, application_name 'x', active, connected 40s)"."""
    rows = connection.execute(_HOLDERS, _key_parts(package)).all()
    return "".join(
        f" (pid {pid}, application_name {name!r}, {state or 'unknown state'}, connected {age}s"
        + (
            "; an idle holder is often a session a transaction-mode pooler kept after a run "
            f"through it: end it with pg_terminate_backend({pid}) if no migration runs"
            if state == "idle"
            else ""
        )
        + ")"
        for pid, name, state, age in rows[:1]
    )


def _session(app: str, state: str, age: object) -> str:
    return f"application_name {app!r}, {state or 'unknown state'}, transaction open {age}s"


def _failed_statement(exc: BaseException) -> str | None:
    """The SQL of the statement that raised `exc`, as SQLAlchemy keeps it."""
    return first_in_chain(exc, _own_statement)


def _own_statement(exc: BaseException) -> str | None:
    statement = getattr(exc, "statement", None)
    return statement if isinstance(statement, str) else None


def in_autocommit(connection: Connection) -> bool:
    """Whether `connection` runs each statement on its own (an autocommit_block())."""
    return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _concurrent_index(sql: str) -> tuple[str, str] | None:
    """(index name as stored, table as written) of a CREATE INDEX CONCURRENTLY statement."""
    match = _CONCURRENT_INDEX.match(sql)
    if match is None:
        return None
    name, table = match.groups()
    return (name[1:-1] if name.startswith('"') else name.lower()), table


def _lookup(connection: Connection, index: str, table: str) -> tuple[bool, str] | None:
    row = connection.execute(_INDEX, {"index": index, "table": table}).first()
    return None if row is None else (bool(row[0]), str(row[1]))


def _drop_invalid_leftover(connection: Connection, index: str, table: str) -> None:
    found = _lookup(connection, index, table)
    if found is not None and not found[0]:
        log.warning(
            "Index %s is INVALID, left by an earlier build that failed or was stopped: "
            "dropping it and building it again.",
            found[1],
        )
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {found[1]}")


def _note_leftover(connection: Connection, index: str, table: str, progress: Progress) -> None:
    """Remember an INVALID index the failed build left, for the failure message."""
    try:
        found = _lookup(connection, index, table)
    except Exception:  # the connection is gone: the message says so already
        return
    if found is not None and not found[0]:
        progress.leftover = found[1]


def _require_valid(connection: Connection, index: str, table: str) -> None:
    found = _lookup(connection, index, table)
    if found is not None and not found[0]:
        raise InvalidIndex(
            f"index {found[1]} is INVALID after CREATE INDEX CONCURRENTLY; the next run drops "
            "and builds it again"
        )
