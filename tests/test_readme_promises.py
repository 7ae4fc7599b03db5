"""Promises of the READMEs that only a rendered project proves, on one rendered, installed project:

- its own `make test` is green with nothing skipped,
- `make backup` hands the password to pg_dump in its environment, never on its command line,
- `make db-up` takes the Docker branch when a Docker engine answers,
- project code and revisions run from bytecode under PYTHONDONTWRITEBYTECODE=1.

The built-in migration tests' verdicts on planted defects (the stairway, model drift, a second
head, enum types), and a failure part-way from base, are proven in the toolkit's
tests/postgresql/test_pg_stairway.py, without a render. The tests share the project; each removes
what it adds.
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
    run,
    url_as,
    versions,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("promises")))


# 1. The generated `make test`


def test_generated_make_test_passes(project: Path) -> None:
    output = must(make(project, "test", "args=-v", env=clean_env(CI="true")))
    summary = output.strip().splitlines()[-1]
    # Passed and nothing else: a skip, an xfail or an xpass would be a test that proves nothing.
    assert re.fullmatch(r"=+ \d+ passed in [\d.]+s( \([\d:]+\))? =+", summary), summary
    for test in (
        "test_stairway",
        "test_upgrade_base_to_head",
        "test_models_match_head_schema",
        "test_single_head",
        "test_data_survives_later_upgrades",
        "test_upgrade_inside_a_running_event_loop",
    ):
        assert re.search(rf"{test}\S* PASSED", output), test


# 2. The backup's password


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


# 3. The Docker branch of `make db-up`

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


# 4. Bytecode under PYTHONDONTWRITEBYTECODE=1


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
