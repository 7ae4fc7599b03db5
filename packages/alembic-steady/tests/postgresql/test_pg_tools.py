"""The chores of `python -m <package>.migrations` on a real PostgreSQL, without a render: `backup`
(private dumps, the password kept off pg_dump's command line, a bounded lock wait, the client
matched to the server), `restore`, `shell`, `devdb reset` and `rehearse` (pending revisions on a
scratch copy of real data), with the refusals a user can act on.

A chore runs as a process of its own where the process is what is looked at (its output, its exit
status, the pg_dump it starts); its `main` is called here where its settings are what a test
changes (BACKUP_LOCK_WAIT, ENVIRONMENT), which the demo project reads from nowhere else.
"""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import demo_project
import pytest
from pg_safety_support import login_role, new_database, password_server, state
from pg_sessions import session_holding
from queries import execute, heads, rows
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.clients import Clients
from alembic_steady.dialects.postgresql_clients import libpq_environment
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection
from alembic_steady.tools import backup, rehearse, restore

CHAIN = demo_project.CHAIN["postgresql"]
ROWS = 500
HEAD = ({"alembic_version", "widget"}, {"c3"})


def url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def cli(project: Project, url: URL, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m <package>.migrations ARGS` with DATABASE_URL naming `url`."""
    return demo_project.module_cli(project, *args, url=url, env=env)


def configured(project: Project, url: URL, **settings: Any) -> Project:
    """The project with its settings naming `url` (and `settings` over the defaults), for a
    chore's `main` called here."""
    return replace(project, settings=lambda: StaticSettings(url, **settings))


def server_major(clients: Clients, server_url: URL) -> int:
    return int(str(clients.admin(server_url, "SHOW server_version_num"))) // 10000


@pytest.fixture
def migrated(migration_project: Project, database_url: URL) -> URL:
    """A database at head with one row in `widget`."""
    Migrations(migration_project).upgrade(url=database_url)
    insert = text("INSERT INTO widget (name) VALUES ('kept')")
    on_connection(database_url, lambda c: c.execute(insert))
    return database_url


# 1. backup and restore


def test_a_backup_is_private_and_restores(
    migration_project: Project,
    migrated: URL,
    tmp_path: Path,
    server_clients: Clients,
    server_url: URL,
) -> None:
    output = cli(migration_project, migrated, "backup", str(tmp_path / "backups"))
    assert output.returncode == 0, output.stdout
    assert f"Database: {migrated.database}" in output.stdout
    match = re.search(
        r"Backup written to (\S+) \(pg_dump (\d+) for a PostgreSQL (\d+) server\)", output.stdout
    )
    assert match, output.stdout
    dump, client, major = Path(match[1]), int(match[2]), int(match[3])
    assert major == server_major(server_clients, server_url) and client >= major
    assert dump.read_bytes().startswith(b"PGDMP")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
    on_connection(migrated, lambda c: c.execute(text("DELETE FROM widget")))
    restored = cli(migration_project, migrated, "restore", str(dump))
    assert restored.returncode == 0, restored.stdout
    assert f"Restored {dump} into {migrated.database}" in restored.stdout
    assert rows(migrated, "SELECT name FROM widget") == [("kept",)]


@pytest.fixture(scope="module")
def checked(request: pytest.FixtureRequest, server_url: URL) -> URL:
    """A server that refuses a wrong password: a backup that succeeds had the right one."""
    return password_server(request, server_url)


def pg_dump_processes(database: str) -> list[int]:
    """pg_dump processes dumping `database` (its name is in the dump file's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"pg_dump") and any(database.encode() in arg for arg in argv):
            pids.append(int(entry.name))
    return pids


def test_the_password_reaches_pg_dump_through_its_environment(
    migration_project: Project, checked: URL, tmp_path: Path
) -> None:
    password = "pw-" + os.urandom(5).hex()
    with (
        new_database(checked) as database,
        login_role(checked, database, password) as role,
    ):
        url = checked.set(username=role, password=password, database=database)
        Migrations(migration_project).upgrade(url=url)
        # The role's password is in DATABASE_URL only: no .pgpass, no PGPASSWORD set.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env |= {
            "PYTHONPATH": demo_project.pythonpath(migration_project),
            "DATABASE_URL": url_string(url),
        }
        with session_holding(
            checked.set(database=database), "LOCK TABLE widget IN ACCESS EXCLUSIVE MODE"
        ):
            module = f"{migration_project.package}.migrations"
            chore = subprocess.Popen(
                [sys.executable, "-m", module, "backup", str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            # pg_dump waits for the lock on widget, so it can be looked at while it runs.
            deadline = time.monotonic() + 60
            while not (pids := pg_dump_processes(database)):
                assert chore.poll() is None, chore.communicate()[0]
                assert time.monotonic() < deadline, "pg_dump never started"
                time.sleep(0.05)
            argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode()
            environ = Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
        output = chore.communicate(timeout=120)[0]
        assert chore.returncode == 0, output
    assert password not in argv and quote(password, safe="") not in argv, argv
    assert f"PGPASSWORD={password}".encode() in environ
    assert password not in output
    dumps = list(tmp_path.glob(f"{database}-*.dump"))
    assert len(dumps) == 1 and dumps[0].read_bytes().startswith(b"PGDMP"), output


def test_restore_refuses_what_it_cannot_restore(
    migration_project: Project, migrated: URL, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = configured(migration_project, migrated)
    missing = tmp_path / "nope.dump"
    assert restore.main(project, [str(missing)]) == 1
    assert f"{missing} does not exist" in capfd.readouterr().err
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello", encoding="utf-8")
    assert restore.main(project, [str(not_a_dump)]) == 1
    assert f"{not_a_dump} is not a dump pg_restore can read" in capfd.readouterr().err
    assert restore.main(project, []) == 2
    assert "Missing file=...: usage: make restore" in capfd.readouterr().err
    assert rows(migrated, "SELECT name FROM widget") == [("kept",)]


def test_restore_in_production_needs_confirm(
    migration_project: Project,
    migrated: URL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert backup.main(configured(migration_project, migrated), [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    on_connection(migrated, lambda c: c.execute(text("DELETE FROM widget")))
    production = configured(migration_project, migrated, environment="production")
    monkeypatch.delenv("CONFIRM", raising=False)
    # Production named by the settings alone, as a render's .env names it: not the environment.
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    capfd.readouterr()
    assert restore.main(production, [str(dump)]) == 1
    assert "CONFIRM=yes" in capfd.readouterr().err
    assert rows(migrated, "SELECT name FROM widget") == []
    monkeypatch.setenv("CONFIRM", "yes")
    assert restore.main(production, [str(dump)]) == 0
    assert rows(migrated, "SELECT name FROM widget") == [("kept",)]


def test_no_pg_dump_new_enough_names_the_fix(
    migration_project: Project,
    migrated: URL,
    tmp_path: Path,
    server_clients: Clients,
    server_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A stand-in for the PostgreSQL 9 client programs of an old machine: it only tells its version.
    old = tmp_path / "bin"
    old.mkdir()
    (old / "pg_dump").write_text(
        "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n", encoding="utf-8"
    )
    (old / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PG_BINDIR", str(old))
    folder = tmp_path / "backups"
    assert backup.main(configured(migration_project, migrated), [str(folder)]) == 1
    major = server_major(server_clients, server_url)
    err = capfd.readouterr().err
    assert f"No pg_dump of PostgreSQL {major} or newer in PG_BINDIR" in err, err
    assert f"postgresql-client-{major}" in err
    assert not list(folder.glob("*"))


def test_a_backup_gives_up_on_a_held_lock(
    migration_project: Project, migrated: URL, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = configured(migration_project, migrated, backup_lock_wait="1s")
    with session_holding(migrated, "LOCK TABLE widget IN ACCESS EXCLUSIVE MODE"):
        started = time.monotonic()
        status = backup.main(project, [str(tmp_path)])
        elapsed = time.monotonic() - started
    # A bound, not a speed: the default wait is 30 s, pg_dump and the version check take ~1 s.
    assert elapsed < 15, f"gave up after {elapsed:.0f}s, not after BACKUP_LOCK_WAIT=1s"
    assert status == 1
    err = capfd.readouterr().err
    assert "a table lock was not granted within 1s (BACKUP_LOCK_WAIT)" in err, err
    assert not list(tmp_path.glob("*.dump"))


def test_client_programs_get_ssl_and_libpq_parameters() -> None:
    url = make_url(
        "postgresql+asyncpg://app:s3cret@db.example:6543/shop?ssl=require&sslrootcert=/etc/ca.pem"
    )
    env = libpq_environment(url, StaticSettings(url))
    assert {k: v for k, v in env.items() if k.startswith("PG")} == {
        "PGSSLMODE": "require",
        "PGSSLROOTCERT": "/etc/ca.pem",
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "app",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "shop",
        "PGCONNECT_TIMEOUT": "10",
    }


# A revision after the demo chain, of every kind a restore of a c3 dump must take away again: a
# schema and its table, an enum type, a table referring to widget, an index on widget.
LATER = (
    "d4",
    '    op.execute("CREATE SCHEMA audit")\n'
    '    op.create_table("log", sa.Column("id", sa.Integer, primary_key=True), schema="audit")\n'
    "    op.execute(\"CREATE TYPE mood AS ENUM ('calm', 'busy')\")\n"
    '    op.execute("CREATE TABLE gadget (id int PRIMARY KEY, '
    'widget_id int REFERENCES widget (id), mood mood)")\n'
    '    op.create_index("ix_widget_price", "widget", ["price"])',
    '    op.drop_index("ix_widget_price", table_name="widget")\n'
    '    op.drop_table("gadget")\n'
    '    op.execute("DROP TYPE mood")\n'
    '    op.execute("DROP SCHEMA audit CASCADE")',
)
# Every table, type and index outside the system schemas, as "schema.name".
OBJECTS = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'i') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype = 'e'
UNION ALL
SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
"""
AT_C3 = {
    "public",
    "public.alembic_version",
    "public.alembic_version_pkc",
    "public.alembic_version_checksums",
    "public.alembic_version_checksums_pkey",
    "public.widget",
    "public.pk_widget",
    "public.ix_widget_name",
}


def objects(url: URL) -> set[str]:
    return {str(name) for (name,) in rows(url, OBJECTS)}


@pytest.fixture(scope="module")
def later_project() -> Project:
    """The demo chain and LATER after it."""
    return demo_project.write("postgresql", name="restore_later", chain=[*CHAIN, LATER])


@pytest.fixture
def past_the_dump(later_project: Project, database_url: URL, tmp_path: Path) -> tuple[URL, Path]:
    """A database backed up at c3 (one widget, 'kept'), then migrated on to d4 (a gadget, the
    widget renamed)."""
    migrations = Migrations(later_project)
    migrations.upgrade("c3", url=database_url)
    execute(database_url, "INSERT INTO widget (id, name) VALUES (1, 'kept')")
    assert objects(database_url) == AT_C3
    output = cli(later_project, database_url, "backup", str(tmp_path))
    assert output.returncode == 0, output.stdout
    (dump,) = tmp_path.glob("*.dump")
    migrations.upgrade(url=database_url)
    execute(
        database_url,
        "INSERT INTO gadget VALUES (1, 1, 'busy')",
        "UPDATE widget SET name = 'changed since'",
    )
    return database_url, dump


def test_a_restore_takes_away_what_later_migrations_made(
    later_project: Project, past_the_dump: tuple[URL, Path]
) -> None:
    url, dump = past_the_dump
    restored = cli(later_project, url, "restore", str(dump))
    assert restored.returncode == 0, restored.stdout
    assert f"Restored {dump} into {url.database}" in restored.stdout
    assert objects(url) == AT_C3
    assert heads(url) == {"c3"}
    assert rows(url, "SELECT id, name FROM widget") == [(1, "kept")]
    # From the dump's revision on, as if the later revision had never run.
    Migrations(later_project).upgrade(url=url)
    assert heads(url) == {"d4"}
    assert rows(url, "SELECT count(*) FROM gadget") == [(0,)]


def test_a_restore_that_fails_part_way_changes_nothing(
    later_project: Project, past_the_dump: tuple[URL, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """pg_restore reads the table of contents of a dump cut short in its data, starts, and fails
    once the drops and the first tables have run (past a pipe's 64 kB of rows, so psql has run
    the drops): the transaction takes them all back."""
    url, dump = past_the_dump
    execute(url, "INSERT INTO widget SELECT g, md5(g::text) FROM generate_series(2, 20000) g")
    config = replace(later_project, settings=lambda: StaticSettings(url))
    assert backup.main(config, [str(dump.parent / "big")]) == 0
    (big,) = (dump.parent / "big").glob("*.dump")
    cut = dump.parent / "cut.dump"
    cut.write_bytes(big.read_bytes()[: big.stat().st_size * 9 // 10])
    before = objects(url)
    capfd.readouterr()
    assert restore.main(config, [str(cut)]) == 1
    err = capfd.readouterr().err
    assert f"Nothing restored: {cut} is not a dump pg_restore can read (" in err, err
    assert "The database is as it was" in err
    assert objects(url) == before and "audit" in before
    assert heads(url) == {"d4"}
    assert rows(url, "SELECT count(*) FROM widget") == [(20000,)]
    assert rows(url, "SELECT mood::text FROM gadget") == [("busy",)]


def test_a_corrupt_dump_is_named_as_such(
    migration_project: Project, migrated: URL, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Not "no pg_restore found": the file is what is wrong, and the database is untouched."""
    project = configured(migration_project, migrated)
    assert backup.main(project, [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    whole = dump.read_bytes()
    damaged = {
        "half.dump": whole[: len(whole) // 2],
        "header.dump": whole[:40],
        "random.dump": b"PGDMP" + os.urandom(3000),
    }
    on_connection(migrated, lambda c: c.execute(text("UPDATE widget SET name = 'now'")))
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        capfd.readouterr()
        assert restore.main(project, [str(tmp_path / name)]) == 1, name
        err = capfd.readouterr().err
        assert f"Nothing restored: {tmp_path / name} is not a dump pg_restore can read (" in err
        assert "make backup writes them to backups/" in err
        assert "No pg_restore" not in err and "newer pg_dump" not in err, err
    text_file = tmp_path / "notes.dump"
    text_file.write_text("-- not a dump\n", encoding="utf-8")
    assert restore.main(project, [str(text_file)]) == 1
    assert (
        f"Nothing restored: {text_file} is not a dump pg_restore can read" in capfd.readouterr().err
    )
    assert rows(migrated, "SELECT name FROM widget") == [("now",)]


def test_a_dump_newer_than_every_pg_restore_is_a_version_problem(
    migration_project: Project,
    migrated: URL,
    tmp_path: Path,
    server_clients: Clients,
    server_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    project = configured(migration_project, migrated)
    assert backup.main(project, [str(tmp_path)]) == 0
    (dump,) = tmp_path.glob("*.dump")
    major = server_major(server_clients, server_url)
    # A pg_restore of the server's version that finds the dump's format too new, as an older
    # one does with a newer pg_dump's file.
    old = tmp_path / "bin"
    old.mkdir()
    (old / "pg_restore").write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && echo "pg_restore (PostgreSQL) {major}.1" && exit 0\n'
        'echo "pg_restore: error: unsupported version (1.99) in file header" >&2; exit 1\n',
        encoding="utf-8",
    )
    (old / "pg_restore").chmod(0o755)
    monkeypatch.setenv("PG_BINDIR", str(old))
    assert restore.main(project, [str(dump)]) == 1
    err = capfd.readouterr().err
    assert f"No pg_restore on this machine reads {dump}: it was written by a newer pg_dump" in err
    assert "unsupported version (1.99) in file header" in err and "PG_BINDIR=" in err, err
    # No pg_restore at all: the same words as before.
    monkeypatch.setenv("PG_BINDIR", str(tmp_path / "empty"))
    assert restore.main(project, [str(dump)]) == 1
    err = capfd.readouterr().err
    assert f"No pg_restore of PostgreSQL {major} or newer in PG_BINDIR (found: none)" in err, err
    assert rows(migrated, "SELECT name FROM widget") == [("kept",)]


# 2. shell and devdb reset


def test_the_shell_opens_on_the_configured_database(
    migration_project: Project, migrated: URL
) -> None:
    query = "SELECT current_database(), count(*) FROM widget"
    output = cli(migration_project, migrated, "shell", "-tAc", query)
    assert output.returncode == 0, output.stdout
    assert f"Database: {migrated.database}" in output.stdout
    assert output.stdout.strip().splitlines()[-1] == f"{migrated.database}|1"


def test_reset_recreates_in_development_only(migration_project: Project, server_url: URL) -> None:
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        Migrations(migration_project).upgrade(url=url)
        refused = cli(migration_project, url, "devdb", "reset", ENVIRONMENT="production")
        assert refused.returncode != 0
        assert "only with ENVIRONMENT=development" in refused.stdout, refused.stdout
        assert state(url) == HEAD
        output = cli(migration_project, url, "devdb", "reset")
        assert output.returncode == 0, output.stdout
        assert f"Database {name} dropped and created empty" in output.stdout
        assert state(url) == (set(), None)


# 3. rehearse


# Adds a column (NOT NULL, with a default or without) and changes every row.
ADD_OWNER = (
    '    op.add_column("widget", sa.Column("owner", sa.String(), nullable=False{default}))\n'
    '    op.execute("UPDATE widget SET price = 1")'
)


def with_pending_owner(name: str, *, default: bool) -> Project:
    project = demo_project.write("postgresql", name=name)
    upgrade = ADD_OWNER.format(default=', server_default="nobody"' if default else "")
    drop = '    op.drop_column("widget", "owner")'
    demo_project.add_revision(project.versions, "d4", "c3", upgrade, drop, doc="add owner")
    return project


@pytest.fixture(scope="module")
def fits() -> Project:
    return with_pending_owner("rehearse_fits", default=True)


@pytest.fixture(scope="module")
def fails() -> Project:
    return with_pending_owner("rehearse_fails", default=False)


@pytest.fixture(scope="module")
def source(
    fits: Project, server_url: URL, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[URL, Path]]:
    """A database at c3 with 500 widgets (d4 pending), and a backup of it."""
    with new_database(server_url) as name:
        url = server_url.set(database=name)
        Migrations(fits).upgrade("c3", url=url)
        insert = f"INSERT INTO widget (name) SELECT 'w' || g FROM generate_series(1, {ROWS}) g"
        on_connection(url, lambda c: c.execute(text(insert)))
        folder = tmp_path_factory.mktemp("rehearse")
        assert backup.main(configured(fits, url), [str(folder)]) == 0
        (dump,) = folder.glob("*.dump")
        yield url, dump


def scratch_databases(url: URL) -> list[str]:
    """The scratch databases rehearsals of `url`'s database left behind."""

    def read(connection: Connection) -> list[str]:
        query = text("SELECT datname FROM pg_database WHERE datname LIKE :pattern")
        pattern = f"{url.database}\\_rehearse\\_%"
        return list(connection.execute(query, {"pattern": pattern}).scalars())

    found: list[str] = on_connection(url, read)
    return found


def test_a_not_null_column_without_default_fails_on_the_copy(
    fails: Project, source: tuple[URL, Path]
) -> None:
    url, dump = source
    result = cli(fails, url, "rehearse", f"file={dump}")
    assert result.returncode != 0, result.stdout
    assert "Revision d4 (add owner) FAILED on this data" in result.stdout
    assert 'column "owner" of relation "widget" contains null values' in result.stdout
    assert state(url) == HEAD
    assert not scratch_databases(url)


def test_revisions_that_fit_report_time_locks_and_rows(
    fits: Project, source: tuple[URL, Path]
) -> None:
    url, dump = source
    from_file = cli(fits, url, "rehearse", f"file={dump}")
    # The configured database itself as the source: read through pg_dump, never written.
    # The source's URL holds a password on a server that checks them: the environment's.
    from_url = cli(fits, url, "rehearse", REHEARSE_FROM=url_string(url))
    for result in (from_file, from_url):
        assert result.returncode == 0, result.stdout
        output = result.stdout
        assert "1 pending revision(s)" in output
        assert "d4 (add owner):" in output and f"{ROWS} row(s) changed" in output
        assert re.search(r"d4 \(add owner\): \d+\.\d\d s,", output), output  # its time
        assert "ACCESS EXCLUSIVE on widget, held" in output
        assert "every pending revision went down and up again" in output
    assert state(url) == HEAD
    assert rows(url, "SELECT count(*) FROM widget WHERE price IS NULL") == [(ROWS,)]
    assert not scratch_databases(url)


# Revisions that commit step by step, as `make migrate` runs them: the template's own
# op.create_index_concurrently, and a plain autocommit_block() whose UPDATE holds its lock for
# 0.3 s at least (what a report of locks taken outside a transaction must show).
STEP_BY_STEP = [
    (
        "d4",
        '    op.execute("UPDATE widget SET price = 2")\n'
        '    op.create_index_concurrently("ix_widget_price", "widget", ["price"])',
        '    op.drop_index_concurrently("ix_widget_price", table_name="widget")',
        "index widget price",
    ),
    (
        "e5",
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("CREATE INDEX CONCURRENTLY ix_widget_both ON widget (name, price)")\n'
        '        op.execute("UPDATE widget SET price = 3 FROM (SELECT pg_sleep(0.3)) AS pause")',
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("DROP INDEX CONCURRENTLY ix_widget_both")',
        "index widget name and price",
    ),
]


@pytest.fixture(scope="module")
def step_by_step() -> Project:
    return demo_project.with_revisions("postgresql", "rehearse_step_by_step", STEP_BY_STEP)


def test_revisions_that_commit_step_by_step_are_rehearsed(
    step_by_step: Project, source: tuple[URL, Path]
) -> None:
    """An autocommit_block() commits on the copy as it does under make migrate (each revision
    in transactions of its own), and the report still gives each revision's time, rows and
    locks, those its statements outside a transaction held included."""
    url, dump = source
    result = cli(step_by_step, url, "rehearse", f"file={dump}")
    output = result.stdout
    assert result.returncode == 0, output
    assert "FAILED" not in output and "your own transaction" not in output, output
    assert "2 pending revision(s)" in output
    d4, e5 = output.split("d4 (index widget price): ")[1].split(
        "e5 (index widget name and price): "
    )
    assert re.match(rf"\d+\.\d\d s, {ROWS} row\(s\) changed", d4), output
    assert "ROW EXCLUSIVE on widget, held" in d4, output  # the UPDATE, before the index
    assert re.match(rf"\d+\.\d\d s, {ROWS} row\(s\) changed", e5), output
    # The UPDATE's lock, released when it committed on its own, and how long it was held.
    # At least the 0.3 s it slept; a busy machine may take longer, never less.
    assert re.search(r"ROW EXCLUSIVE on widget, held (0\.[3-9]|[1-9]\d*\.)\d+ s", e5), output
    # A concurrent index build's lock, which lets writes through.
    assert "SHARE UPDATE EXCLUSIVE on widget, held" in output
    assert "every pending revision went down and up again" in output
    assert state(url) == HEAD
    assert not scratch_databases(url)


# A pending revision whose downgrade forgets the index its upgrade made: it goes down without an
# error, and its second upgrade meets the index it left.
LEAVES_ITS_INDEX = ('    op.create_index("ix_widget_price", "widget", ["price"])', "    pass")


@pytest.fixture(scope="module")
def leaves_its_index() -> Project:
    project = demo_project.write("postgresql", name="rehearse_leaves_its_index")
    demo_project.add_revision(
        project.versions, "d4", "c3", *LEAVES_ITS_INDEX, doc="index widget price"
    )
    return project


def test_a_revision_that_does_not_go_down_and_up_again_fails_the_rehearsal(
    leaves_its_index: Project, source: tuple[URL, Path]
) -> None:
    url, dump = source
    result = cli(leaves_its_index, url, "rehearse", f"file={dump}")
    output = result.stdout
    assert result.returncode == 1, output
    # The upgrade itself went through on the copy; its round trip did not.
    assert "d4 (index widget price): " in output and "Round trips done in" in output, output
    assert "Stairway FAILED: the upgrade of revision d4 failed: " in output, output
    assert 'relation "ix_widget_price" already exists' in output, output
    assert "OK: " not in output, output
    assert state(url) == HEAD
    assert not scratch_databases(url)


# A pending revision whose downgrade drops more than its upgrade made: down and up go through
# without an error, and the schema comes back without the index.
DROPS_AN_INDEX_TOO = (
    '    op.add_column("widget", sa.Column("owner", sa.String(), nullable=True))',
    '    op.drop_index("ix_widget_name", table_name="widget")\n'
    '    op.drop_column("widget", "owner")',
)


def test_a_round_trip_that_changes_the_schema_names_what_it_lost(
    source: tuple[URL, Path],
) -> None:
    project = demo_project.write("postgresql", name="rehearse_drops_an_index_too")
    demo_project.add_revision(project.versions, "d4", "c3", *DROPS_AN_INDEX_TOO, doc="owner")
    url, dump = source
    result = cli(project, url, "rehearse", f"file={dump}")
    output = result.stdout
    assert result.returncode == 1, output
    assert "Stairway FAILED: revision d4 does not go down and up again on this data" in output
    assert "ix_widget_name" in output.split("loses [")[1], output
    assert "Traceback" not in output, output
    assert state(url) == HEAD
    assert not scratch_databases(url)


def test_bad_rehearsal_input_is_named(
    fits: Project,
    source: tuple[URL, Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = source
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello", encoding="utf-8")
    cases = {
        f"file={tmp_path / 'none.dump'}": "none.dump does not exist",
        f"file={not_a_dump}": "is not a pg_dump custom-format dump",
        "from=postgresql://someone@127.0.0.1:1/app": "cannot reach the source database",
        # On the command line, ps would show it to every user of the machine.
        "from=postgresql://someone:s3cret-pw@127.0.0.1:1/app": "from=... holds a password",
        "": "give one of file=... or from=...",
    }
    for argument, expected in cases.items():
        status = rehearse.main(configured(fits, url), [argument] if argument else [])
        err = capfd.readouterr().err
        assert status == 1, argument
        assert "Nothing rehearsed: " in err and expected in err, err
        assert "s3cret-pw" not in err
    # In the environment, where it belongs, the password is used and never shown.
    monkeypatch.setenv(rehearse.FROM_VARIABLE, "postgresql://someone:s3cret-pw@127.0.0.1:1/app")
    assert rehearse.main(configured(fits, url), []) == 1
    err = capfd.readouterr().err
    assert "cannot reach the source database" in err and "s3cret-pw" not in err
    assert not scratch_databases(url)


def pg_dump_environments(database: str) -> list[tuple[Path, dict[str, str]]]:
    """The program and libpq variables of the pg_dump processes reading `database` (rehearse
    names it in PGDATABASE, not on the command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        variables = dict(pair.split("=", 1) for pair in environ if pair.startswith("PG"))
        if argv[0].endswith(b"pg_dump") and variables.get("PGDATABASE") == database:
            found.append((Path(argv[0].decode()), variables))
    return found


WRITTEN = "written_through_the_source_session"


def test_the_source_is_read_in_a_read_only_session(fits: Project, source: tuple[URL, Path]) -> None:
    """from=...: pg_dump reads the source with the libpq settings of a session whose every
    transaction is read-only, so nothing run in it can write there. Looked at while pg_dump
    waits behind a lock on the source, then tried: a session with its settings cannot write."""
    url, _ = source
    with session_holding(url, "LOCK TABLE widget IN ACCESS EXCLUSIVE MODE"):
        process = subprocess.Popen(
            [sys.executable, "-m", f"{fits.package}.migrations", "rehearse"],
            env={
                **os.environ,
                "PYTHONPATH": demo_project.pythonpath(fits),
                "DATABASE_URL": url_string(url),
                "REHEARSE_FROM": url_string(url),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not (dumps := pg_dump_environments(str(url.database))):
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "pg_dump never started"
                time.sleep(0.05)
            # A session as pg_dump opens it: its libpq variables, the psql beside it.
            (pg_dump, variables), *_ = dumps
            tried = subprocess.run(
                [pg_dump.with_name("psql"), "--no-psqlrc", "-c", f"CREATE TABLE {WRITTEN} ()"],
                env=variables,
                capture_output=True,
                text=True,
                check=False,
            )
        except BaseException:
            process.kill()
            raise
        finally:
            # The source serves the module's other tests: as it was, whatever this one found.
            execute(url, f"DROP TABLE IF EXISTS {WRITTEN}")
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    assert "cannot execute CREATE TABLE in a read-only transaction" in tried.stderr, (
        tried.stdout + tried.stderr
    )


def test_sigterm_mid_rehearsal_drops_the_scratch_database(source: tuple[URL, Path]) -> None:
    """A CI job cancelled while a pending revision runs on the copy: the copy goes too."""
    url, _ = source
    slow = demo_project.write("postgresql", name="rehearse_slow")
    demo_project.add_revision(
        slow.versions, "d4", "c3", '    op.execute("SELECT pg_sleep(60)")', "    pass"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", f"{slow.package}.migrations", "rehearse"],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(slow),
            "DATABASE_URL": url_string(url),
            "REHEARSE_FROM": url_string(url),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' "
        f"AND datname LIKE '{url.database}\\_rehearse\\_%'"
    )
    try:
        deadline = time.monotonic() + 30
        while rows(url, sleeping) == [(0,)] and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.05)
        assert scratch_databases(url), "no scratch database while the revision runs"
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "Interrupted by SIGTERM: no scratch database is left" in output
    assert "Traceback" not in output, output
    assert not scratch_databases(url)
    assert rows(url, sleeping) == [(0,)]


def test_rehearsal_refuses_production(
    fits: Project,
    source: tuple[URL, Path],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Production named by the settings (a render's .env), with CONFIRM=yes: still refused, on a
    # server on this machine, before any scratch database is made.
    url, dump = source
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.setenv("CONFIRM", "yes")
    capfd.readouterr()
    production = configured(fits, url, environment="production")
    assert rehearse.main(production, [f"file={dump}"]) == 1
    captured = capfd.readouterr()
    assert "not production (ENVIRONMENT=production)" in captured.err, captured.err
    assert "pending revision" not in captured.out, captured.out
    assert not scratch_databases(url)


def test_rehearsal_stays_off_servers_elsewhere_without_confirm(
    fits: Project, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DATABASE_URL naming a shared server (production, say) while ENVIRONMENT=development.
    monkeypatch.delenv("CONFIRM", raising=False)
    elsewhere = make_url("postgresql+asyncpg://app:s3cret-pw@db.shared.invalid:5432/app")
    assert rehearse.main(configured(fits, elsewhere), ["file=backups/x.dump"]) == 1
    err = capfd.readouterr().err
    assert "not on this machine" in err and "CONFIRM=yes" in err and "s3cret-pw" not in err
