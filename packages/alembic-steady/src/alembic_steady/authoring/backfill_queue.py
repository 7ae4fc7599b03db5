"""Backfills outside the deploy (PostgreSQL): a pre revision queues one, a job runs it while the
new release serves, and the post revision that needs it finished says so.

    op.queue_backfill("item", {"sku": "'SKU-' || id"}, where="sku IS NULL")   # a pre revision
    op.require_backfill("item.sku")                                           # its post revision

The queue is a table of the project's database, `alembic_version_backfills` (the runner's, like
the version table: no model's, left out of autogenerate, the walk's rows and its snapshots): a
row per job, written in the queuing revision's transaction, so a job exists exactly when its
revision is applied. `python -m <package>.migrations backfill run` (`make backfill`,
deploy/backfill-cronjob.yaml) runs the queued jobs in keyset batches on the primary key; each batch
updates its rows and moves the job's `last_key` in one statement, so a runner killed at any
moment leaves the job at its last committed batch, the next run starts after it, and no row is
updated twice. A batch that waits for a lock longer than LOCK_WAIT gives way and is tried again
after a growing pause.

`op.require_backfill` in a post revision refuses while the job is unfinished, when the run applies
the post phase alone (`make migrate phase=post`); a plain upgrade (both phases in one run: a
developer's `make migrate`, the tests' walk, `make rehearse`) runs the job itself in its place,
as a deploy would between its two phases.
"""

import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from alembic.operations import MigrateOperation, Operations
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.elements import TextClause

from ..project import Commands
from ..runner.backfill_jobs import (
    DONE,
    PAUSED,
    QUEUED,
    RUNNING,
    TABLE,
    Job,
    jobs,
    jobs_table,
    set_state,
)
from ..runner.phases import POST
from ..runner.progress import COMMANDS, PROGRESS
from . import ops
from .ops import BATCH_PAUSE, BATCH_SIZE, LOCK_NOT_AVAILABLE, BackfillProgress

# A batch waits at most this long for a row or table lock the application holds, then gives way
# (its transaction rolled back) and is tried again after a pause that doubles up to MAX_BACKOFF.
LOCK_WAIT = "200ms"
MAX_BACKOFF = 5.0


# -- a job's batches ---------------------------------------------------------------------------
def _batch_sql(connection: Connection, job: Job, key_type: str, *, after_last: bool) -> str:
    """One batch as one statement: lock the job's row (a second runner waits, then reads where
    this one stopped), take the next rows after `last_key` up to `:upto` (the highest key when
    the run started) that `where` still selects, update them, and move the job past them. A
    paused or finished job's row is not taken: no row.

    Once the job has a position (`after_last`), it is compared as a value computed once per
    statement, so the key's index starts the batch where the last one ended. Joined with the
    job's row (which the first batch needs, as the position may be NULL or set meanwhile by a
    second runner) it is a filter, and a batch reads the table from its first row: every batch
    so took longer than the one before (8,600 rows/s falling to 2,900 over 4M rows)."""
    table = _table_of(connection, job)
    key = connection.dialect.identifier_preparer.quote(job.key_column)
    if after_last:
        rows = f"{table} AS t WHERE t.{key} > (SELECT CAST(last_key AS {key_type}) FROM job)"
    else:
        rows = (
            f"{table} AS t, job WHERE (job.last_key IS NULL OR "
            f"t.{key} > CAST(job.last_key AS {key_type}))"
        )
    return (
        f"WITH job AS (SELECT last_key FROM {TABLE} WHERE name = :name "
        f"AND state IN ('{QUEUED}', '{RUNNING}') FOR UPDATE), "
        f"batch AS (SELECT t.{key} AS k FROM {rows} "
        f"AND t.{key} <= CAST(CAST(:upto AS text) AS {key_type}) AND ({job.where_sql}) "
        f"ORDER BY t.{key} LIMIT :size), "
        f"done AS (UPDATE {table} SET {job.assignments} FROM batch "
        f"WHERE {table}.{key} = batch.k AND ({job.where_sql}) RETURNING 1), "
        f"moved AS (UPDATE {TABLE} SET "
        # Ordered by batch.k, the key: a bare k would name the text the select makes of it.
        f"last_key = coalesce((SELECT CAST(k AS text) FROM batch ORDER BY batch.k DESC LIMIT 1), "
        f"last_key), "
        f"rows_done = rows_done + (SELECT count(*) FROM done), updated_at = now(), "
        f"state = CASE WHEN EXISTS (SELECT FROM batch) THEN '{RUNNING}' ELSE '{DONE}' END, "
        f"finished_at = CASE WHEN EXISTS (SELECT FROM batch) THEN NULL ELSE now() END "
        f"WHERE name = :name AND EXISTS (SELECT FROM job) RETURNING state) "
        f"SELECT (SELECT state FROM moved), (SELECT count(*) FROM done)"
    )


def _key_type(connection: Connection, job: Job) -> str:
    found: str = connection.execute(
        text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attname = :key"
        ),
        {"table": _table_of(connection, job), "key": job.key_column},
    ).scalar_one()
    return found


def _highest_key(connection: Connection, job: Job) -> str | None:
    """The run's end: rows inserted after it starts are left for the next run (or the post
    revision), so a run ends while the application goes on inserting."""
    key = connection.dialect.identifier_preparer.quote(job.key_column)
    # Not max(): PostgreSQL has none for uuid, a common key; the key's index answers either.
    # Ordered by t's key, not by the text the select makes of it (which a bare name would be).
    found: str | None = connection.execute(
        text(
            f"SELECT (SELECT CAST(t.{key} AS text) FROM {_table_of(connection, job)} AS t "
            f"WHERE t.{key} IS NOT NULL ORDER BY t.{key} DESC LIMIT 1)"
        )
    ).scalar_one()
    return found


class Stop:
    """Set by SIGTERM/SIGINT while a runner works: it ends after the batch it is in."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextmanager
    def installed(self) -> Iterator["Stop"]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.signal = signum

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def run_job(
    connection: Connection,
    job: Job,
    stop: Stop | None = None,
    *,
    commit: bool = True,
    on_commit: Callable[[int], None] | None = None,
) -> str:
    """Run `job`'s batches until it is done, paused, or `stop` is set; its state then. Each
    batch commits on its own: with `commit`, this commits them; without, `connection` is in
    autocommit (a revision's autocommit block). `on_commit` hears the rows this run updated
    after each batch."""
    key_type = _key_type(connection, job)
    statements = {
        after: text(_batch_sql(connection, job, key_type, after_last=after))
        for after in (False, True)
    }
    upto = _highest_key(connection, job)
    total = _rows_left(connection, job) + job.rows_done
    kept = connection.exec_driver_sql("SHOW lock_timeout").scalar_one()
    connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_WAIT}'")
    if commit:
        connection.commit()
    progress = BackfillProgress(job.name, total)
    progress.done = job.rows_done
    try:
        return _batches(connection, job, statements, upto, progress, stop, commit, on_commit)
    finally:
        if commit:
            connection.rollback()
        connection.exec_driver_sql(f"SET lock_timeout = '{kept}'")
        if commit:
            connection.commit()


def _batches(
    connection: Connection,
    job: Job,
    statements: dict[bool, TextClause],
    upto: str | None,
    progress: BackfillProgress,
    stop: Stop | None,
    commit: bool,
    on_commit: Callable[[int], None] | None,
) -> str:
    backoff = job.pause
    # From the first row until a batch has set the job's position (here or in an earlier run).
    after_last = job.last_key is not None
    while True:
        try:
            state, rows = connection.execute(
                statements[after_last], {"name": job.name, "size": job.batch_size, "upto": upto}
            ).one()
            if commit:
                connection.commit()
        except DBAPIError as exc:
            if commit:
                connection.rollback()
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
            backoff = min(max(backoff, 0.05) * 2, MAX_BACKOFF)
            print(
                f"backfill {job.name}: a batch waited {LOCK_WAIT} for a lock the application "
                f"holds; giving way for {backoff:.2f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(backoff)
            continue
        backoff = job.pause
        after_last = True
        if state is None:  # paused meanwhile, or finished by another runner
            (found,) = jobs(connection, job.name) or [job]
            progress.update(0, final=True)
            return found.state
        progress.update(int(rows), final=state == DONE)
        if on_commit is not None:
            on_commit(progress.done - job.rows_done)
        if state == DONE:
            return DONE
        if stop is not None and stop.signal is not None:
            return RUNNING
        time.sleep(job.pause)


def _table_of(connection: Connection, job: Job) -> str:
    """The job's table as SQL names it: quoted, with its schema where the job names one."""
    preparer = connection.dialect.identifier_preparer
    table = preparer.quote(job.table_name)
    if job.schema_name:
        table = f"{preparer.quote_schema(job.schema_name)}.{table}"
    return table


def _rows_left(connection: Connection, job: Job) -> int:
    table = _table_of(connection, job)
    count: int = connection.execute(
        text(f"SELECT count(*) FROM {table} WHERE {job.where_sql}")
    ).scalar_one()
    return count


def _rows_after(connection: Connection, job: Job) -> bool:
    """Whether `where` still selects a row past the job's position."""
    key = connection.dialect.identifier_preparer.quote(job.key_column)
    after = (
        f"t.{key} > CAST(CAST(:last AS text) AS {_key_type(connection, job)}) AND "
        if job.last_key is not None
        else ""
    )
    found: bool = connection.execute(
        text(
            f"SELECT EXISTS (SELECT FROM {_table_of(connection, job)} AS t "
            f"WHERE {after}({job.where_sql}))"
        ),
        {"last": job.last_key},
    ).scalar_one()
    return found


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


# -- the operations ----------------------------------------------------------------------------
def _dialect_is_postgresql(operations: Operations) -> None:
    if operations.get_context().dialect.name != "postgresql":
        raise CommandError(
            "op.queue_backfill and op.require_backfill are PostgreSQL's: on MySQL backfill in "
            "a revision of its own with batched UPDATEs (docs/deploy-phases.md)"
        )


def _progress(operations: Operations) -> Any:
    return operations.get_bind().info.get(PROGRESS) if ops._online(operations) else None


@Operations.register_operation("queue_backfill")
class QueueBackfillOp(MigrateOperation):
    """Queue a batched UPDATE for the backfill runner: see the module's docstring."""

    def __init__(
        self,
        table_name: str,
        values: Mapping[str, str],
        *,
        where: str,
        name: str | None = None,
        key: str = "id",
        batch_size: int = BATCH_SIZE,
        pause: float = BATCH_PAUSE,
        schema: str | None = None,
    ) -> None:
        self.table_name = table_name
        self.values = dict(values)
        self.where = where
        self.name = name or f"{table_name}.{','.join(values)}"
        self.key = key
        self.batch_size = batch_size
        self.pause = pause
        self.schema = schema

    @classmethod
    def queue_backfill(
        cls,
        operations: Operations,
        table_name: str,
        values: Mapping[str, str],
        *,
        where: str,
        name: str | None = None,
        key: str = "id",
        batch_size: int = BATCH_SIZE,
        pause: float = BATCH_PAUSE,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Queue `values` (column -> SQL expression) for the rows `where` selects, to be set in
        batches by `backfill run` after this revision commits. `name` (default
        "<table>.<columns>") is what `op.require_backfill` and `backfill pause` take."""
        operations.invoke(
            cls(
                table_name,
                values,
                where=where,
                name=name,
                key=key,
                batch_size=batch_size,
                pause=pause,
                schema=schema,
            )
        )

    def reverse(self) -> "CancelBackfillOp":
        return CancelBackfillOp(self.name)


class _Named(MigrateOperation):
    """An operation on one queued backfill, by its name."""

    def __init__(self, name: str) -> None:
        self.name = name


@Operations.register_operation("cancel_backfill")
class CancelBackfillOp(_Named):
    """Forget a queued backfill (the downgrade of the revision that queued it)."""

    @classmethod
    def cancel_backfill(cls, operations: Operations, name: str) -> None:  # pragma: no mutate block
        operations.invoke(cls(name))


@Operations.register_operation("require_backfill")
class RequireBackfillOp(_Named):
    """A post revision's guard: the backfill `name` is finished (see the module's docstring)."""

    @classmethod
    def require_backfill(cls, operations: Operations, name: str) -> None:  # pragma: no mutate block
        operations.invoke(cls(name))


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@Operations.implementation_for(QueueBackfillOp)
def _queue_backfill(operations: Operations, op: QueueBackfillOp) -> None:
    _dialect_is_postgresql(operations)
    dialect = operations.get_context().dialect
    preparer = dialect.identifier_preparer
    assignments = ", ".join(f"{preparer.quote(col)} = {expr}" for col, expr in op.values.items())
    progress = _progress(operations)
    queued_by = (progress.revision if progress is not None else None) or "a revision"
    create = CreateTable(jobs_table(), if_not_exists=True).compile(dialect=dialect)
    operations.execute(str(create).strip())
    row = {
        "name": op.name,
        "queued_by": queued_by,
        "table_name": op.table_name,
        "schema_name": op.schema,
        "assignments": assignments,
        "where_sql": op.where,
        "key_column": op.key,
        "batch_size": op.batch_size,
        "pause": op.pause,
        "state": QUEUED,
    }
    columns = ", ".join(row)
    values = ", ".join(_literal(value) for value in row.values())
    operations.execute(
        f"INSERT INTO {TABLE} ({columns}) VALUES ({values}) ON CONFLICT (name) DO NOTHING"
    )


@Operations.implementation_for(CancelBackfillOp)
def _cancel_backfill(operations: Operations, op: CancelBackfillOp) -> None:
    _dialect_is_postgresql(operations)
    operations.execute(
        f"DO $$ BEGIN IF to_regclass('{TABLE}') IS NOT NULL THEN "
        f"DELETE FROM {TABLE} WHERE name = {_literal(op.name)}; END IF; END $$"
    )


def unfinished(name: str, job: Job | None, commands: Commands) -> CommandError:
    if job is None:
        state, fix = "never queued", "queue it in a pre revision (op.queue_backfill)"
    elif job.state == PAUSED:
        state, fix = (
            f"paused, {job.rows_done:,} rows done",
            f"resume it, then `{commands.backfill}`",
        )
    else:
        state, fix = f"{job.state}, {job.rows_done:,} rows done", f"run `{commands.backfill}`"
    return CommandError(
        f"the backfill {name} is not finished ({state}): {fix}, then "
        f"`{commands.migrate_in(POST)}` again; this revision changed nothing"
    )


@Operations.implementation_for(RequireBackfillOp)
def _require_backfill(operations: Operations, op: RequireBackfillOp) -> None:
    _dialect_is_postgresql(operations)
    if not ops._online(operations):
        # The printed script refuses at this point, as `make migrate phase=post` would.
        message = f"the backfill {op.name} is not finished: run `make backfill` first"
        operations.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM {TABLE} WHERE name = {_literal(op.name)} "
            f"AND state = '{DONE}') THEN RAISE EXCEPTION {_literal(message)}; END IF; END $$"
        )
        return
    bind = operations.get_bind()
    found = jobs(bind, op.name)
    job = found[0] if found else None
    progress = bind.info.get(PROGRESS)
    post = getattr(progress, "phase", None) == POST
    if job is None or job.state == PAUSED or (job.state != DONE and post):
        raise unfinished(op.name, job, bind.info.get(COMMANDS) or Commands())
    if job.state == DONE:
        if not _rows_after(bind, job):
            return
        # Rows inserted after the job finished, which it leaves as they were: the old release
        # went on writing them until the rollout ended (a run stops at the highest key it
        # found). It is gone now: the job goes on from its position for them, here.
        print(f"backfill {job.name}: rows were written since it finished; updating them now")
        job = set_state(bind, job.name, RUNNING, (DONE,)) or job
    # A plain upgrade runs both phases at once: the job runs here, between them, as a deploy
    # runs it between its pre and post phases.
    what = f"backfill {job.name} (UPDATE {job.table_name} SET {job.assignments})"
    on_commit = None if progress is None else progress.committed_batches(what)
    with ops._step_by_step(operations):
        run_job(bind, job, commit=False, on_commit=on_commit)
