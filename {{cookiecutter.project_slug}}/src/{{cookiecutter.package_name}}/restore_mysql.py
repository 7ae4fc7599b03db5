"""`make restore file=...`: load a `make backup` dump into the configured database.

    python -m {{ cookiecutter.package_name }}.restore backups/<name>-<timestamp>.sql

The dump's tables replace their namesakes (it drops and recreates each). MySQL commits each DDL
statement, so a restore that fails half way is NOT rolled back: restore again from the same dump
(it drops what it made). In production it refuses unless run with CONFIRM=yes, as `rollback` and
`stamp` do.
"""

import os
import subprocess
import sys
from pathlib import Path

from .dbclient import ClientError, option_file, program
from .settings import get_settings

USAGE = "make restore file=backups/<name>-<timestamp>.sql"


def check_dump(path: Path) -> str | None:
    """Why `path` cannot be restored, or None."""
    if not path.exists():
        return f"{path} does not exist (make backup writes dumps to backups/): {USAGE}"
    if not path.is_file():
        return f"{path} is not a file: {USAGE}"
    try:
        with path.open("rb") as dump:
            header = dump.read(200)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror}): check its owner and permissions"
    if b"dump" not in header.lower():
        return f"{path} is not a mysqldump file (make backup writes those)"
    return None


def main(argv: list[str]) -> int:
    if not argv or not argv[0]:
        print(f"Missing file=...: usage: {USAGE}", file=sys.stderr)
        return 2
    dump = Path(argv[0])
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    if problem := check_dump(dump):
        print(f"Nothing restored: {problem}.", file=sys.stderr)
        return 1
    if settings.environment == "production" and os.environ.get("CONFIRM") != "yes":
        print(
            "Refusing to restore over a production database: it replaces the tables the dump "
            "holds. Run make backup first, then make restore file=... CONFIRM=yes.",
            file=sys.stderr,
        )
        return 1
    try:
        mysql = program("mysql")
    except ClientError as exc:
        print(f"Nothing restored. {exc}", file=sys.stderr)
        return 1
    with option_file(url) as options, dump.open("rb") as source:
        args = [mysql, f"--defaults-extra-file={options}", str(url.database)]
        result = subprocess.run(args, stdin=source, check=False)
    if result.returncode != 0:
        print(
            f"mysql failed (exit {result.returncode}, see above). MySQL commits each DDL "
            "statement, so part of the dump may be loaded: fix the cause and restore again "
            "(the dump drops and recreates its tables).",
            file=sys.stderr,
        )
        return 1
    print(f"Restored {dump} into {url.database} (mysql).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
