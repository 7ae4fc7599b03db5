"""`make backup`: a dump of the configured database to a private, timestamped file.

The folder is made 0700 and the dump 0600: a dump holds every row. The password reaches the dump
program through its environment (pg_dump) or a private option file (mysqldump), never its
command line.
"""

import sys
from datetime import UTC, datetime
from pathlib import Path

from ..dialects.base import for_url
from ..dialects.clients import ClientError, ToolFailed
from ..project import Project


def main(project: Project, argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else project.folder / "backups"
    settings = project.settings()
    url = settings.sqlalchemy_url
    print(project.describe(url), file=sys.stderr)
    clients = for_url(url).clients()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{url.database}-{stamp}{clients.dump_suffix}"
    try:
        tool = clients.backup(url, settings, target)
    except ToolFailed as exc:
        target.unlink(missing_ok=True)
        print(f"{exc} No backup written.", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"No backup written. {exc}", file=sys.stderr)
        return 1
    target.chmod(0o600)
    print(f"Backup written to {target} ({tool}). Restore it with: make restore file={target}")
    return 0
