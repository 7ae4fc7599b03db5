"""The runner on a live PostgreSQL, without a render: other sessions hold locks, replicas race,
the connection dies, the orchestrator sends SIGTERM. Each test asserts what a user would see: the
message (the one line a command-line run prints), what the app noticed (its worst stall) and the
state the database is left in.

Runs go through the API in this process (`Migrations(project).upgrade`, in a worker thread while
this thread plays the app) where they can; through processes where a process is the point:
replicas, signals.

One chain of revisions serves every test; each migrates to the revision it needs:
item -> reset -> after_reset -> alter -> big -> cic -> unique -> slow (the replicas' copy of it
ends at cic: a replica upgrades to head).
"""

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import demo_project
import pytest
from alembic import command as alembic_command
from alembic.util import CommandError
from queries import execute, rows
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.plugin import new_database

REPLICAS = 4
APP = "blocking-app"

# (name, upgrade body); the revision is live_<name>, its doc the name, as messages show them.
CHAIN = [
    (
        "item",
        '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.String(100), nullable=False))',
    ),
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
        'FROM generate_series(1, 20000) AS g")',
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
SLOW = "SELECT pg_sleep(60)"


def write(name: str, until: str) -> Project:
    """A project with the chain up to `until` (its head)."""
    project = demo_project.write("postgresql", name=name, chain=[])
    down = None
    for step, upgrade in CHAIN:
        demo_project.add_revision(project.versions, REV[step], down, upgrade, "    pass", doc=step)
        down = REV[step]
        if step == until:
            break
    return project


@pytest.fixture(scope="module")
def project() -> Project:
    return write("live_runner", "slow")


@pytest.fixture
def migrations(project: Project) -> Migrations:
    return Migrations(project)


@pytest.fixture
def settings(project: Project, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Replace some of the settings env.py reads for this test (MIGRATION_LOCK_TIMEOUT ...)."""
    module = sys.modules[f"{project.package}.migrations"]

    def change(**fields: Any) -> None:
        monkeypatch.setattr(module, "SETTINGS", replace(module.SETTINGS, **fields))

    return change


@pytest.fixture
def own_database(server_clients: Clients, server_url: URL) -> Iterator[URL]:
    """A database of this test's own, for settings given to the whole database (ALTER DATABASE
    ... SET), which emptying the run's shared one would not undo."""
    with new_database(server_clients, server_url) as url:
        yield url


def connect_args(url: URL) -> dict[str, Any]:
    return {
        "user": url.username,
        "password": url.password,
        "host": url.host or url.query.get("host"),
        "port": url.port,
        "database": url.database,
    }


def version(url: URL) -> set[str]:
    return {row[0] for row in rows(url, "SELECT version_num FROM alembic_version")}


def index_valid(url: URL, index: str) -> list[tuple[Any, ...]]:
    return rows(url, f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{index}'::regclass")


def failure(migrations: Migrations, url: URL, to: str) -> str:
    """The message of an upgrade to `to` that fails as a CommandError: what a command-line run
    prints as its one line (anything else would end in a traceback)."""
    with pytest.raises(CommandError) as failed:
        migrations.upgrade(REV.get(to, to), url=url)
    return str(failed.value)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


@asynccontextmanager
async def session(url: URL, name: str = APP) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(
        **connect_args(url), server_settings={"application_name": name}
    )
    try:
        yield connection
    finally:
        await connection.close()


@dataclass
class Blocked:
    """How an upgrade went while an app transaction was in its way."""

    error: str | None  # the CommandError's message, None when the upgrade succeeded
    worst: float  # the app reader's longest read, seconds
    pid: int  # the blocking app session's


async def migrate_while_blocked(
    migrations: Migrations,
    url: URL,
    to: str,
    hold: float,
    blocking_query: str = "SELECT count(*) FROM item",
    begin: str = "BEGIN",
) -> Blocked:
    """Upgrade to `to` (in a worker thread) while an app transaction holds a lock for `hold`
    seconds and an app reader loop reads `item`."""
    async with session(url) as blocker, session(url, "reader") as reader:
        # The app's own sessions are not under test: a database-wide idle_session_timeout (see
        # test_idle_session_timeout_does_not_take_the_lock) must not close them between reads.
        for connection in (blocker, reader):
            await connection.execute("SET idle_session_timeout = 0")
        await blocker.execute(begin)
        await blocker.fetch(blocking_query)
        pid = blocker.get_server_pid()
        upgrading = asyncio.ensure_future(migrations.upgrade_async(REV[to], url=url))

        async def release() -> None:
            # On its own task: the reader may be queued behind the migration meanwhile.
            await asyncio.sleep(hold)
            await blocker.execute("COMMIT")

        releasing = asyncio.ensure_future(release())
        worst = 0.0
        while not upgrading.done():
            started = time.monotonic()
            await asyncio.wait_for(reader.fetchval("SELECT count(*) FROM item"), 60)
            worst = max(worst, time.monotonic() - started)
            await asyncio.sleep(0.02)
        if not releasing.done():
            releasing.cancel()
            await blocker.execute("ROLLBACK")
        try:
            await upgrading
        except CommandError as exc:
            return Blocked(str(exc), worst, pid)
    return Blocked(None, worst, pid)


# 1. Replicas racing a non-transactional index build


@pytest.fixture(scope="module")
def race_project() -> Project:
    return write("live_race", "cic")


def test_replicas_all_build_the_concurrent_index(race_project: Project, database_url: URL) -> None:
    # Waiters used to block inside pg_advisory_lock(), holding a snapshot that CREATE INDEX
    # CONCURRENTLY waits for while the holder waits for it: none got through. Each replica runs
    # the chain from base to the index (a replica upgrades to head: the chain ends there), so a
    # second application of a revision (CREATE TABLE without IF NOT EXISTS) fails its replica.
    outcomes = demo_project.race(race_project, database_url, REPLICAS)
    assert [status for status, _ in outcomes] == [0] * REPLICAS, outcomes
    assert version(database_url) == {REV["cic"]}
    assert index_valid(database_url, "ix_big_k") == [(True,)]


# 2. An app transaction in the way of an ALTER


def test_blocked_alter_retries_without_stalling_the_app(
    migrations: Migrations,
    database_url: URL,
    settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Attempts wait 100ms, 200ms, then 400ms at most: enough of them to outlast the app's 2 s.
    settings(migration_lock_timeout="400ms", migration_lock_retries=30)
    migrations.upgrade(REV["after_reset"], url=database_url)
    blocked = asyncio.run(migrate_while_blocked(migrations, database_url, "alter", hold=2))
    output = logged(caplog)
    assert blocked.error is None, f"{blocked.error}\n{output}"
    assert version(database_url) == {REV["alter"]}
    # Each attempt waits for the lock at most MIGRATION_LOCK_TIMEOUT: so does the app, where an
    # ALTER left to wait would queue its reads for the whole 2 s.
    assert blocked.worst < 1.0, f"an app read stalled {blocked.worst:.2f}s\n{output}"
    retries = [line for line in output.splitlines() if "waited" in line and "Retrying" in line]
    assert retries and retries[0].count(f"Revision {REV['alter']} (alter): attempt 1 waited"), (
        output
    )
    assert (
        f"table item held by pid {blocked.pid} (application_name '{APP}', idle in transaction"
        in retries[0]
    ), output


def test_concurrent_index_waiting_for_an_old_snapshot_is_retried(
    migrations: Migrations,
    database_url: URL,
    settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CREATE INDEX CONCURRENTLY waits for every older snapshot, here an app's repeatable-read
    # transaction: the wait is cut at the lock timeout, which leaves an INVALID index; the step
    # is retried on its own (the revision's earlier part is committed), the leftover dropped.
    settings(migration_lock_timeout="400ms", migration_lock_retries=30)
    migrations.upgrade(REV["big"], url=database_url)
    blocked = asyncio.run(
        migrate_while_blocked(
            migrations,
            database_url,
            "cic",
            hold=1.5,
            begin="BEGIN ISOLATION LEVEL REPEATABLE READ",
        )
    )
    output = logged(caplog)
    assert blocked.error is None, f"{blocked.error}\n{output}"
    assert "outside a transaction: attempt 1 waited" in output, output
    # No table lock in its way: the transactions it waits for are named instead.
    assert f"older transactions: pid {blocked.pid} (application_name '{APP}'" in output, output
    assert "INVALID, left by an earlier build" in output, output
    assert index_valid(database_url, "ix_big_k") == [(True,)]
    assert version(database_url) == {REV["cic"]}


def test_idle_session_timeout_does_not_take_the_lock(
    migrations: Migrations, own_database: URL, settings: Callable[..., None]
) -> None:
    # The runner idles between retries (the second pause is 200 ms at least); a database-wide
    # idle_session_timeout used to close the lock's idle connection, and the lock with it,
    # without a word.
    settings(migration_lock_timeout="400ms", migration_lock_retries=30)
    migrations.upgrade(REV["after_reset"], url=own_database)
    execute(
        own_database, f'ALTER DATABASE "{own_database.database}" SET idle_session_timeout = 100'
    )
    blocked = asyncio.run(migrate_while_blocked(migrations, own_database, "alter", hold=1.5))
    assert blocked.error is None, blocked.error
    assert version(own_database) == {REV["alter"]}


def test_version_row_lock_timeout_is_named(
    migrations: Migrations, database_url: URL, settings: Callable[..., None]
) -> None:
    settings(migration_lock_timeout="200ms", migration_lock_retry_total=1)
    migrations.upgrade(REV["item"], url=database_url)
    blocked = asyncio.run(
        migrate_while_blocked(
            migrations,
            database_url,
            "reset",
            hold=60,
            blocking_query="SELECT * FROM alembic_version FOR UPDATE",
        )
    )
    assert blocked.error is not None
    assert f"{REV['reset']} (reset) could not get its lock" in blocked.error, blocked.error
    assert f"the version row (alembic_version) held by pid {blocked.pid}" in blocked.error
    assert "holds the lock" not in blocked.error  # not another migration: an app session
    assert version(database_url) == {REV["item"]}


# The runner's session queued for a lock on item: the server's clock and when that wait began
# (pg_locks.waitstart; NULL for a moment after the wait begins, and whenever it is not waiting).
LOCK_WAIT = """
SELECT clock_timestamp(),
       (SELECT l.waitstart FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE NOT l.granted AND l.waitstart IS NOT NULL AND l.relation = 'item'::regclass
           AND a.application_name = $1 AND a.datname = current_database())
"""


@dataclass
class Wait:
    """One attempt's wait for its lock, on the server's clock: it began at `start`, was last
    seen at `seen` and was found over by `gone` (it ended in between)."""

    start: float
    seen: float
    gone: float = float("inf")


async def lock_waits(url: URL, session_name: str, running: "asyncio.Future[None]") -> list[Wait]:
    """Every wait of the runner's session for a lock on item until `running` is done."""
    waits: list[Wait] = []
    async with session(url, "observer") as observer:
        while True:
            done = running.done()
            clock, began = await observer.fetchrow(LOCK_WAIT, session_name)
            now, start = clock.timestamp(), began and began.timestamp()
            if waits and waits[-1].gone == float("inf") and start != waits[-1].start:
                waits[-1].gone = now
            if start is not None:
                if not waits or waits[-1].start != start:
                    waits.append(Wait(start, now))
                waits[-1].seen = now
            if done:
                return waits
            await asyncio.sleep(0.005)


def test_lock_retries_escalate_their_timeout_pause_and_stop_at_the_count(
    migrations: Migrations, database_url: URL, settings: Callable[..., None]
) -> None:
    """An app session holds a lock on item for the whole run: the ALTER tries exactly
    MIGRATION_LOCK_RETRIES times, each attempt waiting a quarter of MIGRATION_LOCK_TIMEOUT, then
    half, then all of it, with a growing pause between attempts (none open, so the app's writes go
    on), and fails naming the count. Read from the server's view of the waits, not the log."""
    settings(migration_lock_timeout="1s", migration_lock_retries=4)
    migrations.upgrade(REV["after_reset"], url=database_url)

    async def run() -> tuple[list[Wait], str]:
        async with session(database_url) as blocker:
            await blocker.execute("BEGIN")
            await blocker.fetch("SELECT count(*) FROM item")
            upgrading = asyncio.ensure_future(
                migrations.upgrade_async(REV["alter"], url=database_url)
            )
            waits = await lock_waits(database_url, migrations.project.session_name, upgrading)
            await blocker.execute("ROLLBACK")
        with pytest.raises(CommandError) as failed:
            await upgrading
        return waits, str(failed.value)

    waits, message = asyncio.run(run())
    assert f"{REV['alter']} (alter) could not get its lock in 4 attempts" in message, message
    assert len(waits) == 4, waits
    # Escalation: the first attempt's bound is 250 ms (the whole limit would be 1 s), the last
    # one waits the whole 1 s.
    assert waits[0].gone - waits[0].start < 0.6, waits
    assert waits[-1].seen - waits[-1].start > 0.9, waits
    # Backoff: pauses of at least 0.1, 0.2 and 0.4 s (jittered from 0.2 s doubling) between the
    # attempts, without which the next wait would start within a few milliseconds.
    pauses = [after.start - before.gone for before, after in itertools.pairwise(waits)]
    assert sum(pauses) > 0.5, pauses
    assert version(database_url) == {REV["after_reset"]}


def test_statement_timeout_stops_a_long_statement(database_url: URL) -> None:
    """A revision whose statement runs 20 s, under MIGRATION_STATEMENT_TIMEOUT=1s: the server
    cancels it after about 1 s (not at its end), the revision is not applied and the run says
    why. A server_default that scans a huge table would otherwise hold its lock for hours."""
    project = demo_project.write(
        "postgresql",
        name="live_statement_timeout",
        chain=[("t1", '    op.execute("CREATE TABLE kept (id int)")', "    pass")],
    )
    demo_project.add_revision(
        project.versions, "t2", "t1", '    op.execute("SELECT pg_sleep(20)")', "    pass"
    )
    Migrations(project).upgrade("t1", url=database_url)
    started = time.monotonic()
    finished = demo_project.module_cli(
        project, "upgrade", url=database_url, env={"MIGRATION_STATEMENT_TIMEOUT": "1s"}
    )
    elapsed = time.monotonic() - started
    assert finished.returncode == 1, finished.stdout
    assert "canceling statement due to statement timeout" in finished.stdout, finished.stdout
    assert "Revision t2" in finished.stdout, finished.stdout
    # The process's start and connection on a busy machine included: half the statement's 20 s.
    assert elapsed < 10, f"{elapsed:.1f}s\n{finished.stdout}"
    assert version(database_url) == {"t1"}


# 3. A non-transactional step that fails, then the rerun


def test_failed_unique_concurrent_index_is_reported_and_rerun(
    migrations: Migrations, database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    migrations.upgrade(REV["cic"], url=database_url)
    execute(database_url, "INSERT INTO item (name) VALUES ('twice'), ('twice')")
    message = failure(migrations, database_url, "unique")
    for words in (
        f"Revision {REV['unique']} (unique)",
        "could not create unique index",
        "CREATE TABLE IF NOT EXISTS audit",  # the part committed before the index
        "INVALID index",
        f"stays at {REV['cic']}",
    ):
        assert words in message, f"{words!r} missing from:\n{message}"
    assert "Nothing of it was applied" not in message
    assert "nothing of it was applied" not in message
    assert version(database_url) == {REV["cic"]}
    assert index_valid(database_url, "ix_item_name_unique") == [(False,)]

    execute(database_url, "DELETE FROM item WHERE id = (SELECT max(id) FROM item)")
    caplog.clear()
    migrations.upgrade(REV["unique"], url=database_url)
    assert "INVALID, left by an earlier build" in logged(caplog), logged(caplog)
    assert index_valid(database_url, "ix_item_name_unique") == [(True,)]
    assert version(database_url) == {REV["unique"]}


# 4. The connection dies, the lock goes


def slow_statement(url: URL, session_name: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        f"SELECT pid FROM pg_stat_activity WHERE query LIKE '{SLOW}%' "
        f"AND application_name = '{session_name}' AND datname = '{url.database}'",
    )


def wait_for_slow_statement(url: URL, session_name: str, running: Callable[[], bool]) -> int:
    """The backend pid of the slow revision's statement, once it runs on the server."""
    deadline = time.monotonic() + 30
    while not (found := slow_statement(url, session_name)):
        assert running(), "the run ended before its slow revision started"
        assert time.monotonic() < deadline, "the slow revision never started"
        time.sleep(0.05)
    return int(found[0][0])


def test_killed_connection_is_named(migrations: Migrations, database_url: URL) -> None:
    migrations.upgrade(REV["unique"], url=database_url)
    errors: list[str] = []

    def upgrade() -> None:
        try:
            migrations.upgrade(REV["slow"], url=database_url)
        except CommandError as exc:
            errors.append(str(exc))

    run = threading.Thread(target=upgrade)
    run.start()
    try:
        pid = wait_for_slow_statement(database_url, migrations.project.session_name, run.is_alive)
        execute(database_url, f"SELECT pg_terminate_backend({pid})")
    finally:
        run.join(30)
    assert not run.is_alive()
    (message,) = errors
    assert "Lost the connection to PostgreSQL during revision live_slow (slow)" in message, message
    assert f"stays at {REV['unique']}" in message, message
    assert version(database_url) == {REV["unique"]}


def test_lock_lost_to_a_session_reset_stops_the_run(
    migrations: Migrations, database_url: URL
) -> None:
    execute(database_url, "CREATE TABLE simulate_pooler_reset ()")
    message = failure(migrations, database_url, "after_reset")
    for words in ("lock is no longer held", "MIGRATION_DATABASE_URL", f"stays at {REV['reset']}"):
        assert words in message, f"{words!r} missing from:\n{message}"
    assert version(database_url) == {REV["reset"]}


# 5. Signals from the orchestrator or the keyboard

# Both ways a container's PID 1 migrates: `alembic upgrade` (what `make migrate` runs) and the
# module CLI (what compose and the Kubernetes Job run).
# ... and the module CLI as PID 1 of a PID namespace, as in a container: there the kernel drops a
# signal the process has no handler for, so without one `docker stop` waits for its SIGKILL.
WAYS = [
    pytest.param("alembic", id="alembic"),
    pytest.param("module", id="module CLI"),
    pytest.param("pid1", id="module CLI as PID 1"),
]


def command(way: str, project: Project) -> list[str]:
    """`alembic upgrade` (what `make migrate` runs) or the module CLI (what a Job runs)."""
    if way == "alembic":
        ini = str(demo_project.alembic_ini(project))
        return [sys.executable, "-m", "alembic", "-c", ini, "upgrade", REV["slow"]]
    module = [sys.executable, "-m", f"{project.package}.migrations", "upgrade", REV["slow"]]
    return ["unshare", "--pid", "--fork", *module] if way == "pid1" else module


def signalled(process: "subprocess.Popen[str]", way: str) -> int:
    """The pid to signal: the process, or under unshare its child (PID 1 in its namespace)."""
    if way != "pid1":
        return process.pid
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 10
    while not (found := children.read_text().split()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(found[0])


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_cancels_the_statement_on_the_server(
    migrations: Migrations,
    database_url: URL,
    settings: Callable[..., None],
    signum: signal.Signals,
    way: str,
) -> None:
    # The migrating process itself, as PID 1 of a container gets `docker stop`'s SIGTERM.
    project = migrations.project
    if way == "pid1" and subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode:
        pytest.skip("unshare --pid cannot make a PID namespace here (root or user namespaces)")
    migrations.upgrade(REV["unique"], url=database_url)
    process = subprocess.Popen(
        command(way, project),
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": database_url.render_as_string(hide_password=False),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_slow_statement(database_url, project.session_name, lambda: process.poll() is None)
        os.kill(signalled(process, way), signum)
        output = process.communicate(timeout=30)[0]
        # Nothing keeps running on the server once the process is gone (the cancel request may
        # land a moment after the exit; without one the statement runs its 60 s).
        deadline = time.monotonic() + 2
        while slow_statement(database_url, project.session_name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow_statement(database_url, project.session_name) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        # A statement left running would keep the migration lock from the tests after this one.
        # Only this test's database: another worker's runs on a shared server carry the same
        # session name.
        execute(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{project.session_name}' "
            "AND datname = current_database()",
        )
    assert process.returncode == 128 + signum, output
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "Interrupted" in line]
    assert f"Interrupted by {signum.name}: revision {REV['slow']} (slow) was rolled back" in line
    assert f"stays at {REV['unique']}" in line
    assert version(database_url) == {REV["unique"]}
    # The lock went with the connection: the next run gets it at once.
    settings(migration_lock_wait=3)
    migrations.upgrade(REV["unique"], url=database_url)


# 6. Messages that name the real cause


def test_read_only_target_is_named(migrations: Migrations, own_database: URL) -> None:
    execute(
        own_database,
        f'ALTER DATABASE "{own_database.database}" SET default_transaction_read_only = on',
    )
    message = failure(migrations, own_database, "item")
    for words in ("read-only", "primary", "MIGRATION_DATABASE_URL"):
        assert words in message, f"{words!r} missing from:\n{message}"
    assert "Fix the revision" not in message
    assert rows(own_database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]


def test_one_connection_per_run_and_none_left(migrations: Migrations, database_url: URL) -> None:
    # A run needs a single connection (the lock and the migrations share it); with none left
    # the message says so, instead of pointing at `make db-up`.
    name = f"live_full_{uuid.uuid4().hex[:12]}"
    admin = database_url.set(database="postgres")
    execute(admin, f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'pw' CONNECTION LIMIT 1")
    execute(database_url, f'GRANT ALL ON SCHEMA public TO "{name}"')
    as_role = database_url.set(username=name, password="pw")
    try:
        migrations.upgrade(REV["item"], url=as_role)
        assert version(database_url) == {REV["item"]}
        execute(admin, f'ALTER ROLE "{name}" CONNECTION LIMIT 0')
        message = failure(migrations, as_role, "head")
    finally:
        execute(database_url, f'DROP OWNED BY "{name}"')
        execute(admin, f'DROP ROLE "{name}"')
    for words in ("too many connections", "max_connections"):
        assert words in message, f"{words!r} missing from:\n{message}"
    assert "make db-up" not in message


SESSION_SETTINGS = (
    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
    "current_setting('idle_session_timeout'), "
    "current_setting('idle_in_transaction_session_timeout')"
)


@pytest.mark.parametrize("until", ["alter", "failing"])
def test_the_session_goes_back_to_a_pool_with_its_own_timeouts(
    migrations: Migrations,
    own_database: URL,
    settings: Callable[..., None],
    until: str,
) -> None:
    """A pooler in transaction mode (or a caller's engine) hands the server session the runner
    used to the app next: it must carry the database's timeouts, not the runner's, whether the
    run succeeds or fails."""
    database_url = own_database
    name = database_url.database
    execute(
        database_url,
        f"ALTER DATABASE \"{name}\" SET idle_in_transaction_session_timeout = '1h'",
        f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '2h'",
    )
    settings(migration_lock_timeout="3s", migration_statement_timeout="7s")
    if until == "failing":  # the run stops at revision reset, its lock lost
        execute(database_url, "CREATE TABLE simulate_pooler_reset ()")
    # The session as the runner gives it back: a pooler or a pool keeps it for the next client
    # (NullPool then closes it, so nothing outlives the event loop the run had).
    engine = create_async_engine(database_url, poolclass=NullPool)
    released: list[tuple[str, ...]] = []

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(dbapi_connection: Any, record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(SESSION_SETTINGS)
        released.append(tuple(cursor.fetchone()))

    config = migrations.alembic_config()
    config.attributes["connection"] = engine
    config.attributes["command"] = "upgrade"
    try:
        alembic_command.upgrade(config, REV["alter"])
    except CommandError:
        assert until == "failing"
    defaults = rows(database_url, SESSION_SETTINGS)
    assert released and set(released) == set(defaults), (released, defaults)
    assert defaults == [("0", "0", "2h", "1h")]


@dataclass(frozen=True)
class BehindPooler(StaticSettings):
    """A project's settings where the app's URL goes through a pooler and migrations go direct
    (MIGRATION_DATABASE_URL)."""

    direct: URL | None = None

    @property
    def migration_url(self) -> URL:
        assert self.direct is not None
        return self.direct


def test_migration_url_is_used_for_migrations(
    migrations: Migrations, database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's URL goes through a pooler (here: nothing answers); migrations go direct.
    module = sys.modules[f"{migrations.project.package}.migrations"]
    nowhere = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
    monkeypatch.setattr(module, "SETTINGS", BehindPooler(nowhere, direct=database_url))
    migrations.upgrade(REV["item"])
    assert version(database_url) == {REV["item"]}


def test_a_lock_timeout_that_is_no_duration_is_named(
    migrations: Migrations, database_url: URL, settings: Callable[..., None]
) -> None:
    settings(migration_lock_timeout="soon")
    message = failure(migrations, database_url, "head")
    assert "MIGRATION_LOCK_TIMEOUT" in message and "is not a duration" in message, message
    assert rows(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]
