"""`make backup`: a pg_dump of the configured database to a private, timestamped file.

    python -m {{ cookiecutter.package_name }}.backup [folder]   # default: backups/

pg_dump is the one matching the server (see `pgclient`); the password reaches it through
PGPASSWORD, never its command line. The folder is made 0700 and the dump 0600: a dump holds every
row. pg_dump waits at most BACKUP_LOCK_WAIT (default 30s) for its table locks, so a migration
holding one makes the backup fail with a message instead of hanging (and queueing the app's
queries behind its own).
"""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from .pgclient import ClientError, libpq_environment, matching_program, server_major_version
from .settings import PROJECT_ROOT, get_settings

PRIVATE_FILE = 0o077  # umask: files 0600, folders 0700


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else (PROJECT_ROOT or Path.cwd()) / "backups"
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    try:
        server = server_major_version(url, settings)
        version, pg_dump = matching_program("pg_dump", server)
    except ClientError as exc:
        print(f"No backup written. {exc}", file=sys.stderr)
        return 1
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{url.database}-{stamp}.dump"
    args = [str(pg_dump), "--format=custom", f"--lock-wait-timeout={settings.backup_lock_wait}"]
    args += [f"--file={target}"]
    env = libpq_environment(url, settings)
    result = subprocess.run(
        args, env=env, umask=PRIVATE_FILE, stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        reason = (
            f"a table lock was not granted within {settings.backup_lock_wait} "
            "(BACKUP_LOCK_WAIT): a migration or long transaction holds one; run make backup "
            "again once it is done"
            # pg_dump 17+ says "lock timeout"; older ones time out the LOCK TABLE statement.
            if "lock timeout" in result.stderr or "LOCK TABLE" in result.stderr
            else "see its message above"
        )
        print(f"pg_dump failed: {reason}. No backup written.", file=sys.stderr)
        return 1
    target.chmod(0o600)
    print(
        f"Backup written to {target} (pg_dump {version} for a PostgreSQL {server} server). "
        f"Restore it with: make restore file={target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
