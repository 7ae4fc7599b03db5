"""`python -m <package>.migrations`: migrate from an installed wheel or image, with no source tree
and no alembic.ini.

    python -m <package>.migrations upgrade [REV]       # default: head
    python -m <package>.migrations current
    python -m <package>.migrations wait-for-head --timeout 300

Same env.py, lock, settings (environment, then .env) and messages as `make migrate`, whose advice
names this CLI's commands where it has them. Exit status: 0 on success, 1 with a one-line message
on failure, 2 on a usage error.
"""

import argparse
import sys

from alembic.util import CommandError

from .api import Migrations
from .settings import invalid_settings


def main(migrations: Migrations, argv: list[str] | None = None) -> int:
    project = migrations.project
    parser = argparse.ArgumentParser(
        prog=f"python -m {project.package}.migrations",
        description="Run the migrations that ship inside this package.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="upgrade to head, or to REV, under the lock")
    up.add_argument("revision", nargs="?", default="head", help="head (default), +1, an id")
    commands.add_parser("current", help="print the revision the database is at")
    wait = commands.add_parser(
        "wait-for-head", help="exit 0 once the database is at head (init containers)"
    )
    wait.add_argument("--timeout", type=_seconds, required=True, help="seconds to wait")
    wait.add_argument("--interval", type=_seconds, default=1.0, help="seconds between checks")
    args = parser.parse_args(argv)

    words = project.module_commands
    try:
        if args.command == "upgrade":
            migrations.upgrade(args.revision, commands=words)
        elif args.command == "current":
            migrations.current(commands=words)
        else:
            migrations.wait_for_head(args.timeout, interval=args.interval, commands=words)
            print("At head.")
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
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of seconds above 0")
    return seconds
