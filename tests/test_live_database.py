"""The migration runner on a live database: other sessions hold locks, replicas race, the
connection dies, the orchestrator sends SIGTERM. Each test uses a database of its own on a real
PostgreSQL and asserts what a user would see: the exit status, the message, what the app noticed
(its worst stall) and the state the database is left in.

One chain of revisions serves every test; each migrates to the revision it needs (`rev=`):
head of the template -> reset -> after_reset -> alter -> big -> cic -> unique -> slow.
"""

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from .conftest import (
    Server,
    bake,
    clean_env,
    install,
    make,
    must,
    revision_id,
    url_as,
    versions,
    versions_dir,
)

REPLICAS = 8
APP = "blocking-app"
RUNNER = "my_service migrations"  # the application_name the runner connects with

REVISION = '''"""{doc}"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''
CHAIN = [
    # A pooler in transaction mode resets the session between transactions, which drops session
    # locks; this revision does the same, but only when the test asks for it.
    (
        "reset",
        '    op.execute("SELECT pg_advisory_unlock_all() FROM pg_tables '
        "WHERE tablename = 'simulate_pooler_reset'\")",
    ),
    ("after_reset", '    op.execute("SELECT 1")'),
    ("alter", '    op.add_column("item", sa.Column("note", sa.Text()))'),
    (
        "big",
        '    op.execute("CREATE TABLE big AS SELECT g AS id, g % 1000 AS k '
        'FROM generate_series(1, 200000) AS g")',
    ),
    (
        "cic",
        "    with op.get_context().autocommit_block():\n"
        '        op.create_index("ix_big_k", "big", ["k"], postgresql_concurrently=True)',
    ),
    (
        "unique",
        '    op.execute("CREATE TABLE IF NOT EXISTS audit (id int)")\n'
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_item_name_unique ON item (name)")',
    ),
    ("slow", '    op.execute("SELECT pg_sleep(60)")'),
]
REV = {name: f"live_{name}" for name, _ in CHAIN}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = install(bake(tmp_path_factory.mktemp("live")))
    (first,) = versions(project)
    down = revision_id(first)
    for number, (name, body) in enumerate(CHAIN, start=1):
        path = versions_dir(project) / f"2026010{number}_live_{name}.py"
        path.write_text(
            REVISION.format(doc=name, rev=REV[name], down=down, body=body), encoding="utf-8"
        )
        down = REV[name]
    return project


@pytest.fixture(scope="module")
def template_head(project: Path) -> str:
    return min(revision_id(path) for path in versions(project) if "live_" not in path.name)


@pytest.fixture
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


def version(server: Server, database: str) -> set[str]:
    return server.version(database)


def migrate(project: Path, env: dict[str, str], to: str) -> None:
    must(make(project, "migrate", f"rev={REV.get(to, to)}", env=env))


def assert_short_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    for words in expected:
        assert words in result.stdout, f"{words!r} missing from:\n{result.stdout}"
    assert "Traceback" not in result.stdout, result.stdout


@asynccontextmanager
async def session(server: Server, database: str, name: str = APP) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(
        **server.connect_args(database), server_settings={"application_name": name}
    )
    try:
        yield connection
    finally:
        await connection.close()


async def migrate_while_blocked(
    project: Path,
    env: dict[str, str],
    server: Server,
    database: str,
    to: str,
    hold: float,
    blocking_query: str = "SELECT count(*) FROM item",
    begin: str = "BEGIN",
) -> tuple[int, str, float, int]:
    """`make migrate rev=to` while an app transaction holds a lock for `hold` seconds and an app
    reader loop reads `item`: (exit status, output, the reader's worst stall, blocker pid)."""
    async with session(server, database) as blocker, session(server, database, "reader") as reader:
        # The app's own sessions are not under test: a database-wide idle_session_timeout (see
        # test_idle_session_timeout_does_not_take_the_lock) must not close them between reads.
        for connection in (blocker, reader):
            await connection.execute("SET idle_session_timeout = 0")
        await blocker.execute(begin)
        await blocker.fetch(blocking_query)
        pid = blocker.get_server_pid()
        process = await asyncio.create_subprocess_exec(
            "make",
            "--no-print-directory",
            "migrate",
            f"rev={REV[to]}",
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        finished = asyncio.ensure_future(process.communicate())

        async def release() -> None:
            # On its own task: the reader may be queued behind the migration meanwhile.
            await asyncio.sleep(hold)
            await blocker.execute("COMMIT")

        releasing = asyncio.ensure_future(release())
        worst = 0.0
        while not finished.done():
            started = time.monotonic()
            await asyncio.wait_for(reader.fetchval("SELECT count(*) FROM item"), 120)
            worst = max(worst, time.monotonic() - started)
            await asyncio.sleep(0.05)
        output = (await finished)[0].decode()
        if not releasing.done():
            releasing.cancel()
            await blocker.execute("ROLLBACK")
    assert process.returncode is not None
    return process.returncode, output, worst, pid


# 1. Replicas racing a non-transactional index build


def test_replicas_all_build_the_concurrent_index(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    # Waiters used to block inside pg_advisory_lock(), holding a snapshot that CREATE INDEX
    # CONCURRENTLY waits for while the holder waits for it: 0 of 8 got through.
    runs = [
        subprocess.Popen(
            ["make", "--no-print-directory", "migrate", f"rev={REV['cic']}"],
            cwd=project,
            env={**env, "MIGRATION_LOCK_WAIT": "120"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in runs]
    failed = [out for process, out in zip(runs, outputs, strict=True) if process.returncode]
    assert not failed, "\n\n".join(failed)
    assert version(server, database) == {REV["cic"]}
    valid = server.fetch(
        database, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_big_k'::regclass"
    )
    assert valid == [(True,)]
    assert sum(f"-> {REV['cic']}" in out for out in outputs) == 1, outputs


# 2. An app transaction in the way of an ALTER


def test_blocked_alter_retries_without_stalling_the_app(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    migrate(project, env, "after_reset")
    status, output, worst, pid = asyncio.run(
        migrate_while_blocked(project, env, server, database, "alter", hold=4)
    )
    assert status == 0, output
    assert version(server, database) == {REV["alter"]}
    # Each attempt waits for the lock at most MIGRATION_LOCK_TIMEOUT (1s): so does the app.
    assert worst < 1.5, f"an app read stalled {worst:.2f}s\n{output}"
    retries = [line for line in output.splitlines() if "waited" in line and "Retrying" in line]
    assert retries and retries[0].count(f"Revision {REV['alter']} (alter): attempt 1 waited"), (
        output
    )
    assert (
        f"table item held by pid {pid} (application_name '{APP}', idle in transaction"
        in (retries[0])
    ), output


def test_concurrent_index_waiting_for_an_old_snapshot_is_retried(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    # CREATE INDEX CONCURRENTLY waits for every older snapshot, here an app's repeatable-read
    # transaction: the wait is cut at the lock timeout, which leaves an INVALID index; the step
    # is retried on its own (the revision's earlier part is committed), the leftover dropped.
    migrate(project, env, "big")
    status, output, _, pid = asyncio.run(
        migrate_while_blocked(
            project,
            env,
            server,
            database,
            "cic",
            hold=3,
            begin="BEGIN ISOLATION LEVEL REPEATABLE READ",
        )
    )
    assert status == 0, output
    assert "outside a transaction: attempt 1 waited" in output, output
    # No table lock in its way: the transactions it waits for are named instead.
    assert f"older transactions: pid {pid} (application_name '{APP}'" in output, output
    assert "INVALID, left by an earlier build" in output, output
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_big_k'::regclass"
    assert server.fetch(database, valid) == [(True,)]
    assert version(server, database) == {REV["cic"]}


def test_idle_session_timeout_does_not_take_the_lock(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    # The runner idles between retries; a server-wide idle_session_timeout used to close the
    # lock's idle connection, and the lock with it, without a word.
    migrate(project, env, "after_reset")
    server.execute("postgres", f'ALTER DATABASE "{database}" SET idle_session_timeout = 200')
    status, output, _, _ = asyncio.run(
        migrate_while_blocked(project, env, server, database, "alter", hold=3)
    )
    assert status == 0, output
    assert version(server, database) == {REV["alter"]}


def test_version_row_lock_timeout_is_named(
    project: Path, env: dict[str, str], server: Server, database: str, template_head: str
) -> None:
    migrate(project, env, template_head)
    short = {**env, "MIGRATION_LOCK_TIMEOUT": "200ms", "MIGRATION_LOCK_RETRY_TOTAL": "1"}
    status, output, _, pid = asyncio.run(
        migrate_while_blocked(
            project,
            short,
            server,
            database,
            "reset",
            hold=60,
            blocking_query="SELECT * FROM alembic_version FOR UPDATE",
        )
    )
    assert status != 0
    assert "Traceback" not in output, output
    assert f"{REV['reset']} (reset) could not get its lock" in output, output
    assert f"the version row (alembic_version) held by pid {pid}" in output, output
    assert "holds the lock" not in output  # not another migration: an app session
    assert version(server, database) == {template_head}


# 3. A non-transactional step that fails, then the rerun


def test_failed_unique_concurrent_index_is_reported_and_rerun(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    migrate(project, env, "cic")
    server.execute(database, "INSERT INTO item (name) VALUES ('twice'), ('twice')")
    failed = make(project, "migrate", f"rev={REV['unique']}", env=env)
    assert_short_failure(
        failed,
        f"Revision {REV['unique']} (unique)",
        "could not create unique index",
        "CREATE TABLE IF NOT EXISTS audit",  # the part committed before the index
        "INVALID index",
        f"stays at {REV['cic']}",
    )
    assert "Nothing of it was applied" not in failed.stdout
    assert "nothing of it was applied" not in failed.stdout
    assert version(server, database) == {REV["cic"]}
    left = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_item_name_unique'::regclass"
    assert server.fetch(database, left) == [(False,)]

    server.execute(database, "DELETE FROM item WHERE id = (SELECT max(id) FROM item)")
    rerun = must(make(project, "migrate", f"rev={REV['unique']}", env=env))
    assert "INVALID, left by an earlier build" in rerun, rerun
    assert server.fetch(database, left) == [(True,)]
    assert version(server, database) == {REV["unique"]}


# 4. The connection dies, the lock goes


def _slow_statement(server: Server, database: str) -> list[tuple[Any, ...]]:
    return server.fetch(
        database,
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' "
        f"AND application_name = '{RUNNER}'",
    )


@contextmanager
def slow_revision_running(
    project: Path, env: dict[str, str], server: Server, database: str, *command: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start `command` on the slow revision; yield it and its backend pid once the statement
    runs on the server."""
    migrate(project, env, "unique")
    process = subprocess.Popen(
        list(command),
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (running := _slow_statement(server, database)):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the slow revision never started"
            time.sleep(0.1)
        yield process, running[0][0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_killed_connection_is_named(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    with slow_revision_running(
        project,
        env,
        server,
        database,
        "make",
        "--no-print-directory",
        "migrate",
        f"rev={REV['slow']}",
    ) as (process, pid):
        server.execute("postgres", f"SELECT pg_terminate_backend({pid})")
        output = process.communicate(timeout=30)[0]
    result = subprocess.CompletedProcess(process.args, process.returncode, output)
    assert_short_failure(
        result,
        "Lost the connection to PostgreSQL during revision live_slow (slow)",
        f"stays at {REV['unique']}",
    )
    assert version(server, database) == {REV["unique"]}


def test_lock_lost_to_a_session_reset_stops_the_run(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    server.execute(database, "CREATE TABLE simulate_pooler_reset ()")
    result = make(project, "migrate", f"rev={REV['after_reset']}", env=env)
    assert_short_failure(
        result, "lock is no longer held", "MIGRATION_DATABASE_URL", f"stays at {REV['reset']}"
    )
    assert version(server, database) == {REV["reset"]}


# 5. Signals from the orchestrator or the keyboard


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_cancels_the_statement_on_the_server(
    project: Path, env: dict[str, str], server: Server, database: str, signum: signal.Signals
) -> None:
    # The alembic process itself, as PID 1 of a container gets `docker stop`'s SIGTERM.
    with slow_revision_running(
        project, env, server, database, ".venv/bin/alembic", "upgrade", REV["slow"]
    ) as (process, _):
        process.send_signal(signum)
        output = process.communicate(timeout=30)[0]
    # Nothing keeps running on the server once the process is gone.
    assert _slow_statement(server, database) == []
    assert process.returncode == 128 + signum, output
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "Interrupted" in line]
    assert f"Interrupted by {signum.name}: revision {REV['slow']} (slow) was rolled back" in line
    assert f"stays at {REV['unique']}" in line
    assert version(server, database) == {REV["unique"]}
    # The lock went with the connection: the next run gets it at once.
    migrate(project, {**env, "MIGRATION_LOCK_WAIT": "3"}, "unique")


# 6. Messages that name the real cause


def test_read_only_target_is_named(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    server.execute(
        "postgres", f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
    )
    result = make(project, "migrate", env=env)
    assert_short_failure(result, "read-only", "primary", "MIGRATION_DATABASE_URL")
    assert "Fix the revision" not in result.stdout
    # The traceback for those who ask, with the same exit status.
    verbose = make(project, "migrate", "VERBOSE=1", env=env)
    assert "Traceback" in verbose.stdout and "read-only" in verbose.stdout
    assert verbose.returncode == result.returncode


def test_one_connection_per_run_and_none_left(
    project: Path, server: Server, database: str, template_head: str
) -> None:
    # A run needs a single connection (the lock and the migrations share it); with none left
    # the message says so, instead of pointing at `make db-up`.
    name = f"tmpl_full_{uuid.uuid4().hex[:12]}"
    server.execute("postgres", f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'pw' CONNECTION LIMIT 1")
    server.execute(database, f'GRANT ALL ON SCHEMA public TO "{name}"')
    try:
        env = clean_env(DATABASE_URL=url_as(server, database, name, "pw"))
        must(make(project, "migrate", f"rev={template_head}", env=env))
        assert version(server, database) == {template_head}
        server.execute("postgres", f'ALTER ROLE "{name}" CONNECTION LIMIT 0')
        result = make(project, "migrate", env=env)
    finally:
        server.execute(database, f'DROP OWNED BY "{name}"')
        server.execute("postgres", f'DROP ROLE "{name}"')
    assert_short_failure(result, "too many connections", "max_connections")
    assert "make db-up" not in result.stdout


def test_migration_database_url_is_used_for_migrations(
    project: Path, server: Server, database: str, template_head: str
) -> None:
    # The app's URL goes through a pooler (here: nothing answers); migrations go direct.
    env = clean_env(
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere",
        MIGRATION_DATABASE_URL=server.url(database),
    )
    must(make(project, "migrate", f"rev={template_head}", env=env))
    assert version(server, database) == {template_head}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MIGRATION_LOCK_TIMEOUT", "soon", "is not a duration"),
        ("MIGRATION_LOCK_RETRIES", "0", "greater than or equal to 1"),
        ("MIGRATION_DATABASE_URL", "mysql://root:s3cr3t-pw@localhost/db", "unsupported scheme"),
    ],
)
def test_bad_runner_settings_are_named(
    project: Path,
    env: dict[str, str],
    server: Server,
    database: str,
    variable: str,
    value: str,
    expected: str,
) -> None:
    result = make(project, "migrate", env={**env, variable: value})
    assert_short_failure(result, variable, expected)
    assert "s3cr3t-pw" not in result.stdout
    assert server.tables(database) == set()
