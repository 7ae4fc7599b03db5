"""Helpers for the migration tests: one connection, the script directory loaded once, Alembic's
own revision resolution, and schema snapshots."""

import asyncio
from collections.abc import Callable
from functools import cache

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.migrations import alembic_config

# Everything a revision can create in the public schema, in a form that compares as a whole.
SNAPSHOT_SQL = """
SELECT 'relation', c.relkind::text || ' ' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'
UNION ALL
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname <> 'alembic_version'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint
 WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'alembic_version'
UNION ALL
SELECT 'type', t.typname || ' ' || coalesce(
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
            FROM pg_enum e WHERE e.enumtypid = t.oid), t.typtype::text)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')
ORDER BY 1, 2
"""


def schema_snapshot(connection: Connection) -> list[tuple[str, str]]:
    """The public schema's tables, columns, constraints, indexes, sequences and types."""
    return [(kind, item) for kind, item in connection.execute(text(SNAPSHOT_SQL))]


@cache
def script_directory() -> ScriptDirectory:
    """Loaded once per test run: every revision module is imported a single time."""
    return ScriptDirectory.from_config(alembic_config())


def revisions_base_to_head() -> list[Script]:
    return list(reversed(list(script_directory().walk_revisions("base", "heads"))))


def upgrade(connection: Connection, destination: str) -> None:
    """`alembic upgrade destination` on this connection, without re-reading env.py or scripts."""
    script = script_directory()
    _run(connection, lambda heads, _: script._upgrade_revs(destination, heads))


def downgrade(connection: Connection, destination: str) -> None:
    """`alembic downgrade destination` on this connection."""
    script = script_directory()
    _run(connection, lambda heads, _: script._downgrade_revs(destination, heads))


def _run(connection: Connection, steps: Callable[..., object]) -> None:
    # The same calls `alembic upgrade` makes through env.py, minus the per-command start-up:
    # Alembic resolves the revisions and keeps the version table.
    context = MigrationContext.configure(
        connection, opts={"fn": steps, "transaction_per_migration": True}
    )
    with Operations.context(context):
        context.run_migrations()


def on_connection(url: URL, work: Callable[[Connection], None]) -> None:
    """Run `work` (which asserts what it checks) on one connection to `url`, then commit."""

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(work)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())
