"""The old release's side of testing/old_release.py, run in a process of its own whose import
path starts with the old release's source: `python -m alembic_steady.testing.old_release_child
<package>`, the database's URL in OLD_RELEASE_URL (never on the command line).

Each `check` line on stdin runs, with the old release's models (`<package>.models.metadata`),
what its code does to every table: an INSERT of a row the models describe (foreign keys to the
rows inserted before it), a SELECT of that row by its primary key, an UPDATE of its other
columns, each in a savepoint of one transaction that is rolled back. One JSON line answers:
{"<statement kind> <table>": "<statement>: <the server's error>"} for each that failed.
"""

import asyncio
import datetime
import decimal
import importlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import create_async_engine

URL_VARIABLE = "OLD_RELEASE_URL"
Failures = dict[str, str]


class NoValue(Exception):
    """A column of a type no value is made for: its table is not checked."""


def value(column: sa.Column[Any], n: int) -> Any:
    """A value of the column's type, different for each `n` (unique columns stay unique)."""
    type_ = column.type
    while isinstance(type_, sa.types.TypeDecorator):  # SQLModel's AutoString, a project's own
        type_ = type_.impl_instance
    if isinstance(type_, sa.Enum):
        choices = list(type_.enum_class) if type_.enum_class else list(type_.enums)
        return choices[n % len(choices)]
    try:
        python = dict if isinstance(type_, sa.JSON) else type_.python_type
    except NotImplementedError:
        python = None
    made: dict[Any, Callable[[], Any]] = {
        bool: lambda: n % 2 == 0,
        int: lambda: n,
        float: lambda: n + 0.5,
        decimal.Decimal: lambda: decimal.Decimal(n),
        str: lambda: _text(f"old{n}", getattr(type_, "length", None)),
        datetime.datetime: lambda: _now(getattr(type_, "timezone", False)),
        datetime.date: lambda: datetime.date(2020, 1, 1 + n % 28),
        datetime.time: lambda: datetime.time(n % 24),
        datetime.timedelta: lambda: datetime.timedelta(seconds=n),
        uuid.UUID: uuid.uuid4,
        dict: lambda: {"old": n},
        list: lambda: [],
        bytes: lambda: f"old{n}".encode(),
    }
    if python in made:
        return made[python]()
    if column.nullable:
        return None
    raise NoValue(f"no value is made for {column.table.name}.{column.name} ({type_})")


def _text(text: str, length: int | None) -> str:
    return text[:length] if length else text


def _now(timezone: bool) -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now if timezone else now.replace(tzinfo=None)


def written(column: sa.Column[Any]) -> bool:
    """Whether the old code's INSERT names the column: not a generated key, a computed column
    or one with a default (SQLAlchemy fills a Python default in, the server its own)."""
    if column.computed is not None or column.server_default is not None:
        return False
    if column.default is not None:
        return False
    table = column.table
    key = list(table.primary_key.columns)
    return not (key == [column] and column is table.autoincrement_column)


def check(connection: Connection, metadata: sa.MetaData) -> Failures:
    failed: Failures = {}
    inserted: dict[str, dict[str, Any]] = {}
    transaction = connection.begin()
    try:
        for n, table in enumerate(metadata.sorted_tables, start=1):
            _check_table(connection, table, n * 2, inserted, failed)
    finally:
        transaction.rollback()
    return failed


def _check_table(
    connection: Connection,
    table: sa.Table,
    n: int,
    inserted: dict[str, dict[str, Any]],
    failed: Failures,
) -> None:
    def run(kind: str, statement: sa.Executable) -> sa.CursorResult[Any] | None:
        savepoint = connection.begin_nested()
        try:
            result = connection.execute(statement)
        except (DBAPIError, StatementError) as exc:
            savepoint.rollback()
            error = _server_said(exc)
            failed[f"{kind} {table.name}"] = f"{_short(exc.statement)}: {error}"
            return None
        savepoint.commit()
        return result

    try:
        row = {c.name: _value_of(c, n, inserted) for c in table.columns if written(c)}
    except NoValue as exc:
        failed[f"INSERT {table.name}"] = str(exc)
        return
    result = run("INSERT", table.insert().values(row))
    key = list(table.primary_key.columns)
    if result is None or not key or result.inserted_primary_key is None:
        run("SELECT", sa.select(table).limit(1))  # its readers, without a row of its own
        return
    where = sa.and_(*[c == v for c, v in zip(key, result.inserted_primary_key, strict=True)])
    selected = run("SELECT", sa.select(table).where(where))
    if selected is not None and (found := selected.first()) is not None:
        inserted[table.name] = dict(found._mapping)
    changed = {
        c.name: value(c, n + 1)
        for c in table.columns
        if written(c) and not c.primary_key and not c.foreign_keys
    }
    if changed:
        run("UPDATE", table.update().where(where).values(changed))


def _value_of(column: sa.Column[Any], n: int, inserted: dict[str, dict[str, Any]]) -> Any:
    for foreign_key in column.foreign_keys:
        parent = inserted.get(foreign_key.column.table.name)
        if parent is not None:
            return parent[foreign_key.column.name]
        if column.nullable:
            return None
        raise NoValue(f"{column.table.name}.{column.name} needs a row of {foreign_key.column}")
    return value(column, n)


def _server_said(exc: Exception) -> str:
    """The first line of the server's error, without the driver's class name that older
    SQLAlchemy releases put before it ("<class 'asyncpg.exceptions....'>: ")."""
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return re.sub(r"^<class '[\w.]+'>: ", "", said)


def _short(statement: object, width: int = 160) -> str:
    flat = " ".join(str(statement).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


async def serve(package: str) -> None:
    metadata: sa.MetaData = importlib.import_module(f"{package}.models").metadata
    engine = create_async_engine(make_url(os.environ[URL_VARIABLE]), poolclass=sa.NullPool)
    try:
        for line in sys.stdin:
            if line.strip() != "check":
                continue
            async with engine.connect() as connection:
                failed = await connection.run_sync(check, metadata)
            print(json.dumps(failed), flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
