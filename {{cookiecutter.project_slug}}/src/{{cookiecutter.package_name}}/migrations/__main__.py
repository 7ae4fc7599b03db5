"""Migrate from an installed wheel or image, with no source tree and no alembic.ini:

    python -m {{ cookiecutter.package_name }}.migrations upgrade [REV]       # default: head
    python -m {{ cookiecutter.package_name }}.migrations current
    python -m {{ cookiecutter.package_name }}.migrations wait-for-head --timeout 300

Same env.py, lock, settings (environment, then .env) and messages as `make migrate`. Exit status:
0 on success, 1 with a one-line message on failure, 2 on a usage error.
"""

import argparse
import sys

from alembic import command
from alembic.util import CommandError
from pydantic import ValidationError

from . import alembic_config, upgrade, wait_for_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.migrations",
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

    try:
        if args.command == "upgrade":
            upgrade(args.revision)
        elif args.command == "current":
            config = alembic_config()
            config.attributes["command"] = "current"
            command.current(config, verbose=True)
        else:
            wait_for_head(args.timeout, interval=args.interval)
            print("At head.")
    except (CommandError, TimeoutError) as exc:
        # Alembic's own CLI prints failures the same way; the message never holds the password.
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        # Raised by the settings outside env.py (wait-for-head); names the variables, not values.
        wrong = "; ".join(
            f"{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()
        )
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


if __name__ == "__main__":
    sys.exit(main())
