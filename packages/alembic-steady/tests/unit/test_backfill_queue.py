"""Queued backfills without a server (authoring/backfill_queue.py): what `make sql` prints for
each operation, the batch statement, the runner's loop on a recording connection (its commits,
its giving way to a lock, its stop), and the messages. On a live table:
tests/postgresql/test_pg_backfills.py."""

import io
from typing import Any

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql
from support import FakeConnection, FakeResult, pg_error

from alembic_steady.authoring import backfill_queue as queue
from alembic_steady.project import Commands
from alembic_steady.runner.backfill_jobs import Job

OFFLINE = "make sql"


def test_the_printed_script_queues_the_job_in_the_revisions_transaction(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.queue_backfill("item", {"sku": "'I-' || id", "Note": "''"}, where="sku IS NULL")
    printed = output.getvalue()
    assert "CREATE TABLE IF NOT EXISTS alembic_version_backfills (" in printed
    assert "name VARCHAR(200) NOT NULL" in printed and "PRIMARY KEY (name)" in printed
    insert = next(line for line in printed.splitlines() if line.startswith("INSERT"))
    assert insert == (
        "INSERT INTO alembic_version_backfills (name, queued_by, table_name, schema_name, "
        "assignments, where_sql, key_column, batch_size, pause, state) VALUES ('item.sku,Note', "
        "'a revision', 'item', NULL, 'sku = ''I-'' || id, \"Note\" = ''''', 'sku IS NULL', 'id', "
        "2000, 0.02, 'queued') ON CONFLICT (name) DO NOTHING;"
    )


def test_a_named_job_keeps_its_name_and_its_settings(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.queue_backfill(
        "item",
        {"sku": "'x'"},
        where="true",
        name="sku",
        key="code",
        batch_size=10,
        pause=1.5,
        schema="shop",
    )
    insert = next(line for line in output.getvalue().splitlines() if line.startswith("INSERT"))
    assert "VALUES ('sku', 'a revision', 'item', 'shop', 'sku = ''x''', 'true', 'code', 10, " in (
        insert
    )
    assert "1.5, 'queued')" in insert


def test_cancel_forgets_the_job_and_require_refuses_in_the_printed_script(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.cancel_backfill("it's")
    op.require_backfill("item.sku")
    printed = output.getvalue()
    assert (
        "DO $$ BEGIN IF to_regclass('alembic_version_backfills') IS NOT NULL THEN DELETE FROM "
        "alembic_version_backfills WHERE name = 'it''s'; END IF; END $$;" in printed
    )
    assert (
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM alembic_version_backfills WHERE name = "
        "'item.sku' AND state = 'done') THEN RAISE EXCEPTION 'the backfill item.sku is not "
        "finished: run `make backfill` first'; END IF; END $$;" in printed
    )


def test_the_operations_are_postgresqls() -> None:
    context = MigrationContext.configure(
        dialect_name="mysql", opts={"as_sql": True, "output_buffer": io.StringIO()}
    )
    op = Operations(context)
    for call in (
        lambda: op.queue_backfill("item", {"a": "1"}, where="true"),
        lambda: op.cancel_backfill("item.a"),
        lambda: op.require_backfill("item.a"),
    ):
        with pytest.raises(CommandError) as refused:
            call()
        assert str(refused.value) == (
            "op.queue_backfill and op.require_backfill are PostgreSQL's: on MySQL backfill in a "
            "revision of its own with batched UPDATEs (docs/deploy-phases.md)"
        )


def test_the_downgrade_of_a_queued_backfill_forgets_it() -> None:
    queued = queue.QueueBackfillOp("item", {"sku": "'x'"}, where="true")
    assert queued.name == "item.sku"
    reverse = queued.reverse()
    assert isinstance(reverse, queue.CancelBackfillOp) and reverse.name == "item.sku"


def test_literals_are_sql_ones() -> None:
    assert queue._literal(None) == "NULL"
    assert queue._literal(3) == "3" and queue._literal(0.5) == "0.5"
    assert queue._literal("it's") == "'it''s'"


def test_an_unfinished_backfill_says_what_to_run_next() -> None:
    module = Commands(
        backfill="python -m shop.migrations backfill run",
        migrate_phase="python -m shop.migrations upgrade --phase {phase}",
    )
    never = str(queue.unfinished("item.sku", None, module))
    assert never == (
        "the backfill item.sku is not finished (never queued): queue it in a pre revision "
        "(op.queue_backfill), then `python -m shop.migrations upgrade --phase post` again; this "
        "revision changed nothing"
    )
    paused = str(queue.unfinished("item.sku", job(state="paused", rows_done=1500), Commands()))
    assert "(paused, 1,500 rows done): resume it, then `make backfill`, then `make migrate " in (
        paused
    )
    queued = str(queue.unfinished("item.sku", job(), Commands()))
    assert "(queued, 0 rows done): run `make backfill`, then `make migrate phase=post`" in queued


# -- the runner's loop -------------------------------------------------------------------------
def job(**changed: Any) -> Job:
    values: dict[str, Any] = {
        "name": "item.sku",
        "state": "queued",
        "table_name": "item",
        "schema_name": None,
        "assignments": "sku = 'x'",
        "where_sql": "sku IS NULL",
        "key_column": "id",
        "batch_size": 500,
        "pause": 0.0,
        "last_key": None,
        "rows_done": 0,
        "queued_by": "a1 (add sku)",
    }
    return Job(**{**values, **changed})


class Recording(FakeConnection):
    """A FakeConnection of PostgreSQL's dialect, whose execute() raises `failures` in turn
    (None: answer as FakeConnection does)."""

    def __init__(self, results: list[list[tuple[Any, ...]]], failures: list[Any] = ()) -> None:
        super().__init__(results)
        self.dialect = postgresql.dialect()
        self.failures = list(failures)

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> FakeResult:
        if "WITH job AS" in str(statement) and self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                self.log.append("execute")
                raise failure
        return super().execute(statement, params)


# key type, the highest key, rows left, SHOW, SET
START = [[("bigint",)], [("1300",)], [(1200,)], [("1s",)], []]


def test_the_batch_statement_moves_the_job_with_its_rows() -> None:
    connection = Recording([[("uuid",)]])
    key_type = queue._key_type(connection, job(schema_name="shop"))  # type: ignore[arg-type]
    assert key_type == "uuid"
    assert connection.sql[0] == (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        "CAST(:table AS regclass) AND attname = :key",
        {"table": "shop.item", "key": "id"},
    )
    shop: Any = connection
    sql = queue._batch_sql(shop, job(schema_name="shop"), "uuid", after_last=False)
    assert sql.startswith(
        "WITH job AS (SELECT last_key FROM alembic_version_backfills WHERE name = :name AND "
        "state IN ('queued', 'running') FOR UPDATE), batch AS (SELECT t.id AS k FROM shop.item "
        "AS t, job WHERE (job.last_key IS NULL OR t.id > CAST(job.last_key AS uuid)) AND t.id "
        "<= CAST(CAST(:upto AS text) AS uuid) AND (sku IS NULL) ORDER BY t.id LIMIT :size), "
        "done AS (UPDATE shop.item SET sku = 'x' FROM batch WHERE shop.item.id = batch.k AND "
        "(sku IS NULL) RETURNING 1)"
    )
    after = queue._batch_sql(shop, job(schema_name="shop"), "uuid", after_last=True)
    assert (
        "batch AS (SELECT t.id AS k FROM shop.item AS t WHERE t.id > (SELECT CAST(last_key AS "
        "uuid) FROM job) AND t.id <= " in after
    )
    assert (
        "last_key = coalesce((SELECT CAST(k AS text) FROM batch ORDER BY batch.k DESC LIMIT 1), "
        "last_key)" in sql
    )
    assert "rows_done = rows_done + (SELECT count(*) FROM done)" in sql
    assert "state = CASE WHEN EXISTS (SELECT FROM batch) THEN 'running' ELSE 'done' END" in sql
    assert "WHERE name = :name AND EXISTS (SELECT FROM job) RETURNING state)" in sql


def test_each_batch_commits_until_the_job_is_done_and_the_lock_wait_is_restored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    batches = [[("running", 500)], [("running", 500)], [("done", 200)]]
    connection = Recording([*START, *batches, []])
    assert queue.run_job(connection, job(rows_done=100)) == "done"  # type: ignore[arg-type]
    statements = [sql for sql, _ in connection.sql]
    assert statements[3:5] == ["SHOW lock_timeout", "SET lock_timeout = '200ms'"]
    assert statements[-1] == "SET lock_timeout = '1s'"
    # The first batch from the job's row, the next ones after its position, up to the highest
    # key the table held when the run started.
    assert [params for sql, params in connection.sql if "WITH job" in sql] == [
        {"name": "item.sku", "size": 500, "upto": "1300"}
    ] * 3
    batches = [sql for sql in statements if "WITH job" in sql]
    assert "AS t, job WHERE (job.last_key IS NULL OR" in batches[0]
    assert all("t.id > (SELECT CAST(last_key AS bigint) FROM job)" in b for b in batches[1:])
    # A commit after the SET, after each batch, and after the lock wait is restored.
    assert connection.log[5:] == ["commit"] + ["execute", "commit"] * 3 + [
        "rollback",
        "execute",
        "commit",
    ]
    assert "backfill item.sku: 1300/1300 rows (100%)" in capsys.readouterr().err


def test_in_a_revisions_autocommit_block_it_commits_nothing_itself() -> None:
    connection = Recording([*START, [("running", 500)], [("done", 20)], []])
    heard: list[int] = []
    done = queue.run_job(
        connection,  # type: ignore[arg-type]
        job(rows_done=100),
        commit=False,
        on_commit=heard.append,
    )
    assert done == "done" and heard == [500, 520]  # the rows of this run, after each batch
    assert "commit" not in connection.log and "rollback" not in connection.log


def test_a_batch_waiting_on_a_lock_gives_way_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(queue.time, "sleep", slept.append)
    lock = pg_error("55P03", "canceling statement due to lock timeout")
    connection = Recording([*START, [("done", 1200)], []], failures=[lock, lock, None])
    assert queue.run_job(connection, job(pause=0.02)) == "done"  # type: ignore[arg-type]
    assert slept == [0.1, 0.2]
    err = capsys.readouterr().err
    assert (
        "backfill item.sku: a batch waited 200ms for a lock the application holds; giving "
        "way for 0.10s" in err
    )
    assert "giving way for 0.20s" in err
    other = Recording([*START, []], failures=[pg_error("42P01", "no such table")])
    with pytest.raises(Exception, match="no such table"):
        queue.run_job(other, job())  # type: ignore[arg-type]
    assert other.sql[-1][0] == "SET lock_timeout = '1s'"


def test_the_backoff_doubles_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(queue.time, "sleep", slept.append)
    lock = pg_error("55P03")
    connection = Recording([*START, [("done", 0)], []], failures=[lock] * 8 + [None])
    queue.run_job(connection, job(pause=1.0))  # type: ignore[arg-type]
    assert slept == [2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]


def test_a_stop_ends_the_run_after_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(queue.time, "sleep", slept.append)
    stop = queue.Stop()
    stop.signal = 15
    connection = Recording([*START, [("running", 500)], []])
    assert queue.run_job(connection, job(pause=0.3), stop) == "running"  # type: ignore[arg-type]
    assert slept == []
    going = Recording([*START, [("running", 500)], [("done", 1)], []])
    assert queue.run_job(going, job(pause=0.3), queue.Stop()) == "done"  # type: ignore[arg-type]
    assert slept == [0.3]


def test_the_stop_is_set_by_sigterm_and_sigint_while_installed() -> None:
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with queue.Stop().installed() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_queue_is_the_runners_table_not_a_models() -> None:
    from alembic_steady.authoring.autogen import not_the_runners_tables

    include = not_the_runners_tables()
    assert not include("alembic_version_backfills", "table", {})
    assert include("alembic_version_backfills", "column", {}) and include("item", "table", {})


def test_the_queue_holds_a_row_per_job_with_its_position() -> None:
    from sqlalchemy.schema import CreateTable

    from alembic_steady.runner.backfill_jobs import jobs_table

    ddl = str(CreateTable(jobs_table()).compile(dialect=postgresql.dialect()))
    assert [line.strip() for line in ddl.strip().splitlines()] == [
        "CREATE TABLE alembic_version_backfills (",
        "name VARCHAR(200) NOT NULL,",
        "queued_by VARCHAR(300) NOT NULL,",
        "table_name VARCHAR(200) NOT NULL,",
        "schema_name VARCHAR(200),",
        "assignments TEXT NOT NULL,",
        "where_sql TEXT NOT NULL,",
        "key_column VARCHAR(200) NOT NULL,",
        "batch_size INTEGER NOT NULL,",
        "pause FLOAT NOT NULL,",
        "state VARCHAR(16) NOT NULL,",
        "last_key TEXT,",
        "rows_done BIGINT DEFAULT '0' NOT NULL,",
        "queued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,",
        "updated_at TIMESTAMP WITH TIME ZONE,",
        "finished_at TIMESTAMP WITH TIME ZONE,",
        "PRIMARY KEY (name)",
        ")",
    ]


def test_the_rows_left_are_counted_where_the_job_says(capsys: pytest.CaptureFixture[str]) -> None:
    connection = Recording([*START, [("done", 1200)], []])
    queue.run_job(connection, job(schema_name="shop"))  # type: ignore[arg-type]
    assert connection.sql[1] == (
        "SELECT (SELECT CAST(t.id AS text) FROM shop.item AS t "
        "WHERE t.id IS NOT NULL ORDER BY t.id DESC LIMIT 1)",
        None,
    )
    assert connection.sql[2] == ("SELECT count(*) FROM shop.item WHERE sku IS NULL", None)
    assert "backfill item.sku: 1200/1200 rows (100%)" in capsys.readouterr().err


def test_after_a_batch_goes_through_the_next_lock_wait_starts_from_the_pause_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(queue.time, "sleep", slept.append)
    lock = pg_error("55P03")
    connection = Recording(
        [*START, [("running", 500)], [("done", 10)], []], failures=[lock, None, lock, None]
    )
    queue.run_job(connection, job(pause=0.5))  # type: ignore[arg-type]
    assert slept == [1.0, 0.5, 1.0]  # gave way, paused between batches, gave way from 0.5 again


def test_a_lock_wait_is_known_by_psycopg_s_pgcode_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue.time, "sleep", lambda seconds: None)

    class Psycopg2Error(Exception):
        pgcode = "55P03"

    from sqlalchemy.exc import OperationalError

    lock = OperationalError("UPDATE", {}, Psycopg2Error("lock timeout"))
    connection = Recording([*START, [("done", 0)], []], failures=[lock, None])
    assert queue.run_job(connection, job()) == "done"  # type: ignore[arg-type]


def test_a_job_paused_meanwhile_ends_the_run_in_its_state(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[Any, str]] = []

    def jobs(connection: Any, name: str) -> list[Job]:
        asked.append((connection, name))
        return [job(state="paused", rows_done=500)]

    monkeypatch.setattr(queue, "jobs", jobs)
    connection = Recording([*START, [("running", 500)], [(None, 0)], []])
    assert queue.run_job(connection, job()) == "paused"  # type: ignore[arg-type]
    assert asked == [(connection, "item.sku")]
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("backfill item.sku: 500/1200 rows (42%), ") and err[-1].endswith(
        " rows/s, done"
    )
    monkeypatch.setattr(queue, "jobs", lambda connection, name: [])
    gone = Recording([*START, [(None, 0)], []])
    assert queue.run_job(gone, job(state="running")) == "running"  # type: ignore[arg-type]


def test_an_error_the_driver_gives_no_code_is_raised_as_it_is() -> None:
    from sqlalchemy.exc import OperationalError

    failure = OperationalError("UPDATE", {}, Exception("server closed the connection"))
    connection = Recording([*START, []], failures=[failure])
    with pytest.raises(OperationalError, match="server closed the connection"):
        queue.run_job(connection, job())  # type: ignore[arg-type]


def test_rows_after_the_jobs_position_are_looked_for_from_there() -> None:
    connection = Recording([[("bigint",)], [(True,)]])
    found = queue._rows_after(connection, job(last_key="10", schema_name="shop"))  # type: ignore[arg-type]
    assert found is True
    assert connection.sql[1] == (
        "SELECT EXISTS (SELECT FROM shop.item AS t WHERE t.id > CAST(CAST(:last AS text) AS "
        "bigint) AND (sku IS NULL))",
        {"last": "10"},
    )
    never_moved = Recording([[(False,)]])
    assert queue._rows_after(never_moved, job()) is False  # type: ignore[arg-type]
    assert never_moved.sql == [
        ("SELECT EXISTS (SELECT FROM item AS t WHERE (sku IS NULL))", {"last": None})
    ]
