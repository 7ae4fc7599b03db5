"""The chores' side of the dialect seam: each server's client programs and admin statements,
behind `make backup`, `make restore`, `make psql`/`make dbshell`, `make db-up` and
`make db-reset`. tools/ words the chores once; these classes run them."""

import asyncio
import subprocess
import sys
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from ..project import MigrationSettings, Project


class ClientError(Exception):
    """A short message for the user: what is wrong and what to do."""


class ToolFailed(ClientError):
    """The client program ran and failed; the message says what stands now."""


class MakingStopped(Exception):
    """A database was not made: its caller stopped making it (scratch_databases' `stop`)."""


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

    # -- servers for tests (alembic_steady.testing) ------------------------------------------
    @abstractmethod
    def container(self) -> AbstractContextManager[URL]:
        """A server in Docker (testcontainers), for a machine where a Docker engine answers."""

    @abstractmethod
    def local_server(self) -> AbstractContextManager[tuple[URL, str]]:
        """A server without Docker, and how to name it; fails the run saying why when none."""

    @abstractmethod
    def version(self, server: URL) -> str:
        """E.g. "PostgreSQL 18.1", "MariaDB 10.11.19", for the line naming the server."""

    @abstractmethod
    def quote(self, name: str) -> str:
        """A database name as an identifier."""

    @abstractmethod
    def drop_statement(self, quoted: str) -> str: ...

    @abstractmethod
    def empty(self, database: URL) -> None:
        """Empty `database` of every object a test may have made."""

    @abstractmethod
    def create_database(self, server: URL, name: str, stop: threading.Event | None = None) -> URL:
        """A new database for a test run (dropped at its end). Setting `stop` while the server
        makes it raises MakingStopped where the server can be asked to cancel (PostgreSQL, whose
        CREATE DATABASE copies a template); MySQL makes one at once."""

    def drop_database(self, server: URL, name: str) -> None:
        self.admin(server, self.drop_statement(self.quote(name)))

    @contextmanager
    def scratch_databases(
        self, server: URL, purpose: str, *roles: str, stop: threading.Event | None = None
    ) -> Iterator[list[URL]]:
        """New empty databases on `server` for a chore (`make squash`, `make plan`), one per
        role, named `<database>_<purpose>_<random>_<role>`, dropped at the end whatever
        happens. Setting `stop` while they are made raises MakingStopped (create_database)."""
        # Within MySQL's 64 characters for a database name.
        stem = f"{(server.database or 'db')[:40]}_{purpose}_{uuid.uuid4().hex[:8]}"
        made: list[str] = []
        try:
            urls = []
            for role in roles:
                name = f"{stem}_{role}"
                try:
                    urls.append(self.create_database(server, name, stop))
                except MakingStopped:
                    # The server may have made it before it heard: dropped if it is there.
                    made.append(name)
                    raise
                made.append(name)
            yield urls
        finally:
            for name in made:
                self.drop_database(server, name)

    def admin(self, url: URL, *statements: str) -> object:
        """Run `statements` one by one outside a transaction (CREATE DATABASE needs that);
        return the last one's value, if it gives one."""
        return admin(url, *statements)


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


def admin(url: URL, *statements: str) -> object:
    """Run `statements` one by one outside a transaction (CREATE DATABASE needs that); return the
    last one's value, if it gives one."""

    async def run() -> object:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                value: object = None
                for statement in statements:
                    result = await autocommit.exec_driver_sql(statement)
                    value = result.scalar() if result.returns_rows else None
                return value
        finally:
            await engine.dispose()

    return asyncio.run(run())
