"""A migration on a live database, stock Alembic against the template, side by side.

    .venv/bin/python benchmarks/live_database/blocked_migration.py [--hold 12] [--replicas 8]

One embedded PostgreSQL; the rendered project and a stock `alembic init -t async` project each
get a database of their own with the same two revisions: the template's `item` table, then an
ALTER of it (`ADD COLUMN`). Both start at the first revision with a few rows.

1. Blocked ALTER. An app transaction holds a lock on `item` (it ran a SELECT and stays open) for
   `--hold` seconds while the ALTER revision runs; an app reader loop runs `SELECT count(*) FROM
   item` every 50 ms throughout. Printed per setup: the reader's worst stall, how many reads took
   over 1 s, and the migration's outcome (exit status, seconds, the retry lines it printed).
2. Replicas and CREATE INDEX CONCURRENTLY (template only: stock Alembic has no lock to race):
   `--replicas` runs of `make migrate` to a revision that builds an index CONCURRENTLY on a
   200k-row table; printed: how many exited 0 and whether the index is valid.
3. SIGTERM during a long statement (template, and stock Alembic): how long the statement keeps
   running on the server after the signal.

Both setups run the rendered project's `.venv/bin/alembic`, so the same Alembic, SQLAlchemy and
asyncpg. The figures depend on the machine only through scheduling (a stall is the lock wait).
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from cookiecutter.main import cookiecutter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import TEMPLATE, Server, clean_env, embedded_server, timed

FIRST = "0b1c2d3e4f50"  # the template's own revision, creating `item`
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
ALTER = ("bench_alter", '    op.add_column("item", sa.Column("note", sa.Text()))')
BIG = (
    "bench_big",
    '    op.execute("CREATE TABLE big AS SELECT g AS id, g % 1000 AS k '
    'FROM generate_series(1, 200000) AS g")\n'
    "    with op.get_context().autocommit_block():\n"
    '        op.create_index("ix_big_k", "big", ["k"], postgresql_concurrently=True)',
)
GIVE_UP = 15.0  # seconds to watch a statement left running after SIGTERM (it sleeps 60)
SLOW = ("bench_slow", '    op.execute("SELECT pg_sleep(60)")')


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_chain(versions: Path, chain: list[tuple[str, str]]) -> None:
    down = FIRST
    for number, (rev, body) in enumerate(chain, start=1):
        text = REVISION.format(doc=rev, rev=rev, down=down, body=body)
        (versions / f"2026020{number}_{rev}.py").write_text(text, encoding="utf-8")
        down = rev


async def connect(server: Server, database: str, name: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=server.socket_dir,
        user="postgres",
        database=database,
        server_settings={"application_name": name},
    )


async def blocked(
    server: Server, database: str, command: list[str], cwd: Path, env: dict[str, str], hold: float
) -> dict[str, object]:
    """Run `command` while a transaction holds a lock on item for `hold` s; reader figures."""
    blocker = await connect(server, database, "app-blocker")
    reader = await connect(server, database, "app-reader")
    await blocker.execute("BEGIN")
    await blocker.fetch("SELECT count(*) FROM item")
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    finished = asyncio.ensure_future(process.communicate())

    async def release() -> None:
        # On its own task: the reader may be stuck behind the migration meanwhile.
        await asyncio.sleep(hold)
        await blocker.execute("COMMIT")

    releasing = asyncio.ensure_future(release())
    worst, slow_reads, reads = 0.0, 0, 0
    while not finished.done():
        before = time.monotonic()
        await reader.fetchval("SELECT count(*) FROM item")
        took = time.monotonic() - before
        worst, reads, slow_reads = max(worst, took), reads + 1, slow_reads + (took > 1.0)
        await asyncio.sleep(0.05)
    output = (await finished)[0].decode()
    seconds = time.monotonic() - started
    if not releasing.done():
        releasing.cancel()
        await blocker.execute("ROLLBACK")
    await blocker.close()
    await reader.close()
    lines = output.strip().splitlines()
    return {
        "worst": worst,
        "slow_reads": slow_reads,
        "reads": reads,
        "status": process.returncode,
        "seconds": seconds,
        "retries": sum("Retrying in" in line for line in lines),
        "last": lines[-1] if lines else "",
    }


async def sigterm(
    server: Server, database: str, command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, int | None]:
    """Seconds the slow statement keeps running on the server after SIGTERM; exit status."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    watcher = await connect(server, database, "watcher")
    query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"
    try:
        while not await watcher.fetchval(query):
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        await process.communicate()
        while await watcher.fetchval(query) and time.monotonic() - sent < GIVE_UP:
            await asyncio.sleep(0.05)
        return time.monotonic() - sent, process.returncode
    finally:
        # The stock run leaves the statement (and its session) behind; end it for the next step.
        await watcher.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'SELECT pg_sleep(60)%'"
        )
        await watcher.close()


async def replicas(
    server: Server, database: str, project: Path, env: dict[str, str], count: int
) -> tuple[int, bool]:
    runs = [
        await asyncio.create_subprocess_exec(
            "make",
            "--no-print-directory",
            "migrate",
            "rev=bench_big",
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]
    await asyncio.gather(*(run.communicate() for run in runs))
    checker = await connect(server, database, "checker")
    valid = await checker.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_big_k')"
    )
    await checker.close()
    return sum(run.returncode == 0 for run in runs), bool(valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=12.0, help="seconds the app blocks item")
    parser.add_argument("--replicas", type=int, default=8)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        with embedded_server() as server:
            log(f"PostgreSQL {server.version}; rendering and installing the template")
            env = clean_env()
            project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(work)))
            timed(["make", "--no-print-directory", "install"], project, env, check=True)
            alembic = str(project / ".venv" / "bin" / "alembic")
            versions = project / "src" / "my_service" / "migrations" / "versions"
            first = next(versions.glob(f"*{FIRST}*.py"))

            stock = work / "stock"
            stock.mkdir()
            timed([alembic, "init", "-t", "async", "migrations"], stock, env, check=True)
            shutil.copy(first, stock / "migrations" / "versions" / first.name)
            write_chain(stock / "migrations" / "versions", [ALTER, SLOW])
            write_chain(versions, [ALTER, BIG, SLOW])

            results: dict[str, dict[str, object]] = {}
            terms: dict[str, tuple[float, int | None]] = {}
            for setup in ("stock", "template"):
                database = f"bench_live_{setup}"
                server.create_database(database)
                url = server.url(database)
                if setup == "stock":
                    ini = stock / "alembic.ini"
                    ini.write_text(
                        "\n".join(
                            f"sqlalchemy.url = {server.url(database, 'postgresql+asyncpg')}"
                            if line.startswith("sqlalchemy.url")
                            else line
                            for line in ini.read_text(encoding="utf-8").splitlines()
                        )
                        + "\n",
                        encoding="utf-8",
                    )
                    cwd, run_env = stock, env
                    upgrade = [alembic, "upgrade"]
                else:
                    cwd, run_env = project, clean_env(DATABASE_URL=url)
                    upgrade = [alembic, "upgrade"]
                timed([*upgrade, FIRST], cwd, run_env, check=True)
                asyncio.run(_seed(server, database))
                log(f"{setup}: blocked ALTER, app transaction held {options.hold:g}s")
                command = (
                    ["make", "--no-print-directory", "migrate", "rev=bench_alter"]
                    if setup == "template"
                    else [*upgrade, "bench_alter"]
                )
                results[setup] = asyncio.run(
                    blocked(server, database, command, cwd, run_env, options.hold)
                )
                log(f"{setup}: SIGTERM during a long statement")
                if setup == "template":
                    timed([*upgrade, "bench_big"], cwd, run_env, check=True)  # the slow one is next
                terms[setup] = asyncio.run(
                    sigterm(server, database, [*upgrade, "bench_slow"], cwd, run_env)
                )

            log(f"template: {options.replicas} replicas, CREATE INDEX CONCURRENTLY on 200k rows")
            race_db = "bench_live_race"
            server.create_database(race_db)
            ok, valid = asyncio.run(
                replicas(
                    server,
                    race_db,
                    project,
                    clean_env(DATABASE_URL=server.url(race_db)),
                    options.replicas,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nPostgreSQL {server.version}; app transaction holding a lock on item for "
        f"{options.hold:g}s while a revision ALTERs it\n"
    )
    print(
        "| setup | worst app read stall | reads over 1 s | migration | retries | SIGTERM: "
        "statement runs on after | exit status |"
    )
    print("|---|---|---|---|---|---|---|")
    for setup in ("stock", "template"):
        r = results[setup]
        outcome = f"exit {r['status']} after {r['seconds']:.1f}s"
        after, status = terms[setup]
        lasted = f"{after:.2f}s" if after < GIVE_UP else f"still running after {GIVE_UP:g}s"
        print(
            f"| {setup} | {r['worst']:.2f}s | {r['slow_reads']}/{r['reads']} | {outcome} | "
            f"{r['retries']} | {lasted} | {status} |"
        )
    print(
        f"\ntemplate, {options.replicas} replicas to a CREATE INDEX CONCURRENTLY revision: "
        f"{ok}/{options.replicas} exit 0, index {'valid' if valid else 'INVALID or missing'}"
    )


async def _seed(server: Server, database: str) -> None:
    connection = await connect(server, database, "seed")
    await connection.execute(
        "INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, 1000) AS g"
    )
    await connection.close()


if __name__ == "__main__":
    os.environ.pop("DATABASE_URL", None)
    main()
