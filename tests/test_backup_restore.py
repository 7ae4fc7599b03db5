"""`make backup`, `make restore`, `make psql` and `make db-reset` on a real PostgreSQL: private
dumps made and restored by the client programs matching the server, bounded lock waits, and the
refusals a user can act on (missing file, production, no client new enough)."""

import asyncio
import json
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from .conftest import Server, bake, clean_env, install, make, must, run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("backup")))


@pytest.fixture
def migrated(project: Path, server: Server) -> Iterator[tuple[str, dict[str, str]]]:
    """A database at head with one row in `item`; its name and the environment naming it."""
    with server.new_database("tmpl_backup") as database:
        env = clean_env(DATABASE_URL=server.url(database))
        must(make(project, "migrate", env=env))
        server.execute(database, "INSERT INTO item (name) VALUES ('kept')")
        yield database, env


def server_major(server: Server) -> int:
    return int(server.fetch("postgres", "SHOW server_version_num")[0][0]) // 10000


def test_backup_is_private_and_restores(
    project: Path, server: Server, migrated: tuple[str, dict[str, str]]
) -> None:
    database, env = migrated
    output = must(make(project, "backup", env=env))
    assert f"Database '{database}' on {server.host}" in output
    match = re.search(
        r"Backup written to (\S+) \(pg_dump (\d+) for a PostgreSQL (\d+) server\)", output
    )
    assert match, output
    dump, client, major = Path(match[1]), int(match[2]), int(match[3])
    assert major == server_major(server) and client >= major
    assert dump.read_bytes().startswith(b"PGDMP")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
    server.execute(database, "DELETE FROM item")
    output = must(make(project, "restore", f"file={dump}", env=env))
    assert f"Restored {dump} into {database}" in output
    assert server.fetch(database, "SELECT name FROM item") == [("kept",)]


def test_restore_refusals(
    project: Path, migrated: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = migrated
    missing = make(project, "restore", "file=backups/nope.dump", env=env)
    assert missing.returncode != 0
    assert "backups/nope.dump does not exist" in missing.stdout, missing.stdout
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello", encoding="utf-8")
    wrong = make(project, "restore", f"file={not_a_dump}", env=env)
    assert wrong.returncode != 0 and "is not a pg_dump custom-format dump" in wrong.stdout
    no_file = make(project, "restore", env=env)
    assert no_file.returncode != 0 and "Missing file=...: usage: make restore" in no_file.stdout
    for result in (missing, wrong, no_file):
        assert "Traceback" not in result.stdout


def test_restore_in_production_needs_confirm(
    project: Path, server: Server, migrated: tuple[str, dict[str, str]]
) -> None:
    database, env = migrated
    dump = Path(re.findall(r"Backup written to (\S+)", must(make(project, "backup", env=env)))[0])
    server.execute(database, "DELETE FROM item")
    production = {**env, "ENVIRONMENT": "production"}
    refused = make(project, "restore", f"file={dump}", env=production)
    assert refused.returncode != 0 and "CONFIRM=yes" in refused.stdout, refused.stdout
    assert server.fetch(database, "SELECT name FROM item") == []
    must(make(project, "restore", f"file={dump}", "CONFIRM=yes", env=production))
    assert server.fetch(database, "SELECT name FROM item") == [("kept",)]


def test_no_pg_dump_new_enough_names_the_fix(
    project: Path, migrated: tuple[str, dict[str, str]], server: Server, tmp_path: Path
) -> None:
    database, env = migrated
    # A stand-in for the PostgreSQL 9 client programs of an old machine: it only tells its version.
    old = tmp_path / "bin"
    old.mkdir()
    (old / "pg_dump").write_text(
        "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n", encoding="utf-8"
    )
    (old / "pg_dump").chmod(0o755)
    result = make(project, "backup", env={**env, "PG_BINDIR": str(old)})
    major = server_major(server)
    assert result.returncode != 0
    assert f"No pg_dump of PostgreSQL {major} or newer in PG_BINDIR" in result.stdout, result.stdout
    assert f"postgresql-client-{major}" in result.stdout
    assert not list((project / "backups").glob(f"{database}-*"))


@contextmanager
def table_locked(server: Server, database: str) -> Iterator[None]:
    """Another session holds an ACCESS EXCLUSIVE lock on `item`, as a running migration would."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(**server.connect_args(database)))
    try:
        loop.run_until_complete(
            connection.execute("BEGIN; LOCK TABLE item IN ACCESS EXCLUSIVE MODE")
        )
        yield
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


def test_backup_gives_up_on_a_held_lock(
    project: Path, server: Server, migrated: tuple[str, dict[str, str]]
) -> None:
    database, env = migrated
    before = set((project / "backups").glob("*.dump"))
    with table_locked(server, database):
        started = time.monotonic()
        result = make(project, "backup", env={**env, "BACKUP_LOCK_WAIT": "1s"})
        elapsed = time.monotonic() - started
    # A bound, not a speed: the default wait is 30 s, pg_dump and the version check take ~1 s.
    assert elapsed < 15, f"gave up after {elapsed:.0f}s, not after BACKUP_LOCK_WAIT=1s"
    assert result.returncode != 0
    assert "a table lock was not granted within 1s (BACKUP_LOCK_WAIT)" in result.stdout, (
        result.stdout
    )
    assert set((project / "backups").glob("*.dump")) == before


def test_client_programs_get_ssl_and_libpq_parameters(project: Path) -> None:
    probe = (
        "import json; from alembic_steady.dialects.postgresql_clients import libpq_environment; "
        "from my_service.settings import Settings; s = Settings(_env_file=None); "
        "env = libpq_environment(s.sqlalchemy_url, s); "
        "print(json.dumps({k: v for k, v in env.items() if k.startswith('PG')}))"
    )
    url = "postgresql://app:s3cret@db.example:6543/shop?ssl=require&sslrootcert=/etc/ca.pem"
    result = run(project, ".venv/bin/python", "-c", probe, env=clean_env(DATABASE_URL=url))
    variables = json.loads(must(result).strip().splitlines()[-1])
    assert variables == {
        "PGSSLMODE": "require",
        "PGSSLROOTCERT": "/etc/ca.pem",
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "app",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "shop",
        "PGCONNECT_TIMEOUT": "10",
    }


def test_psql_opens_on_the_configured_database(
    project: Path, server: Server, migrated: tuple[str, dict[str, str]]
) -> None:
    database, env = migrated
    output = must(
        make(project, "psql", "args=-tAc 'SELECT current_database(), count(*) FROM item'", env=env)
    )
    assert f"Database '{database}'" in output
    assert output.strip().splitlines()[-1] == f"{database}|1"


def test_db_reset_recreates_in_development_only(
    project: Path, server: Server, migrated: tuple[str, dict[str, str]]
) -> None:
    database, env = migrated
    refused = make(project, "db-reset", env={**env, "ENVIRONMENT": "production"})
    assert refused.returncode != 0
    assert "only with ENVIRONMENT=development" in refused.stdout, refused.stdout
    assert server.tables(database) == {"item"}
    output = must(make(project, "db-reset", env=env))
    assert f"Database {database} dropped and created empty" in output
    assert server.tables(database) == set()
    must(make(project, "migrate", env=env))
    assert server.tables(database) == {"item"}
