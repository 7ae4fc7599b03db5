"""authoring/compare.py: the parts of the comparisons that need no server (the SQL of the models'
expressions, the operations written for a changed CHECK or sequence); the comparisons
themselves run against PostgreSQL in tests/postgresql/test_pg_compare.py."""

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from alembic_steady.authoring import compare
from alembic_steady.authoring.compare import AlterSequenceTypeOp

AUTOGEN = SimpleNamespace(dialect=postgresql.dialect())


def code(*operations: ops.MigrateOperation, reverse: bool = False) -> list[str]:
    """The lines autogenerate writes for `operations` (their downgrade with `reverse`)."""
    upgrade = ops.UpgradeOps(ops=list(operations))
    rendered = render_python_code(
        upgrade.reverse() if reverse else upgrade,
        migration_context=MigrationContext.configure(dialect_name="postgresql"),
    )
    return [line.strip() for line in rendered.splitlines() if "###" not in line]


# -- AlterSequenceTypeOp ---------------------------------------------------------------------


def test_a_sequence_is_widened_up_and_narrowed_back_down() -> None:
    op = AlterSequenceTypeOp("public.item_id_seq", "bigint", "integer", "item")
    assert code(op) == ['op.execute("ALTER SEQUENCE public.item_id_seq AS bigint")']
    assert code(op, reverse=True) == ['op.execute("ALTER SEQUENCE public.item_id_seq AS integer")']
    back = op.reverse()
    assert (back.sequence, back.new_type, back.old_type, back.table) == (
        "public.item_id_seq",
        "integer",
        "bigint",
        "item",
    )


def test_a_sequence_change_is_told_apart_from_other_changes() -> None:
    op = AlterSequenceTypeOp("public.item_id_seq", "bigint", "integer", "item")
    assert op.to_diff_tuple() == (
        "alter_sequence_type",
        "item",
        "public.item_id_seq",
        "integer",
        "bigint",
    )


# -- _compare_sequence -----------------------------------------------------------------------


def sequence_ops(column: sa.Column[Any], sequences: dict[str, tuple[str, str]]) -> list[Any]:
    table_ops = ops.ModifyTableOps("item", [])
    compare._compare_sequence(AUTOGEN, table_ops, column, sequences, "item")  # type: ignore[arg-type]
    return table_ops.ops


OWNED = {"id": ("public.item_id_seq", "integer")}


def test_a_sequence_narrower_than_its_column_follows_it() -> None:
    [op] = sequence_ops(sa.Column("id", sa.BigInteger(), primary_key=True), OWNED)
    assert isinstance(op, AlterSequenceTypeOp)
    assert op.to_diff_tuple() == (
        "alter_sequence_type",
        "item",
        "public.item_id_seq",
        "integer",
        "bigint",
    )


def test_a_smaller_column_takes_its_sequence_down_with_it() -> None:
    [op] = sequence_ops(sa.Column("id", sa.SmallInteger(), primary_key=True), OWNED)
    assert (op.new_type, op.old_type) == ("smallint", "integer")


def test_sequences_that_match_or_are_not_integers_are_left_alone() -> None:
    assert sequence_ops(sa.Column("id", sa.Integer(), primary_key=True), OWNED) == []
    assert sequence_ops(sa.Column("code", sa.BigInteger()), OWNED) == []  # owns none
    assert sequence_ops(sa.Column("id", sa.Numeric(20)), OWNED) == []
    odd = {"id": ("public.item_id_seq", "numeric")}
    assert sequence_ops(sa.Column("id", sa.BigInteger(), primary_key=True), odd) == []


# -- _sql ------------------------------------------------------------------------------------


def test_a_models_expression_is_postgresqls_sql_with_bare_columns_and_literals() -> None:
    item = sa.table("item", sa.column("price"), sa.column("name"))
    assert compare._sql(item.c.price > 10, AUTOGEN) == "price > 10"  # type: ignore[arg-type]
    assert compare._sql(item.c.name.ilike("a%"), AUTOGEN) == "name ILIKE 'a%%'"  # type: ignore[arg-type]
    assert compare._sql("price > 0", AUTOGEN) == "price > 0"  # type: ignore[arg-type]


# -- _drop_check -----------------------------------------------------------------------------


def test_a_check_is_dropped_under_its_name_and_restored_with_its_old_expression() -> None:
    drop = compare._drop_check("ck_item_price", "CHECK ((price > 0)) NOT VALID", "item", "shop")
    assert code(drop) == [
        "op.drop_constraint(op.f('ck_item_price'), 'item', schema='shop', type_='check')"
    ]
    assert code(drop, reverse=True) == [
        "op.create_check_constraint(op.f('ck_item_price'), 'item', '((price > 0))', schema='shop')"
    ]


def test_a_valid_check_keeps_its_whole_expression() -> None:
    drop = compare._drop_check("ck_item_qty", "CHECK ((qty >= 0))", "item", None)
    assert code(drop, reverse=True) == [
        "op.create_check_constraint(op.f('ck_item_qty'), 'item', '((qty >= 0))')"
    ]


# -- _added_columns --------------------------------------------------------------------------


def test_the_columns_the_revision_adds_are_the_models_the_database_lacks() -> None:
    database = sa.Table("item", sa.MetaData(), sa.Column("id", sa.Integer))
    models = sa.Table(
        "item", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("price", sa.Integer)
    )
    assert [column.name for column in compare._added_columns(database, models)] == ["price"]


# -- compare_table, on a recording stand-in for PostgreSQL's catalogs ---------------------------


class Catalogs:
    """What compare_table reads from PostgreSQL: the catalog rows of every table (schema,
    table, kind, name, definition), and its normalised form of each expression of the models
    (`normalised`: the models' SQL -> PostgreSQL's). Records the SQL run and whether the scratch
    savepoint was rolled back."""

    dialect = postgresql.dialect()

    def __init__(
        self, rows: list[tuple[str, ...]], normalised: dict[str, str] | None = None
    ) -> None:
        self.rows, self.normalised = rows, normalised or {}
        self.sql: list[tuple[str, Any]] = []
        self.rolled_back = 0
        self.made = ""  # the expression of the last scratch constraint or index

    def execute(self, statement: Any, params: Any = None) -> Any:
        sql = str(statement)
        self.sql.append((sql, params))
        if "WITH tables AS" in sql:
            return iter(self.rows)
        if sql.startswith("ALTER TABLE pg_temp.autogen_scratch ADD CONSTRAINT"):
            self.made = sql.split(" CHECK (", 1)[1][:-1]
        elif sql.startswith("CREATE INDEX scratch_ix_"):
            self.made = sql.split(" WHERE ", 1)[1]
        return SimpleNamespace(scalar_one=lambda: self.normalised[self.made])

    def begin_nested(self) -> "Catalogs":
        return self

    def rollback(self) -> None:
        self.rolled_back += 1

    def _run_ddl_visitor(self, visitor: Any, element: Any, **kwargs: Any) -> None:
        # A native enum's CREATE TYPE, as SQLAlchemy hands it to the connection.
        self.sql.append((f"CREATE TYPE {element.name}", kwargs))


class Comparison:
    """An AutogenContext as compare_table uses it (one per comparison)."""

    def __init__(self, connection: Catalogs) -> None:
        self.connection = connection
        self.dialect = postgresql.dialect()
        self.dialect.default_schema_name = "public"


def item(*extra: Any) -> sa.Table:
    return sa.Table("item", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), *extra)


def compared(
    connection: Catalogs,
    models: sa.Table,
    database: sa.Table | None = None,
    schema: str | None = None,
) -> list[Any]:
    table_ops = ops.ModifyTableOps("item", [], schema=schema)
    result = compare.compare_table(
        Comparison(connection),  # type: ignore[arg-type]
        table_ops,
        schema,
        "item",
        item() if database is None else database,
        models,
    )
    assert result is compare.PriorityDispatchResult.CONTINUE  # Alembic's comparisons go on
    return table_ops.ops


def test_a_table_on_one_side_only_is_left_to_alembic() -> None:
    connection = Catalogs([])
    table_ops = ops.ModifyTableOps("item", [])
    for database, models in ((None, item()), (item(), None)):
        result = compare.compare_table(
            Comparison(connection),
            table_ops,
            None,
            "item",
            database,
            models,  # type: ignore[arg-type]
        )
        assert result is compare.PriorityDispatchResult.CONTINUE
    assert table_ops.ops == [] and connection.sql == []


def test_a_check_only_the_database_has_is_dropped() -> None:
    rows = [("public", "item", "check", "ck_item_old", "CHECK ((id > 0))")]
    connection = Catalogs(rows)
    assert code(*compared(connection, item())) == [
        "op.drop_constraint(op.f('ck_item_old'), 'item', type_='check')"
    ]
    assert connection.rolled_back == 0  # no expression of the models: no scratch copy


def test_a_check_written_differently_but_the_same_is_not_reported() -> None:
    rows = [("public", "item", "check", "ck_item_id", "CHECK ((id > 0))")]
    connection = Catalogs(rows, normalised={"id>0": "CHECK ((id > 0))"})
    models = item(sa.CheckConstraint("id>0", name="ck_item_id"))
    assert compared(connection, models) == []
    sql = [statement for statement, _ in connection.sql[1:]]
    assert sql[:2] == [
        "CREATE TEMPORARY TABLE autogen_scratch (LIKE item)",
        "ALTER TABLE pg_temp.autogen_scratch ADD CONSTRAINT scratch_0 CHECK (id>0)",
    ]
    assert connection.sql[3] == (
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass) AND conname = :n",
        {"t": "pg_temp.autogen_scratch", "n": "scratch_0"},
    )
    assert connection.rolled_back == 1  # the scratch copy is gone again


def test_a_changed_check_is_dropped_and_added_again_and_a_new_one_added() -> None:
    rows = [("public", "item", "check", "ck_item_id", "CHECK ((id > 0))")]
    connection = Catalogs(
        rows, normalised={"id > 1": "CHECK ((id > 1))", "id < 100": "CHECK ((id < 100))"}
    )
    models = item(
        sa.CheckConstraint("id > 1", name="ck_item_id"),
        sa.CheckConstraint("id < 100", name="ck_item_max"),
    )
    assert code(*compared(connection, models)) == [
        "op.drop_constraint(op.f('ck_item_id'), 'item', type_='check')",
        "op.create_check_constraint('ck_item_id', 'item', 'id > 1')",
        "op.create_check_constraint('ck_item_max', 'item', 'id < 100')",
    ]


def test_a_check_naming_a_column_the_revision_adds_is_read_with_that_column() -> None:
    connection = Catalogs([], normalised={"price > 0": "CHECK ((price > 0))"})
    models = item(
        sa.Column("price", sa.Numeric(10, 2)), sa.CheckConstraint("price > 0", name="ck_price")
    )
    compared(connection, models)
    assert connection.sql[2][0] == (
        "ALTER TABLE pg_temp.autogen_scratch ADD COLUMN price NUMERIC(10, 2)"
    )


def test_a_changed_partial_index_predicate_is_dropped_and_built_again() -> None:
    rows = [("public", "item", "index", "ix_item_live", "(id > 0)")]
    connection = Catalogs(rows, normalised={"id > 10": "(id > 10)"})
    database = item()
    sa.Index("ix_item_live", database.c.id, postgresql_where=sa.text("id > 0"))
    models = item()
    sa.Index("ix_item_live", models.c.id, postgresql_where=models.c.id > 10)
    assert code(*compared(connection, models, database)) == [
        "op.drop_index('ix_item_live', table_name='item', postgresql_where=sa.text('id > 0'))",
        "op.create_index('ix_item_live', 'item', ['id'], unique=False, "
        "postgresql_where=sa.text('id > 10'))",
    ]
    assert connection.sql[2] == (
        "CREATE INDEX scratch_ix_0 ON pg_temp.autogen_scratch ((1)) WHERE id > 10",
        None,
    )
    assert connection.sql[3] == (
        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
        "WHERE indexrelid = CAST(:n AS regclass)",
        {"n": "pg_temp.scratch_ix_0"},
    )


def test_an_unchanged_predicate_is_not_reported() -> None:
    rows = [("public", "item", "index", "ix_item_live", "(id > 0)")]
    connection = Catalogs(rows, normalised={"id > 0": "(id > 0)"})
    database, models = item(), item()
    sa.Index("ix_item_live", database.c.id, postgresql_where=sa.text("id > 0"))
    sa.Index("ix_item_live", models.c.id, postgresql_where=models.c.id > 0)
    assert compared(connection, models, database) == []


def test_a_key_made_bigint_takes_its_sequence_along_other_tables_rows_aside() -> None:
    rows = [
        ("public", "item", "sequence", "id", "item_id_seq integer"),
        ("public", "other", "sequence", "id", "other_id_seq smallint"),
        ("shop", "item", "sequence", "id", "shop.item_id_seq smallint"),
    ]
    models = sa.Table("item", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    [op] = compared(Catalogs(rows), models)
    assert code(op) == ['op.execute("ALTER SEQUENCE item_id_seq AS bigint")']
    assert op.table == "item"


def test_a_sequence_whose_name_needs_quotes_is_named_whole() -> None:
    rows = [("public", "item", "sequence", "id", '"item id seq" integer')]
    models = sa.Table("item", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    [op] = compared(Catalogs(rows), models)
    assert (op.sequence, op.old_type, op.new_type) == ('"item id seq"', "integer", "bigint")


def test_the_catalogs_are_read_once_per_comparison() -> None:
    connection = Catalogs([("public", "item", "check", "ck_item_old", "CHECK ((id > 0))")])
    comparison = Comparison(connection)
    for _ in range(2):
        table_ops = ops.ModifyTableOps("item", [])
        compare.compare_table(comparison, table_ops, None, "item", item(), item())  # type: ignore[arg-type]
        assert len(table_ops.ops) == 1
    assert len(connection.sql) == 1


def test_only_named_checks_of_the_models_are_compared() -> None:
    connection = Catalogs([])
    models = item(sa.CheckConstraint("id > 0"), sa.UniqueConstraint("id", name="uq_item_id"))
    assert compared(connection, models) == []
    assert len(connection.sql) == 1  # the catalogs only: no scratch copy


def test_a_check_in_a_schema_is_dropped_there() -> None:
    rows = [("shop", "item", "check", "ck_item_old", "CHECK ((id > 0))")]
    models = sa.Table(
        "item", sa.MetaData(schema="shop"), sa.Column("id", sa.Integer, primary_key=True)
    )
    assert code(*compared(Catalogs(rows), models, schema="shop")) == [
        "op.drop_constraint(op.f('ck_item_old'), 'item', schema='shop', type_='check')"
    ]


def test_a_changed_check_in_a_schema_is_dropped_there() -> None:
    rows = [("shop", "item", "check", "ck_item_id", "CHECK ((id > 0))")]
    models = sa.Table(
        "item",
        sa.MetaData(schema="shop"),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.CheckConstraint("id > 1", name="ck_item_id"),
    )
    connection = Catalogs(rows, normalised={"id > 1": "CHECK ((id > 1))"})
    assert code(*compared(connection, models, schema="shop"))[0] == (
        "op.drop_constraint(op.f('ck_item_id'), 'item', schema='shop', type_='check')"
    )


def test_every_changed_check_is_reported_after_an_unchanged_one() -> None:
    rows = [
        ("public", "item", "check", "ck_a", "CHECK ((id > 0))"),
        ("public", "item", "check", "ck_b", "CHECK ((id < 9))"),
    ]
    connection = Catalogs(
        rows, normalised={"id > 0": "CHECK ((id > 0))", "id < 99": "CHECK ((id < 99))"}
    )
    models = item(
        sa.CheckConstraint("id > 0", name="ck_a"), sa.CheckConstraint("id < 99", name="ck_b")
    )
    assert code(*compared(connection, models)) == [
        "op.drop_constraint(op.f('ck_b'), 'item', type_='check')",
        "op.create_check_constraint('ck_b', 'item', 'id < 99')",
    ]


def test_indexes_on_one_side_only_or_not_reflected_are_left_to_alembic() -> None:
    rows = [
        ("public", "item", "index", "ix_gone", "(id > 0)"),  # the models dropped it
        ("public", "item", "index", "ix_a_unreflected", "(id > 0)"),  # not reflected; checked first
        ("public", "item", "index", "ix_live", "(id > 0)"),
    ]
    database, models = item(), item()
    sa.Index("ix_gone", database.c.id, postgresql_where=sa.text("id > 0"))
    sa.Index("ix_live", database.c.id, postgresql_where=sa.text("id > 0"))
    sa.Index("ix_a_unreflected", models.c.id, postgresql_where=models.c.id > 1)
    sa.Index("ix_live", models.c.id, postgresql_where=models.c.id > 5)
    connection = Catalogs(rows, normalised={"id > 5": "(id > 5)", "id > 1": "(id > 1)"})
    assert [type(op).__name__ for op in compared(connection, models, database)] == [
        "DropIndexOp",
        "CreateIndexOp",
    ]


def test_a_native_enum_the_revision_adds_is_made_for_the_scratch_copy() -> None:
    status = sa.Enum("draft", "live", name="status")
    models = item(
        sa.Column("status", status), sa.CheckConstraint("status <> 'draft'", name="ck_status")
    )
    connection = Catalogs(
        [], normalised={"status <> 'draft'": "CHECK ((status <> 'draft'::status))"}
    )
    compared(connection, models)
    assert connection.sql[2:4] == [
        ("CREATE TYPE status", {"checkfirst": True}),  # rolled back with the savepoint
        ("ALTER TABLE pg_temp.autogen_scratch ADD COLUMN status status", None),
    ]


class Status(sa.types.TypeDecorator[str]):
    """A project's own type over a native enum (as SQLModel wraps its types)."""

    impl = sa.Enum("draft", "live", name="status")
    cache_ok = True


def test_a_native_enum_under_a_type_decorator_is_made_too() -> None:
    models = item(
        sa.Column("status", Status()), sa.CheckConstraint("status <> 'draft'", name="ck_status")
    )
    connection = Catalogs(
        [], normalised={"status <> 'draft'": "CHECK ((status <> 'draft'::status))"}
    )
    compared(connection, models)
    assert connection.sql[2] == ("CREATE TYPE status", {"checkfirst": True})
