"""Operations that change a live table without stalling the application writing to it.

Imported by env.py, which registers them with Alembic, so a revision calls them as `op.<name>`:

    op.create_index_concurrently("ix_item_sku", "item", ["sku"])   # builds without blocking writes
    op.drop_index_concurrently("ix_item_sku", table_name="item")
    op.create_unique_constraint_concurrently("uq_item_sku", "item", ["sku"])
    op.set_not_null("item", "sku")                 # CHECK NOT VALID, VALIDATE, SET NOT NULL
    op.drop_not_null("item", "sku")
    op.create_foreign_key_validated("fk_item_owner_id_owner", "item", "owner", ["owner_id"], ["id"])
    op.validate_constraint("fk_item_owner_id_owner", "item")      # for validate=False, after deploy
    op.backfill("item", {"sku": "'SKU-' || id"}, where="sku IS NULL")

Each one runs outside the revision's transaction (`autocommit_block()`), so every step commits on
its own and no lock outlives its statement: the work that scans the table runs under a lock that
lets inserts and updates through. Whatever ran before it in the revision is committed first, and
every step is safe to run again, so a revision interrupted half way can simply be rerun.

These names are part of the revisions you commit: keep them (and their arguments) stable.
"""

import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from alembic.operations import MigrateOperation, Operations
from alembic.operations import ops as alembic_ops
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ..dialects.measured import BOOKKEEPING
from ..dialects.postgresql import AS_STORED
from ..runner.alembic_internals import in_callers_transaction
from ..runner.progress import PROGRESS
from ..runner.retries import OWN_LOCK_TIMEOUT

# PostgreSQL's SQLSTATEs for a CHECK and a foreign key that existing rows violate, and for a
# lock not granted within lock_timeout.
CHECK_VIOLATION = "23514"
FOREIGN_KEY_VIOLATION = "23503"
LOCK_NOT_AVAILABLE = "55P03"
# A step that needs a strong lock for a moment waits at most this long for it per attempt: while it
# waits in the lock queue, the application's writes queue behind it.
BRIEF_LOCK_WAIT = "50ms"
BRIEF_LOCK_ATTEMPTS = 20
# A backfill batch keeps its rows locked until it commits: an application updating one of them
# waits that long. 2000 rows take some tens of milliseconds; the pause leaves the application
# (and replicas) room between batches.
BATCH_SIZE = 2000
BATCH_PAUSE = 0.02
IDENTIFIER_MAX = 63  # PostgreSQL truncates longer names silently; we do it visibly


def not_null_check_name(table_name: str, column_name: str) -> str:
    """The temporary CHECK that proves a column has no NULLs before SET NOT NULL."""
    return f"ck_{table_name}_{column_name}_not_null"[:IDENTIFIER_MAX]


def backfill_hint(table_name: str, column_name: str) -> str:
    """The revision line that fills a column's NULLs, for messages and review notes."""
    values = "{" + f'"{column_name}": "<value>"' + "}"
    return f'op.backfill("{table_name}", {values}, where="{column_name} IS NULL")'


def _quote(operations: Operations, name: str) -> str:
    return str(operations.impl.dialect.identifier_preparer.quote(name))


def _index_name(operations: Operations, name: str) -> str:
    """The index name SQLAlchemy writes for `name` (as `op.f(name)`): one over 63 characters is
    cut to 55 and a hash of it; the server then cuts one over 63 bytes (see AS_STORED)."""
    preparer = operations.impl.dialect.identifier_preparer
    return preparer.truncate_and_render_index_name(operations.f(name), _alembic_quote=False)


def _table(operations: Operations, table_name: str, schema: str | None) -> str:
    table = _quote(operations, table_name)
    return f"{_quote(operations, schema)}.{table}" if schema else table


def _online(operations: Operations) -> bool:
    """False when printing SQL (`make sql`, `make lint-migrations`): nothing can be queried."""
    return not operations.get_context().as_sql


def _scalar(operations: Operations, sql: str, **params: Any) -> Any:
    """A value read from the catalog or the settings: bookkeeping, which watches pass over."""
    statement = text(sql).execution_options(**{BOOKKEEPING: True})
    return operations.get_bind().execute(statement, params).scalar()


def _step_by_step(operations: Operations) -> AbstractContextManager[None]:
    """Alembic's autocommit block: each statement inside commits on its own.

    It needs a transaction Alembic began itself (one per revision): on a connection whose caller
    holds a transaction open (`upgrade(connection=...)`), Alembic cannot commit it, so say so.
    """
    context = operations.get_context()
    bind = None if context.as_sql else operations.get_bind()
    if bind is not None and bind.in_transaction() and in_callers_transaction(context):
        raise CommandError(
            "This revision's safe operations commit step by step, outside any transaction, but "
            "it runs inside your own transaction (upgrade(connection=...)). Run it with "
            "`make migrate` or upgrade() without a connection: each revision then gets a "
            "transaction of its own."
        )
    return context.autocommit_block()


def _set_lock_timeout(operations: Operations, value: str) -> None:
    _scalar(operations, "SELECT set_config('lock_timeout', :value, false)", value=value)


def _briefly(operations: Operations, step: Callable[[], None]) -> None:
    """Run a step that holds an ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) lock for a moment.

    Waiting for that lock behind a long transaction, or behind autovacuum (which PostgreSQL only
    cancels after deadlock_timeout, 1 s), would stall every write queued behind the request. So
    each attempt waits at most BRIEF_LOCK_WAIT, then gives way and tries again after a growing
    pause; the last attempt waits as long as the migration's own lock_timeout allows.
    """
    if not _online(operations):
        step()
        return
    configured = str(_scalar(operations, "SELECT current_setting('lock_timeout')"))
    # Under the runner, its retries keep this bound (it would raise lock_timeout before each
    # attempt otherwise) and take over the pauses between attempts.
    info = operations.get_bind().info
    try:
        for attempt in range(BRIEF_LOCK_ATTEMPTS):
            last = attempt == BRIEF_LOCK_ATTEMPTS - 1
            if last:
                info.pop(OWN_LOCK_TIMEOUT, None)
            else:
                info[OWN_LOCK_TIMEOUT] = BRIEF_LOCK_WAIT
            _set_lock_timeout(operations, configured if last else BRIEF_LOCK_WAIT)
            try:
                step()
                return
            except DBAPIError as exc:
                if last or getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
            time.sleep(min(0.05 * 2**attempt, 2.0) * random.uniform(0.5, 1.0))
    finally:
        info.pop(OWN_LOCK_TIMEOUT, None)
        _set_lock_timeout(operations, configured)


# --- indexes ----------------------------------------------------------------------------------

# Each op's classmethod is marked `# pragma: no mutate block` for the mutation tool (make
# mutation-score): Alembic reads its signature (cls, operations, ...) to make `op.<name>`, and a
# mutated copy's wrapper would hide it, failing every import.


@Operations.register_operation("create_index_concurrently")
class CreateIndexConcurrentlyOp(MigrateOperation):
    """CREATE INDEX CONCURRENTLY: inserts, updates and deletes go on while the index is built.

    Rerun-safe: a build that failed or was cancelled leaves an INVALID index behind, which
    `IF NOT EXISTS` would skip (and an INVALID unique index enforces nothing), so such a leftover
    is dropped first, and the new index is checked to be valid afterwards.
    """

    def __init__(
        self,
        index_name: str,
        table_name: str,
        columns: Sequence[Any],
        *,
        schema: str | None = None,
        unique: bool = False,
        **kw: Any,
    ) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.columns = list(columns)
        self.schema = schema
        self.unique = unique
        self.kw = kw

    @classmethod
    def create_index_concurrently(
        cls,
        operations: Operations,
        index_name: str,
        table_name: str,
        columns: Sequence[Any],
        *,
        schema: str | None = None,
        unique: bool = False,
        **kw: Any,
    ) -> None:  # pragma: no mutate block
        """Build an index without blocking writes (same arguments as `op.create_index`)."""
        operations.invoke(cls(index_name, table_name, columns, schema=schema, unique=unique, **kw))

    def reverse(self) -> "DropIndexConcurrentlyOp":
        return DropIndexConcurrentlyOp(
            self.index_name, self.table_name, schema=self.schema, _reverse=self
        )


@Operations.register_operation("drop_index_concurrently")
class DropIndexConcurrentlyOp(MigrateOperation):
    """DROP INDEX CONCURRENTLY: waits for queries using the index instead of blocking the table."""

    def __init__(
        self,
        index_name: str,
        table_name: str | None = None,
        *,
        schema: str | None = None,
        _reverse: CreateIndexConcurrentlyOp | None = None,
    ) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.schema = schema
        self._reverse = _reverse

    @classmethod
    def drop_index_concurrently(
        cls,
        operations: Operations,
        index_name: str,
        table_name: str | None = None,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Drop an index (if it exists) without taking a lock that blocks the table."""
        operations.invoke(cls(index_name, table_name, schema=schema))

    def reverse(self) -> CreateIndexConcurrentlyOp:
        if self._reverse is None:
            raise ValueError(f"the columns of {self.index_name} are unknown: cannot recreate it")
        return self._reverse


def _invalid_index(operations: Operations, name: str, schema: str | None) -> bool:
    return bool(
        _scalar(
            operations,
            "SELECT NOT i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.relname = {AS_STORED.format(':name')} "
            "AND n.nspname = coalesce(:schema, current_schema())",
            name=_index_name(operations, name),
            schema=schema,
        )
    )


@Operations.implementation_for(CreateIndexConcurrentlyOp)
def _create_index_concurrently(operations: Operations, op: CreateIndexConcurrentlyOp) -> None:
    with _step_by_step(operations):
        if _online(operations) and _invalid_index(operations, op.index_name, op.schema):
            # Left by an earlier build that failed or was interrupted: start over.
            operations.drop_index(
                operations.f(op.index_name),
                op.table_name,
                schema=op.schema,
                if_exists=True,
                postgresql_concurrently=True,
            )
        operations.create_index(
            operations.f(op.index_name),
            op.table_name,
            op.columns,
            schema=op.schema,
            unique=op.unique,
            if_not_exists=True,
            postgresql_concurrently=True,
            **op.kw,
        )
        if _online(operations) and _invalid_index(operations, op.index_name, op.schema):
            raise CommandError(
                f"Index {op.index_name} on {op.table_name} is INVALID after its build (another "
                "session built it at the same time, or it was cancelled): run the migration "
                "again; the invalid index is dropped and rebuilt."
            )


@Operations.implementation_for(DropIndexConcurrentlyOp)
def _drop_index_concurrently(operations: Operations, op: DropIndexConcurrentlyOp) -> None:
    with _step_by_step(operations):
        operations.drop_index(
            operations.f(op.index_name),
            op.table_name,
            schema=op.schema,
            if_exists=True,
            postgresql_concurrently=True,
        )


@Operations.register_operation("create_unique_constraint_concurrently")
class CreateUniqueConstraintConcurrentlyOp(MigrateOperation):
    """A UNIQUE constraint without building its index under an exclusive lock.

    The unique index is built CONCURRENTLY (as `create_index_concurrently`, rerun-safe), then
    `ADD CONSTRAINT ... UNIQUE USING INDEX` turns it into the constraint in a moment.
    """

    def __init__(
        self,
        constraint_name: str,
        table_name: str,
        columns: Sequence[str],
        *,
        schema: str | None = None,
    ) -> None:
        self.constraint_name = constraint_name
        self.table_name = table_name
        self.columns = list(columns)
        self.schema = schema

    @classmethod
    def create_unique_constraint_concurrently(
        cls,
        operations: Operations,
        constraint_name: str,
        table_name: str,
        columns: Sequence[str],
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Add a UNIQUE constraint on a live table (same arguments as
        `op.create_unique_constraint`)."""
        operations.invoke(cls(constraint_name, table_name, columns, schema=schema))

    def reverse(self) -> MigrateOperation:
        return alembic_ops.DropConstraintOp(
            self.constraint_name, self.table_name, type_="unique", schema=self.schema
        )


@Operations.implementation_for(CreateUniqueConstraintConcurrentlyOp)
def _create_unique_constraint_concurrently(
    operations: Operations, op: CreateUniqueConstraintConcurrentlyOp
) -> None:
    if _online(operations) and _constraint_exists(operations, op):
        return  # done by an earlier run
    operations.invoke(
        CreateIndexConcurrentlyOp(
            op.constraint_name, op.table_name, op.columns, schema=op.schema, unique=True
        )
    )
    table = _table(operations, op.table_name, op.schema)
    # The index's name as built, also when SQLAlchemy shortened it: it becomes the constraint's.
    name = _quote(operations, _index_name(operations, op.constraint_name))
    with _step_by_step(operations):
        _briefly(
            operations,
            lambda: operations.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
            ),
        )


def _constraint_exists(operations: Operations, op: CreateUniqueConstraintConcurrentlyOp) -> bool:
    name = _index_name(operations, op.constraint_name)
    return _constraint_state(operations, name, op.table_name, op.schema) is not None


# --- NOT NULL ---------------------------------------------------------------------------------


@Operations.register_operation("set_not_null")
class SetNotNullOp(MigrateOperation):
    """SET NOT NULL without scanning the table under an exclusive lock.

    1. `ADD CONSTRAINT ck CHECK (col IS NOT NULL) NOT VALID`: a moment's ACCESS EXCLUSIVE lock,
       no scan; new rows are checked from here on.
    2. `VALIDATE CONSTRAINT ck`: scans the table under SHARE UPDATE EXCLUSIVE, which lets
       inserts, updates and deletes through.
    3. `SET NOT NULL`: PostgreSQL 12+ sees the valid CHECK and skips its own scan.
    4. `DROP CONSTRAINT ck`: the CHECK has done its job.

    If existing rows still hold NULLs, step 2 fails: the CHECK is dropped again (so the
    application can keep writing NULLs until it is updated) and the error says to backfill first.
    """

    def __init__(self, table_name: str, column_name: str, *, schema: str | None = None) -> None:
        self.table_name = table_name
        self.column_name = column_name
        self.schema = schema

    @classmethod
    def set_not_null(
        cls,
        operations: Operations,
        table_name: str,
        column_name: str,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Make a column NOT NULL through a validated CHECK (no long exclusive lock)."""
        operations.invoke(cls(table_name, column_name, schema=schema))

    def reverse(self) -> "DropNotNullOp":
        return DropNotNullOp(self.table_name, self.column_name, schema=self.schema)


@Operations.register_operation("drop_not_null")
class DropNotNullOp(MigrateOperation):
    """DROP NOT NULL: a catalog change only, a moment's lock; the reverse of `set_not_null`."""

    def __init__(self, table_name: str, column_name: str, *, schema: str | None = None) -> None:
        self.table_name = table_name
        self.column_name = column_name
        self.schema = schema

    @classmethod
    def drop_not_null(
        cls,
        operations: Operations,
        table_name: str,
        column_name: str,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Allow NULLs in a column again."""
        operations.invoke(cls(table_name, column_name, schema=schema))

    def reverse(self) -> SetNotNullOp:
        return SetNotNullOp(self.table_name, self.column_name, schema=self.schema)


def _column_not_null(operations: Operations, op: SetNotNullOp) -> bool:
    return bool(
        _scalar(
            operations,
            "SELECT a.attnotnull FROM pg_attribute a "
            f"WHERE a.attrelid = to_regclass(:table) AND a.attname = {AS_STORED.format(':column')}",
            table=_table(operations, op.table_name, op.schema),
            column=op.column_name,
        )
    )


def _constraint_state(
    operations: Operations, name: str, table_name: str, schema: str | None
) -> bool | None:
    """None when the constraint does not exist, else whether it is validated."""
    validated = _scalar(
        operations,
        "SELECT convalidated FROM pg_constraint "
        f"WHERE conname = {AS_STORED.format(':name')} AND conrelid = to_regclass(:table)",
        name=name,
        table=_table(operations, table_name, schema),
    )
    return None if validated is None else bool(validated)


def _validate(
    operations: Operations, name: str, table_name: str, schema: str | None, problem: str
) -> None:
    """VALIDATE a NOT VALID constraint; if rows violate it, drop it again and say what to do."""
    table = _table(operations, table_name, schema)
    try:
        operations.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {_quote(operations, name)}")
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate not in (CHECK_VIOLATION, FOREIGN_KEY_VIOLATION):
            raise
        operations.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {_quote(operations, name)}"
        )
        raise CommandError(
            f"{problem}. The NOT VALID constraint was removed again; fix the rows, then run the "
            "migration again."
        ) from exc


@Operations.implementation_for(SetNotNullOp)
def _set_not_null(operations: Operations, op: SetNotNullOp) -> None:
    check = not_null_check_name(op.table_name, op.column_name)
    table = _table(operations, op.table_name, op.schema)
    column = _quote(operations, op.column_name)
    with _step_by_step(operations):
        online = _online(operations)
        if online and _column_not_null(operations, op):
            return  # done by an earlier run
        if not online or _constraint_state(operations, check, op.table_name, op.schema) is None:
            _briefly(
                operations,
                lambda: operations.create_check_constraint(
                    operations.f(check),
                    op.table_name,
                    text(f"{column} IS NOT NULL"),
                    schema=op.schema,
                    postgresql_not_valid=True,
                ),
            )
        if online:
            _validate(
                operations,
                check,
                op.table_name,
                op.schema,
                f"{op.table_name}.{op.column_name} still has NULLs: backfill them first, in an "
                f"earlier revision: {backfill_hint(op.table_name, op.column_name)}",
            )
        else:
            operations.execute(
                f"ALTER TABLE {table} VALIDATE CONSTRAINT {_quote(operations, check)}"
            )
        # The valid CHECK proves there is no NULL: PostgreSQL skips its scan here.
        _briefly(
            operations,
            lambda: operations.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL"),
        )
        drop = f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {_quote(operations, check)}"
        # The CHECK only ever lived inside this operation: dropping it removes no guarantee, which
        # the printed SQL tells squawk (its ignore comment must sit right above the statement).
        _briefly(
            operations,
            lambda: operations.execute(
                drop if online else f"-- squawk-ignore ban-drop-constraint\n{drop}"
            ),
        )


@Operations.implementation_for(DropNotNullOp)
def _drop_not_null(operations: Operations, op: DropNotNullOp) -> None:
    with _step_by_step(operations):
        _briefly(
            operations,
            lambda: operations.alter_column(
                op.table_name, op.column_name, nullable=True, schema=op.schema
            ),
        )


# --- foreign keys -----------------------------------------------------------------------------


@Operations.register_operation("create_foreign_key_validated")
class CreateForeignKeyValidatedOp(MigrateOperation):
    """A foreign key added NOT VALID (a moment's lock, no scan), then validated.

    VALIDATE scans the table under SHARE UPDATE EXCLUSIVE (and ROW SHARE on the referenced
    table), so writes go on. With `validate=False` the constraint checks new rows only; validate
    it after the deploy with `op.validate_constraint(name, table)` in a later revision.
    """

    def __init__(
        self,
        constraint_name: str,
        source_table: str,
        referent_table: str,
        local_cols: Sequence[str],
        remote_cols: Sequence[str],
        *,
        validate: bool = True,
        source_schema: str | None = None,
        referent_schema: str | None = None,
        **kw: Any,
    ) -> None:
        self.constraint_name = constraint_name
        self.source_table = source_table
        self.referent_table = referent_table
        self.local_cols = list(local_cols)
        self.remote_cols = list(remote_cols)
        self.validate = validate
        self.source_schema = source_schema
        self.referent_schema = referent_schema
        self.kw = kw

    @classmethod
    def create_foreign_key_validated(
        cls,
        operations: Operations,
        constraint_name: str,
        source_table: str,
        referent_table: str,
        local_cols: Sequence[str],
        remote_cols: Sequence[str],
        *,
        validate: bool = True,
        source_schema: str | None = None,
        referent_schema: str | None = None,
        **kw: Any,
    ) -> None:  # pragma: no mutate block
        """Add a foreign key NOT VALID, then VALIDATE it (same arguments as
        `op.create_foreign_key`, plus `validate`)."""
        operations.invoke(
            cls(
                constraint_name,
                source_table,
                referent_table,
                local_cols,
                remote_cols,
                validate=validate,
                source_schema=source_schema,
                referent_schema=referent_schema,
                **kw,
            )
        )

    def reverse(self) -> MigrateOperation:
        return alembic_ops.DropConstraintOp(
            self.constraint_name,
            self.source_table,
            type_="foreignkey",
            schema=self.source_schema,
        )


@Operations.register_operation("validate_constraint")
class ValidateConstraintOp(MigrateOperation):
    """VALIDATE CONSTRAINT for a CHECK or foreign key added NOT VALID; writes go on meanwhile."""

    def __init__(self, constraint_name: str, table_name: str, *, schema: str | None = None):
        self.constraint_name = constraint_name
        self.table_name = table_name
        self.schema = schema

    @classmethod
    def validate_constraint(
        cls,
        operations: Operations,
        constraint_name: str,
        table_name: str,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Check the existing rows against a NOT VALID constraint."""
        operations.invoke(cls(constraint_name, table_name, schema=schema))


@Operations.implementation_for(CreateForeignKeyValidatedOp)
def _create_foreign_key_validated(operations: Operations, op: CreateForeignKeyValidatedOp) -> None:
    with _step_by_step(operations):
        online = _online(operations)
        state = (
            _constraint_state(operations, op.constraint_name, op.source_table, op.source_schema)
            if online
            else None
        )
        if state is None:
            _briefly(
                operations,
                lambda: operations.create_foreign_key(
                    operations.f(op.constraint_name),
                    op.source_table,
                    op.referent_table,
                    op.local_cols,
                    op.remote_cols,
                    source_schema=op.source_schema,
                    referent_schema=op.referent_schema,
                    postgresql_not_valid=True,
                    **op.kw,
                ),
            )
        if not op.validate or state:
            return
        if online:
            _validate(
                operations,
                op.constraint_name,
                op.source_table,
                op.source_schema,
                f"rows of {op.source_table} ({', '.join(op.local_cols)}) reference "
                f"{op.referent_table} rows that do not exist: fix or delete them first",
            )
        else:
            table = _table(operations, op.source_table, op.source_schema)
            name = _quote(operations, op.constraint_name)
            operations.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


@Operations.implementation_for(ValidateConstraintOp)
def _validate_constraint(operations: Operations, op: ValidateConstraintOp) -> None:
    with _step_by_step(operations):
        table = _table(operations, op.table_name, op.schema)
        name = _quote(operations, op.constraint_name)
        operations.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


# --- batched backfill -------------------------------------------------------------------------


class BackfillProgress:
    """One line on stderr about once a second: rows done of total, rate, time left."""

    def __init__(self, label: str, total: int, interval: float = 1.0) -> None:
        self.label = label
        self.total = total
        self.interval = interval
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, rows: int, *, final: bool = False) -> None:
        self.done += rows
        now = time.monotonic()
        if not final and now - self.shown < self.interval:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        end = "done" if final else f"ETA {eta}"
        print(
            f"backfill {self.label}: {self.done}/{self.total} rows{share}, "
            f"{rate:.0f} rows/s, {end}",
            file=sys.stderr,
            flush=True,
        )


def backfill(
    connection: Connection,
    table_name: str,
    values: Mapping[str, str],
    *,
    where: str,
    key: str = "id",
    batch_size: int = BATCH_SIZE,
    pause: float = BATCH_PAUSE,
    schema: str | None = None,
    commit: bool = True,
    on_commit: Callable[[int], None] | None = None,
) -> int:
    """Set `values` (column -> SQL expression) on the rows matching `where`, in batches.

    Each batch takes the next `batch_size` rows by `key` (keyset pagination on the primary key,
    so no batch rescans the ones before it) and updates them in one short transaction: rows are
    locked for milliseconds, never for the whole run. `where` must select the rows that still need
    the change (e.g. "email IS NULL"): that makes a rerun skip finished rows, so an interrupted
    backfill picks up where it stopped. From code, pass a `Connection` (sync; from async code:
    `await conn.run_sync(backfill, "item", {...}, where=...)`); it commits after each batch.
    Returns the number of rows updated. `on_commit` hears the rows done after each batch.
    """
    preparer = connection.dialect.identifier_preparer
    table = preparer.quote(table_name)
    if schema:
        table = f"{preparer.quote_schema(schema)}.{table}"
    key_column = preparer.quote(key)
    assignments = ", ".join(f"{preparer.quote(col)} = {expr}" for col, expr in values.items())
    # One scan to size the job and to start after the rows an earlier, interrupted run finished.
    # Not min() and max(): PostgreSQL has none for uuid, a common key.
    total, start = connection.execute(
        text(
            f"SELECT count(*), (SELECT {key_column} FROM {table} WHERE {where} "
            f"ORDER BY {key_column} LIMIT 1) FROM {table} WHERE {where}"
        )
    ).one()
    if commit:
        connection.commit()
    progress = BackfillProgress(f"{table_name}.{', '.join(values)}", int(total))
    if not total:
        progress.update(0, final=True)
        return 0

    def batch(lower: str) -> str:
        # `where` again in the UPDATE: a row the application changed after the batch chose it is
        # re-checked against the UPDATE's own conditions only (READ COMMITTED), and must be
        # passed by if it no longer matches. The batch's last key, not the last row updated,
        # says where the next batch starts: a batch whose every row was passed by is not the end.
        return (
            f"WITH batch AS (SELECT {key_column} AS backfill_key FROM {table} "
            f"WHERE {key_column} {lower} :last AND ({where}) "
            f"ORDER BY {key_column} LIMIT :size), "
            f"done AS (UPDATE {table} SET {assignments} FROM batch "
            f"WHERE {table}.{key_column} = batch.backfill_key AND ({where}) "
            f"RETURNING {table}.{key_column}) "
            f"SELECT (SELECT count(*) FROM done), "
            f"(SELECT backfill_key FROM batch ORDER BY backfill_key DESC LIMIT 1)"
        )

    statement, last = text(batch(">=")), start
    while True:
        rows, highest = connection.execute(statement, {"last": last, "size": batch_size}).one()
        if commit:
            connection.commit()
        if highest is None:
            break
        progress.update(int(rows))
        if on_commit is not None:
            on_commit(progress.done)
        statement, last = text(batch(">")), highest
        # Room for the application's own writes (and for replication to catch up).
        time.sleep(pause)
    progress.update(0, final=True)
    return progress.done


@Operations.register_operation("backfill")
class BackfillOp(MigrateOperation):
    """A batched, resumable UPDATE for a revision (`make migration-empty`): see `backfill`."""

    def __init__(
        self,
        table_name: str,
        values: Mapping[str, str],
        *,
        where: str,
        key: str = "id",
        batch_size: int = BATCH_SIZE,
        pause: float = BATCH_PAUSE,
        schema: str | None = None,
        vacuum: bool = True,
    ) -> None:
        self.vacuum = vacuum
        self.table_name = table_name
        self.values = dict(values)
        self.where = where
        self.key = key
        self.batch_size = batch_size
        self.pause = pause
        self.schema = schema

    @classmethod
    def backfill(
        cls,
        operations: Operations,
        table_name: str,
        values: Mapping[str, str],
        *,
        where: str,
        key: str = "id",
        batch_size: int = BATCH_SIZE,
        pause: float = BATCH_PAUSE,
        schema: str | None = None,
        vacuum: bool = True,
    ) -> None:  # pragma: no mutate block
        """Update `table_name` in short batches: `values` maps columns to SQL expressions.

        With `vacuum` (the default), `VACUUM (ANALYZE)` follows: it clears the dead row versions
        the backfill left (and cancels an autovacuum busy with them), so the next revision's
        brief locks (NOT NULL, a foreign key) do not find autovacuum in their way for minutes.
        It takes SHARE UPDATE EXCLUSIVE: writes go on.
        """
        operations.invoke(
            cls(
                table_name,
                values,
                where=where,
                key=key,
                batch_size=batch_size,
                pause=pause,
                schema=schema,
                vacuum=vacuum,
            )
        )


@Operations.implementation_for(BackfillOp)
def _backfill(operations: Operations, op: BackfillOp) -> None:
    table = _table(operations, op.table_name, op.schema)
    with _step_by_step(operations):
        if _online(operations):
            # Autocommit: each batch statement is its own transaction. Under the runner, its
            # record says how far the batches got, should the run stop part way.
            bind = operations.get_bind()
            run = bind.info.get(PROGRESS)
            if run is not None:
                # Entering the block committed what the revision ran before it: a failure from
                # here on must not say that nothing was applied. (The batches bypass the
                # runner's statement hook, which notes this for the other operations.)
                run.committed = len(run.statements)
            assignments = ", ".join(f"{col} = {expr}" for col, expr in op.values.items())
            what = f"backfill UPDATE {op.table_name} SET {assignments} WHERE {op.where}"
            backfill(
                bind,
                op.table_name,
                op.values,
                where=op.where,
                key=op.key,
                batch_size=op.batch_size,
                pause=op.pause,
                schema=op.schema,
                commit=False,
                on_commit=None if run is None else run.committed_batches(what),
            )
        else:
            # A printed script cannot loop: one UPDATE, to be batched by whoever runs it.
            assignments = ", ".join(
                f"{_quote(operations, col)} = {expr}" for col, expr in op.values.items()
            )
            operations.execute(f"UPDATE {table} SET {assignments} WHERE {op.where}")
        if op.vacuum:
            operations.execute(f"VACUUM (ANALYZE) {table}")
