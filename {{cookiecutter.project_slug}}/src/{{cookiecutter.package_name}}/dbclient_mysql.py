"""The `mysql` and `mysqldump` clients on the configured database, the password kept off their
command lines (where `ps` shows it to every user of the machine).

    python -m {{ cookiecutter.package_name }}.dbclient [mysql arguments]   # `make dbshell`/`make psql`

The connection settings go to the clients in a private option file (`--defaults-extra-file`, mode
0600, deleted after the run). MariaDB's `mariadb`/`mariadb-dump` are used where the MySQL names
are missing.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from .settings import get_settings

NAMES = {"mysql": ("mysql", "mariadb"), "mysqldump": ("mysqldump", "mariadb-dump")}


class ClientError(Exception):
    """A client program is missing; the message says how to install one."""


def program(name: str) -> str:
    for candidate in NAMES[name]:
        if found := shutil.which(candidate):
            return found
    raise ClientError(
        f"{name} is not installed: install the MySQL or MariaDB client (e.g. apt install "
        "default-mysql-client, brew install mysql-client), then run again."
    )


def _option(value: str) -> str:
    """A value for an option file: quoted, with its backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def option_file(url: URL) -> Iterator[Path]:
    """A [client] option file naming host, port, user and password; 0600, removed after."""
    lines = ["[client]"]
    if url.host:
        lines.append(f"host={_option(url.host)}")
    if url.port:
        lines.append(f"port={url.port}")
    if url.username:
        lines.append(f"user={_option(url.username)}")
    if url.password:
        lines.append(f"password={_option(str(url.password))}")
    descriptor, name = tempfile.mkstemp(prefix="mysql-", suffix=".cnf")  # created 0600
    path = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    try:
        mysql = program("mysql")
    except ClientError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    with option_file(url) as options:
        # --defaults-extra-file must come first; the database name last.
        args = [mysql, f"--defaults-extra-file={options}", *argv, str(url.database or "")]
        return subprocess.run(args, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
