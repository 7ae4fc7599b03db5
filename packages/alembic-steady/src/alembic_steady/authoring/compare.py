"""Comparisons autogenerate lacks, made the way PostgreSQL sees both sides.

Loaded by `make check`, `make migration` and the models test (all through env.py). Alembic
compares a CHECK constraint or a partial index by name (the CHECK comparison is even an opt-in
plugin since Alembic 1.19.2), and never looks at the sequence behind an integer primary key. Here
the model's side is created for a moment in a temporary copy of the table, inside a savepoint that
is rolled back, and PostgreSQL's normalised definitions (`pg_get_constraintdef`, `pg_get_expr`) of
both sides are compared: a changed expression under an unchanged name is found, and an unchanged
one written differently (spacing, parentheses, casts) is not reported.
"""

from typing import Any
from weakref import WeakKeyDictionary

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.plugins import Plugin
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Enum,
    MetaData,
    Table,
    TypeDecorator,
    text,
)
from sqlalchemy.sql.elements import ClauseElement, conv

PLUGIN = "alembic_steady.compare"
# Alembic's own comparisons, and these.
PLUGINS = ["alembic.autogenerate.*", PLUGIN]
SCRATCH = "pg_temp.autogen_scratch"
# Integer widths a sequence can have, in order.
SEQUENCE_TYPES = ("smallint", "integer", "bigint")

# Every table's named CHECK constraints and partial indexes, and the sequences its columns own
# (SERIAL or identity), as PostgreSQL prints them: one query per comparison, not one per table.
_CONNECTION_SIDE = r"""
WITH tables AS (
  SELECT t.oid, n.nspname, t.relname FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE t.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\_%'
     AND n.nspname <> 'information_schema'
)
SELECT t.nspname, t.relname, 'check', k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN tables t ON t.oid = k.conrelid WHERE k.contype = 'c'
UNION ALL
SELECT t.nspname, t.relname, 'index', c.relname, pg_get_expr(i.indpred, i.indrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN tables t ON t.oid = i.indrelid
UNION ALL
SELECT t.nspname, t.relname, 'sequence', a.attname,
       d.objid::regclass::text || ' ' || format_type(s.seqtypid, NULL)
  FROM pg_depend d
  JOIN pg_sequence s ON s.seqrelid = d.objid
  JOIN tables t ON t.oid = d.refobjid
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.deptype IN ('a', 'i')
"""
Rows = list[tuple[str, str, str]]  # (kind, name, definition)
# The rows by (schema, table), read once per comparison (an AutogenContext), at its first table.
_connection_side: "WeakKeyDictionary[AutogenContext, dict[tuple[str, str], Rows]]" = (
    WeakKeyDictionary()
)


def _connection_rows(connection: Connection, autogen_context: AutogenContext, table: Table) -> Rows:
    """The checks, partial indexes and owned sequences of `table` as the database has them."""
    rows = _connection_side.get(autogen_context)
    if rows is None:
        rows = {}
        for schema, name, *row in connection.execute(text(_CONNECTION_SIDE)):
            rows.setdefault((schema, name), []).append(tuple(row))
        _connection_side[autogen_context] = rows
    schema = table.schema or autogen_context.dialect.default_schema_name
    return rows.get((str(schema), table.name), [])


class AlterSequenceTypeOp(ops.MigrateOperation):
    """`ALTER SEQUENCE ... AS <type>`: the sequence behind a primary key follows its column.

    PostgreSQL widens an identity column's sequence with the column, but not a SERIAL's: after
    Integer -> BigInteger it would still stop at 2**31 - 1.
    """

    def __init__(self, sequence: str, new_type: str, old_type: str, table: str) -> None:
        self.sequence = sequence
        self.new_type = new_type
        self.old_type = old_type
        self.table = table

    def reverse(self) -> "AlterSequenceTypeOp":
        return AlterSequenceTypeOp(self.sequence, self.old_type, self.new_type, self.table)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("alter_sequence_type", self.table, self.sequence, self.old_type, self.new_type)


@renderers.dispatch_for(AlterSequenceTypeOp)
def _render_alter_sequence(autogen_context: AutogenContext, op: AlterSequenceTypeOp) -> str:
    return f'op.execute("ALTER SEQUENCE {op.sequence} AS {op.new_type}")'


def _sql(element: ClauseElement | Any, autogen_context: AutogenContext) -> str:
    """An expression of the models as SQL, its columns unqualified (they name the scratch
    table's columns)."""
    if isinstance(element, str):
        return element
    compiled = element.compile(
        dialect=autogen_context.dialect,
        compile_kwargs={"literal_binds": True, "include_table": False},
    )
    return str(compiled)


def _added_columns(conn_table: Table, metadata_table: Table) -> list[Column[Any]]:
    """The models' columns the database's table lacks yet: the revision adds them, and a CHECK
    or a predicate of the same change may name them."""
    return [column for column in metadata_table.columns if column.name not in conn_table.columns]


def _add_scratch_column(
    connection: Connection, column: Column[Any], autogen_context: AutogenContext
) -> None:
    """`column` on the scratch copy, with the models' type; a native enum the revision creates
    is created for the moment too (the savepoint's rollback drops it)."""
    preparer = autogen_context.dialect.identifier_preparer
    stored = column.type
    while isinstance(stored, TypeDecorator):
        stored = stored.impl_instance
    if isinstance(stored, Enum) and stored.native_enum:
        stored.create(connection, checkfirst=True)
    spelled = column.type.compile(dialect=autogen_context.dialect)
    connection.execute(
        text(f"ALTER TABLE {SCRATCH} ADD COLUMN {preparer.quote(column.name)} {spelled}")
    )


def _model_definitions(
    connection: Connection,
    table: str,
    checks: dict[str, str],
    predicates: dict[str, str],
    autogen_context: AutogenContext,
    added: list[Column[Any]],
) -> tuple[dict[str, str], dict[str, str]]:
    """What PostgreSQL makes of the models' CHECK expressions and index predicates, read from a
    temporary copy of `table` (with the columns the models add to it) in a savepoint that is
    rolled back."""
    found_checks: dict[str, str] = {}
    found_predicates: dict[str, str] = {}
    if not checks and not predicates:
        return found_checks, found_predicates  # most tables: no scratch copy to make
    savepoint = connection.begin_nested()
    try:
        connection.execute(text(f"CREATE TEMPORARY TABLE autogen_scratch (LIKE {table})"))
        for column in added:
            _add_scratch_column(connection, column, autogen_context)
        for number, (name, expression) in enumerate(checks.items()):
            connection.execute(
                text(f"ALTER TABLE {SCRATCH} ADD CONSTRAINT scratch_{number} CHECK ({expression})")
            )
            found_checks[name] = connection.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = CAST(:t AS regclass) AND conname = :n"
                ),
                {"t": SCRATCH, "n": f"scratch_{number}"},
            ).scalar_one()
        for number, (name, predicate) in enumerate(predicates.items()):
            connection.execute(
                text(f"CREATE INDEX scratch_ix_{number} ON {SCRATCH} ((1)) WHERE {predicate}")
            )
            found_predicates[name] = connection.execute(
                text(
                    "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                    "WHERE indexrelid = CAST(:n AS regclass)"
                ),
                {"n": f"pg_temp.scratch_ix_{number}"},
            ).scalar_one()
    finally:
        savepoint.rollback()
    return found_checks, found_predicates


def compare_table(
    autogen_context: AutogenContext,
    modify_table_ops: ops.ModifyTableOps,
    schema: str | None,
    tname: str,
    conn_table: Table | None,
    metadata_table: Table | None,
) -> PriorityDispatchResult:
    """Named CHECK constraints, partial-index predicates and primary-key sequences of a table
    that exists on both sides."""
    connection = autogen_context.connection
    if conn_table is None or metadata_table is None or connection is None:
        return PriorityDispatchResult.CONTINUE
    preparer = autogen_context.dialect.identifier_preparer
    qualified = preparer.format_table(metadata_table)
    conn_checks: dict[str, str] = {}
    conn_predicates: dict[str, str | None] = {}
    conn_sequences: dict[str, tuple[str, str]] = {}
    for kind, name, definition in _connection_rows(connection, autogen_context, metadata_table):
        if kind == "check":
            conn_checks[name] = definition
        elif kind == "index":
            conn_predicates[name] = definition
        else:
            sequence, _, seq_type = definition.rpartition(" ")
            conn_sequences[name] = (sequence, seq_type)

    model_checks = {
        str(ck.name): _sql(ck.sqltext, autogen_context)
        for ck in metadata_table.constraints
        if isinstance(ck, CheckConstraint) and isinstance(ck.name, str) and ck.name
    }
    model_indexes = {str(ix.name): ix for ix in metadata_table.indexes if ix.name}
    model_predicates = {
        name: _sql(where, autogen_context)
        for name, ix in model_indexes.items()
        if (where := ix.dialect_options["postgresql"].get("where")) is not None
    }
    normalised_checks, normalised_predicates = _model_definitions(
        connection,
        qualified,
        model_checks,
        model_predicates,
        autogen_context,
        _added_columns(conn_table, metadata_table),
    )

    for name in sorted(set(conn_checks) - set(normalised_checks)):
        modify_table_ops.ops.append(_drop_check(name, conn_checks[name], tname, schema))
    for name in sorted(normalised_checks):
        if conn_checks.get(name) == normalised_checks[name]:
            continue
        if name in conn_checks:
            modify_table_ops.ops.append(_drop_check(name, conn_checks[name], tname, schema))
        check = next(ck for ck in metadata_table.constraints if ck.name == name)
        modify_table_ops.ops.append(ops.AddConstraintOp.from_constraint(check))

    # Indexes on both sides whose predicate differs (Alembic matched them by name and columns).
    for name in sorted(set(model_indexes) & set(conn_predicates)):
        if normalised_predicates.get(name) != conn_predicates[name]:
            reflected = next((ix for ix in conn_table.indexes if ix.name == name), None)
            if reflected is None:
                continue
            modify_table_ops.ops.append(ops.DropIndexOp.from_index(reflected))
            modify_table_ops.ops.append(ops.CreateIndexOp.from_index(model_indexes[name]))

    for column in metadata_table.columns:
        _compare_sequence(autogen_context, modify_table_ops, column, conn_sequences, tname)
    return PriorityDispatchResult.CONTINUE


def _drop_check(name: str, definition: str, tname: str, schema: str | None) -> ops.MigrateOperation:
    # Attached to a table of its own, so the drop renders (and reverses) with the old expression.
    expression = definition.removeprefix("CHECK ").removesuffix(" NOT VALID")
    check = CheckConstraint(text(expression), name=conv(name))
    Table(tname, MetaData(), check, schema=schema)
    return ops.DropConstraintOp.from_constraint(check)


def _compare_sequence(
    autogen_context: AutogenContext,
    modify_table_ops: ops.ModifyTableOps,
    column: Column[Any],
    conn_sequences: dict[str, tuple[str, str]],
    tname: str,
) -> None:
    """The sequence a column owns must be as wide as the column the models declare."""
    if column.name not in conn_sequences:
        return
    sequence, seq_type = conn_sequences[column.name]
    wanted = column.type.compile(dialect=autogen_context.dialect).lower()
    if wanted in SEQUENCE_TYPES and seq_type in SEQUENCE_TYPES and wanted != seq_type:
        modify_table_ops.ops.append(AlterSequenceTypeOp(sequence, wanted, seq_type, tname))


def _setup(plugin: Plugin) -> None:
    # LAST: the column comparisons have run, so an Integer -> BigInteger change comes first in
    # the revision and the sequence is widened after its column.
    plugin.add_autogenerate_comparator(
        compare_table,
        "table",
        "checks_predicates_sequences",
        qualifier="postgresql",
        priority=DispatchPriority.LAST,
    )


_setup(Plugin(PLUGIN))
