"""Watching revisions run on MySQL and MariaDB, for `make plan` and `make rehearse`: each
statement a revision runs, committed on its own (MySQL commits each DDL statement by itself), and
for an ALTER TABLE (or a CREATE INDEX or DROP INDEX, which the server runs as one) what the
server would do. Just before it runs, on the runner's session in the scratch database, an empty
twin of the table (`CREATE TABLE _plan_probe_<hex> LIKE <table>`, dropped after each try) takes
the same change with `ALGORITHM=INSTANT`, else `INPLACE`, else it is a COPY, with the weakest
`LOCK=NONE`, `SHARED` or `EXCLUSIVE` the server accepts. A COPY rewrites the table; an INPLACE
change does when the twin's InnoDB table id changes (a rebuild).

Lock NONE: reads and writes go on, but every ALTER takes an exclusive metadata lock at its start
and end, which waits for open transactions on the table while all that comes after waits for it.
Not told: those waits; the row locks of DML; statements the twin cannot take (RENAME, several
tables, a foreign key's change: the twin has none), which get no algorithm and no lock; MySQL's
64 instant changes per table (the twin starts at none); an INPLACE rebuild, where the session
may not read InnoDB's table ids (MySQL and MariaDB ask for the PROCESS privilege)."""

import re
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .measured import (
    Listed,
    Measured,
    Watched,
    listening,
    revision_statement,
    running_revision,
    watched_revision,
)
from .mysql import MySQL

# ALGORITHM=... is not supported (for this operation | Reason: ...). Try ...
_REFUSED = {1845, 1846}
_SYNTAX = 1064  # a server before ALGORITHM=INSTANT (MySQL 5.7) does not parse it
_ALGORITHMS = ("INSTANT", "INPLACE", "COPY")
_LOCKS = {"INSTANT": ("NONE",), "INPLACE": ("NONE", "SHARED", "EXCLUSIVE")}
_LOCKS["COPY"] = _LOCKS["INPLACE"][1:]  # a copy never lets writes through

_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_TABLE = rf"(?:(?P<schema>{_NAME})\s*\.\s*)?(?P<table>{_NAME})"
_ALTER = re.compile(
    rf"\s*ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+{_TABLE}(?P<rest>\s.*)", re.I | re.S
)
_CREATE_INDEX = re.compile(
    r"\s*CREATE\s+(?P<kind>(?:UNIQUE|FULLTEXT|SPATIAL)\s+)?INDEX\s+"
    rf"(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<index>{_NAME})\s+(?P<using>USING\s+\w+\s+)?"
    rf"ON\s+{_TABLE}\s*(?P<rest>\(.*)",
    re.I | re.S,
)
_DROP_INDEX = re.compile(
    rf"\s*DROP\s+INDEX\s+(?P<exists>IF\s+EXISTS\s+)?(?P<index>{_NAME})\s+ON\s+{_TABLE}(?P<rest>.*)",
    re.I | re.S,
)
# A change that involves another table: the table renamed (not a column or an index), or a
# partition swapped with another table's rows. The twin must not take it.
_OTHER_TABLE = re.compile(r"\bRENAME\s+(?!(?:COLUMN|INDEX|KEY)\b)|\bEXCHANGE\s+PARTITION\b", re.I)
# The statement's own ALGORITHM= / LOCK= clauses, with one comma beside them.
_CLAUSE = re.compile(
    r"(?P<comma>,\s*)?\b(?P<what>ALGORITHM|LOCK)\b\s*=?\s*"
    r"(?P<value>DEFAULT|INSTANT|INPLACE|NOCOPY|COPY|NONE|SHARED|EXCLUSIVE)\b\s*(?(comma)|,?)",
    re.I,
)
_INNODB_TABLES = ("INNODB_TABLES", "INNODB_SYS_TABLES")  # MySQL 8, MariaDB
TWIN = "\x00twin\x00"  # where the twin's name goes in a change: no SQL holds a NUL


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


@dataclass
class Change:
    """An ALTER TABLE as the probe runs it: `sql` holds TWIN where the twin's name goes."""

    table: str
    schema: str | None  # as the statement names it, if it does
    sql: str
    algorithm: str | None = None  # the statement's own ALGORITHM=, LOCK=
    lock: str | None = None


def parse(statement: str) -> Change | None:
    """The change `statement` makes to one table, None where it is not one the twin can take."""
    if match := _ALTER.fullmatch(statement):
        rest = match["rest"]
        if _OTHER_TABLE.search(rest):
            return None
        head = f"ALTER TABLE {TWIN}"
    elif match := _CREATE_INDEX.fullmatch(statement):
        rest = " " + match["rest"]
        head = (
            f"ALTER TABLE {TWIN} ADD {match['kind'] or ''}INDEX {match['exists'] or ''}"
            f"{match['index']} {match['using'] or ''}"
        )
    elif match := _DROP_INDEX.fullmatch(statement):
        rest = match["rest"]
        head = f"ALTER TABLE {TWIN} DROP INDEX {match['exists'] or ''}{match['index']}"
    else:
        return None
    given = {found["what"].upper(): found["value"].upper() for found in _CLAUSE.finditer(rest)}
    rest = _CLAUSE.sub(" ", rest).rstrip().rstrip(";").rstrip()
    if head.endswith(TWIN) and not rest:
        return None  # an ALTER TABLE of options only (ALGORITHM=, LOCK=): no change to show
    algorithm = given.get("ALGORITHM")
    lock = given.get("LOCK")
    return Change(
        _unquote(match["table"]),
        _unquote(match["schema"]) if match["schema"] else None,
        head + rest,
        None if algorithm == "DEFAULT" else "INPLACE" if algorithm == "NOCOPY" else algorithm,
        None if lock == "DEFAULT" else lock,
    )


@dataclass(frozen=True)
class Refusal:
    """An error of the server's: its number and message."""

    code: int
    message: str

    def of_lock(self) -> bool:
        """ "LOCK=NONE is not supported. Reason: ... Try LOCK=SHARED": a stronger lock may do."""
        return self.code in _REFUSED and self.message.upper().startswith("LOCK=")

    def of_algorithm(self, algorithm: str) -> bool:
        """ "ALGORITHM=INSTANT is not supported ...": the next algorithm may do."""
        if algorithm == "INSTANT" and self.code == _SYNTAX:
            return "ALGORITHM" in self.message.upper()
        return self.code in _REFUSED and not self.of_lock()


@dataclass
class Found:
    """What the server said it would do with a change."""

    table: str
    algorithm: str
    lock: str
    rebuilds: bool


class Server:
    """Runs the probes on the runner's own DBAPI connection, around SQLAlchemy (no events, no
    transaction bookkeeping). Each probe is DDL, which commits what the session had open, as
    the statement about to run would anyway."""

    def __init__(self, conn: Connection, parameters: Any) -> None:
        self._cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._error: type[Exception] = conn.dialect.loaded_dbapi.Error
        self._parameters = parameters

    def close(self) -> None:
        self._cursor.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql)
        return [tuple(row) for row in self._cursor.fetchall()]

    def run(self, sql: str, *, as_given: bool = False) -> Refusal | None:
        """Run `sql` (with the statement's parameters when `as_given`): None, or the error."""
        try:
            if as_given and self._parameters is not None:
                self._cursor.execute(sql, self._parameters)
            else:
                self._cursor.execute(sql)
        except self._error as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
            return Refusal(code, str(exc.args[1]) if len(exc.args) > 1 else "")
        return None

    @property
    def error(self) -> type[Exception]:
        return self._error


class Prober:
    """The probes of one watch: what the server knows of itself is read once."""

    def __init__(self) -> None:
        self._mariadb: bool | None = None
        self._ids: str | None = None  # the information_schema table of InnoDB's table ids

    def _learn(self, server: Server) -> None:
        if self._mariadb is not None:
            return
        ((version,),) = server.rows("SELECT VERSION()")
        self._mariadb = "mariadb" in str(version).lower()
        names = ", ".join(f"'{name}'" for name in _INNODB_TABLES)
        found = {
            str(name)
            for (name,) in server.rows(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME IN ({names})"
            )
        }
        self._ids = next((name for name in _INNODB_TABLES if name in found), None)

    def candidates(self, change: Change) -> tuple[str, ...]:
        if change.algorithm is None:
            return _ALGORITHMS
        if change.algorithm not in _ALGORITHMS:
            return ()
        if self._mariadb:
            # MariaDB takes a named algorithm as the least it accepts, and does better if it can.
            return _ALGORITHMS[: _ALGORITHMS.index(change.algorithm) + 1]
        return (change.algorithm,)

    def probe(self, conn: Connection, statement: str, parameters: Any) -> Found | None:
        """What the server would do running `statement`, or None where the probe cannot tell."""
        change = parse(statement)
        if change is None:
            return None
        server = Server(conn, parameters)
        try:
            self._learn(server)
            ((database,),) = server.rows("SELECT DATABASE()")
            if change.schema is not None and change.schema != database:
                return None  # another database's table: the scratch one is probed, no other
            quoted = change.table.replace("'", "''").replace("\\", "\\\\")
            named = server.rows(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                f"AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME = '{quoted}'"
            )
            if len(named) != 1:
                return None
            return self._try(server, change, str(named[0][0]))
        except server.error:
            return None
        finally:
            server.close()

    def _try(self, server: Server, change: Change, table: str) -> Found | None:
        source = "`" + table.replace("`", "``") + "`"
        for algorithm in self.candidates(change):
            for lock in (change.lock,) if change.lock else _LOCKS[algorithm]:
                clauses = f", ALGORITHM={algorithm}"
                if algorithm != "INSTANT" or change.lock:
                    clauses += f", LOCK={lock}"
                outcome = self._attempt(server, source, change.sql, clauses)
                if isinstance(outcome, bool):
                    return Found(table, algorithm, lock, outcome or algorithm == "COPY")
                if outcome.of_lock():
                    continue  # a stronger lock may do
                if outcome.of_algorithm(algorithm):
                    break  # the next algorithm may do
                return None  # an error of the statement's own, or of the twin's
        return None

    def _attempt(self, server: Server, source: str, sql: str, clauses: str) -> bool | Refusal:
        """On a fresh twin: True (done, rebuilding it), False (done in place), or the error."""
        probe = f"_plan_probe_{uuid.uuid4().hex[:16]}"
        try:
            made = server.run(f"CREATE TABLE `{probe}` LIKE {source}")
            if made is not None:
                return made
            before = self._table_id(server, probe)
            failed = server.run(sql.replace(TWIN, f"`{probe}`") + clauses, as_given=True)
            if failed is not None:
                return failed
            after = self._table_id(server, probe)
            return before is not None and after is not None and before != after
        finally:
            server.run(f"DROP TABLE IF EXISTS `{probe}`")

    def _table_id(self, server: Server, probe: str) -> int | None:
        if self._ids is None:
            return None
        try:
            found = server.rows(
                f"SELECT TABLE_ID FROM information_schema.{self._ids} "
                f"WHERE NAME = CONCAT(DATABASE(), '/{probe}')"
            )
        except server.error:
            self._ids = None  # not readable by this user (MariaDB asks for PROCESS)
            return None
        return int(found[0][0]) if len(found) == 1 else None


class MySQLWatch:
    """The watch of one engine; `revision()` once per revision run on it."""

    def __init__(self, engine: AsyncEngine | Connection) -> None:
        self._engine = engine
        self._prober = Prober()
        self._skipped = ("alembic_version", *MySQL().runners_tables)

    @contextmanager
    def revision(self, only: Collection[str] | None = None) -> Iterator[Watched]:
        watched = Watched()
        listed = Listed()
        transaction = [0]
        started = [time.perf_counter()]
        # The revision's statement about to run, with what the probe found of it and whether
        # the driver formats it (with no parameters: its %% are the statement's %).
        current: list[tuple[str, Found | None, bool] | None] = [None]

        def before(
            conn: Connection,
            cursor: Any,
            statement: str,
            parameters: Any,
            context: Any,
            executemany: bool,
        ) -> None:
            current[0] = None
            if any(name in statement for name in self._skipped):
                return  # the runner's bookkeeping
            if watched_revision(conn, only) and revision_statement(conn, statement, listed):
                found = None if executemany else self._prober.probe(conn, statement, parameters)
                current[0] = (statement, found, parameters is not None and not parameters)
            started[0] = time.perf_counter()

        def after(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
            seconds = time.perf_counter() - started[0]
            ran, current[0] = current[0], None
            if ran is None or ran[0] != statement:
                return
            _, found, formatted = ran
            if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
                watched.rows += max(cursor.rowcount, 0)
            sql = statement.strip().replace("%%", "%") if formatted else statement.strip()
            measured = Measured(
                sql=sql,
                in_transaction=False,
                transaction=transaction[0],
                revision=running_revision(conn),
            )
            if found is not None:
                measured.algorithm = found.algorithm
                measured.locks = [(found.table, found.lock)]
                measured.rewrites = [found.table] if found.rebuilds else []
                if not found.rebuilds and found.algorithm == "INPLACE" and found.lock != "NONE":
                    # In place but locked: the work (an index built, say) reads the table
                    # whole while writers wait.
                    measured.scans = [found.table]
                watched.hold((found.table, found.lock), seconds)
            watched.statements.append(measured)
            transaction[0] += 1

        with listening(
            self._engine, [("before_cursor_execute", before), ("after_cursor_execute", after)]
        ):
            yield watched


@contextmanager
def watch(engine: AsyncEngine | Connection) -> Iterator[MySQLWatch]:
    """The probes run on the session running the revisions, on twins of its tables."""
    yield MySQLWatch(engine)
