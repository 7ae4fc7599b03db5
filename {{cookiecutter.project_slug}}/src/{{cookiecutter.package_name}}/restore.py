"""`make restore file=...`: load a `make backup` dump into the configured database.

    python -m {{ cookiecutter.package_name }}.restore backups/<name>-<timestamp>.dump

Objects in the dump replace their namesakes in the database, in ONE transaction: if anything fails,
the database is left as it was. pg_restore is the lowest version at least the server's that can
read the dump (a dump of pg_dump 18 needs pg_restore 18). In production it refuses unless run with
CONFIRM=yes, as `rollback` and `stamp` do.
"""

import os
import subprocess
import sys
from pathlib import Path

from .pgclient import ClientError, libpq_environment, matching_program, server_major_version
from .settings import get_settings

USAGE = "make restore file=backups/<name>-<timestamp>.dump"


def check_dump(path: Path) -> str | None:
    """Why `path` cannot be restored, or None."""
    if not path.exists():
        return f"{path} does not exist (make backup writes dumps to backups/): {USAGE}"
    if not path.is_file():
        return f"{path} is not a file: {USAGE}"
    try:
        with path.open("rb") as dump:
            header = dump.read(5)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror}): check its owner and permissions"
    if header != b"PGDMP":
        return f"{path} is not a pg_dump custom-format dump (make backup writes those)"
    return None


def readable_by(path: Path, dump: Path, env: dict[str, str]) -> bool:
    """Whether this pg_restore reads the dump (an older one rejects a newer dump's header)."""
    listing = subprocess.run([path, "--list", dump], env=env, capture_output=True, check=False)
    return listing.returncode == 0


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
    env = libpq_environment(url, settings)
    try:
        server = server_major_version(url, settings)
        version, pg_restore = matching_program(
            "pg_restore", server, lambda path: readable_by(path, dump, env)
        )
    except ClientError as exc:
        print(f"Nothing restored. {exc}", file=sys.stderr)
        return 1
    # --dbname: without it pg_restore prints SQL instead of restoring.
    args = [str(pg_restore), "--clean", "--if-exists", "--no-owner", "--single-transaction"]
    args += [f"--dbname={url.database or 'postgres'}", str(dump)]
    result = subprocess.run(args, env=env, check=False)
    if result.returncode != 0:
        print(
            f"pg_restore failed (exit {result.returncode}, see above); the transaction was rolled "
            "back, so the database is as it was.",
            file=sys.stderr,
        )
        return 1
    print(f"Restored {dump} into {url.database} (pg_restore {version}).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
