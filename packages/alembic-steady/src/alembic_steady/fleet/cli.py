"""`python -m <package>.migrations fleet upgrade|status`: the project's revisions on every target.

    fleet upgrade --targets FILE [--parallel N] [--canary N] [--wave N] [--on-error stop|continue]
    fleet status  --targets FILE [--drift]        (--drift: each target at head against the models)
        --targets-query SQL    the targets from a query on the configured database (first column)
        --shard I/K            this pod's share (a Kubernetes Indexed Job: JOB_COMPLETION_INDEX/K)
        --format text|md|json, --report FILE   the report (stdout by default)

Exit status: 0 when every target is at head at the end, 1 otherwise (the report names each
failure), 2 on a usage error, 128+N when stopped by signal N.
"""

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO

from alembic.util import CommandError
from sqlalchemy import Connection, text

from ..dialects.base import Dialect, by_name
from ..project import MigrationSettings, Project
from ..runner.api import Migrations
from ..runner.phases import Phases
from ..runner.settings import load_settings
from . import report
from .report import AT_HEAD, BEHIND, DONE, UNKNOWN, UNREADABLE, Outcome
from .rollout import Policy, Rollout, waves
from .status import Found, on_session, read_all
from .targets import Target, from_file, parse_all, share


def main(project: Project, argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        from .workers import serve

        return serve(Migrations(project), sys.stdin, _protocol_channel())
    parser = argparse.ArgumentParser(prog=f"python -m {project.package}.migrations fleet")
    actions = parser.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser("upgrade", help="upgrade every target not at head")
    status = actions.add_parser("status", help="which target is at which revision")
    for action in (upgrade, status):
        given = action.add_mutually_exclusive_group()
        given.add_argument("--targets", type=Path, help="a file: one target per line")
        given.add_argument("--targets-query", help="SQL whose first column names the targets")
        action.add_argument("--shard", help="I/K: this pod's share of the targets")
        action.add_argument("--format", choices=sorted(report.FORMATS), default="text")
        action.add_argument("--report", type=Path, help="write the report here, not to stdout")
        action.add_argument("--parallel", type=_positive, default=4, help="workers (default 4)")
    status.add_argument("--drift", action="store_true", help="compare the models with each target")
    upgrade.add_argument("--canary", type=_count, default=1, help="targets first, alone")
    upgrade.add_argument("--wave", type=_count, default=0, help="targets per wave (0: all)")
    upgrade.add_argument("--on-error", choices=["stop", "continue"], default="stop")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(project.settings)
        dialect = by_name(project.dialect)
        targets = share(_targets(project, settings, dialect, args), args.shard)
        if not targets:
            raise CommandError("No targets: the file or query names none.")
        script = Migrations(project).script()
        heads = Phases(script).head_rows()
        known = {revision.revision for revision in script.walk_revisions()}
        found = read_all(targets, project, settings, dialect)
        if args.action == "status":
            outcomes, signals = _status_of(project, targets, found, heads, known, args)
        else:
            outcomes, signals = _upgrade(project, targets, found, heads, args)
    except CommandError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    rendered = report.FORMATS[args.format](outcomes)
    if args.report is not None:
        args.report.write_text(rendered, encoding="utf-8")
        print(f"fleet: {report.summary(outcomes)}; report in {args.report}", file=sys.stderr)
    else:
        sys.stdout.write(rendered)
    if signals:
        return 128 + signals[0]
    return 0 if all(outcome.outcome in DONE for outcome in outcomes) else 1


def _upgrade(
    project: Project,
    targets: list[Target],
    found: dict[Target, Found],
    heads: tuple[str, ...],
    args: argparse.Namespace,
) -> tuple[list[Outcome], list[int]]:
    pending = [target for target in targets if found[target].heads != heads]
    policy = Policy(args.parallel, args.canary, args.wave, args.on_error == "stop")
    groups = waves(pending, policy)
    print(
        f"fleet: {len(targets)} targets, {len(targets) - len(pending)} at head, "
        f"{len(pending)} to upgrade in {len(groups)} group(s), {policy.parallel} at a time",
        file=sys.stderr,
    )
    finished = [0]
    # told() runs in the rollout's threads: one at a time, so each count is told once and each
    # line is written whole (print() writes the text and its newline apart).
    printing = threading.Lock()
    started = time.monotonic()

    def told(outcome: Outcome) -> None:
        took = f" in {outcome.seconds:.2f}s" if outcome.seconds else ""
        why = f": {outcome.error.splitlines()[0]}" if outcome.error else ""
        with printing:
            finished[0] += 1
            line = f"[{finished[0]}/{len(pending)}] {outcome.target} {outcome.outcome}{took}{why}"
            sys.stderr.write(f"fleet: {line}\n")
            sys.stderr.flush()

    rollout = Rollout(project.package, "upgrade", heads, policy, told)
    ran = {o.target: o for o in rollout.run(pending, found)}
    outcomes = [
        ran.get(target.label) or Outcome(target.label, AT_HEAD, heads, heads) for target in targets
    ]
    print(f"fleet: done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return outcomes, rollout.signals


def _status_of(
    project: Project,
    targets: list[Target],
    found: dict[Target, Found],
    heads: tuple[str, ...],
    known: set[str],
    args: argparse.Namespace,
) -> tuple[list[Outcome], list[int]]:
    """Each target's revision; with --drift, each target at head compared with the models (by
    the workers: `alembic check` on its schema)."""
    outcomes = [_status(target, found[target], heads, known) for target in targets]
    if not args.drift:
        return outcomes, []
    current = [t for t, o in zip(targets, outcomes, strict=True) if o.outcome == AT_HEAD]
    policy = Policy(args.parallel, canary=0, stop_on_error=False)
    rollout = Rollout(project.package, "check", heads, policy, lambda outcome: None)
    checked = {o.target: o for o in rollout.run(current, found)}
    return [checked.get(o.target, o) for o in outcomes], rollout.signals


def _status(target: Target, found: Found, heads: tuple[str, ...], known: set[str]) -> Outcome:
    if found.heads is None:
        return Outcome(target.label, UNREADABLE, None, None, error=found.error)
    if unknown := sorted(set(found.heads) - known):
        # Not behind: migrated by a newer release, or from another branch.
        why = f"at {', '.join(unknown)}, which no revision file here has"
        return Outcome(target.label, UNKNOWN, found.heads, found.heads, error=why)
    outcome = AT_HEAD if found.heads == heads else BEHIND
    return Outcome(target.label, outcome, found.heads, found.heads)


def _targets(
    project: Project, settings: MigrationSettings, dialect: Dialect, args: argparse.Namespace
) -> list[Target]:
    base = settings.migration_url
    if args.targets is not None:
        return from_file(args.targets, base, project.dialect)
    query = args.targets_query or project.setting("fleet-targets-query", None)
    if query is None:
        raise CommandError(
            "Name the targets: --targets FILE (one per line), --targets-query SQL, or "
            "fleet-targets-query under [tool.alembic-steady] in pyproject.toml."
        )

    def rows(connection: Connection) -> list[str]:
        names = [str(row[0]) for row in connection.execute(text(query))]
        connection.rollback()
        return names

    try:
        names = asyncio.run(on_session(base, project, settings, dialect, rows))
    except CommandError:
        raise
    except Exception as exc:
        raise CommandError(
            f"The targets query failed: {dialect.first_line(exc)}. Fix --targets-query "
            "(or fleet-targets-query)."
        ) from None
    return parse_all(names, base, project.dialect, "the targets query")


def _protocol_channel() -> IO[str]:
    """The worker's results go to the original stdout; anything else printed goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number above 0")
    return int(value)


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number (0 or more)")
    return int(value)
