"""The test database read and written directly, as an operator's session would: what a test
plants before a run and what it asserts the run left behind. Statements go to the driver as
written (no bind parameters), each call on a connection of its own, committed."""

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection


def rows(url: URL, query: str) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = on_connection(
        url, lambda c: [tuple(row) for row in c.exec_driver_sql(query)]
    )
    return found


def execute(url: URL, *statements: str) -> None:
    def run(connection: Connection) -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)

    on_connection(url, run)


def heads(url: URL) -> set[str]:
    """The revisions the database is at (empty at base)."""
    return set(on_connection(url, Migrations.current_heads))
