"""`python -m <package>.migrations`: every migration command and chore of a project, from a source
tree (the Make targets call it) or an installed wheel or image (no alembic.ini needed to migrate).

    python -m <package>.migrations upgrade [REV] [--schema NAME]   # default: head; one tenant
    python -m <package>.migrations upgrade --phase pre|post        # before / after the rollout
    python -m <package>.migrations current
    python -m <package>.migrations revision -m MSG [--phase post]  # an empty one: migration-empty
    python -m <package>.migrations wait-for-head --timeout 300
    python -m <package>.migrations accept-edit REV     # an applied revision edited on purpose
    python -m <package>.migrations backup [FOLDER] | restore FILE | shell [ARGS...]
    python -m <package>.migrations devdb start|stop|reset
    python -m <package>.migrations rehearse file=DUMP|from=URL      # PostgreSQL
    python -m <package>.migrations plan [--format text|md|json] [--fail-on risky]
    python -m <package>.migrations lint-migrations                  # PostgreSQL
    python -m <package>.migrations check-history [--base REF] | migration-rebase REV [--base REF]
    python -m <package>.migrations squash REV        # the revisions up to REV become a baseline
    python -m <package>.migrations fleet upgrade|status --targets FILE   # many databases/schemas
    python -m <package>.migrations backfill run|status|pause NAME|resume NAME   # PostgreSQL

Migrating runs the same env.py, lock, settings and messages as `make migrate`, whose advice then
names this CLI's commands where it has them. Exit status: 0 on success, 1 with a one-line
message on failure, 2 on a usage error.
"""

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from alembic.util import CommandError

from .project import Project
from .runner.api import Migrations
from .runner.settings import invalid_settings

CHORES = {
    "backup": "dump the database to a private file (make backup)",
    "restore": "load a dump into the database (make restore)",
    "shell": "the server's shell on the database (make psql, make dbshell)",
    "rehearse": "pending revisions on a scratch copy of real data (make rehearse)",
    "plan": "what the pending revisions will do to the database: locks, rewrites (make plan)",
    "lint-migrations": "squawk on each revision's SQL (make lint-migrations)",
    "check-history": "the branch's revisions follow the base's head in line (make check-history)",
    "migration-rebase": "re-point a branch's revision onto the base's head (make migration-rebase)",
    "squash": "fold the revisions up to R into a baseline proved equal (make squash)",
    "fleet": "upgrade|status of many databases or tenant schemas (make fleet-migrate)",
    "backfill": "run|status|pause|resume the queued backfills (make backfill)",
}


def _chore(name: str) -> Callable[[Project, list[str]], int]:
    """A chore's `main`, imported only when it runs (an upgrade loads none of them)."""
    if name == "backup":
        from .tools.backup import main
    elif name == "restore":
        from .tools.restore import main
    elif name == "shell":
        from .tools.shell import main
    elif name == "rehearse":
        from .tools.rehearse import main
    elif name == "plan":
        from .tools.plan import main
    elif name == "check-history":
        from .tools.history import main
    elif name == "migration-rebase":
        from .tools.history import rebase_main as main
    elif name == "squash":
        from .tools.squash import main
    elif name == "fleet":
        from .fleet.cli import main
    elif name == "backfill":
        from .tools.backfill import main
    else:
        from .tools.lint import main
    return main


def main(migrations: Migrations, argv: list[str] | None = None) -> int:
    project = migrations.project
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] in CHORES:
        # Their arguments pass through untouched (`shell -c "SELECT 1"` is psql's -c).
        return _chore(given[0])(project, given[1:])
    parser = argparse.ArgumentParser(
        prog=f"python -m {project.package}.migrations",
        description="Run the migrations that ship inside this package, and the chores around them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="upgrade to head, or to REV, under the lock")
    up.add_argument("revision", nargs="?", default="head", help="head (default), +1, an id")
    up.add_argument(
        "--schema", help="a tenant schema of the database (PostgreSQL): migrate it alone"
    )
    up.add_argument(
        "--phase",
        choices=["pre", "post"],
        help="pre: the revisions the new release needs (before it rolls out); post: the ones "
        "that remove what the old release used (after it is gone). Default: both",
    )
    commands.add_parser("current", help="print the revision the database is at")
    blank = commands.add_parser(
        "revision", help="write an empty revision where its phase belongs (make migration-empty)"
    )
    blank.add_argument("-m", "--message", required=True, help="what the revision does")
    blank.add_argument("--phase", choices=["pre", "post"], default="pre", help="default: pre")
    wait = commands.add_parser(
        "wait-for-head", help="exit 0 once the database is at head (init containers)"
    )
    wait.add_argument("--timeout", type=_seconds, required=True, help="seconds to wait")
    wait.add_argument("--interval", type=_seconds, default=1.0, help="seconds between checks")
    for name, text in CHORES.items():
        commands.add_parser(name, help=text).add_argument("args", nargs="*", help="its arguments")
    accept = commands.add_parser(
        "accept-edit",
        help="record a deliberate edit of an applied revision's file (make accept-edit)",
    )
    accept.add_argument("revision", help="the revision whose file was edited on purpose")
    devdb = commands.add_parser("devdb", help="the development database (make db-up, db-reset)")
    devdb.add_argument("action", choices=["start", "stop", "reset"])
    args = parser.parse_args(given)

    words = project.module_commands
    try:
        if args.command == "upgrade":
            migrations.upgrade(
                args.revision,
                commands=words,
                cancel_on_signals=True,
                schema=args.schema,
                phase=args.phase,
            )
        elif args.command == "current":
            migrations.current(commands=words)
        elif args.command == "revision":
            migrations.new_revision(args.message, phase=args.phase)
        elif args.command == "wait-for-head":
            migrations.wait_for_head(args.timeout, interval=args.interval, commands=words)
            print("At head.")
        elif args.command == "accept-edit":
            path = migrations.accept_edit(args.revision)
            print(f"Accepted: {args.revision} ({Path(path).name}) is recorded as its file is now.")
        else:
            from .tools.devdb import ACTIONS

            return ACTIONS[args.action](project)
    except (CommandError, TimeoutError) as exc:
        # Alembic's own CLI prints failures the same way; the message never holds the password.
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Raised by the settings outside env.py (wait-for-head); names the variables, not values.
        wrong = invalid_settings(exc)
        if wrong is None:
            raise
        message = f"invalid settings ({wrong}); fix them in the environment or .env"
        print(f"FAILED: {message}.", file=sys.stderr)
        return 1
    return 0


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of seconds above 0")
    return seconds
