"""Which revision each target is at, read without the migration lock: one session per database
holding tenant schemas (PostgreSQL), one per server holding databases (MySQL), or one per
database elsewhere (PostgreSQL reads no other database's tables), all at once.

A session reads which of its targets have a version table (information_schema, both dialects),
then all of those tables in one UNION ALL.
"""

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from alembic.util import CommandError
from sqlalchemy import Connection, bindparam, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from ..dialects.base import Dialect
from ..project import MigrationSettings, Project
from ..runner.errors import connect
from .targets import Target

VERSION_TABLE = "alembic_version"
# Sessions open at once, and version tables read per statement.
SESSIONS, PER_STATEMENT = 16, 500
_T = TypeVar("_T")

_HAVING_VERSIONS = text(
    "SELECT table_schema FROM information_schema.tables "
    "WHERE table_name = :table AND table_schema IN :names"
).bindparams(bindparam("names", expanding=True))


@dataclass(frozen=True)
class Found:
    """A target's revisions (() at base), or why they could not be read."""

    heads: tuple[str, ...] | None
    error: str | None = None


def read_all(
    targets: list[Target], project: Project, settings: MigrationSettings, dialect: Dialect
) -> dict[Target, Found]:
    return asyncio.run(read_all_async(targets, project, settings, dialect))


async def read_all_async(
    targets: list[Target], project: Project, settings: MigrationSettings, dialect: Dialect
) -> dict[Target, Found]:
    groups: dict[URL, list[tuple[Target, str | None]]] = defaultdict(list)
    for target in targets:
        if dialect.databases_share_a_session:  # one session reads every database of its server
            groups[target.url.set(database=None)].append((target, target.url.database))
        else:
            groups[target.url].append((target, target.schema))
    gate = asyncio.Semaphore(SESSIONS)
    found: dict[Target, Found] = {}

    async def read_group(url: URL, members: list[tuple[Target, str | None]]) -> None:
        async with gate:
            try:
                versions = await on_session(
                    url, project, settings, dialect, lambda c: versions_in(c, members)
                )
            except Exception as exc:  # the runner's own words where it has them
                why = str(exc) if isinstance(exc, CommandError) else dialect.first_line(exc)
                found.update((target, Found(None, why)) for target, _ in members)
                return
            found.update((target, Found(versions[target])) for target, _ in members)

    await asyncio.gather(*(read_group(url, members) for url, members in groups.items()))
    return found


async def on_session(
    url: URL,
    project: Project,
    settings: MigrationSettings,
    dialect: Dialect,
    read: Callable[[Connection], _T],
) -> _T:
    """`read` run on a session of its own on `url` (no lock taken)."""
    engine = create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args=dialect.connect_args(settings, project.session_name),
    )
    try:
        async with connect(engine, dialect, settings, project) as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def versions_in(
    connection: Connection, members: list[tuple[Target, str | None]]
) -> dict[Target, tuple[str, ...]]:
    """Each member's revisions; `None` as a namespace is the session's default schema."""
    default = connection.dialect.default_schema_name
    names = {target: namespace or default for target, namespace in members}
    wanted = sorted({name for name in names.values() if name is not None})
    having = set(
        connection.execute(_HAVING_VERSIONS, {"table": VERSION_TABLE, "names": wanted}).scalars()
    )
    quote = connection.dialect.identifier_preparer.quote_identifier
    read = sorted(having)
    heads: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(read), PER_STATEMENT):
        chunk = read[start : start + PER_STATEMENT]
        union = " UNION ALL ".join(
            f"SELECT {index} AS n, version_num FROM {quote(name)}.{VERSION_TABLE}"
            for index, name in enumerate(chunk)
        )
        for index, version in connection.execute(text(union)):
            heads[chunk[index]].append(version)
    connection.rollback()
    return {
        target: tuple(sorted(heads.get(name, []))) if name is not None else ()
        for target, name in names.items()
    }
