"""What only a render proves of the runner on a live database: `make migrate` through the
render's settings.py (its default MIGRATION_LOCK_TIMEOUT, MIGRATION_DATABASE_URL, and the
variables it validates). The runner's behaviour itself (replicas, lock timeouts, killed
connections, signals, failed concurrent indexes, the messages) is proven without a render in
packages/alembic-steady/tests/postgresql/test_pg_live.py.
"""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
    versions,
    versions_dir,
)

APP = "blocking-app"

ALTER = "live_alter"
# A revision the app's reads queue behind while an app transaction holds `item`.
REVISION = '''"""alter"""

import sqlalchemy as sa
from alembic import op

revision = "live_alter"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("note", sa.Text()))


def downgrade() -> None:
    pass
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = install(bake(tmp_path_factory.mktemp("live")))
    (first,) = versions(project)
    revision = REVISION.format(down=revision_id(first))
    (versions_dir(project) / f"20260101_{ALTER}.py").write_text(revision, encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def template_head(project: Path) -> str:
    return min(revision_id(path) for path in versions(project) if ALTER not in path.name)


@pytest.fixture
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


def version(server: Server, database: str) -> set[str]:
    return server.version(database)


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


# The migration's statements waiting behind the blocker: one row per attempt (a retry runs the
# statement again, with a new query_start).
WAITING = """
SELECT pid, query_start FROM pg_stat_activity
 WHERE wait_event_type = 'Lock' AND $1 = ANY(pg_blocking_pids(pid))
"""


async def migrate_while_blocked(
    project: Path, env: dict[str, str], server: Server, database: str
) -> tuple[int, str, float, int]:
    """`make migrate` while an app transaction holds a lock on `item` until the migration's
    statement has been seen waiting in two attempts (so the first gave up and was retried), and
    an app reader loop reads it: (exit status, output, the reader's worst stall, blocker pid)."""
    async with (
        session(server, database) as blocker,
        session(server, database, "reader") as reader,
        session(server, database, "watcher") as watcher,
    ):
        await blocker.execute("BEGIN")
        await blocker.fetch("SELECT count(*) FROM item")
        pid = blocker.get_server_pid()
        process = await asyncio.create_subprocess_exec(
            "make",
            "--no-print-directory",
            "migrate",
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        finished = asyncio.ensure_future(process.communicate())

        async def release() -> None:
            # On its own task and connection: the reader may be queued behind the migration
            # meanwhile, and the blocker must stay idle in transaction for the runner to name it.
            # Released on what the server shows, not after a time a slow start could outlast.
            attempts: set[tuple[Any, ...]] = set()
            while len(attempts) < 2 and not finished.done():
                attempts |= {tuple(row) for row in await watcher.fetch(WAITING, pid)}
                await asyncio.sleep(0.02)  # the poll's pace: an attempt waits 0.25s at least
            await blocker.execute("COMMIT")

        releasing = asyncio.ensure_future(release())
        worst = 0.0
        while not finished.done():
            started = time.monotonic()
            await asyncio.wait_for(reader.fetchval("SELECT count(*) FROM item"), 120)
            worst = max(worst, time.monotonic() - started)
            await asyncio.sleep(0.05)
        output = (await finished)[0].decode()
        await releasing
    assert process.returncode is not None
    return process.returncode, output, worst, pid


def test_blocked_alter_retries_without_stalling_the_app(
    project: Path, env: dict[str, str], server: Server, database: str, template_head: str
) -> None:
    # `make migrate` on the render's settings: the runner path end to end, and the default
    # MIGRATION_LOCK_TIMEOUT of settings.py bounding what the app waits.
    must(make(project, "migrate", f"rev={template_head}", env=env))
    status, output, worst, pid = asyncio.run(migrate_while_blocked(project, env, server, database))
    assert status == 0, output
    assert version(server, database) == {ALTER}
    # Each attempt waits for the lock at most MIGRATION_LOCK_TIMEOUT (1s): so does the app.
    assert worst < 1.5, f"an app read stalled {worst:.2f}s\n{output}"
    retries = [line for line in output.splitlines() if "waited" in line and "Retrying" in line]
    assert retries and retries[0].count(f"Revision {ALTER} (alter): attempt 1 waited"), output
    assert (
        f"table item held by pid {pid} (application_name '{APP}', idle in transaction"
        in (retries[0])
    ), output


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
