"""Helpers for the migration tests: the revisions loaded once, every walk run by env.py itself,
and schema snapshots read from information_schema.

A walk is one run of the project's env.py, as `make migrate` runs it (the same lock, timeouts,
`transaction_per_migration` and error messages), whose steps are produced one at a time: Alembic
runs each revision and keeps the version table, while the checks run between steps on env.py's
own connection, without a new migration context, version-table lookup or script load per step.
"""

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.package_name }}.migrations import alembic_config

from .data_checks import DATA_CHECKS

Row = tuple[str, str]  # (what, description), e.g. ("column", "item.name varchar(255) NO")

# What a revision can create in the database, each as one line per object part: tables and
# views, columns (type, nullability, default, extra, collation, comment), index columns,
# constraints (primary, unique, foreign with their rules, check with its clause), view
# definitions, routines and triggers. Alembic's version table is left out.
SNAPSHOT = """
SELECT 'table', CONCAT_WS(' ', TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION, TABLE_COMMENT)
  FROM information_schema.TABLES
 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'
UNION ALL
SELECT 'column', CONCAT_WS(' ', TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE,
                           IS_NULLABLE, CONCAT('default=', COALESCE(COLUMN_DEFAULT, 'none')),
                           EXTRA, COLLATION_NAME, COLUMN_COMMENT)
  FROM information_schema.COLUMNS
 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'
UNION ALL
SELECT 'index', CONCAT_WS(' ', TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME,
                          COALESCE(SUB_PART, ''), INDEX_TYPE)
  FROM information_schema.STATISTICS
 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> 'alembic_version'
UNION ALL
SELECT 'constraint', CONCAT_WS(' ', t.TABLE_NAME, t.CONSTRAINT_NAME, t.CONSTRAINT_TYPE,
                               k.COLUMN_NAME, k.ORDINAL_POSITION, k.REFERENCED_TABLE_NAME,
                               k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE,
                               c.CHECK_CLAUSE)
  FROM information_schema.TABLE_CONSTRAINTS t
  LEFT JOIN information_schema.KEY_COLUMN_USAGE k
    ON k.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME
   AND k.CONSTRAINT_NAME = t.CONSTRAINT_NAME
  LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r
    ON r.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = t.CONSTRAINT_NAME
   AND r.TABLE_NAME = t.TABLE_NAME
  LEFT JOIN information_schema.CHECK_CONSTRAINTS c
    ON c.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND c.CONSTRAINT_NAME = t.CONSTRAINT_NAME
   AND t.CONSTRAINT_TYPE = 'CHECK'
 WHERE t.CONSTRAINT_SCHEMA = DATABASE() AND t.TABLE_NAME <> 'alembic_version'
UNION ALL
SELECT 'view', CONCAT_WS(' ', TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE)
  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()
UNION ALL
SELECT 'routine', CONCAT_WS(' ', ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION)
  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()
UNION ALL
SELECT 'trigger', CONCAT_WS(' ', TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION,
                            EVENT_OBJECT_TABLE, ACTION_ORDER, ACTION_STATEMENT)
  FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()
"""


class SchemaTracker:
    """The database's schema, re-read whole after each step (information_schema answers in
    milliseconds for a project's tables; MySQL has no event triggers to narrow it down)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.rows = self._read()

    def refresh(self) -> tuple[set[Row], set[Row]]:
        """The schema as it was at the last refresh, and as it is now."""
        old, self.rows = self.rows, self._read()
        return old, self.rows

    def _read(self) -> set[Row]:
        rows = {(str(what), str(item)) for what, item in self.connection.execute(text(SNAPSHOT))}
        self.connection.commit()
        return rows


@cache
def script_directory() -> ScriptDirectory:
    """Loaded once per test run: every revision module is imported a single time."""
    return ScriptDirectory.from_config(alembic_config())


def revisions_base_to_head(script: ScriptDirectory | None = None) -> list[Script]:
    script = script or script_directory()
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def up(revision: Script) -> RevisionStep:
    return RevisionStep(script_directory().revision_map, revision, True)


def down(revision: Script) -> RevisionStep:
    return RevisionStep(script_directory().revision_map, revision, False)


StepsFn = Callable[[tuple[str, ...], MigrationContext], Iterable[RevisionStep]]


def run_env(
    url: URL, steps: StepsFn, *, command: str = "upgrade", script: ScriptDirectory | None = None
) -> None:
    """Run the project's env.py on `url` as `alembic <command>` would, with `steps(heads,
    context)` in place of the command's own list of revisions.

    env.py configures the migration context itself (its lock, timeouts, transaction per revision
    and error messages); `steps` may yield the revisions one at a time and run checks on
    `context.connection` between them. The script directory is the cached one, so nothing is
    loaded again.
    """
    config = alembic_config(url=url)
    config.attributes["command"] = command
    script = script or script_directory()
    with EnvironmentContext(config, script, fn=steps, destination_rev="heads"):
        script.run_env()


@dataclass
class Walk:
    """The outcome of a walk from base to head, one revision at a time."""

    url: URL  # the database the walk left at head (when it got there)
    upgrade_failure: str | None = None  # the revision whose upgrade failed, and why
    stairway_failure: str | None = None  # the revision that does not go down and up again
    data_failures: dict[str, str] = field(default_factory=dict)  # revision -> what broke


class _Stop(Exception):
    """Ends a walk once its outcome records why."""


def walk_base_to_head(url: URL, outcome: Walk, *, stairway: bool) -> None:
    """Upgrade base -> head one revision at a time; with `stairway`, also downgrade each revision
    and check that it restores exactly the schema before it, then upgrade it again.

    Each revision's data check (data_checks.py) writes its rows once the revision is applied, and
    checks them at head. The outcome records the first failure of each kind instead of raising,
    so one walk answers the upgrade, stairway, data and model tests.
    """
    phase = ["upgrade", "base"]

    def steps(heads: tuple[str, ...], context: MigrationContext) -> Iterator[RevisionStep]:
        connection = context.connection
        assert connection is not None
        schema = SchemaTracker(connection) if stairway else None
        written: list[str] = []
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
        # At head, every revision committed: the rows written on the way must have come through.
        for revision_id in written:
            _guarded(connection, outcome, revision_id, DATA_CHECKS[revision_id].after)

    try:
        run_env(url, steps)
    except _Stop:
        return
    except Exception as exc:
        what, where = phase
        if what == "upgrade":
            outcome.upgrade_failure = f"upgrade to {where} failed: {exc}"
        else:
            outcome.stairway_failure = f"{where}: {what} failed: {exc}"


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


def on_connection(url: URL, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on one connection to `url`, commit, and return what it returns."""

    async def run() -> Any:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())
