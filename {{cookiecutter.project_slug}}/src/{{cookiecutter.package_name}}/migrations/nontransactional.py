"""Statements run outside a transaction (in `autocommit_block()`): retried on lock timeouts like
whole revisions are, made rerun-safe, and recorded, so a failure says what was committed.

A failed or cancelled `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind: the next build
would fail on its name, and `IF NOT EXISTS` would skip it (a unique one then accepts duplicates).
So a leftover INVALID index of the same name is dropped before building, and the new index is
checked to be valid after.
"""

import logging
import re
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from .progress import Progress
from .retries import RetryPolicy, with_retries

log = logging.getLogger(__name__.rsplit(".", 1)[0])
_NAME = r'(?:"[^"]+"|[\w$]+)'
_CONCURRENT_INDEX = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?({_NAME})"
    rf"\s+ON\s+(?:ONLY\s+)?({_NAME}(?:\.{_NAME})?)",
    re.IGNORECASE,
)
_INDEX = text(
    "SELECT i.indisvalid, format('%I.%I', n.nspname, c.relname) FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :index AND i.indrelid = to_regclass(:table)"
)


class InvalidIndex(Exception):
    """A concurrent index build finished, yet PostgreSQL marks the index INVALID."""


def instrument(context: MigrationContext, policy: RetryPolicy, progress: Progress) -> None:
    """Route every statement a revision runs through `op` past the checks of this module.

    Alembic offers no public hook around one statement; `impl._exec` is where every `op.*`
    operation and `op.execute()` land. Statements run on `op.get_bind()` directly bypass it.
    """
    impl = context.impl
    run = impl._exec

    def _exec(construct: Any, *args: Any, **kwargs: Any) -> Any:
        compiled = (
            construct if isinstance(construct, str) else construct.compile(dialect=impl.dialect)
        )
        sql = str(compiled)
        progress.statements.append(sql)
        connection = impl.connection
        if connection is None or not _autocommit(connection):
            return run(construct, *args, **kwargs)
        # Entering autocommit_block() committed everything the revision ran before.
        progress.committed = len(progress.statements) - 1
        index = _concurrent_index(sql)

        def attempt() -> Any:
            # Also before each retry: a build cut short by the lock timeout leaves one too.
            if index is not None:
                _drop_invalid_leftover(connection, *index)
            return run(construct, *args, **kwargs)

        try:
            result = with_retries(
                connection,
                policy,
                progress,
                lambda: f"Revision {progress.revision}, outside a transaction",
                attempt,
                in_transaction=False,
            )
        except Exception:
            if index is not None:
                _note_leftover(connection, *index, progress)
            raise
        progress.committed = len(progress.statements)
        if index is not None:
            _require_valid(connection, *index)
        return result

    setattr(impl, "_exec", _exec)  # noqa: B010  (mypy refuses assigning to a method)


def _autocommit(connection: Connection) -> bool:
    return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _concurrent_index(sql: str) -> tuple[str, str] | None:
    """(index name as stored, table as written) of a CREATE INDEX CONCURRENTLY statement."""
    match = _CONCURRENT_INDEX.match(sql)
    if match is None:
        return None
    name, table = match.groups()
    return (name[1:-1] if name.startswith('"') else name.lower()), table


def _lookup(connection: Connection, index: str, table: str) -> tuple[bool, str] | None:
    row = connection.execute(_INDEX, {"index": index, "table": table}).first()
    return None if row is None else (bool(row[0]), str(row[1]))


def _drop_invalid_leftover(connection: Connection, index: str, table: str) -> None:
    found = _lookup(connection, index, table)
    if found is not None and not found[0]:
        log.warning(
            "Index %s is INVALID, left by an earlier build that failed or was stopped: "
            "dropping it and building it again.",
            found[1],
        )
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {found[1]}")


def _note_leftover(connection: Connection, index: str, table: str, progress: Progress) -> None:
    """Remember an INVALID index the failed build left, for the failure message."""
    try:
        found = _lookup(connection, index, table)
    except Exception:  # the connection is gone: the message says so already
        return
    if found is not None and not found[0]:
        progress.leftover = found[1]


def _require_valid(connection: Connection, index: str, table: str) -> None:
    found = _lookup(connection, index, table)
    if found is not None and not found[0]:
        raise InvalidIndex(
            f"index {found[1]} is INVALID after CREATE INDEX CONCURRENTLY; the next run drops "
            "and builds it again"
        )
