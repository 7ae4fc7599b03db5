"""`make backup`: a pg_dump of the configured database to a timestamped file.

    python -m {{ cookiecutter.package_name }}.backup backups/

The password reaches pg_dump through PGPASSWORD, never its command line (visible in `ps`).
"""

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from .settings import get_settings


def pg_dump_binary() -> str | None:
    """The newest pg_dump at hand: the embedded server's (dev installs), else the one on PATH."""
    from .devdb import postgres_bin

    try:
        return str(postgres_bin() / "pg_dump")
    except ImportError:
        return shutil.which("pg_dump")


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "backups")
    url = get_settings().sqlalchemy_url
    binary = pg_dump_binary()
    if binary is None:
        print("pg_dump not found: install the PostgreSQL client tools (e.g. postgresql-client).")
        return 1
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{url.database}-{stamp}.dump"
    folder.mkdir(parents=True, exist_ok=True)
    host = url.host or url.query.get("host")
    args = [binary, "--format=custom", f"--file={target}", f"--dbname={url.database}"]
    args += [f"--host={host}"] if isinstance(host, str) else []
    args += [f"--port={url.port}"] if url.port else []
    args += [f"--username={url.username}"] if url.username else []
    env = dict(os.environ, PGPASSWORD=url.password or "") if url.password else dict(os.environ)
    result = subprocess.run(args, env=env, check=False)
    if result.returncode != 0:
        print(f"pg_dump failed (exit {result.returncode}); no backup written.")
        target.unlink(missing_ok=True)
        return 1
    print(f"Backup written to {target} (restore with pg_restore --dbname=...).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
