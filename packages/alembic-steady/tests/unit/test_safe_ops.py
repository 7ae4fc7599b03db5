"""authoring/ops.py without a server: the SQL each safe operation prints for `make sql`, what
autogenerate writes as its downgrade, and the batching of op.backfill (on a recording
connection). What they do on a live table is tests/postgresql/test_pg_operations.py's."""

import io
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import render_python_code
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from support import FakeConnection

from alembic_steady.authoring import autogen  # noqa: F401  (renders the safe operations)
from alembic_steady.authoring import ops as safe
from alembic_steady.dialects.measured import BOOKKEEPING
from alembic_steady.runner.retries import OWN_LOCK_TIMEOUT

# -- the SQL printed offline -----------------------------------------------------------------


def printed(output: io.StringIO) -> list[str]:
    """The statements, without the transaction lines around the autocommit blocks."""
    lines = [line.strip() for line in output.getvalue().splitlines()]
    return [line for line in lines if line and line not in ("BEGIN;", "COMMIT;")]


def test_indexes_are_built_and_dropped_concurrently_and_rerun_safe(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.create_index_concurrently("ix_item_name", "item", ["name"], schema="shop", unique=True)
    op.create_index_concurrently("ix_item_label", "Item", ["label"], postgresql_where="label > ''")
    op.drop_index_concurrently("ix_item_name", "item", schema="shop")
    assert printed(output) == [
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_item_name ON shop.item (name);",
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_item_label ON "Item" (label) '
        "WHERE label > '';",
        "DROP INDEX CONCURRENTLY IF EXISTS shop.ix_item_name;",
    ]


def test_a_unique_constraint_is_made_from_an_index_built_concurrently(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.create_unique_constraint_concurrently("uq_item_code", "item", ["code"], schema="shop")
    assert printed(output) == [
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_item_code ON shop.item (code);",
        "ALTER TABLE shop.item ADD CONSTRAINT uq_item_code UNIQUE USING INDEX uq_item_code;",
    ]


def test_not_null_goes_through_a_validated_check_and_back_in_one_statement(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.set_not_null("item", "sku", schema="shop")
    op.drop_not_null("Item", "sku")
    assert printed(output) == [
        "ALTER TABLE shop.item ADD CONSTRAINT ck_item_sku_not_null CHECK (sku IS NOT NULL) "
        "NOT VALID;",
        "ALTER TABLE shop.item VALIDATE CONSTRAINT ck_item_sku_not_null;",
        "ALTER TABLE shop.item ALTER COLUMN sku SET NOT NULL;",
        "-- squawk-ignore ban-drop-constraint",
        "ALTER TABLE shop.item DROP CONSTRAINT IF EXISTS ck_item_sku_not_null;",
        'ALTER TABLE "Item" ALTER COLUMN sku DROP NOT NULL;',
    ]


def test_a_foreign_key_is_added_not_valid_then_validated_unless_told_not_to(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.create_foreign_key_validated(
        "fk_item_owner",
        "item",
        "owner",
        ["owner_id"],
        ["id"],
        source_schema="shop",
        referent_schema="crm",
        ondelete="CASCADE",
    )
    op.create_foreign_key_validated("fk_item_x", "item", "x", ["x_id"], ["id"], validate=False)
    op.validate_constraint("fk_item_x", "item", schema="shop")
    assert printed(output) == [
        "ALTER TABLE shop.item ADD CONSTRAINT fk_item_owner FOREIGN KEY(owner_id) REFERENCES "
        "crm.owner (id) ON DELETE CASCADE NOT VALID;",
        "ALTER TABLE shop.item VALIDATE CONSTRAINT fk_item_owner;",
        "ALTER TABLE item ADD CONSTRAINT fk_item_x FOREIGN KEY(x_id) REFERENCES x (id) NOT VALID;",
        "ALTER TABLE shop.item VALIDATE CONSTRAINT fk_item_x;",
    ]


def test_a_backfill_printed_offline_is_one_update_then_a_vacuum(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, output = offline
    op.backfill("Item", {"price": "0", "Note": "'n/a'"}, where="price IS NULL", schema="Shop")
    op.backfill("item", {"price": "0"}, where="price IS NULL", vacuum=False)
    assert printed(output) == [
        'UPDATE "Shop"."Item" SET price = 0, "Note" = \'n/a\' WHERE price IS NULL;',
        'VACUUM (ANALYZE) "Shop"."Item";',
        "UPDATE item SET price = 0 WHERE price IS NULL;",
    ]


# -- what autogenerate writes as the downgrade ---------------------------------------------


def downgrade(*operations: ops.MigrateOperation) -> list[str]:
    rendered = render_python_code(
        ops.UpgradeOps(ops=list(operations)).reverse(),
        migration_context=MigrationContext.configure(dialect_name="postgresql"),
    )
    return [line.strip() for line in rendered.splitlines() if "###" not in line]


def test_each_safe_operation_is_undone_by_its_counterpart() -> None:
    assert downgrade(
        safe.CreateIndexConcurrentlyOp("ix_item_name", "item", ["name"], schema="shop"),
        safe.CreateUniqueConstraintConcurrentlyOp("uq_item_code", "item", ["code"], schema="shop"),
        safe.SetNotNullOp("item", "sku", schema="shop"),
        safe.DropNotNullOp("item", "note", schema="shop"),
        safe.CreateForeignKeyValidatedOp(
            "fk_item_owner", "item", "owner", ["owner_id"], ["id"], source_schema="shop"
        ),
    ) == [
        "op.drop_constraint('fk_item_owner', 'item', schema='shop', type_='foreignkey')",
        "op.set_not_null('item', 'note', schema='shop')",
        "op.drop_not_null('item', 'sku', schema='shop')",
        "op.drop_constraint('uq_item_code', 'item', schema='shop', type_='unique')",
        "op.drop_index_concurrently('ix_item_name', table_name='item', schema='shop')",
    ]


def test_a_dropped_index_is_rebuilt_as_it_was() -> None:
    create = safe.CreateIndexConcurrentlyOp(
        "ix_item_name", "item", ["name"], schema="shop", unique=True, postgresql_where="x > 0"
    )
    drop = create.reverse()
    assert (drop.index_name, drop.table_name, drop.schema) == ("ix_item_name", "item", "shop")
    assert drop.reverse() is create


def test_an_index_dropped_without_its_columns_cannot_be_rebuilt() -> None:
    with pytest.raises(ValueError) as raised:
        safe.DropIndexConcurrentlyOp("ix_item_name", "item").reverse()
    assert str(raised.value) == "the columns of ix_item_name are unknown: cannot recreate it"


def test_the_backfill_hint_is_a_line_to_paste_into_a_revision() -> None:
    assert safe.backfill_hint("item", "sku") == (
        'op.backfill("item", {"sku": "<value>"}, where="sku IS NULL")'
    )


# -- backfill: batches, commits and the progress line ----------------------------------------


class Clock:
    """time.monotonic and time.sleep for ops.py: sleeping moves the clock, nothing waits."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(safe, "time", clock)
    return clock


class PgConnection(FakeConnection):
    dialect = postgresql.dialect()


def test_a_backfill_updates_in_keyset_batches_each_committed(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    # 5 rows to fill from id 1: batches of 2 up to id 3, 7 and 9, then none left.
    connection = PgConnection(results=[[(5, 1)], [(2, 3)], [(2, 7)], [(1, 9)], [(0, None)]])
    heard: list[int] = []
    done = safe.backfill(
        connection,  # type: ignore[arg-type]
        "Item",
        {"price": "0", "Note": "'n/a'"},
        where="price IS NULL",
        key="Id",
        batch_size=2,
        pause=0.5,
        schema="Shop",
        on_commit=heard.append,
    )
    assert done == 5 and heard == [2, 4, 5]
    assert connection.log == ["execute", "commit"] * 5  # every batch its own transaction
    assert clock.slept == [0.5, 0.5, 0.5]  # room for the application between batches
    table, key = '"Shop"."Item"', '"Id"'
    count, *batches = connection.sql
    assert count == (
        f"SELECT count(*), (SELECT {key} FROM {table} WHERE price IS NULL ORDER BY {key} LIMIT 1) "
        f"FROM {table} WHERE price IS NULL",
        None,
    )

    def batch(lower: str) -> str:
        return (
            f"WITH batch AS (SELECT {key} AS backfill_key FROM {table} WHERE {key} {lower} :last "
            f"AND (price IS NULL) ORDER BY {key} LIMIT :size), done AS (UPDATE {table} SET "
            f"price = 0, \"Note\" = 'n/a' FROM batch WHERE {table}.{key} = batch.backfill_key "
            f"AND (price IS NULL) RETURNING {table}.{key}) SELECT (SELECT count(*) FROM done), "
            "(SELECT backfill_key FROM batch ORDER BY backfill_key DESC LIMIT 1)"
        )

    assert batches == [
        (batch(">="), {"last": 1, "size": 2}),  # from the first row still to fill
        (batch(">"), {"last": 3, "size": 2}),
        (batch(">"), {"last": 7, "size": 2}),
        (batch(">"), {"last": 9, "size": 2}),
    ]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("backfill Item.price, Note: 2/5 rows (40%), ")
    assert lines[-1] == "backfill Item.price, Note: 5/5 rows (100%), 3 rows/s, done"


def test_a_backfill_in_the_callers_transaction_leaves_the_commits_to_it(clock: Clock) -> None:
    connection = PgConnection(results=[[(1, 4)], [(1, 4)], [(0, None)]])
    assert (
        safe.backfill(connection, "item", {"price": "0"}, where="price IS NULL", commit=False) == 1
    )  # type: ignore[arg-type]
    assert "commit" not in connection.log
    assert connection.sql[0][0] == (
        "SELECT count(*), (SELECT id FROM item WHERE price IS NULL ORDER BY id LIMIT 1) "
        "FROM item WHERE price IS NULL"
    )
    assert connection.sql[1][1] == {"last": 4, "size": safe.BATCH_SIZE}
    assert clock.slept == [safe.BATCH_PAUSE]


def test_a_backfill_with_nothing_to_fill_says_so_and_runs_no_batch(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = PgConnection(results=[[(0, None)]])
    assert safe.backfill(connection, "item", {"price": "0"}, where="price IS NULL") == 0  # type: ignore[arg-type]
    assert connection.log == ["execute", "commit"]
    assert capsys.readouterr().err == "backfill item.price: 0/0 rows, 0 rows/s, done\n"


def test_the_progress_line_comes_about_once_a_second_with_rate_and_time_left(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = safe.BackfillProgress("item.price", 2000)
    clock.now += 0.5
    progress.update(500)  # the first batch is always shown
    clock.now += 0.5
    progress.update(500)  # within the second: not shown
    clock.now += 0.6
    progress.update(500)
    clock.now += 0.4
    progress.update(500, final=True)  # the end is always shown
    assert capsys.readouterr().err.splitlines() == [
        "backfill item.price: 500/2000 rows (25%), 1000 rows/s, ETA 2s",
        "backfill item.price: 1500/2000 rows (75%), 938 rows/s, ETA 1s",
        "backfill item.price: 2000/2000 rows (100%), 1000 rows/s, done",
    ]


def test_the_progress_of_a_backfill_that_has_not_moved_has_no_time_left(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = safe.BackfillProgress("item.price", 10, interval=5.0)
    clock.now += 6.0
    progress.update(0)
    clock.now += 4.0
    progress.update(4)  # within its 5 s: not shown
    assert capsys.readouterr().err == "backfill item.price: 0/10 rows (0%), 0 rows/s, ETA ?\n"


def test_more_rows_than_counted_leave_no_negative_time(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = safe.BackfillProgress("item.price", 2)
    clock.now += 1.0
    progress.update(3)  # rows written meanwhile matched `where` too
    assert capsys.readouterr().err == "backfill item.price: 3/2 rows (150%), 3 rows/s, ETA 0s\n"


def test_the_temporary_check_is_named_after_its_column_within_63_characters() -> None:
    assert safe.not_null_check_name("item", "sku") == "ck_item_sku_not_null"
    assert len(safe.not_null_check_name("t" * 40, "c" * 40)) == 63  # PostgreSQL's longest


def test_a_batch_whose_rows_all_changed_meanwhile_is_not_the_end(clock: Clock) -> None:
    # The application filled rows 1-2 after the batch chose them: none updated, but rows past
    # them still need filling.
    connection = PgConnection(results=[[(3, 1)], [(0, 2)], [(1, 5)], [(0, None)]])
    heard: list[int] = []
    done = safe.backfill(
        connection,  # type: ignore[arg-type]
        "item",
        {"price": "0"},
        where="price IS NULL",
        batch_size=2,
        on_commit=heard.append,
    )
    assert done == 1 and heard == [0, 1]
    assert [params for _, params in connection.sql[1:]] == [
        {"last": 1, "size": 2},
        {"last": 2, "size": 2},
        {"last": 5, "size": 2},
    ]


# -- brief strong locks: many short waits, then the migration's own ---------------------------


class BriefBind:
    """The session a brief step runs on: records the lock_timeout it is given and the bound
    the runner's retries read (connection.info) while each attempt runs."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.timeouts: list[str] = []
        self.bounds: list[object] = []
        self.unmarked: list[str] = []  # statements not marked as bookkeeping (the watches measure)

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        sql = str(statement)
        if not statement.get_execution_options().get(BOOKKEEPING):
            self.unmarked.append(sql)
        if sql == "SELECT current_setting('lock_timeout')":
            return SimpleNamespace(scalar=lambda: "2s")
        assert sql == "SELECT set_config('lock_timeout', :value, false)", sql
        assert params is not None
        self.timeouts.append(params["value"])
        return SimpleNamespace(scalar=lambda: params["value"])


def brief_operations(bind: BriefBind, *, as_sql: bool = False) -> Any:
    context = SimpleNamespace(as_sql=as_sql)
    return SimpleNamespace(get_context=lambda: context, get_bind=lambda: bind)


def lock_not_available(sqlstate: str = safe.LOCK_NOT_AVAILABLE) -> DBAPIError:
    orig = Exception("canceling statement due to lock timeout")
    orig.sqlstate = sqlstate  # type: ignore[attr-defined]
    return DBAPIError("ALTER TABLE item ...", {}, orig)


def step_failing(bind: BriefBind, times: int, error: Callable[[], Exception]) -> Callable[[], None]:
    calls = {"n": 0}

    def step() -> None:
        bind.bounds.append(bind.info.get(OWN_LOCK_TIMEOUT))
        calls["n"] += 1
        if calls["n"] <= times:
            raise error()

    return step


@pytest.fixture
def lowest_jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return low

    monkeypatch.setattr(safe, "random", SimpleNamespace(uniform=uniform))
    return asked


def test_a_brief_step_waits_briefly_then_gives_way_and_tries_again(
    clock: Clock, lowest_jitter: list[tuple[float, float]]
) -> None:
    bind = BriefBind()
    safe._briefly(brief_operations(bind), step_failing(bind, 2, lock_not_available))
    assert bind.timeouts == ["50ms", "50ms", "50ms", "2s"]  # restored to the session's own
    assert bind.unmarked == []  # reading and setting lock_timeout: bookkeeping, not measured
    assert bind.bounds == ["50ms"] * 3  # the runner's retries keep the brief bound meanwhile
    assert OWN_LOCK_TIMEOUT not in bind.info
    assert clock.slept == [0.025, 0.05]  # half of 0.05 s, doubling, between attempts
    assert lowest_jitter == [(0.5, 1.0)] * 2


def test_the_last_attempt_waits_as_long_as_the_migration_allows(clock: Clock) -> None:
    bind = BriefBind()
    last = safe.BRIEF_LOCK_ATTEMPTS
    with pytest.raises(DBAPIError):
        safe._briefly(brief_operations(bind), step_failing(bind, last, lock_not_available))
    assert bind.timeouts == ["50ms"] * (last - 1) + ["2s", "2s"]
    assert bind.bounds == ["50ms"] * (last - 1) + [None]  # the runner's bound rules the last
    assert len(clock.slept) == last - 1
    assert max(clock.slept) <= 2.0  # the pauses grow to two seconds at most
    assert OWN_LOCK_TIMEOUT not in bind.info


def test_other_errors_are_not_retried_and_the_timeout_is_restored(clock: Clock) -> None:
    bind = BriefBind()
    with pytest.raises(DBAPIError):
        safe._briefly(
            brief_operations(bind), step_failing(bind, 1, lambda: lock_not_available("23505"))
        )
    assert bind.timeouts == ["50ms", "2s"]
    assert clock.slept == [] and OWN_LOCK_TIMEOUT not in bind.info


def test_a_brief_step_printed_offline_just_runs(clock: Clock) -> None:
    bind = BriefBind()
    ran: list[str] = []
    safe._briefly(brief_operations(bind, as_sql=True), lambda: ran.append("step"))
    assert ran == ["step"] and bind.timeouts == []


def test_the_progress_line_is_due_once_a_whole_interval_has_passed(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = safe.BackfillProgress("item.price", 10)
    clock.now += 10.0
    progress.update(1)
    clock.now += 1.0
    progress.update(1)  # exactly one interval later
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_a_slow_backfill_that_is_done_has_no_time_left(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = safe.BackfillProgress("item.price", 2)
    clock.now += 10.0
    progress.update(2)  # 0.2 rows a second, none left
    assert capsys.readouterr().err == "backfill item.price: 2/2 rows (100%), 0 rows/s, ETA 0s\n"


def test_operations_built_by_autogenerate_take_their_defaults(
    offline: tuple[Operations, io.StringIO],
) -> None:
    # The rewrites in autogen.py build these ops without every argument: a plain index, and a
    # foreign key that is validated.
    op, output = offline
    op.invoke(safe.CreateIndexConcurrentlyOp("ix_item_name", "item", ["name"]))
    op.invoke(
        safe.CreateForeignKeyValidatedOp("fk_item_owner", "item", "owner", ["owner_id"], ["id"])
    )
    assert printed(output) == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_item_name ON item (name);",
        "ALTER TABLE item ADD CONSTRAINT fk_item_owner FOREIGN KEY(owner_id) REFERENCES owner (id) "
        "NOT VALID;",
        "ALTER TABLE item VALIDATE CONSTRAINT fk_item_owner;",
    ]


def test_an_index_is_looked_up_by_the_name_postgresql_stores(
    offline: tuple[Operations, io.StringIO],
) -> None:
    op, _ = offline
    assert safe._index_name(op, "Ix_Item_Name") == "Ix_Item_Name"  # compared, never quoted
    long = safe._index_name(op, "ix_" + "x" * 70)
    assert len(long) == 60 and long.startswith("ix_xxx") and long[-5] == "_"  # cut and hashed


class CallersSession:
    """A connection inside a transaction the caller began."""

    def in_transaction(self) -> bool:
        return True


def test_safe_steps_inside_the_callers_transaction_are_refused_with_the_way_out() -> None:
    context = SimpleNamespace(as_sql=False, _transaction=None, autocommit_block=lambda: "block")
    operations = SimpleNamespace(get_context=lambda: context, get_bind=CallersSession)
    with pytest.raises(CommandError) as raised:
        safe._step_by_step(operations)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "This revision's safe operations commit step by step, outside any transaction, but it "
        "runs inside your own transaction (upgrade(connection=...)). Run it with `make migrate` "
        "or upgrade() without a connection: each revision then gets a transaction of its own."
    )
    context._transaction = object()  # Alembic's own: it commits step by step
    assert safe._step_by_step(operations) == "block"  # type: ignore[arg-type]


def test_a_driver_error_without_a_sqlstate_is_raised_as_it_is(clock: Clock) -> None:
    bind = BriefBind()
    bare = DBAPIError("ALTER TABLE item ...", {}, Exception("server closed the connection"))
    with pytest.raises(DBAPIError) as raised:
        safe._briefly(brief_operations(bind), step_failing(bind, 1, lambda: bare))
    assert raised.value is bare and bind.timeouts == ["50ms", "2s"]


# -- validating a NOT VALID constraint -------------------------------------------------------


class Validating:
    """Operations whose VALIDATE fails with `sqlstate` (None: it passes); records what ran."""

    def __init__(self, sqlstate: str | None = None) -> None:
        self.impl = SimpleNamespace(dialect=postgresql.dialect())
        self.ran: list[str] = []
        self.sqlstate = sqlstate

    def execute(self, sql: str) -> None:
        self.ran.append(sql)
        if "VALIDATE" in sql and self.sqlstate is not None:
            orig = Exception("check constraint is violated by some row")
            if self.sqlstate:  # "": a driver error that carries none
                orig.sqlstate = self.sqlstate  # type: ignore[attr-defined]
            raise DBAPIError(sql, {}, orig)


PROBLEM = "Column Item.sku has NULLs"


def test_a_valid_constraint_is_validated_on_its_table() -> None:
    operations = Validating()
    safe._validate(operations, "Ck_Sku", "Item", "shop", PROBLEM)  # type: ignore[arg-type]
    assert operations.ran == ['ALTER TABLE shop."Item" VALIDATE CONSTRAINT "Ck_Sku"']


@pytest.mark.parametrize("sqlstate", [safe.CHECK_VIOLATION, safe.FOREIGN_KEY_VIOLATION])
def test_rows_that_violate_it_drop_it_again_and_say_what_to_fix(sqlstate: str) -> None:
    operations = Validating(sqlstate)
    with pytest.raises(CommandError) as raised:
        safe._validate(operations, "Ck_Sku", "Item", None, PROBLEM)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "Column Item.sku has NULLs. The NOT VALID constraint was removed again; fix the rows, "
        "then run the migration again."
    )
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert operations.ran == [
        'ALTER TABLE "Item" VALIDATE CONSTRAINT "Ck_Sku"',
        'ALTER TABLE "Item" DROP CONSTRAINT IF EXISTS "Ck_Sku"',  # new rows may hold NULLs again
    ]


@pytest.mark.parametrize("sqlstate", ["57014", ""])  # cancelled by statement_timeout; none
def test_other_failures_of_a_validation_are_raised_as_they_are(sqlstate: str) -> None:
    operations = Validating(sqlstate)
    with pytest.raises(DBAPIError):
        safe._validate(operations, "ck_sku", "item", None, PROBLEM)  # type: ignore[arg-type]
    assert len(operations.ran) == 1  # the constraint stays, to be validated again


# -- what the online steps ask the catalogs ----------------------------------------------------


class Catalog:
    """A session answering each catalog query with `answer`; records the parameters."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def execute(self, statement: Any, params: dict[str, Any]) -> Any:
        # Catalog reads are the toolkit's bookkeeping: marked, so that no watch measures them.
        assert statement.get_execution_options().get(BOOKKEEPING), str(statement)
        self.asked.append((str(statement), params))
        return SimpleNamespace(scalar=lambda: self.answer)


def asking(answer: object) -> tuple[Any, Catalog]:
    catalog = Catalog(answer)
    operations = SimpleNamespace(
        impl=SimpleNamespace(dialect=postgresql.dialect()),
        get_bind=lambda: catalog,
        f=lambda name: name,
    )
    return operations, catalog


@pytest.mark.parametrize(("answer", "state"), [(None, None), (True, True), (False, False)])
def test_a_constraints_state_is_absent_validated_or_not_yet(
    answer: object, state: bool | None
) -> None:
    operations, catalog = asking(answer)
    assert safe._constraint_state(operations, "Ck_Sku", "Item", "shop") is state
    [(sql, params)] = catalog.asked
    assert params == {"name": "Ck_Sku", "table": 'shop."Item"'}
    assert sql == (
        "SELECT convalidated FROM pg_constraint WHERE conname = "
        "CAST(CAST(:name AS text) AS name) AND conrelid = to_regclass(:table)"
    )


def test_a_unique_constraint_exists_when_its_name_is_a_constraint_of_the_table() -> None:
    op = safe.CreateUniqueConstraintConcurrentlyOp("uq_item_code", "item", ["code"], schema="shop")
    operations, catalog = asking(True)
    assert safe._constraint_exists(operations, op)
    assert catalog.asked[0][1] == {"name": "uq_item_code", "table": "shop.item"}
    operations, _ = asking(None)
    assert not safe._constraint_exists(operations, op)


@pytest.mark.parametrize(("answer", "not_null"), [(True, True), (False, False), (None, False)])
def test_a_columns_not_null_flag_is_read_from_the_catalog(answer: object, not_null: bool) -> None:
    operations, catalog = asking(answer)
    assert (
        safe._column_not_null(operations, safe.SetNotNullOp("Item", "sku", schema="shop"))
        is not_null
    )
    [(sql, params)] = catalog.asked
    assert params == {"table": 'shop."Item"', "column": "sku"}
    assert sql == (
        "SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = to_regclass(:table) "
        "AND a.attname = CAST(CAST(:column AS text) AS name)"
    )


@pytest.mark.parametrize(("answer", "invalid"), [(True, True), (False, False), (None, False)])
def test_an_invalid_index_is_found_by_the_name_postgresql_stores(
    answer: object, invalid: bool
) -> None:
    operations, catalog = asking(answer)
    assert safe._invalid_index(operations, "Ix_Item", "shop") is invalid
    [(sql, params)] = catalog.asked
    assert params == {"name": "Ix_Item", "schema": "shop"}
    assert sql == (
        "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = CAST(CAST(:name AS text) AS name) "
        "AND n.nspname = coalesce(:schema, current_schema())"
    )
