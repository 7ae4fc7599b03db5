"""Migration safety of the generated project, on a real PostgreSQL, through its Make targets.

Replicas racing `make migrate`, a revision that fails half-way, bad settings and production
guards: each test uses a database of its own and asserts what a user would see, the exit status,
the message and the state the database is left in.
"""

import asyncio
import socket
import subprocess
import time
import uuid
import zlib
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
)

REPLICAS = 8
# Every character that breaks a URL or an ini file when written there unescaped.
AWKWARD_PASSWORD = "p%ss@w:rd/x?#"
PLANTED_TABLE = "planted_before_failure"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("safety")))


@pytest.fixture(scope="module")
def head(project: Path) -> str:
    (only,) = versions(project)
    return revision_id(only)


@pytest.fixture(scope="module")
def lock_key(project: Path) -> int:
    # Read from the project itself, so the test holds the very lock `make migrate` asks for.
    code = "from alembic_steady.dialects.postgresql import lock_key; print(lock_key('my_service'))"
    key = int(must(run(project, ".venv/bin/python", "-c", code)).strip())
    assert key == zlib.crc32(b"alembic:my_service") - 2**31  # one key per project, as documented
    return key


@pytest.fixture
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


@contextmanager
def login_role(server: Server, database: str, password: str) -> Iterator[str]:
    """A login role with `password` that may migrate `database`; its name."""
    name = f"tmpl_role_{uuid.uuid4().hex[:12]}"
    server.execute("postgres", f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
    server.execute("postgres", f'GRANT ALL ON DATABASE "{database}" TO "{name}"')
    # PostgreSQL 15+ no longer lets every role create tables in `public`.
    server.execute(database, f'GRANT ALL ON SCHEMA public TO "{name}"')
    try:
        yield name
    finally:
        # Before the database itself is dropped: the role's tables go first.
        server.execute(database, f'DROP OWNED BY "{name}"')
        server.execute("postgres", f'DROP ROLE "{name}"')


@pytest.fixture
def role(server: Server, database: str) -> Iterator[str]:
    """A login role with AWKWARD_PASSWORD that may migrate `database`; its name."""
    with login_role(server, database, AWKWARD_PASSWORD) as name:
        yield name


@pytest.fixture(scope="module")
def password_server(server: Server) -> Iterator[Server]:
    """A server that refuses a wrong password: the one under test when it checks passwords (the
    embedded one does), else a throwaway embedded one, so the wrong-password test always runs."""
    with server.new_database() as database, login_role(server, database, "right-pw") as name:
        try:
            asyncio.run(_connect_and_close(server, database, name, "wrong-pw"))
            checks = False
        except asyncpg.InvalidPasswordError:
            checks = True
    if checks:
        yield server
    else:
        with embedded_server() as embedded:
            yield embedded


def state(server: Server, database: str) -> tuple[set[str], set[str] | None]:
    """Every table of `public` and the version rows (None while there is no alembic_version)."""
    rows = server.fetch(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    tables = {row[0] for row in rows}
    return tables, server.version(database) if "alembic_version" in tables else None


def port_of(server: Server) -> int:
    if server.port is not None:
        return server.port
    # A socket server's port names its socket file, so DB_PORT still has to match it.
    return int(server.fetch("postgres", "SHOW port")[0][0])


def closed_port() -> int:
    """A local TCP port nothing listens on: one the kernel just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_short_failure(
    result: subprocess.CompletedProcess[str], *expected: str, secret: str | None = None
) -> None:
    """A refusal a user can act on: non-zero, the expected words, no traceback, no secret."""
    output = result.stdout
    assert result.returncode != 0, output
    for words in expected:
        assert words in output, f"{words!r} missing from:\n{output}"
    assert "Traceback" not in output, output
    if secret is not None:
        assert secret not in output and quote(secret, safe="") not in output, output


@contextmanager
def advisory_lock_held(server: Server, database: str, key: int) -> Iterator[None]:
    """Hold the project's migration lock from another session, as a running replica would."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(**server.connect_args(database)))
    try:
        loop.run_until_complete(connection.execute("SELECT pg_advisory_lock($1)", key))
        yield
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


# 1. Concurrency


def test_concurrent_migrates_all_succeed_once(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    # Started back to back, so the start-ups overlap and all of them reach the database together.
    runs = [
        subprocess.Popen(
            ["make", "--no-print-directory", "migrate"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in runs]
    failed = [
        f"exit {process.returncode}:\n{output}"
        for process, output in zip(runs, outputs, strict=True)
        if process.returncode != 0
    ]
    assert not failed, "\n\n".join(failed)
    assert server.fetch(database, "SELECT version_num FROM alembic_version") == [(head,)]
    assert server.tables(database) == {"item"}
    # The others waited for the lock, then found the database at head and had nothing to do.
    assert sum("Running upgrade" in output for output in outputs) == 1, outputs


def test_held_lock_gives_up_after_the_wait(
    project: Path,
    env: dict[str, str],
    server: Server,
    database: str,
    head: str,
    lock_key: int,
) -> None:
    before = state(server, database)
    with advisory_lock_held(server, database, lock_key):
        started = time.monotonic()
        result = make(project, "migrate", env={**env, "MIGRATION_LOCK_WAIT": "1"})
        elapsed = time.monotonic() - started
    assert_short_failure(result, "holds the lock", "MIGRATION_LOCK_WAIT")
    assert elapsed < 30, f"gave up after {elapsed:.0f}s, not after MIGRATION_LOCK_WAIT=1"
    assert state(server, database) == before
    # Once the other session lets go, the same command goes through.
    must(make(project, "migrate", env=env))
    assert server.version(database) == {head}


# 2. A revision that fails half-way


def test_failing_revision_is_named_and_leaves_the_last_good_head(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    must(make(project, "migrate", env=env))
    before = state(server, database)
    assert before == ({"alembic_version", "item"}, {head})
    must(make(project, "migration-empty", "msg=planted failure", env=env))
    (planted,) = set(versions(project)) - {p for p in versions(project) if revision_id(p) == head}
    try:
        text = planted.read_text(encoding="utf-8")
        body = (
            f'    op.create_table("{PLANTED_TABLE}", sa.Column("id", sa.Integer, primary_key=True))'
            '\n    op.execute("SELECT 1/0")\n'
        )
        assert "def upgrade() -> None:\n    pass\n" in text, text
        text = text.replace("def upgrade() -> None:\n    pass\n", f"def upgrade() -> None:\n{body}")
        planted.write_text(text, encoding="utf-8")

        failed = make(project, "migrate", env=env)
        assert_short_failure(failed, planted.name, "division by zero")
        assert state(server, database) == before  # PLANTED_TABLE is not there either

        verbose = make(project, "migrate", "VERBOSE=1", env=env)
        assert verbose.returncode != 0
        assert "Traceback" in verbose.stdout and "division by zero" in verbose.stdout
        assert state(server, database) == before
    finally:
        planted.unlink()
    assert len(versions(project)) == 1


def test_empty_revision_imports_op(project: Path, env: dict[str, str]) -> None:
    # A blank revision exists to be filled in by hand with `op.*` and `sa.*` calls; without the
    # imports the first run of the edited revision fails with a NameError.
    before = set(versions(project))
    must(make(project, "migration-empty", "msg=hand written", env=env))
    new = set(versions(project)) - before
    try:
        (revision,) = new
        text = revision.read_text(encoding="utf-8")
        assert "from alembic import op" in text, text
        assert "import sqlalchemy as sa" in text, text
    finally:
        for path in new:
            path.unlink()


# 3. Bad input


def test_unknown_revision(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    before = state(server, database)
    result = make(project, "migrate", "rev=deadbeef", env=env)
    # The cause (the revision nobody defines) and where to find the real ones.
    assert_short_failure(result, "deadbeef", "make history")
    assert state(server, database) == before


def test_wrong_direction_and_counts_name_the_target(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    must(make(project, "migrate", env=env))
    before = state(server, database)
    assert_short_failure(make(project, "migrate", "rev=-1", env=env), "make rollback steps=1")
    assert_short_failure(
        make(project, "rollback", "steps=5", env=env),
        "Cannot roll back 5 revisions",
        "make rollback rev=base",
    )
    assert_short_failure(
        make(project, "rollback", "steps=abc", env=env), "steps=abc is not a number"
    )
    assert state(server, database) == before


def test_two_heads_and_model_drift_name_the_make_target(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    must(make(project, "migrate", env=env))
    (only,) = versions(project)
    second = only.with_name("20260101_0001_second_root.py")
    second.write_text(
        only.read_text(encoding="utf-8").replace(head, "0000000000ff"), encoding="utf-8"
    )
    try:
        assert_short_failure(make(project, "migrate", env=env), "more than one head", "make merge")
    finally:
        second.unlink()
    model = project / "src" / "my_service" / "models" / "zz_drift.py"
    model.write_text(
        "from sqlmodel import Field, SQLModel\n\n\nclass Drift(SQLModel, table=True):\n"
        "    id: int | None = Field(default=None, primary_key=True)\n",
        encoding="utf-8",
    )
    try:
        drift = make(project, "check", env=env)
    finally:
        model.unlink()
    assert_short_failure(drift, "add_table")
    failed = [line for line in drift.stdout.splitlines() if line.startswith("FAILED")]
    assert failed and failed[-1].endswith('make migration msg="...".'), drift.stdout


def test_unreachable_database(project: Path, server: Server, database: str) -> None:
    before = state(server, database)
    port = closed_port()
    url = f"postgresql://postgres:{quote(AWKWARD_PASSWORD, safe='')}@127.0.0.1:{port}/{database}"
    started = time.monotonic()
    result = make(project, "migrate", env=clean_env(DATABASE_URL=url, DB_CONNECT_TIMEOUT="3"))
    assert time.monotonic() - started < 60
    assert_short_failure(
        result,
        "Cannot connect to PostgreSQL",
        f"127.0.0.1:{port}",
        "DATABASE_URL",
        "make db-up",
        secret=AWKWARD_PASSWORD,
    )
    assert state(server, database) == before


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://postgres:s3cr3t-pw@localhost:port/db",
            ("DATABASE_URL", "not a valid URL", "postgresql://USER:PASSWORD@HOST:PORT/NAME"),
            id="malformed",
        ),
        pytest.param(
            "postgres:s3cr3t-pw@localhost/db",
            ("DATABASE_URL", "not a valid URL", "percent-encode"),
            id="no-scheme",
        ),
        pytest.param(
            "mysql://root:s3cr3t-pw@localhost/db",
            ("DATABASE_URL", "unsupported scheme", "'mysql'", "use postgresql://"),
            id="mysql",
        ),
    ],
)
def test_bad_database_url(
    project: Path, server: Server, database: str, url: str, expected: tuple[str, ...]
) -> None:
    before = state(server, database)
    result = make(project, "migrate", env=clean_env(DATABASE_URL=url))
    assert_short_failure(result, *expected, secret="s3cr3t-pw")
    assert state(server, database) == before


def test_unknown_role_is_named(project: Path, server: Server, database: str) -> None:
    # Also the refusal path of a wrong password on servers that trust every password (the
    # embedded PostgreSQL does, over its socket): the server says no, the message names it.
    before = state(server, database)
    url = url_as(server, database, "nobody_here", "s3cr3t-pw")
    result = make(project, "migrate", env=clean_env(DATABASE_URL=url))
    assert_short_failure(
        result, "Cannot connect to PostgreSQL", "nobody_here", "DATABASE_URL", secret="s3cr3t-pw"
    )
    # A trusting server says the role is missing; a password-auth one does not tell them apart.
    assert (
        'role "nobody_here" does not exist' in result.stdout
        or 'password authentication failed for user "nobody_here"' in result.stdout
    ), result.stdout
    assert state(server, database) == before


def test_wrong_password_is_named(project: Path, password_server: Server) -> None:
    wrong = "not-the-s3cr3t"
    with (
        password_server.new_database() as database,
        login_role(password_server, database, AWKWARD_PASSWORD) as name,
    ):
        url = url_as(password_server, database, name, wrong)
        result = make(project, "migrate", env=clean_env(DATABASE_URL=url))
        assert_short_failure(
            result,
            "Cannot connect to PostgreSQL",
            f'password authentication failed for user "{name}"',
            "DATABASE_URL",
            secret=wrong,
        )
        assert AWKWARD_PASSWORD not in result.stdout
        assert state(password_server, database) == (set(), None)


async def _connect_and_close(server: Server, database: str, user: str, password: str) -> None:
    args = {**server.connect_args(database), "user": user, "password": password}
    connection = await asyncpg.connect(**args)
    await connection.close()


def test_awkward_password_in_db_parts(
    project: Path, server: Server, database: str, role: str, head: str
) -> None:
    parts = clean_env(
        DB_HOST=server.host,
        DB_PORT=str(port_of(server)),
        DB_USER=role,
        DB_PASSWORD=AWKWARD_PASSWORD,
        DB_NAME=database,
    )
    output = must(make(project, "migrate", env=parts))
    assert AWKWARD_PASSWORD not in output
    assert state(server, database) == ({"alembic_version", "item"}, {head})
    owner = server.fetch(database, "SELECT tableowner FROM pg_tables WHERE tablename = 'item'")
    assert owner == [(role,)]

    # A failing command with the password set prints neither it nor its encoded form.
    assert_short_failure(
        make(project, "migrate", "rev=deadbeef", env=parts), "deadbeef", secret=AWKWARD_PASSWORD
    )
    unreachable = {**parts, "DB_HOST": "127.0.0.1", "DB_PORT": str(closed_port())}
    unreachable["DB_CONNECT_TIMEOUT"] = "3"
    assert_short_failure(
        make(project, "migrate", env=unreachable),
        "Cannot connect to PostgreSQL",
        secret=AWKWARD_PASSWORD,
    )
    assert state(server, database) == ({"alembic_version", "item"}, {head})


def test_awkward_password_percent_encoded_in_url(
    project: Path, server: Server, database: str, role: str, head: str
) -> None:
    url = url_as(server, database, role, AWKWARD_PASSWORD)
    output = must(make(project, "migrate", env=clean_env(DATABASE_URL=url)))
    assert AWKWARD_PASSWORD not in output and quote(AWKWARD_PASSWORD, safe="") not in output
    assert state(server, database) == ({"alembic_version", "item"}, {head})
    assert_short_failure(
        make(project, "migrate", "rev=deadbeef", env=clean_env(DATABASE_URL=url)),
        "deadbeef",
        secret=AWKWARD_PASSWORD,
    )


# 4. Production guards


@pytest.mark.parametrize(
    "target", [("rollback",), ("stamp", "rev=base")], ids=["rollback", "stamp"]
)
def test_production_refuses_without_confirm(
    project: Path,
    env: dict[str, str],
    server: Server,
    database: str,
    head: str,
    target: tuple[str, ...],
) -> None:
    production = {**env, "ENVIRONMENT": "production"}
    # Upgrades are not guarded: production deploys migrate as usual.
    must(make(project, "migrate", env=production))
    before = state(server, database)
    assert before == ({"alembic_version", "item"}, {head})

    assert_short_failure(make(project, *target, env=production), "production", "CONFIRM=yes")
    assert state(server, database) == before
    assert_short_failure(make(project, *target, "CONFIRM=no", env=production), "CONFIRM=yes")
    assert state(server, database) == before

    must(make(project, *target, "CONFIRM=yes", env=production))
    if target[0] == "rollback":
        assert state(server, database) == ({"alembic_version"}, set())
    else:
        assert state(server, database) == ({"alembic_version", "item"}, set())  # version only


def test_production_prints_sql_offline(project: Path) -> None:
    offline = clean_env(
        ENVIRONMENT="production", DATABASE_URL="postgresql://nobody:s3cr3t-pw@127.0.0.1:1/none"
    )
    sql = must(make(project, "sql", env=offline))
    assert "CREATE TABLE item" in sql and "INSERT INTO alembic_version" in sql
    assert "s3cr3t-pw" not in sql
