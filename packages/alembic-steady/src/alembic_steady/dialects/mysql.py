"""MySQL and MariaDB: a named migration lock (`GET_LOCK`), lock_wait_timeout retries, error
numbers, and revisions that are not atomic, since each DDL statement commits on its own.

MySQL's named locks belong to the session, not to a transaction: they survive every COMMIT (and
the implicit commit of each DDL statement) and go when the session ends. Their names are
server-wide, so the name carries the database's: two databases of one server migrate
independently, replicas of one service on one database serialise. Waiters call `GET_LOCK` with a
wait of at most a second at a time, up to MIGRATION_LOCK_WAIT, so a signal is handled meanwhile.

Every statement a revision runs through `op` is recorded with how many of them are committed (a
DDL statement commits whatever ran before it, and itself once it ran), so a failure half way
names what stands.
"""

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..project import Commands, MigrationSettings, Project
from ..runner.messages import HINT_VERBOSE, cap, describe_target
from ..runner.progress import Progress, named
from ..runner.retries import RetryPolicy
from ..runner.settings import duration_ms
from . import mysql_progress
from .base import (
    NO_BLOCKER_SEEN,
    Dialect,
    LockLost,
    Retry,
    SchemaTracker,
    SquashObjects,
    first_in_chain,
)
from .clients import Clients
from .measured import TableSize, Watch

# MySQL refuses lock names longer than 64 characters; a long database name is hashed instead.
_MAX_NAME = 64
_LONGEST_POLL = 1.0
# lock_wait_timeout's largest value (a year): MIGRATION_LOCK_TIMEOUT=0, no limit.
_NO_LIMIT = 31_536_000

# ER_LOCK_WAIT_TIMEOUT: a metadata lock (lock_wait_timeout) or a row lock
# (innodb_lock_wait_timeout) not granted in time.
LOCK_WAIT_TIMEOUT = 1205
ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049
TOO_MANY_CONNECTIONS = (1040, 1203)
# --read-only (ER_OPTION_PREVENTS_STATEMENT), a read-only transaction.
READ_ONLY = (1290, 1792)
# Server gone away, lost during a query, killed (KILL), shutting down; 2002/2003: cannot connect.
CONNECTION_LOST = (2006, 2013, 1927, 1053, 2002, 2003)
# KILL of a session that has ended meanwhile.
UNKNOWN_THREAD = 1094
# How long a killed session may take to roll back its statement before a signalled run exits.
_KILL_WAIT = 30.0

# Sessions with an open InnoDB transaction: whoever holds a table's metadata lock is among them.
_BLOCKERS = text(
    "SELECT p.ID, p.USER, p.COMMAND, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
    "FROM information_schema.INNODB_TRX t "
    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
    "WHERE p.ID <> CONNECTION_ID() ORDER BY t.trx_started LIMIT 3"
)
# Statements that commit implicitly, before and after they run.
_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE)
_HEAD = re.compile(r"^[^(;]*")


def lock_name(package: str, database: str | None) -> str:
    """E.g. "alembic:my_service:shop": per project and database."""
    name = f"alembic:{package}:{database or ''}"
    if len(name) <= _MAX_NAME:
        return name
    return "alembic:" + hashlib.sha256(name.encode()).hexdigest()[: _MAX_NAME - 8]


def errno(exc: BaseException) -> int | None:
    """The server's error number (PyMySQL's first argument), e.g. 1205."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None) if isinstance(exc, DBAPIError) else None
    return args[0] if args and isinstance(args[0], int) else None


def _errno_in_chain(exc: BaseException) -> int | None:
    return first_in_chain(exc, errno)


def is_ddl(sql: str) -> bool:
    return _DDL.match(sql) is not None


def name_statement(sql: str) -> str:
    """The statement up to its column list, e.g. "CREATE TABLE widget" or
    "ALTER TABLE widget ADD COLUMN price INTEGER", for a message."""
    match = _HEAD.match(sql.strip())
    head = " ".join((match.group(0) if match else sql).replace("`", "").split())
    return head if len(head) <= 100 else head[:97] + "..."


def committed_objects(progress: Progress) -> list[str]:
    """The committed statements of the current revision, named."""
    return [name_statement(sql) for sql in progress.statements[: progress.committed]]


def timeout_seconds(policy: RetryPolicy, attempt: int) -> int:
    """The attempt's bound in whole seconds, at least 1: MySQL's lock_wait_timeout has no finer
    unit, and 0 would mean "do not wait at all"."""
    if policy.lock_timeout_ms <= 0:
        return _NO_LIMIT
    return max(1, math.ceil(policy.timeout_ms(attempt) / 1000))


class MySQL(Dialect):
    name = "mysql"
    server = "MySQL"
    # Every scheme users paste (PyMySQL's included, as sync code writes it), all driven through
    # aiomysql: PyMySQL's protocol and error codes on asyncio.
    accepted_schemes = (
        "mysql",
        "mysql+pymysql",
        "mysql+aiomysql",
        "mariadb",
        "mariadb+pymysql",
        "mariadb+aiomysql",
    )
    async_driver = "mysql+aiomysql"
    expected_url = "mysql://USER:PASSWORD@HOST:PORT/NAME"
    schemes_hint = "use mysql:// (or mysql+pymysql://, mariadb://, mysql+aiomysql://)"
    committed_steps = "its DDL statements so far"
    lock_timeout_setting = "lock_wait_timeout"
    end_session = "KILL <connection>"
    lock_lost_cause = (
        "its session was reset or replaced (a proxy that multiplexes sessions does this)"
    )
    direct_connection = "a direct connection"
    lost_connection_causes = "server restart, failover, KILL"
    committed_is_final = True
    databases_share_a_session = True

    def __init__(self) -> None:
        self._record_table = False  # mysql_progress's table is known to exist
        self._statement_time = ""  # the variable set_statement_timeout set

    # -- connecting --------------------------------------------------------------------------
    def connect_args(self, settings: MigrationSettings, session_name: str) -> dict[str, Any]:
        # Named in performance_schema.session_connect_attrs.
        return {"connect_timeout": settings.db_connect_timeout, "program_name": session_name}

    def connect_failure(
        self, exc: BaseException, url: URL, settings: MigrationSettings, commands: Commands
    ) -> CommandError:
        number = _errno_in_chain(exc)
        if number == ACCESS_DENIED:
            fix = "Check the user and password in DATABASE_URL or DB_USER/DB_PASSWORD"
        elif number == UNKNOWN_DATABASE:
            fix = (
                f"Create it (CREATE DATABASE `{url.database}`, or make db-reset in "
                "development), or fix the name in DATABASE_URL or DB_NAME"
            )
        elif number in TOO_MANY_CONNECTIONS:
            fix = (
                "Its max_connections are used up; a migration run needs one connection. Free "
                "connections or raise max_connections"
            )
        else:
            fix = (
                "Check DATABASE_URL or DB_* (or MIGRATION_DATABASE_URL; environment or .env) and "
                f"that the server runs ({commands.db_up})"
            )
        timeout = settings.db_connect_timeout
        reason = self.first_line(exc) if str(exc) else f"no answer within {timeout:g}s"
        return CommandError(
            f"Cannot connect to MySQL ({describe_target(url)}): {reason}. {fix}, then run again. "
            f"{HINT_VERBOSE}"
        )

    def require_writable(self, connection: Connection) -> None:
        read_only = connection.execute(text("SELECT @@global.read_only")).scalar_one()
        connection.commit()
        if read_only:
            raise CommandError(
                "The server is read-only (read_only = ON, as a replica is): migrations must run "
                "on the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it."
            )

    # -- the migration lock ------------------------------------------------------------------
    async def acquire_lock(
        self, connection: AsyncConnection, project: Project, settings: MigrationSettings
    ) -> None:
        """Wait for the lock, at most a second per GET_LOCK call and MIGRATION_LOCK_WAIT in all."""
        await connection.run_sync(_protect_session)
        name = await connection.run_sync(_name, project.package)
        deadline = time.monotonic() + settings.migration_lock_wait
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(_LONGEST_POLL, remaining))
            result = await connection.execute(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}
            )
            held = result.scalar_one() == 1
            await connection.commit()  # no transaction open while waiting
            if held:
                return
            if deadline - time.monotonic() <= 0:
                holders = await connection.run_sync(describe_holders, name)
                await connection.commit()
                raise CommandError(
                    f"Another migration{holders} still holds the lock {name!r} after "
                    f"{settings.migration_lock_wait:g}s. Wait for it to finish, or raise "
                    "MIGRATION_LOCK_WAIT."
                )

    async def release_lock(self, connection: AsyncConnection, project: Project) -> None:
        """Release before the connection closes (closing alone releases it too)."""
        try:
            await connection.rollback()
            # A caller's pooled engine hands the session on: with the server's timeouts.
            reset: tuple[str, ...] = (
                "wait_timeout",
                "lock_wait_timeout",
                "innodb_lock_wait_timeout",
            )
            reset += (self._statement_time,) if self._statement_time else ()
            await connection.execute(
                text("SET " + ", ".join(f"SESSION {name} = DEFAULT" for name in reset))
            )
            await connection.run_sync(self.release_caller_lock, project)
            await connection.commit()
        except Exception:  # the connection is gone, and with it the lock
            return

    def verify_lock(self, connection: Connection, project: Project) -> None:
        held = connection.execute(
            text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"),
            {"name": _name(connection, project.package)},
        ).scalar_one()
        if not held:
            raise LockLost

    def acquire_caller_lock(
        self, connection: Connection, project: Project, settings: MigrationSettings
    ) -> None:
        """A session lock: the runner releases it when the run ends (a transaction does not)."""
        name = _name(connection, project.package)
        wait = settings.migration_lock_wait
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}
        ).scalar_one()
        if got != 1:
            raise CommandError(
                f"Another migration{describe_holders(connection, name)} still holds the lock "
                f"{name!r} after {wait:g}s. Wait for it to finish, or raise MIGRATION_LOCK_WAIT."
            )

    def release_caller_lock(self, connection: Connection, project: Project) -> None:
        connection.execute(
            text("SELECT RELEASE_LOCK(:name)"), {"name": _name(connection, project.package)}
        )

    # -- timeouts and retries ----------------------------------------------------------------
    def set_lock_timeout(self, connection: Connection, policy: RetryPolicy, attempt: int) -> str:
        """Bound both waits a migration statement can meet: metadata locks (DDL) and row locks
        (DML)."""
        seconds = timeout_seconds(policy, attempt)
        connection.execute(
            text("SET SESSION lock_wait_timeout = :s, innodb_lock_wait_timeout = :s"),
            {"s": seconds},
        )
        return f"{seconds}s"

    def set_statement_timeout(self, connection: Connection, settings: MigrationSettings) -> None:
        """max_statement_time (seconds) on MariaDB, max_execution_time (milliseconds; MySQL
        bounds only SELECTs with it) on MySQL."""
        limit_ms = duration_ms("migration_statement_timeout", settings.migration_statement_timeout)
        version = str(connection.execute(text("SELECT VERSION()")).scalar_one())
        if "mariadb" in version.lower():
            self._statement_time = "max_statement_time"
            connection.execute(text("SET SESSION max_statement_time = :s"), {"s": limit_ms / 1000})
        else:
            self._statement_time = "max_execution_time"
            connection.execute(text("SET SESSION max_execution_time = :ms"), {"ms": int(limit_ms)})
        connection.commit()

    def set_caller_timeouts(
        self, connection: Connection, settings: MigrationSettings, policy: RetryPolicy
    ) -> None:
        """MySQL has no SET LOCAL: only the lock waits are bounded on a caller's session."""
        self.set_lock_timeout(connection, policy, 0)

    def offline_preamble(self, settings: MigrationSettings, policy: RetryPolicy) -> list[str]:
        return [f"SET SESSION lock_wait_timeout = {timeout_seconds(policy, 0)}"]

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return errno(exc) == LOCK_WAIT_TIMEOUT

    def may_retry(self, progress: Progress) -> bool:
        """Only while nothing of the revision is committed: a DDL statement cannot be undone."""
        return not progress.committed

    def describe_blockers(self, connection: Connection, statement: str) -> str:
        """The sessions with open transactions, e.g. "connection 12 (user 'app', Sleep,
        transaction open 3s)": MySQL does not say who held the metadata lock once the wait has
        ended."""
        rows = connection.execute(_BLOCKERS).all()
        if rows:
            return "sessions with open transactions: " + "; ".join(
                f"connection {conn_id} (user {user!r}, {state}, transaction open {age}s)"
                for conn_id, user, state, age in rows
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
        """A DDL statement commits all before it, and itself once it ran. The record of how far
        the revision got goes in just before, so the same implicit commit makes it durable."""
        if not is_ddl(sql):
            return run()
        progress.committed = len(progress.statements) - 1
        if connection is not None:
            if not self._record_table:
                mysql_progress.create(connection)
                self._record_table = True
            mysql_progress.before_ddl(
                connection, progress, committed_objects(progress), name_statement(sql)
            )
        result = run()
        progress.committed = len(progress.statements)
        return result

    async def server_stopper(
        self, connection: AsyncConnection, engine: AsyncEngine, progress: Progress
    ) -> Callable[[], Coroutine[Any, Any, str]]:
        """KILL the session from a second connection: the server does not notice a client gone
        mid-statement, and would run an ALTER to its end and commit it, lock held meanwhile."""
        session = int((await connection.execute(text("SELECT CONNECTION_ID()"))).scalar_one())
        await connection.commit()

        async def stop() -> str:
            return await self._kill(engine, session, progress)

        return stop

    async def _kill(self, engine: AsyncEngine, session: int, progress: Progress) -> str:
        alive = text("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = :id")
        try:
            async with engine.connect() as other:
                found = (await other.execute(alive, {"id": session})).first()
                idle = found is not None and found[0] is None
                if idle and progress.statements and is_ddl(progress.statements[-1]):
                    # Its last statement had ended, and a DDL statement that ended is
                    # committed, whether or not its answer reached this process.
                    progress.committed = len(progress.statements)
                if found is not None:
                    try:
                        await other.execute(text(f"KILL {session}"))
                    except DBAPIError as exc:
                        if errno(exc) != UNKNOWN_THREAD:
                            raise
                deadline = time.monotonic() + _KILL_WAIT
                while (await other.execute(alive, {"id": session})).first() is not None:
                    await other.commit()
                    if time.monotonic() > deadline:
                        return (
                            f"Its session was killed on the server (KILL {session}) and still "
                            "rolls back its statement: the migration lock is held until that ends."
                        )
                    await asyncio.sleep(0.05)
                if progress.revision is not None:
                    await other.run_sync(self._settle, progress)
        except Exception as exc:
            return (
                f"Its statement could not be stopped on the server ({self.first_line(exc)}): it "
                f"may still run, and commit, holding the migration lock: end it with KILL "
                f"{session}."
            )
        what = "statement was stopped" if found is not None and found[0] else "session was ended"
        return f"Its {what} on the server (KILL {session}) and the migration lock released."

    # -- revisions a run died inside ---------------------------------------------------------
    def refuse_unfinished(
        self, connection: Connection, progress: Progress, commands: Commands
    ) -> None:
        self._record_table = mysql_progress.exists(connection)
        connection.commit()
        if self._record_table:
            mysql_progress.refuse_unfinished(connection, commands)

    def revision_done(self, connection: Connection, progress: Progress) -> None:
        if self._record_table:
            mysql_progress.done(connection, progress)

    def revision_failed(self, connection: Connection, progress: Progress) -> None:
        if not self._record_table or progress.revision is None:
            return
        try:
            self._settle(connection, progress)
        except Exception:  # the connection is gone: the record says what may have been applied
            return

    def _settle(self, connection: Connection, progress: Progress) -> None:
        mysql_progress.settle(connection, progress, committed_objects(progress))

    def forget_unfinished(self, connection: Connection) -> None:
        mysql_progress.forget(connection)

    # -- failures ----------------------------------------------------------------------------
    def first_line(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None)
        args: tuple[object, ...] = getattr(orig, "args", ())
        if len(args) == 2 and isinstance(args[0], int):  # PyMySQL's (errno, message)
            return f"{type(orig).__name__} {args[0]}: {args[1]}"
        message = str(orig or exc).strip().splitlines()
        return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__

    def lost_connection(self, exc: BaseException) -> bool:
        if _errno_in_chain(exc) in CONNECTION_LOST:
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return isinstance(exc, ConnectionError)

    def read_only(self, exc: BaseException) -> bool:
        return _errno_in_chain(exc) in READ_ONLY

    def where(self, progress: Progress, commands: Commands) -> str:
        if progress.revision is None:
            return f"{cap(progress.where())}."
        committed = committed_objects(progress)
        if not committed:
            return f"Nothing of it was applied; {progress.where()}."
        finished = ", ".join(progress.to) or progress.revision.split(" ", 1)[0]
        undone = named(progress.at)
        return (
            "MySQL commits each DDL statement on its own, and these statements of the revision "
            f"were already committed: {'; '.join(committed)}. The version row was NOT advanced: "
            f"{progress.where()}. To recover, either finish the revision by hand (run its "
            f"remaining statements) and `{commands.stamp_to(finished)}`, or undo what was "
            f"committed (e.g. DROP the objects above) and `{commands.stamp_to(undone)}`: until "
            f"then {commands.migrate} refuses to run the revision again. Keep one DDL statement "
            "per revision on MySQL to avoid this."
        )

    # -- chores ------------------------------------------------------------------------------
    def clients(self) -> Clients:
        from .mysql_clients import MySQLClients

        return MySQLClients()

    # -- the tests' walk ----------------------------------------------------------------------
    def schema_tracker(self, connection: Connection) -> SchemaTracker:
        from .mysql_schema import MySQLSchema

        return MySQLSchema(connection)

    # -- squashing ---------------------------------------------------------------------------
    @property
    def runners_tables(self) -> tuple[str, ...]:
        return (*super().runners_tables, mysql_progress.TABLE)

    def schema_snapshot(self, connection: Connection) -> set[tuple[str, str]]:
        from .mysql_schema import MySQLSchema

        return MySQLSchema(connection).rows

    def squash_objects(self, connection: Connection, metadata: MetaData) -> SquashObjects:
        from .mysql_squash import squash_objects

        return squash_objects(connection)  # every routine, view and trigger, whichever table

    # -- measuring ---------------------------------------------------------------------------
    def watch(
        self,
        engine: AsyncEngine | Connection,
        url: URL,
        settings: MigrationSettings,
        *,
        probe: bool = False,
    ) -> AbstractContextManager[Watch]:
        from .mysql_watch import watch

        # Each ALTER is tried on an empty twin of its table, never on the table, on the session
        # running the revisions: no URL, settings or leave to probe needed.
        return watch(engine)

    def table_sizes(self, connection: Connection) -> dict[str, TableSize]:
        # information_schema's estimates (InnoDB's sampled row count), no lock taken.
        return {
            name: TableSize(int(rows or 0), int(size or 0))
            for name, rows, size in connection.execute(
                text(
                    "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH "
                    "FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
                )
            )
        }

    def blocks_reads(self, mode: str) -> bool:
        # A table copy (ALGORITHM=COPY) or LOCK=EXCLUSIVE: nobody reads the table meanwhile.
        return mode == "EXCLUSIVE"

    def blocks_writes(self, mode: str) -> bool:
        return mode in ("SHARED", "EXCLUSIVE")

    def mode_name(self, mode: str) -> str:
        # The weakest LOCK= clause the server accepts for the statement's algorithm.
        return f"LOCK={mode}"

    def begin_read_only(self, connection: Connection) -> None:
        connection.execute(text("SET TRANSACTION READ ONLY"))

    # -- authoring ---------------------------------------------------------------------------
    def type_change(self, kind: str, *, in_place: bool) -> str:
        copy = (
            "MySQL copies the table (ALGORITHM=COPY), and writes wait until it ends; on a large "
            "table add a new column, backfill it and switch over instead"
        )
        if kind == "widens" and in_place:
            return (
                "in place while the column's length prefix stays the same (a VARCHAR up to 255 "
                f"bytes), else {copy}"
            )
        if kind == "widens":
            return copy
        if kind == "narrows":
            return f"can lose data (in strict mode values that do not fit fail the upgrade); {copy}"
        return f"can lose data or fail on values that do not convert; {copy}"

    def autogenerate_options(self, options: dict[str, Any], writing_revision: bool) -> None:
        from ..authoring.autogen import not_the_runners_tables, warn_mixed_ddl

        options["include_name"] = not_the_runners_tables(*self.runners_tables)
        if writing_revision:
            options["process_revision_directives"] = warn_mixed_ddl(
                options["process_revision_directives"]
            )


def _name(connection: Connection, package: str) -> str:
    return lock_name(package, connection.execute(text("SELECT DATABASE()")).scalar_one())


def _protect_session(connection: Connection) -> None:
    """Keep the server from closing this session while it idles between revisions or retries
    (wait_timeout): the lock would go with it, unnoticed."""
    connection.execute(text("SET SESSION wait_timeout = 31536000"))
    connection.commit()


def describe_holders(connection: Connection, name: str) -> str:
    """Who holds the lock, e.g. " (connection 12, user 'app'@'10.0.0.3', Sleep, connected 40s)"."""
    row = connection.execute(
        text(
            "SELECT p.ID, p.USER, p.HOST, p.COMMAND, p.TIME FROM information_schema.PROCESSLIST p "
            "WHERE p.ID = IS_USED_LOCK(:name)"
        ),
        {"name": name},
    ).first()
    if row is None:
        return ""
    conn_id, user, host, state, age = row
    return f" (connection {conn_id}, user {user!r}@{host!r}, {state}, for {age}s)"
