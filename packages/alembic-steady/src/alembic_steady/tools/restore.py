"""`make restore file=...`: load a `make backup` dump into the configured database, which comes
out as the dump holds it: what was made after the backup (a later migration's tables, types,
schemas) goes too, so `make migrate` then runs from the dump's revision. On PostgreSQL in one
transaction; MySQL commits each DDL statement, so there a failed restore is not rolled back.

In production it refuses unless run with CONFIRM=yes, as `rollback` and `stamp` do.
"""

import os
import sys
from pathlib import Path

from ..dialects.base import for_url
from ..dialects.clients import ClientError, ToolFailed
from ..project import Project


def usage(suffix: str) -> str:
    return f"make restore file=backups/<name>-<timestamp>{suffix}"


def main(project: Project, argv: list[str]) -> int:
    settings = project.settings()
    url = settings.sqlalchemy_url
    clients = for_url(url).clients()
    if not argv or not argv[0]:
        print(f"Missing file=...: usage: {usage(clients.dump_suffix)}", file=sys.stderr)
        return 2
    dump = Path(argv[0])
    print(project.describe(url), file=sys.stderr)
    if problem := clients.check_dump(dump, usage(clients.dump_suffix)):
        print(f"Nothing restored: {problem}.", file=sys.stderr)
        return 1
    if settings.environment == "production" and os.environ.get("CONFIRM") != "yes":
        print(
            "Refusing to restore over a production database: it replaces all the database "
            "holds with the dump's contents. Run make backup first, then make restore file=... "
            "CONFIRM=yes.",
            file=sys.stderr,
        )
        return 1
    try:
        tool = clients.restore(url, settings, dump)
    except ToolFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"Nothing restored. {exc}", file=sys.stderr)
        return 1
    print(f"Restored {dump} into {url.database} ({tool}).")
    return 0
