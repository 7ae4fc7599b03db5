"""MySQL's and MariaDB's `mysql` and `mysqldump` clients on the configured database, the password
kept off their command lines (where `ps` shows it to every user of the machine).

The connection settings go to the clients in a private option file (`--defaults-extra-file`, mode
0600, deleted after the run). MariaDB's `mariadb`/`mariadb-dump` are used where the MySQL names
are missing. There is no embedded MySQL: `make db-up` uses Docker Compose where a Docker engine
answers, else checks that the configured server answers, or explains how to point at one.
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..project import MigrationSettings, Project
from .clients import ClientError, Clients, ToolFailed, run_private, unreadable

NO_SERVER = (
    "No MySQL server for the tests: set TEST_DATABASE_URL=mysql://USER:PASSWORD@HOST:3306/mysql "
    "(a user that may create and drop databases, e.g. root), or start a Docker engine so that "
    "testcontainers can run mysql:8.4."
)
NAMES = {"mysql": ("mysql", "mariadb"), "mysqldump": ("mysqldump", "mariadb-dump")}


def program(name: str) -> str:
    for candidate in NAMES[name]:
        if found := shutil.which(candidate):
            return found
    raise ClientError(
        f"{name} is not installed: install the MySQL or MariaDB client (e.g. apt install "
        "default-mysql-client, brew install mysql-client), then run again."
    )


def _option(value: str) -> str:
    """A value for an option file: quoted, with its backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def option_file(url: URL) -> Iterator[Path]:
    """A [client] option file naming host, port, user and password; 0600, removed after."""
    lines = ["[client]"]
    if url.host:
        lines.append(f"host={_option(url.host)}")
    if url.port:
        lines.append(f"port={url.port}")
    if url.username:
        lines.append(f"user={_option(url.username)}")
    if url.password:
        lines.append(f"password={_option(str(url.password))}")
    descriptor, name = tempfile.mkstemp(prefix="mysql-", suffix=".cnf")  # created 0600
    path = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def engine_for(url: URL, settings: MigrationSettings) -> AsyncEngine:
    return create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args={"connect_timeout": settings.db_connect_timeout},
    )


class MySQLClients(Clients):
    dump_suffix = ".sql"
    system_databases = ("", "mysql", "information_schema", "performance_schema", "sys")

    def backup(self, url: URL, settings: MigrationSettings, target: Path) -> str:
        """`--single-transaction` dumps a consistent snapshot of InnoDB tables without locking
        them. mysqldump has no option to bound its metadata-lock waits (BACKUP_LOCK_WAIT is
        PostgreSQL's): a backup started while a migration alters a table waits for it."""
        mysqldump = program("mysqldump")
        with option_file(url) as options:
            args = [mysqldump, f"--defaults-extra-file={options}", "--single-transaction"]
            args += ["--routines", "--triggers", "--events", "--hex-blob"]
            args += [f"--result-file={target}", str(url.database)]
            result = run_private(args, None)
        if result.returncode != 0:
            raise ToolFailed("mysqldump failed: see its message above.")
        return "mysqldump"

    def check_dump(self, path: Path, usage: str) -> str | None:
        if problem := unreadable(path, usage):
            return problem
        with path.open("rb") as dump:
            if b"dump" not in dump.read(200).lower():
                return f"{path} is not a mysqldump file (make backup writes those)"
            # mysqldump's last line; a file without it was cut short, and MySQL cannot roll a
            # half-loaded dump back: better refuse it before anything is dropped.
            dump.seek(max(0, path.stat().st_size - 200))
            if b"-- Dump completed" not in dump.read():
                return (
                    f'{path} is not a complete mysqldump file: it lacks the "-- Dump completed" '
                    "line mysqldump ends with (a copy that did not finish?). Restore a complete "
                    "copy or another dump (make backup writes them to backups/)"
                )
        return None

    def restore(self, url: URL, settings: MigrationSettings, dump: Path) -> str:
        """The database comes out as the dump holds it: the tables, views, routines and events
        it holds now are dropped first (the dump drops and makes again only its own, so a table
        a later migration made would survive, and the next `make migrate` fail on it with
        "already exists"), then the dump is loaded, in one mysql session. MySQL commits each DDL
        statement: a restore that fails half way is NOT rolled back."""
        mysql = program("mysql")
        drops = asyncio.run(drop_statements(url, settings))
        with option_file(url) as options, dump.open("rb") as source:
            args = [mysql, f"--defaults-extra-file={options}", str(url.database)]
            with subprocess.Popen(args, stdin=subprocess.PIPE) as session:
                assert session.stdin is not None
                with contextlib.suppress(BrokenPipeError):  # mysql stopped: it said why
                    session.stdin.write(drops.encode())
                    shutil.copyfileobj(source, session.stdin)
                    session.stdin.close()
            status = session.returncode
        if status != 0:
            raise ToolFailed(
                f"mysql failed (exit {status}, see above). MySQL commits each DDL statement, so "
                "the restore is not atomic: what the database held may be dropped and part of "
                "the dump loaded. Fix the cause and restore again."
            )
        return "mysql"

    def shell(self, url: URL, settings: MigrationSettings, argv: list[str]) -> int:
        mysql = program("mysql")
        with option_file(url) as options:
            # --defaults-extra-file must come first; the database name last.
            args = [mysql, f"--defaults-extra-file={options}", *argv, str(url.database or "")]
            return subprocess.run(args, check=False).returncode

    async def recreate(self, url: URL, settings: MigrationSettings) -> None:
        name = "`" + str(url.database).replace("`", "``") + "`"
        # Connected without a database: the configured one may not exist yet.
        engine = engine_for(url.set(database=""), settings)
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
                await connection.execute(
                    text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                )
        finally:
            await engine.dispose()

    def start_dev_server(self, project: Project) -> int:
        settings = project.settings()
        if _server_answers(settings.sqlalchemy_url, settings):
            print(
                "No Docker engine answers, but the configured MySQL server does: nothing to start."
            )
            return 0
        print(
            "No Docker engine answers, the configured server does not either, and there is no "
            "embedded MySQL. Point the project at a MySQL 8.4+ or MariaDB 10.11+ server: set "
            "DATABASE_URL=mysql://USER:PASSWORD@HOST:3306/NAME (or "
            "DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME) in .env or the environment, create "
            "the database (make db-reset does, in development), then make migrate. With Docker, "
            "make db-up starts one from compose.yaml.",
            file=sys.stderr,
        )
        return 1

    # -- servers for tests -------------------------------------------------------------------
    @contextmanager
    def container(self) -> Iterator[URL]:
        try:
            from testcontainers.community.mysql import MySqlContainer
        except ImportError:  # testcontainers before its modules moved to `community`
            from testcontainers.mysql import MySqlContainer

        with MySqlContainer("mysql:8.4", username="root", password="test") as container:
            yield make_url(container.get_connection_url())

    @contextmanager
    def local_server(self) -> Iterator[tuple[URL, str]]:
        """There is no embedded MySQL."""
        raise ClientError(NO_SERVER)
        yield  # a generator all the same, for contextmanager

    def version(self, server: URL) -> str:
        version = str(self.admin(server.set(database=""), "SELECT VERSION()"))
        number = version.split("-", 1)[0]
        return f"MariaDB {number}" if "mariadb" in version.lower() else f"MySQL {number}"

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def drop_statement(self, quoted: str) -> str:
        return f"DROP DATABASE IF EXISTS {quoted}"

    def create_database(self, server: URL, name: str, stop: threading.Event | None = None) -> URL:
        self.admin(server.set(database=""), f"CREATE DATABASE {self.quote(name)}")
        return server.set(database=name)

    def drop_database(self, server: URL, name: str) -> None:
        self.admin(server.set(database=""), self.drop_statement(self.quote(name)))

    def empty(self, database: URL) -> None:
        """Dropped and created again: MySQL has no schema to empty inside a database (this takes
        milliseconds)."""
        name = self.quote(str(database.database))
        self.admin(database.set(database=""), self.drop_statement(name), f"CREATE DATABASE {name}")


async def drop_statements(url: URL, settings: MigrationSettings) -> str:
    """SQL dropping every table, view, routine and event of the database (triggers go with their
    tables), for the mysql session of a restore to run before the dump."""
    engine = engine_for(url, settings)
    try:
        async with engine.connect() as connection:
            found = list(await connection.execute(text(OBJECTS)))
    except Exception as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
        raise ClientError(
            f"Cannot connect to MySQL: {cause[0]}. Check DATABASE_URL or DB_* (environment or "
            ".env) and that the server runs (make db-up)."
        ) from None
    finally:
        await engine.dispose()
    statements = ["SET FOREIGN_KEY_CHECKS = 0;"]
    statements += [f"DROP {kind} IF EXISTS `{name.replace('`', '``')}`;" for kind, name in found]
    return "\n".join(statements) + "\n"


# What a restore drops before loading the dump: the database's objects. In any order: a view
# outlives its tables, foreign keys go unchecked.
OBJECTS = """
SELECT CASE TABLE_TYPE WHEN 'VIEW' THEN 'VIEW' WHEN 'SEQUENCE' THEN 'SEQUENCE' ELSE 'TABLE' END,
       TABLE_NAME
  FROM information_schema.TABLES
 WHERE TABLE_SCHEMA = DATABASE()
UNION ALL
SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES
 WHERE ROUTINE_SCHEMA = DATABASE()
UNION ALL
SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()
"""


def _server_answers(url: URL, settings: MigrationSettings) -> bool:
    async def ping() -> None:
        engine = engine_for(url.set(database=""), settings)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(ping())
    except Exception:
        return False
    return True
