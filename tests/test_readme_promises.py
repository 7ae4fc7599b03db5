"""Promises of the READMEs that no other test held to, each proven on a rendered project:

- a failure part-way from base keeps the good revisions (`make migrate`),
- the stairway sees every kind of object a revision creates, not only tables and types,
- `make backup` hands the password to pg_dump in its environment, never on its command line,
- `make db-up` takes the Docker branch when a Docker engine answers,
- project code and revisions run from bytecode under PYTHONDONTWRITEBYTECODE=1.

The tests share one rendered, installed project; each removes what it adds.
"""

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from .conftest import (
    Server,
    bake,
    clean_env,
    embedded_server,
    install,
    make,
    must,
    revision_id,
    run,
    url_as,
    versions,
    versions_dir,
)

REVISION = '''"""{message}"""

from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("promises")))


@contextmanager
def planted(project: Path, *revisions: tuple[str, str, str, str]) -> Iterator[list[Path]]:
    """Revision files (id, message, upgrade body, downgrade body) chained on top of head; removed
    afterwards with their bytecode."""
    (head,) = (revision_id(path) for path in versions(project))
    paths: list[Path] = []
    try:
        down = head
        for index, (revision, message, upgrade, downgrade) in enumerate(revisions):
            path = versions_dir(project) / f"20270101_000{index}_{revision}_planted.py"
            path.write_text(
                REVISION.format(
                    message=message,
                    revision=revision,
                    down=down,
                    upgrade=_indent(upgrade),
                    downgrade=_indent(downgrade),
                ),
                encoding="utf-8",
            )
            paths.append(path)
            down = revision
        yield paths
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
            for compiled in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                compiled.unlink()


def _indent(body: str) -> str:
    return "\n".join(f"    {line}" for line in body.strip().splitlines())


# 1. A failure part-way from base


def test_make_migrate_from_base_keeps_the_good_revisions(project: Path, server: Server) -> None:
    good = ("a1a1a1a1a1a1", "good one", 'op.execute("CREATE TABLE good_one (id int)")', "pass")
    bad = (
        "b2b2b2b2b2b2",
        "fails half-way",
        'op.execute("CREATE TABLE never_kept (id int)")\nop.execute("SELECT 1 / 0")',
        "pass",
    )
    with server.new_database() as database, planted(project, good, bad) as (_, failing):
        result = make(project, "migrate", env=clean_env(DATABASE_URL=server.url(database)))
        assert result.returncode != 0, result.stdout
        assert failing.name in result.stdout and "division by zero" in result.stdout
        # The message says where the database stands: at the last good revision.
        assert "version stays at a1a1a1a1a1a1" in result.stdout, result.stdout
        assert "Traceback" not in result.stdout
        # Started from base: the template's revision and the good one stay applied.
        assert server.version(database) == {"a1a1a1a1a1a1"}
        assert server.tables(database) == {"item", "good_one"}


# 2. The stairway sees every kind of object


# Objects the event triggers attribute to one relation or function (the stairway's fast path):
# a function, a procedure, a trigger on the template's existing table (calling a built-in
# function, so that only the trigger's own event can send the stairway back to that table), a
# view, a sequence, a policy with row security, a comment.
FAST_PATH_UP = """
op.execute("CREATE TABLE gadget (id bigint PRIMARY KEY, name text)")
op.execute("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
op.execute("CREATE PROCEDURE purge_gadgets() LANGUAGE sql AS 'DELETE FROM gadget'")
op.execute(
    "CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW "
    "EXECUTE FUNCTION suppress_redundant_updates_trigger()"
)
op.execute("CREATE VIEW gadget_names AS SELECT name FROM gadget")
op.execute("CREATE SEQUENCE gadget_serial START 7")
op.execute("ALTER TABLE gadget ENABLE ROW LEVEL SECURITY")
op.execute("CREATE POLICY gadget_all ON gadget USING (true)")
op.execute("COMMENT ON TABLE gadget IS 'gadgets'")
"""
FAST_PATH_DOWN = """
op.execute("DROP VIEW gadget_names")
op.execute("DROP TRIGGER item_touch ON item")
op.execute("DROP TABLE gadget")
op.execute("DROP SEQUENCE gadget_serial")
op.execute("DROP PROCEDURE purge_gadgets()")
op.execute("DROP FUNCTION touch()")
"""
FAST_PATH_LEFT = (
    "('function', 'f public.touch() ",
    "('function', 'p public.purge_gadgets() ",
    "('trigger', 'CREATE TRIGGER item_touch ",
    "('view', 'public.gadget_names AS ",
    "('sequence', 'public.gadget_serial bigint start 7 ",
    "('policy', 'public.gadget gadget_all ",
    "comment gadgets",
)
# Objects that make the next snapshot read everything: a schema, a table in it, an extension,
# grants on the template's table and a function.
FULL_READ_UP = """
op.execute("CREATE SCHEMA reporting")
op.execute("CREATE TABLE reporting.daily (day date PRIMARY KEY)")
op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
op.execute("GRANT SELECT ON item TO PUBLIC")
"""
FULL_READ_DOWN = """
op.execute("REVOKE SELECT ON item FROM PUBLIC")
op.execute("DROP EXTENSION pg_trgm")
op.execute("DROP SCHEMA reporting CASCADE")
"""
FULL_READ_LEFT = (
    "('schema', 'reporting",
    "('relation', 'r reporting.daily",
    "('extension', 'pg_trgm ",
    "('relation', 'r public.item grants ",
)


def generated_migration_tests(project: Path, server: Server) -> str:
    env = clean_env(CI="true", TEST_DATABASE_URL=server.url("postgres"))
    # The planted tables have no model: only the walk's tests matter here.
    args = "args=-v -p no:cacheprovider tests/test_migrations.py -k 'stairway or upgrade'"
    return make(project, "test", args, env=env).stdout


def test_stairway_names_every_kind_of_object_a_downgrade_leaves(
    project: Path, server: Server
) -> None:
    fast = ("c3c3c3c3c3c3", "fast path objects", FAST_PATH_UP, FAST_PATH_DOWN)
    full = ("d4d4d4d4d4d4", "full read objects", FULL_READ_UP, FULL_READ_DOWN)
    with planted(project, fast, full):
        output = generated_migration_tests(project, server)
        assert re.search(r"test_stairway\S* PASSED", output), output
        assert re.search(r"test_upgrade_base_to_head\S* PASSED", output), output

    for broken, left in ((0, FAST_PATH_LEFT), (1, FULL_READ_LEFT)):
        revisions = [fast, full]
        revision, message, upgrade, _ = revisions[broken]
        revisions[broken] = (revision, message, upgrade, "pass")
        with planted(project, *revisions):
            output = generated_migration_tests(project, server)
        assert re.search(r"test_stairway\S* FAILED", output), output
        assert f"revision {revision} " in output, output
        missed = [row for row in left if row not in output]
        assert not missed, f"the stairway did not name {missed}:\n{output}"


# 3. The backup's password


@contextmanager
def password_checking(server: Server) -> Iterator[Server]:
    """`server` if it refuses a wrong password (the embedded one does), else a throwaway
    embedded server that does."""
    role = f"tmpl_pw_{uuid.uuid4().hex[:8]}"
    server.execute("postgres", f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'right'")
    try:
        asyncio.run(asyncpg.connect(**{**server.connect_args("postgres"), "user": role}))
        checks = False
    except asyncpg.InvalidPasswordError:
        checks = True
    finally:
        server.execute("postgres", f'DROP ROLE "{role}"')
    if checks:
        yield server
    else:
        with embedded_server() as embedded:
            yield embedded


def pg_dump_processes(database: str) -> list[int]:
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


@contextmanager
def table_locked(server: Server, database: str, table: str) -> Iterator[None]:
    """An ACCESS EXCLUSIVE lock on `table` from another session: pg_dump waits for it."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(**server.connect_args(database)))
    try:
        loop.run_until_complete(connection.execute("BEGIN"))
        loop.run_until_complete(connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


def test_backup_password_reaches_pg_dump_through_its_environment(
    project: Path, server: Server
) -> None:
    password = f"pw-{uuid.uuid4().hex[:10]}"
    role = f"tmpl_backup_{uuid.uuid4().hex[:8]}"
    with password_checking(server) as checked:
        checked.execute("postgres", f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        try:
            with checked.new_database() as database:
                checked.execute("postgres", f'ALTER DATABASE "{database}" OWNER TO "{role}"')
                # The role's password is in DATABASE_URL only: no .pgpass, no PGPASSWORD set.
                env = clean_env(DATABASE_URL=url_as(checked, database, role, password))
                must(make(project, "migrate", env=env))
                with table_locked(checked, database, "item"):
                    backup = subprocess.Popen(
                        ["make", "--no-print-directory", "backup"],
                        cwd=project,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        text=True,
                    )
                    # pg_dump waits for the lock on item, so it can be looked at while it runs.
                    deadline = time.monotonic() + 60
                    while not (pids := pg_dump_processes(database)):
                        assert backup.poll() is None, backup.communicate()[0]
                        assert time.monotonic() < deadline, "pg_dump never started"
                        time.sleep(0.05)
                    argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode()
                    environ = Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
                output = backup.communicate(timeout=120)[0]
                assert backup.returncode == 0, output
        finally:
            checked.execute("postgres", f'DROP ROLE IF EXISTS "{role}"')
    assert password not in argv and quote(password, safe="") not in argv, argv
    assert f"PGPASSWORD={password}".encode() in environ
    assert password not in output
    dumps = list((project / "backups").glob(f"{database}-*.dump"))
    assert len(dumps) == 1 and dumps[0].read_bytes().startswith(b"PGDMP"), output
    dumps[0].unlink()


# 4. The Docker branch of `make db-up`

# No Docker engine runs here, so a `docker` command on PATH stands in for the CLI: it answers
# `docker info` and records every call. This proves which branch `make db-up`/`db-down` choose and
# what they ask Docker for, not that Compose starts PostgreSQL (compose.yaml is checked by render).
DOCKER_SHIM = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
exit 0
"""


def test_db_up_uses_docker_compose_when_docker_answers(project: Path, tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM, encoding="utf-8")
    (shim / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    env = clean_env(PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", DOCKER_CALLS=str(calls))
    dotenv = project / ".env"
    assert not dotenv.exists()
    try:
        up = must(make(project, "db-up", env=env))
        assert "PostgreSQL running in Docker" in up
        assert calls.read_text().splitlines() == ["info", "compose up --detach --wait db"]
        # The app's settings then match compose.yaml's server.
        example = (project / ".env.example").read_text(encoding="utf-8")
        assert dotenv.read_text(encoding="utf-8") == example
        assert not (project / ".devdb").exists()
        calls.unlink()
        must(make(project, "db-down", env=env))
        assert calls.read_text().splitlines() == ["info", "compose down"]
    finally:
        dotenv.unlink(missing_ok=True)


# 5. Bytecode under PYTHONDONTWRITEBYTECODE=1


def modules_loaded_from_source(project: Path, *alembic_args: str) -> tuple[list[str], str]:
    """Project files an `alembic` command compiled from source, and its verbose import log."""
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", PYTHONVERBOSE="1")
    output = must(run(project, ".venv/bin/alembic", *alembic_args, env=env))
    src = re.escape(str(project / "src"))
    return re.findall(rf"^# code object from '?({src}\S+\.py)'?$", output, re.M), output


def test_project_code_and_revisions_run_from_bytecode(project: Path) -> None:
    offline = ("upgrade", "head", "--sql")
    from_source, log = modules_loaded_from_source(project, *offline)
    assert not from_source, f"compiled at every start, not read from bytecode: {from_source}"
    for loaded in ("migrations/__pycache__/env.", "migrations/versions/__pycache__/", "settings."):
        assert re.search(rf"code object from '\S+{re.escape(loaded)}\S*\.pyc'", log), loaded

    # A revision written by `make migration-empty` is compiled as it is written.
    before = set(versions(project))
    env = clean_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    must(make(project, "migration-empty", "msg=compiled on write", env=env))
    (new,) = set(versions(project)) - before
    try:
        from_source, _ = modules_loaded_from_source(project, *offline)
        assert not from_source, f"compiled at every start, not read from bytecode: {from_source}"
    finally:
        new.unlink()
        for compiled in (new.parent / "__pycache__").glob(f"{new.stem}.*.pyc"):
            compiled.unlink()
