"""`make backup`: a mysqldump of the configured database to a private, timestamped file.

    python -m {{ cookiecutter.package_name }}.backup [folder]   # default: backups/

`--single-transaction` dumps a consistent snapshot of InnoDB tables without locking them; the
password reaches mysqldump in a private option file, never its command line. The folder is made
0700 and the dump 0600: a dump holds every row. mysqldump has no option to bound its metadata-lock
waits (BACKUP_LOCK_WAIT applies to PostgreSQL's pg_dump only): a backup started while a migration
alters a table waits for it.
"""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from .dbclient import ClientError, option_file, program
from .settings import PROJECT_ROOT, get_settings

PRIVATE_FILE = 0o077  # umask: files 0600, folders 0700


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else (PROJECT_ROOT or Path.cwd()) / "backups"
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    try:
        mysqldump = program("mysqldump")
    except ClientError as exc:
        print(f"No backup written. {exc}", file=sys.stderr)
        return 1
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{url.database}-{stamp}.sql"
    with option_file(url) as options:
        args = [mysqldump, f"--defaults-extra-file={options}", "--single-transaction"]
        args += ["--routines", "--triggers", "--events", "--hex-blob", f"--result-file={target}"]
        args += [str(url.database)]
        result = subprocess.run(
            args, umask=PRIVATE_FILE, stderr=subprocess.PIPE, text=True, check=False
        )
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        print("mysqldump failed: see its message above. No backup written.", file=sys.stderr)
        return 1
    target.chmod(0o600)
    print(f"Backup written to {target} (mysqldump). Restore it with: make restore file={target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
