"""The chores' side of the dialect seam: each server's client programs and admin statements,
behind `make backup`, `make restore`, `make psql`/`make dbshell`, `make db-up` and
`make db-reset`. tools/ words the chores once; these classes run them."""

import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from sqlalchemy.engine import URL

from ..project import MigrationSettings, Project


class ClientError(Exception):
    """A short message for the user: what is wrong and what to do."""


class ToolFailed(ClientError):
    """The client program ran and failed; the message says what stands now."""


class Clients(ABC):
    # `make backup`'s files end so; restore names the program that reads them.
    dump_suffix: str
    # The server's own databases, never dropped by `make db-reset`.
    system_databases: tuple[str, ...]

    @abstractmethod
    def backup(self, url: URL, settings: MigrationSettings, target: Path) -> str:
        """Dump the database to `target` (mode 0600); the tool used, in words. ClientError with
        the reason when nothing was written."""

    @abstractmethod
    def check_dump(self, path: Path, usage: str) -> str | None:
        """Why `path` cannot be restored, or None."""

    @abstractmethod
    def restore(self, url: URL, settings: MigrationSettings, dump: Path) -> str:
        """Load `dump` into the database; the tool used. ClientError when it failed."""

    @abstractmethod
    def shell(self, url: URL, settings: MigrationSettings, argv: list[str]) -> int:
        """Open the server's shell on the database (the password off its command line)."""

    @abstractmethod
    async def recreate(self, url: URL, settings: MigrationSettings) -> None:
        """Drop the database and create it empty."""

    @abstractmethod
    def start_dev_server(self, project: Project) -> int:
        """`make db-up` without Docker: a development server, or how to point at one."""

    def stop_dev_server(self, project: Project) -> int:
        print("No Docker engine answers: no development server of this project runs.")
        return 0


PRIVATE_FILE = 0o077  # umask: files 0600, folders 0700: a dump holds every row


def run_private(args: list[str], env: dict[str, str] | None) -> "subprocess.CompletedProcess[str]":
    """Run a dump program whose files only the user may read; its messages pass through."""
    result = subprocess.run(
        args, env=env, umask=PRIVATE_FILE, stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(result.stderr)
    return result


def unreadable(path: Path, usage: str) -> str | None:
    """Why `path` is no file to restore from, or None."""
    if not path.exists():
        return f"{path} does not exist (make backup writes dumps to backups/): {usage}"
    if not path.is_file():
        return f"{path} is not a file: {usage}"
    try:
        path.open("rb").close()
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror}): check its owner and permissions"
    return None
