"""Helpers for the migration tests: the revisions loaded once, every step on one connection, and
schema snapshots that cost the same whatever the length of the chain.

A walk is a single Alembic `run_migrations()` whose steps are produced one at a time, so Alembic
still runs each revision in its own transaction and keeps the version table, while the checks run
between steps without a new migration context, version-table lookup or script load per step.
"""

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.migrations import alembic_config

from .data_checks import DATA_CHECKS

Row = tuple[str, str]  # (what, description), e.g. ("column", "item.name text not null")
Rows = tuple[Row, ...]
Key = tuple[str, int]  # ("r", pg_class oid) or ("t", pg_type oid)

# What a revision can create in the public schema, per object: each relation with its columns,
# constraints and index definition, each enum, domain or range type.
_OBJECTS = """
rel AS (
  SELECT c.oid, c.relname, c.relkind FROM pg_class c
   WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'alembic_version%'
     AND {relations}
), typ AS (
  SELECT t.oid, t.typname, t.typtype FROM pg_type t
   WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
     AND {types}
)
"""
_ROWS = """
SELECT 'r', rel.oid, 'relation', rel.relkind::text || ' ' || rel.relname FROM rel
UNION ALL
SELECT 'r', rel.oid, 'column', rel.relname || '.' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
  FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 'r', rel.oid, 'constraint',
       rel.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM rel JOIN pg_constraint k ON k.conrelid = rel.oid
UNION ALL
SELECT 'r', rel.oid, 'index', pg_get_indexdef(rel.oid) FROM rel WHERE rel.relkind IN ('i', 'I')
UNION ALL
SELECT 't', typ.oid, 'type', typ.typname || ' ' || coalesce(
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
            FROM pg_enum e WHERE e.enumtypid = typ.oid), typ.typtype::text)
  FROM typ
UNION ALL
SELECT 't', typ.oid, 'constraint',
       typ.typname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM typ JOIN pg_constraint k ON k.contypid = typ.oid
"""
SNAPSHOT_ALL = "WITH " + _OBJECTS.format(relations="TRUE", types="TRUE") + _ROWS
# One round trip per step: take the objects the event triggers noted (a column, constraint or
# default counts for its table), clear the notes, and read those objects again by oid, so the
# cost depends on what the step touched, not on the size of the schema. Rows of kind 'k' list
# every touched object, also those now gone; a row of kind 'x' asks for a full read.
# It runs inside a PL/pgSQL function (see PROBE_SQL), which plans it once per connection: sent as a
# statement, it would be planned again after every step, since the driver drops its prepared
# statements whenever a migration runs DDL.
_TOUCHED_ROWS = (
    """
WITH events AS (DELETE FROM test_probe.touched RETURNING kind::text AS kind, oid, name),
touched AS (
  SELECT kind, oid FROM events WHERE kind IN ('r', 't')
  UNION
  SELECT 'r', c.oid FROM events JOIN pg_class c
      ON c.relname = events.name AND c.relnamespace = 'public'::regnamespace
   WHERE events.kind = 'n'
),"""
    + _OBJECTS.format(
        relations="c.oid IN (SELECT oid FROM touched WHERE kind = 'r')",
        types="t.oid IN (SELECT oid FROM touched WHERE kind = 't')",
    )
    + """
SELECT 'k'::text, oid, kind, ''::text FROM touched
UNION ALL
SELECT 'x', 0::oid, '', '' FROM events WHERE kind = 'x'
UNION ALL"""
    + _ROWS
)
SNAPSHOT_TOUCHED = "SELECT * FROM test_probe.touched_rows()"

# Event triggers note every object a DDL statement creates, alters or drops, so a snapshot only
# re-reads those. Anything they cannot pin to a relation or type of `public` (kind 'x') makes the
# next snapshot read everything again, which is always correct, only slower.
PROBE_SQL = (
    "CREATE SCHEMA test_probe",
    'CREATE TABLE test_probe.touched (kind "char", oid oid, name text)',
    """\
CREATE FUNCTION test_probe.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_probe.touched
  SELECT CASE WHEN c.classid = 'pg_class'::regclass THEN 'r'
              WHEN c.classid = 'pg_type'::regclass THEN 't'
              ELSE 'n' END,
         c.objid, (pg_identify_object_as_address(c.classid, c.objid, 0)).object_names[2]
    FROM pg_event_trigger_ddl_commands() c WHERE c.schema_name = 'public';
END $$
""",
    """\
CREATE FUNCTION test_probe.on_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_probe.touched
  SELECT CASE WHEN d.classid = 'pg_type'::regclass THEN 't'
              WHEN d.object_type IN ('table', 'index', 'sequence', 'view', 'materialized view',
                                     'foreign table', 'partitioned table', 'partitioned index')
                   THEN 'r'
              WHEN d.object_type IN ('table column', 'table constraint', 'default value',
                                     'trigger', 'rule', 'policy') THEN 'n'
              ELSE 'x' END,
         d.objid, d.address_names[2]
    FROM pg_event_trigger_dropped_objects() d
   WHERE d.schema_name = 'public' OR d.address_names[1] = 'public';
END $$
""",
    # OUT columns named apart from the query's own, so that PL/pgSQL reads the query as written.
    "CREATE FUNCTION test_probe.touched_rows() "
    "RETURNS TABLE (out_kind text, out_oid oid, out_what text, out_item text) "
    f"LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY {_TOUCHED_ROWS}; END $$",
    "CREATE EVENT TRIGGER test_probe_ddl ON ddl_command_end EXECUTE FUNCTION test_probe.on_ddl()",
    "CREATE EVENT TRIGGER test_probe_drop ON sql_drop EXECUTE FUNCTION test_probe.on_drop()",
)


class SchemaTracker:
    """The public schema, object by object, kept current after each step.

    With event triggers (they need a superuser, which the test servers have), a refresh re-reads
    only the objects the step touched; without them, every refresh reads the whole schema.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        is_superuser = connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()
        self.probed = bool(is_superuser)
        if self.probed:
            for statement in PROBE_SQL:
                connection.exec_driver_sql(statement)
        self.objects: dict[Key, Rows] = self._read(SNAPSHOT_ALL)
        connection.commit()

    def refresh(self) -> tuple[set[Row], set[Row]]:
        """Re-read what changed since the last refresh: the rows of the changed objects as they
        were before, and as they are now."""
        if self.probed:
            touched: set[Key] = set()
            fresh = self._read(SNAPSHOT_TOUCHED, touched)
            if ("x", 0) not in touched:
                # `fresh` holds the touched objects that still exist; the others are gone.
                old = [self.objects.pop(key) for key in touched if key in self.objects]
                self.objects.update(fresh)
                return _rows(old), _rows(fresh.values())
        old_objects, self.objects = self.objects, self._read(SNAPSHOT_ALL)
        return _rows(old_objects.values()), _rows(self.objects.values())

    def _read(self, query: str, touched: set[Key] | None = None) -> dict[Key, Rows]:
        grouped: dict[Key, list[tuple[str, str]]] = {}
        for kind, oid, what, item in self.connection.execute(text(query)):
            if kind == "k" and touched is not None:
                touched.add((what, int(oid)))
            elif kind == "x" and touched is not None:
                touched.add(("x", 0))
            else:
                grouped.setdefault((kind, int(oid)), []).append((what, item))
        return {key: tuple(sorted(rows)) for key, rows in grouped.items()}


@cache
def script_directory() -> ScriptDirectory:
    """Loaded once per test run: every revision module is imported a single time."""
    return ScriptDirectory.from_config(alembic_config())


def revisions_base_to_head() -> list[Script]:
    return list(reversed(list(script_directory().walk_revisions("base", "heads"))))


def up(revision: Script) -> RevisionStep:
    return RevisionStep(script_directory().revision_map, revision, True)


def down(revision: Script) -> RevisionStep:
    return RevisionStep(script_directory().revision_map, revision, False)


def run_steps(connection: Connection, steps: Callable[[], Iterator[RevisionStep]]) -> None:
    """Run the steps `steps()` yields, each revision in a transaction of its own, as `alembic
    upgrade` and `downgrade` do; code between the yields runs between the steps."""
    connection.commit()  # Alembic opens a transaction per step only on an idle connection
    context = MigrationContext.configure(
        connection,
        opts={"fn": lambda heads, context: steps(), "transaction_per_migration": True},
    )
    with Operations.context(context):
        context.run_migrations()


@dataclass
class Walk:
    """The outcome of a walk from base to head, one revision at a time."""

    url: URL  # the database the walk left at head (when it got there)
    upgrade_failure: str | None = None  # the revision whose upgrade failed, and why
    stairway_failure: str | None = None  # the revision that does not go down and up again
    data_failures: dict[str, str] = field(default_factory=dict)  # revision -> what broke


class _Stop(Exception):
    """Ends a walk once its outcome records why."""


def walk_base_to_head(connection: Connection, outcome: Walk, *, stairway: bool) -> None:
    """Upgrade base -> head one revision at a time; with `stairway`, also downgrade each revision
    and check that it restores exactly the schema before it, then upgrade it again.

    Each revision's data check (data_checks.py) writes its rows once the revision is applied, and
    checks them at head. The outcome records the first failure of each kind instead of raising,
    so one walk answers the upgrade, stairway, data and model tests.
    """
    schema = SchemaTracker(connection) if stairway else None
    written: list[str] = []
    phase = ["upgrade", "base"]

    def steps() -> Iterator[RevisionStep]:
        for revision in revisions_base_to_head():
            where = f"revision {revision.revision} ({revision.path})"
            phase[:] = ["upgrade", where]
            yield up(revision)
            if schema:
                # Read once after the round trip: whatever the upgrade or the downgrade touched
                # must be back as it was.
                phase[0] = "downgrade"
                yield down(revision)
                wanted, got = schema.refresh()
                if got != wanted:
                    outcome.stairway_failure = (
                        f"{where}: downgrade leaves {sorted(got - wanted)}, "
                        f"misses {sorted(wanted - got)}"
                    )
                    raise _Stop
                phase[0] = "second upgrade"
                yield up(revision)
                schema.refresh()
            check = DATA_CHECKS.get(revision.revision)
            if check and _guarded(connection, outcome, revision.revision, check.before):
                written.append(revision.revision)

    try:
        run_steps(connection, steps)
    except _Stop:
        connection.rollback()
        return
    except Exception as exc:
        connection.rollback()
        what, where = phase
        if what == "upgrade":
            outcome.upgrade_failure = f"upgrade to {where} failed: {exc}"
        else:
            outcome.stairway_failure = f"{where}: {what} failed: {exc}"
        return
    for revision in written:
        _guarded(connection, outcome, revision, DATA_CHECKS[revision].after)
    connection.commit()


def _guarded(
    connection: Connection, outcome: Walk, revision: str, check: Callable[[Connection], None]
) -> bool:
    """Run a data check in a savepoint, so a failing one leaves the walk going."""
    savepoint = connection.begin_nested()
    try:
        check(connection)
    except Exception as exc:
        savepoint.rollback()
        outcome.data_failures[revision] = f"{type(exc).__name__}: {exc}"
        return False
    savepoint.commit()
    return True


def _rows(objects: Iterable[Rows]) -> set[Row]:
    # A set is enough: within one schema every row names its object, so none repeats.
    return {row for rows in objects for row in rows}


def on_connection(url: URL, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on one connection to `url`, commit, and return what it returns."""

    async def run() -> Any:
        # Test databases are thrown away: no need to wait for each commit to reach the disk.
        server_settings = {"synchronous_commit": "off"}
        engine = create_async_engine(
            url, poolclass=pool.NullPool, connect_args={"server_settings": server_settings}
        )
        try:
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())
