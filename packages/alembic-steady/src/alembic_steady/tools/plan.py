"""`make plan`: what the pending revisions will do to the configured database, measured before
they run, without touching it.

    make plan [format=text|md|json] [fail-on=risky]
    python -m <package>.migrations plan [--format text|md|json] [--fail-on risky]

The configured database (the one `make migrate` would change: production, read through a
read-only role if you like) is only read, in one read-only transaction: the revisions it is at
and its tables' sizes from the server's statistics. None of its tables is locked or read (a
session holding ACCESS EXCLUSIVE on one does not hold the plan up).

The revisions it is at are then built into a scratch database (by the project's own migrations,
so nothing is copied from the target), and each pending revision runs there as `make migrate`
runs it, watched statement by statement through the dialect: the locks each takes on each
relation, whether it rewrites or reads a table whole, whether it runs inside the revision's
transaction. The rows come from the target's statistics. What it measures is the schema the
revisions build: an object made by hand on the target is not in it (reading the target's schema
whole would lock its tables). The scratch database is dropped at the end, whatever happened.

The scratch database goes on PLAN_SCRATCH_URL's server when that is set (a server of the
target's version, where the plan may create a database), else on the target's own server when
that is on this machine (make db-up's, CI's). Lock modes do not depend on rows, so an empty copy
measures them; how long a lock is held does, hence the rows of each table it covers.

With `--fail-on risky`, the plan exits 1 when a statement rewrites a table with more rows than the
project's `plan-risky-rows` (pyproject.toml, [tool.alembic-steady]; 100,000 when unset), or
reads one whole under a lock that stops its writers, unless its revision accepts it, reviewed in
its file:

    # migration-tests: accept rewrite of item: the column type change is wanted, at night
    # migration-tests: accept long lock on item: the index is built before the launch
"""

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from ..dialects.base import Dialect, for_url, parse_url
from ..dialects.clients import MakingStopped
from ..dialects.measured import Measured, TableSize, risks
from ..project import MigrationSettings, Project
from ..runner.api import Migrations
from ..runner.environment import migration_engine
from ..runner.errors import connect
from ..runner.phases import Phases
from ..runner.settings import load_settings
from ..testing import markers
from . import lint
from .devdb import on_this_machine
from .rehearse import Stopped, interrupted, run, stop

SCRATCH_VARIABLE = "PLAN_SCRATCH_URL"
# A statement that reads rows and hands them to the revision (a data migration's loop reads so).
_QUERY = re.compile(r"^\s*\(?\s*(SELECT|WITH)\b", re.I)
RISKY_SETTING = "plan-risky-rows"
DEFAULT_RISKY_ROWS = 100_000


class PlanError(Exception):
    """A short message for the user: what is wrong and what to do."""


@dataclass
class Target:
    """What the plan reads of the configured database."""

    heads: set[str]
    sizes: dict[str, TableSize]


@dataclass
class Hold:
    """A lock that stops a table's writers, from the statement taking it to the end of its
    transaction, and the work done on tables with rows meanwhile."""

    relation: str
    mode: str
    rows: int
    statements: int
    # Tables rewritten or read whole under it, with their rows.
    work: dict[str, int] = field(default_factory=dict)


@dataclass
class RevisionPlan:
    revision: str
    doc: str
    phase: str | None
    statements: list[Measured]
    findings: list[str]
    longest: Hold | None = None
    risky: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    # Tables with rows on the target that its queries read: on the empty copy they found no
    # row, so what it does with the rows (a data migration's loop) is not measured.
    queries: list[str] = field(default_factory=list)


@dataclass
class Report:
    at: list[str]
    server: str
    threshold: int
    sizes: dict[str, TableSize]
    revisions: list[RevisionPlan]
    dialect: Dialect

    @property
    def risky(self) -> list[str]:
        return [f"{plan.revision}: {why}" for plan in self.revisions for why in plan.risky]


# -- reading the target --------------------------------------------------------------------
def read_target(connection: Connection, dialect: Dialect) -> Target:
    dialect.begin_read_only(connection)
    return Target(
        Migrations.current_heads(connection),
        dialect.table_sizes(connection),
    )


def target_of(project: Project, settings: MigrationSettings, dialect: Dialect) -> Target:
    url = settings.migration_url

    async def read() -> Target:
        engine = migration_engine(url, settings, project)
        try:
            async with connect(engine, dialect, settings, project) as connection:
                target: Target = await connection.run_sync(read_target, dialect)
                await connection.rollback()
                return target
        finally:
            await engine.dispose()

    return asyncio.run(read())


# -- the scratch copy ----------------------------------------------------------------------
def scratch_server(target: URL, backend: str) -> URL:
    given = os.environ.get(SCRATCH_VARIABLE)
    if given:
        try:
            return parse_url(given, backend)
        except ValueError as exc:
            raise PlanError(str(exc).replace("DATABASE_URL", SCRATCH_VARIABLE)) from None
    if not on_this_machine(target):
        raise PlanError(
            f"the plan builds a scratch database to measure on, never on the target, and the "
            f"target's server {target.host} is not on this machine: set {SCRATCH_VARIABLE} to "
            "a server of its version where the plan may create a database (e.g. make db-up's)"
        )
    return target


@contextmanager
def scratch_database(
    server: URL | None, dialect: Dialect, pool: Executor
) -> Iterator["Future[URL | None] | None"]:
    """The plan's scratch database on `server`, made in `pool` while the caller goes on (none
    without a server): the future's result is its URL, or a PlanError saying why the server
    would not make one. Whatever ends the block (the report, a failure reading the target,
    SIGTERM) stops its making if it is still being made (the result is then None), and drops
    it once made."""
    if server is None:
        yield None
        return
    unneeded = threading.Event()
    databases = dialect.clients().scratch_databases(server, "plan", "copy", stop=unneeded)

    def make() -> URL | None:
        try:
            (url,) = databases.__enter__()
        except MakingStopped:
            return None
        except Exception as exc:
            where = (
                f"point {SCRATCH_VARIABLE} at another server"
                if os.environ.get(SCRATCH_VARIABLE)
                else f"set {SCRATCH_VARIABLE} to a server"
            )
            raise PlanError(
                f"cannot create the scratch database on {server.host or 'the local server'}: "
                f"{dialect.first_line(exc).rstrip('.')}; {where} where the plan may create one "
                "(e.g. make db-up's)"
            ) from None
        return url

    making = pool.submit(make)
    try:
        yield making
    finally:
        # A database still being made is of no use any more: stopped, not waited for.
        unneeded.set()
        if making.exception() is None and making.result() is not None:
            databases.__exit__(None, None, None)


def measure(
    project: Project,
    dialect: Dialect,
    scratch: URL,
    settings: MigrationSettings,
    revisions: list[Script],
) -> list[list[Measured]]:
    """Each pending revision's statements, as one `make migrate` to head runs them (each
    revision in its own transaction), on the empty scratch database: the same run first builds
    what the target has (unwatched, as `make migrate` built it there), then the pending
    revisions, watched."""
    engine = migration_engine(scratch, settings, project)
    pending = {revision.revision for revision in revisions}
    try:
        with (
            dialect.watch(engine, scratch, settings, probe=True) as watch,
            watch.revision(only=pending) as watched,
        ):
            run(engine, Migrations(project), "upgrade", "heads")
    finally:
        asyncio.run(engine.dispose())
    measured = []
    for revision in revisions:
        own = [s for s in watched.statements if s.revision == revision.revision]
        # Each revision's transactions counted from 0, as it runs them.
        numbers = {
            number: index for index, number in enumerate(dict.fromkeys(s.transaction for s in own))
        }
        for statement in own:
            statement.transaction = numbers[statement.transaction]
        measured.append(own)
    return measured


# -- squawk --------------------------------------------------------------------------------
@contextmanager
def squawk_findings(
    project: Project, phases: Phases, revisions: list[Script], pool: Executor
) -> Iterator[Callable[[], dict[str, list[str]]]]:
    """squawk's findings for each revision's offline SQL, as `make lint-migrations` has them
    (the project's rule set and the revision's accepted rules); none where it is not found.

    The SQL is rendered on entering, on this thread (Alembic's commands share module state: one
    at a time); squawk reads it in `pool` after, and the function yielded waits for it."""
    squawk = lint.squawk_program()
    if squawk is None or project.dialect != "postgresql":
        yield dict
        return
    # As `make lint-migrations` renders it: alembic.ini's options, where the project has one.
    ini = project.folder / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Migrations(project).alembic_config()
    config.attributes["configure_logger"] = False
    config.attributes["command"] = "upgrade"
    script = ScriptDirectory.from_config(config)  # the revisions' files read once, for them all
    found: dict[str, list[str]] = {}
    rendered = []
    with tempfile.TemporaryDirectory() as tmp:
        for revision in revisions:
            if isinstance(revision.down_revision, tuple):
                continue
            try:
                sql = lint.revision_sql(config, script, revision)
            except Exception:
                found[revision.revision] = ["not linted: it does not render offline"]
                continue
            rendered.append((revision, sql, revision.revision in phases.post))
        run = pool.submit(lint.squawk_lines, squawk, project, rendered, tmp)
        try:
            yield lambda: found | run.result()
        finally:
            wait([run])  # squawk's files are in `tmp`


# -- the report ----------------------------------------------------------------------------
def rows_of(sizes: dict[str, TableSize], relation: str) -> int:
    size = sizes.get(relation)
    return size.rows if size else 0


def longest_hold(
    statements: list[Measured], dialect: Dialect, sizes: dict[str, TableSize]
) -> Hold | None:
    holds = []
    for index, statement in enumerate(statements):
        span = [statement]
        if statement.in_transaction:
            span = [s for s in statements[index:] if s.transaction == statement.transaction]
        for relation, mode in statement.locks:
            rows = rows_of(sizes, relation)
            if not dialect.blocks_writes(mode) or rows == 0:
                continue
            work = {
                table: rows_of(sizes, table)
                for step in span
                for table in [*step.rewrites, *step.scans]
                if rows_of(sizes, table)
            }
            holds.append(Hold(relation, dialect.mode_name(mode), rows, len(span), work))
    return max(holds, key=lambda hold: (sum(hold.work.values()), hold.rows), default=None)


def queried(statements: list[Measured], sizes: dict[str, TableSize]) -> list[str]:
    """The tables with rows on the target that a query among `statements` reads (SELECT, or
    WITH ... SELECT: its lock on them), read from the revision's own code."""
    return sorted(
        {
            relation
            for statement in statements
            if _QUERY.match(statement.sql)
            for relation, _ in statement.locks
            if rows_of(sizes, relation)
        }
    )


def queries_line(plan: RevisionPlan, sizes: dict[str, TableSize]) -> str:
    tables = ", ".join(f"{table} ({rows_of(sizes, table):,} rows)" for table in plan.queries)
    return (
        f"reads rows of {tables}: on the empty copy its queries found none, so what it does "
        "with them is not in this plan (make rehearse runs it on the data)"
    )


def judge(
    plan: RevisionPlan, path: str, dialect: Dialect, sizes: dict[str, TableSize], threshold: int
) -> None:
    """Risky: a rewrite, or a whole-table read under a lock that stops writers, of a table
    above `threshold` rows: its writers wait as long as that takes (measured.risks)."""
    accepted = markers.read(path)
    for risk in risks(plan.statements, dialect.blocks_writes):
        rows = rows_of(sizes, risk.table)
        if rows <= threshold:
            continue
        finding = f"{risk.said(dialect.mode_name)} ({rows:,} rows > {threshold:,})"
        reason = accepted.accepting_risk(risk)
        if reason is not None:
            plan.accepted.append(f"{finding}: accepted ({reason})")
        else:
            plan.risky.append(finding)


def threshold_of(project: Project) -> int:
    value = project.setting(RISKY_SETTING, DEFAULT_RISKY_ROWS)
    if not isinstance(value, int) or value < 0:
        raise PlanError(
            f"{RISKY_SETTING} in pyproject.toml is {value!r}: give a whole number of rows"
        )
    return value


def plan_report(project: Project, settings: MigrationSettings) -> Report:
    url = settings.migration_url
    dialect = for_url(url)
    threshold = threshold_of(project)
    migrations = Migrations(project)
    script = migrations.script()
    # A PLAN_SCRATCH_URL is checked before anything is read; a target on another machine without
    # one is refused only when there is something to measure.
    given = os.environ.get(SCRATCH_VARIABLE)
    server = scratch_server(url, project.dialect) if given or on_this_machine(url) else None
    # Two workers: the scratch database is made (CREATE DATABASE writes and syncs a copy of its
    # template: longer than the target takes to read), and squawk runs, while this thread goes
    # on. With nothing pending, its making is stopped.
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        scratch_database(server, dialect, pool) as making,
    ):
        target = target_of(project, settings, dialect)
        revisions = migrations.pending(target.heads, script)
        if not revisions:  # the scratch database's making is stopped on the way out
            return Report(sorted(target.heads), "", threshold, target.sizes, [], dialect)
        if making is None:
            scratch_server(url, project.dialect)  # says why there is no server to measure on
        assert making is not None
        phases = Phases(script)
        # squawk's SQL is rendered while the server makes the scratch database, and squawk
        # reads it while the revisions run there. Not the rendering beside the run: Alembic's
        # commands share module state, one at a time.
        with squawk_findings(project, phases, revisions, pool) as squawked:
            scratch = making.result()
            assert scratch is not None  # stopped only once the block ends
            # On a session of its own while the revisions run: one round trip less on their path.
            version = pool.submit(dialect.clients().version, scratch)
            measured = measure(project, dialect, scratch, settings, revisions)
            findings = squawked()
            server_version = version.result()
    plans = []
    for revision, statements in zip(revisions, measured, strict=True):
        plan = RevisionPlan(
            revision.revision,
            revision.doc,
            phases.phase(revision.revision) if phases.used else None,
            statements,
            findings.get(revision.revision, []),
            longest_hold(statements, dialect, target.sizes),
            queries=queried(statements, target.sizes),
        )
        judge(plan, str(revision.path), dialect, target.sizes, threshold)
        plans.append(plan)
    return Report(
        sorted(target.heads),
        server_version,
        threshold,
        target.sizes,
        plans,
        dialect,
    )


def short(sql: str, width: int = 100) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def hold_line(hold: Hold | None) -> str:
    if hold is None:
        return "no lock that stops writers is taken on a table with rows"
    held = (
        f"{hold.mode} on {hold.relation} ({hold.rows:,} rows) over {hold.statements} statement(s)"
    )
    if not hold.work:
        return f"{held}, brief: none of them rewrites or reads a table with rows"
    work = ", ".join(f"{table} ({rows:,} rows)" for table, rows in sorted(hold.work.items()))
    return f"{held}, while they rewrite or read whole {work}: long, as long as that takes"


def statement_facts(statement: Measured, report: Report) -> list[str]:
    dialect = report.dialect
    facts = [
        f"{dialect.mode_name(mode)} on {relation}"
        + (f" ({report.sizes[relation].rows:,} rows)" if relation in report.sizes else "")
        for relation, mode in statement.locks
    ]
    facts += [f"rewrites {table}" for table in statement.rewrites]
    facts += [f"reads {table} whole" for table in statement.scans]
    if statement.algorithm:
        facts.append(f"ALGORITHM={statement.algorithm}")
    facts.append(
        "in the revision's transaction"
        if statement.in_transaction
        else "on its own (committed alone)"
    )
    return facts


def as_text(report: Report) -> str:
    lines = [f"The database is at {', '.join(report.at) or 'base'}."]
    if not report.revisions:
        return lines[0] + " No pending revisions: make migrate has nothing to do."
    count = len(report.revisions)
    lines[0] += f" {count} pending revision(s), measured on a scratch copy ({report.server}):"
    for plan in report.revisions:
        lines.append(f"{plan.revision} ({plan.doc}){phase_said(plan)}")
        for number, statement in enumerate(plan.statements, 1):
            lines.append(f"  {number}. {short(statement.sql)}")
            lines.append(f"     {'; '.join(statement_facts(statement, report))}")
        lines += [f"  squawk: {finding}" for finding in plan.findings]
        lines.append(f"  longest hold: {hold_line(plan.longest)}")
        if plan.queries:
            lines.append(f"  {queries_line(plan, report.sizes)}")
        lines += [f"  RISKY: {why}" for why in plan.risky]
        lines += [f"  {why}" for why in plan.accepted]
    return "\n".join(lines)


def phase_said(plan: RevisionPlan) -> str:
    """Where the history has deploy phases: when the revision runs."""
    if plan.phase is None:
        return ""
    return " [pre: before the rollout]" if plan.phase == "pre" else " [post: after the rollout]"


def as_markdown(report: Report) -> str:
    lines = [f"### make plan: {len(report.revisions)} pending revision(s)", ""]
    lines.append(f"The database is at `{', '.join(report.at) or 'base'}`.")
    for plan in report.revisions:
        lines += ["", f"#### `{plan.revision}` {plan.doc}{phase_said(plan)}", ""]
        if plan.statements:
            lines += ["| # | statement | locks, rewrites | transaction |", "|---|---|---|---|"]
        else:
            lines.append("No statement runs on the scratch copy.")
        for number, statement in enumerate(plan.statements, 1):
            facts = statement_facts(statement, report)
            sql = short(statement.sql).replace("|", "\\|")
            lines.append(f"| {number} | `{sql}` | {'; '.join(facts[:-1]) or '-'} | {facts[-1]} |")
        lines += ["", f"Longest hold: {hold_line(plan.longest)}."]
        if plan.queries:
            lines.append(f"- {queries_line(plan, report.sizes)}")
        lines += [f"- squawk: {finding}" for finding in plan.findings]
        lines += [f"- **RISKY**: {why}" for why in plan.risky]
        lines += [f"- {why}" for why in plan.accepted]
    return "\n".join(lines)


def as_json(report: Report) -> str:
    def revision(plan: RevisionPlan) -> dict[str, Any]:
        data = asdict(plan)
        for statement in data["statements"]:
            statement["locks"] = [
                {
                    "relation": relation,
                    "mode": report.dialect.mode_name(mode),
                    "rows": rows_of(report.sizes, relation),
                }
                for relation, mode in statement["locks"]
            ]
        return data

    return json.dumps(
        {
            "at": report.at,
            "scratch_server": report.server,
            "risky_rows": report.threshold,
            "revisions": [revision(plan) for plan in report.revisions],
            "risky": report.risky,
        },
        indent=2,
    )


FORMATS = {"text": as_text, "md": as_markdown, "json": as_json}


def main(project: Project, argv: list[str]) -> int:
    """plan [--format text|md|json] [--fail-on risky]"""
    parser = argparse.ArgumentParser(prog="plan")
    parser.add_argument("--format", choices=sorted(FORMATS), default="text")
    parser.add_argument("--fail-on", choices=["risky"], default=None)
    args = parser.parse_args(argv)
    settings = load_settings(project.settings)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        report = plan_report(project, settings)
    except (PlanError, CommandError) as exc:
        print(f"Nothing planned: {str(exc).rstrip('.')}.", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as exc:
        return interrupted(exc, "the target was only read")
    finally:
        signal.signal(signal.SIGTERM, previous)
    # What the run made is the interpreter's to free at exit, and its last collections would
    # walk every object Alembic and SQLAlchemy made only to free them with the process: about
    # 0.1 s, a tenth of a plan. Frozen, they are left to the exit (in a test's process, kept).
    gc.freeze()
    print(FORMATS[args.format](report))
    if args.fail_on == "risky" and report.risky:
        print(
            f"make plan: {len(report.risky)} risky statement(s) (above {RISKY_SETTING} = "
            f"{report.threshold:,} rows). Make the change without the long lock (README, "
            "zero-downtime changes), or accept it in the revision's file after review: "
            "`# migration-tests: accept rewrite of TABLE: <why>` or `... accept long lock on "
            "TABLE: <why>`.",
            file=sys.stderr,
        )
        return 1
    return 0
