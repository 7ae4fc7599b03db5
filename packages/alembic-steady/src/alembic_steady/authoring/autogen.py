"""Autogenerate hooks: loaded only by `make migration` and `make check`, never by upgrades.

They render SQLModel's types as plain SQLAlchemy, write the non-blocking forms of operations on
tables that already exist (see ops.py), and flag what a reviewer must look at.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.autogenerate.rewriter import Rewriter
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError

from ..dialects.base import by_name
from ..runner import backfill_jobs, checksums
from . import compare, phase_split, renames
from . import ops as safe
from .backfill_queue import CancelBackfillOp, QueueBackfillOp, RequireBackfillOp


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render SQLModel's `AutoString` as plain `sa.String`.

    A revision then depends on SQLAlchemy alone: it never imports `sqlmodel` or the application,
    so it keeps working after the models change or SQLModel is upgraded.
    """
    if type_ == "type" and type(obj).__name__ == "AutoString":  # sqlmodel.sql.sqltypes
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


class ReviewNote(ops.MigrateOperation):
    """A comment placed in a generated revision for its reviewer; it runs nothing."""

    def __init__(self, text: str) -> None:
        self.text = text


@renderers.dispatch_for(ReviewNote)
def _render_review_note(autogen_context: AutogenContext, op: ReviewNote) -> str:
    return f"# REVIEW: {op.text}"


# The safe operations are written as Alembic writes their plain forms, under their own names
# (`op.create_index(...)` becomes `op.create_index_concurrently(...)` with the same arguments).
def _renamed(text: str, plain: str, safe_name: str) -> str:
    return text.replace(f"op.{plain}(", f"op.{safe_name}(", 1)


@renderers.dispatch_for(safe.CreateIndexConcurrentlyOp)
def _render_create_index(
    autogen_context: AutogenContext, op: safe.CreateIndexConcurrentlyOp
) -> str:
    plain = ops.CreateIndexOp(
        op.index_name, op.table_name, op.columns, schema=op.schema, unique=op.unique, **op.kw
    )
    text = renderers.dispatch(plain)(autogen_context, plain)
    return _renamed(text, "create_index", "create_index_concurrently")


@renderers.dispatch_for(safe.DropIndexConcurrentlyOp)
def _render_drop_index(autogen_context: AutogenContext, op: safe.DropIndexConcurrentlyOp) -> str:
    plain = ops.DropIndexOp(op.index_name, table_name=op.table_name, schema=op.schema)
    text = renderers.dispatch(plain)(autogen_context, plain)
    return _renamed(text, "drop_index", "drop_index_concurrently")


@renderers.dispatch_for(safe.CreateForeignKeyValidatedOp)
def _render_foreign_key(
    autogen_context: AutogenContext, op: safe.CreateForeignKeyValidatedOp
) -> str:
    plain = ops.CreateForeignKeyOp(
        op.constraint_name,
        op.source_table,
        op.referent_table,
        op.local_cols,
        op.remote_cols,
        source_schema=op.source_schema,
        referent_schema=op.referent_schema,
        **op.kw,
    )
    text = renderers.dispatch(plain)(autogen_context, plain)
    return _renamed(text, "create_foreign_key", "create_foreign_key_validated")


@renderers.dispatch_for(safe.CreateUniqueConstraintConcurrentlyOp)
def _render_unique(
    autogen_context: AutogenContext, op: safe.CreateUniqueConstraintConcurrentlyOp
) -> str:
    plain = ops.CreateUniqueConstraintOp(
        op.constraint_name, op.table_name, op.columns, schema=op.schema
    )
    rendered = renderers.dispatch(plain)(autogen_context, plain)
    text = rendered[0] if isinstance(rendered, list) else rendered
    return _renamed(text, "create_unique_constraint", "create_unique_constraint_concurrently")


@renderers.dispatch_for(safe.SetNotNullOp)
def _render_set_not_null(autogen_context: AutogenContext, op: safe.SetNotNullOp) -> str:
    schema = f", schema={op.schema!r}" if op.schema else ""
    return f"op.set_not_null({op.table_name!r}, {op.column_name!r}{schema})"


@renderers.dispatch_for(safe.DropNotNullOp)
def _render_drop_not_null(autogen_context: AutogenContext, op: safe.DropNotNullOp) -> str:
    schema = f", schema={op.schema!r}" if op.schema else ""
    return f"op.drop_not_null({op.table_name!r}, {op.column_name!r}{schema})"


def _call(operation: str, *args: object, **keywords: object) -> str:
    """`op.name(...)` with its arguments as Python literals; a keyword left None is left out."""
    given = [repr(arg) for arg in args]
    given += [f"{key}={value!r}" for key, value in keywords.items() if value is not None]
    return f"op.{operation}({', '.join(given)})"


@renderers.dispatch_for(renames.CreateRenameSyncOp)
@renderers.dispatch_for(renames.DropRenameSyncOp)
def _render_rename_sync(autogen_context: AutogenContext, op: renames._Sync) -> str:
    name = "create" if isinstance(op, renames.CreateRenameSyncOp) else "drop"
    return _call(f"{name}_rename_sync", op.table_name, op.old, op.new, schema=op.schema)


@renderers.dispatch_for(renames.RenameTableOp)
def _render_rename_table(autogen_context: AutogenContext, op: renames.RenameTableOp) -> str:
    return _call("rename_table", op.table_name, op.new_table_name, schema=op.schema)


@renderers.dispatch_for(renames.RenameIndexOp)
def _render_rename_index(autogen_context: AutogenContext, op: renames.RenameIndexOp) -> str:
    return _call("rename_index", op.old_name, op.new_name, schema=op.schema)


@renderers.dispatch_for(QueueBackfillOp)
def _render_queue_backfill(autogen_context: AutogenContext, op: QueueBackfillOp) -> str:
    return _call(
        "queue_backfill", op.table_name, op.values, where=op.where, name=op.name, schema=op.schema
    )


@renderers.dispatch_for(CancelBackfillOp)
@renderers.dispatch_for(RequireBackfillOp)
def _render_named_backfill(autogen_context: AutogenContext, op: CancelBackfillOp) -> str:
    name = "cancel" if isinstance(op, CancelBackfillOp) else "require"
    return _call(f"{name}_backfill", op.name)


@renderers.dispatch_for(safe.BackfillOp)
def _render_backfill(autogen_context: AutogenContext, op: safe.BackfillOp) -> str:
    return _call("backfill", op.table_name, op.values, where=op.where, schema=op.schema)


def _spell(type_: Any, dialect: Any) -> str:
    """A type as the server writes it (PostgreSQL: `UUID`, not `CHAR(32)`; `VARCHAR(80)`)."""
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # a type the server cannot spell: say what SQLAlchemy calls it
        return repr(type_)


def _int_bytes(type_: Any) -> int | None:
    if isinstance(type_, sa.BigInteger):
        return 8
    if isinstance(type_, sa.SmallInteger):
        return 2
    if isinstance(type_, sa.Integer):
        return 4
    return None


def _stored(type_: Any) -> Any:
    """The type PostgreSQL stores: SQLModel's AutoString and other decorators wrap a plain one."""
    while isinstance(type_, sa.TypeDecorator):
        type_ = type_.impl_instance
    return type_


def _widens(old: Any, new: Any) -> bool | None:
    """True when every `old` value fits `new`, False when some may not, None when unrelated."""
    old, new = _stored(old), _stored(new)
    if isinstance(old, sa.Enum) or isinstance(new, sa.Enum):
        return None
    if isinstance(old, sa.String) and isinstance(new, sa.String):
        return new.length is None or (old.length is not None and new.length >= old.length)
    old_bytes, new_bytes = _int_bytes(old), _int_bytes(new)
    if old_bytes and new_bytes:
        return new_bytes >= old_bytes
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Numeric) and not old_bytes:
        if new.precision is None:
            return True
        if old.precision is None:
            return False
        old_scale, new_scale = old.scale or 0, new.scale or 0
        return new_scale >= old_scale and new.precision - new_scale >= old.precision - old_scale
    return None


def _catalog_only(old: Any, new: Any) -> bool:
    """Changes a server can make without rewriting the table (PostgreSQL: binary coercible)."""
    old, new = _stored(old), _stored(new)
    if isinstance(old, sa.String) and isinstance(new, sa.String):
        return bool(_widens(old, new))
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Numeric) and not _int_bytes(old):
        return (old.scale or 0) == (new.scale or 0) and bool(_widens(old, new))
    return False


def _type_change(table: str, op: ops.AlterColumnOp, dialect: Any) -> str:
    """What changing a column's type does to a live table, and to the data, both ways: the
    dialect says what its server does to the table."""
    old, new = op.existing_type, op.modify_type
    change = f"{table}.{op.column_name} from {_spell(old, dialect)} to {_spell(new, dialect)}"
    widens = _widens(old, new)
    kind = "widens" if widens else "narrows" if widens is False else "converts"
    effect = by_name(dialect.name).type_change(
        kind, in_place=bool(widens) and _catalog_only(old, new)
    )
    text = f"{kind} {change}: {effect}"
    if widens:
        back = _spell(old, dialect)
        text += f"; its downgrade narrows it back to {back} and can lose data written since"
    return text


def _fresh_tables(script: ops.MigrationScript) -> set[str]:
    """Tables this revision creates or drops: they have no rows or readers to protect."""
    fresh: set[str] = set()
    for op_list in (*script.upgrade_ops_list, *script.downgrade_ops_list):
        for op in op_list.ops:
            if isinstance(op, ops.CreateTableOp | ops.DropTableOp):
                fresh.add(op.table_name)
    return fresh


def _safe_forms(fresh: set[str]) -> Rewriter:
    """Rewrites blocking operations on existing tables into their non-blocking forms.

    A table created (or dropped) in the same revision keeps the plain forms: it has no rows, and
    its CREATE TABLE runs in the revision's transaction with them.
    """
    writer = Rewriter()

    @writer.rewrites(ops.CreateIndexOp)
    def _index(context: Any, revision: Any, op: ops.CreateIndexOp) -> Any:
        if op.table_name in fresh or op.index_name is None:
            return op
        return safe.CreateIndexConcurrentlyOp(
            op.index_name, op.table_name, op.columns, schema=op.schema, unique=op.unique, **op.kw
        )

    @writer.rewrites(ops.DropIndexOp)
    def _drop_index(context: Any, revision: Any, op: ops.DropIndexOp) -> Any:
        if op.table_name is None or op.table_name in fresh:
            return op
        return safe.DropIndexConcurrentlyOp(op.index_name, op.table_name, schema=op.schema)

    @writer.rewrites(ops.CreateUniqueConstraintOp)
    def _unique(context: Any, revision: Any, op: ops.CreateUniqueConstraintOp) -> Any:
        # DEFERRABLE and other options stay with the plain form, which knows them all.
        if op.table_name in fresh or not isinstance(op.constraint_name, str) or op.kw:
            return op
        return safe.CreateUniqueConstraintConcurrentlyOp(
            op.constraint_name, op.table_name, op.columns, schema=op.schema
        )

    @writer.rewrites(ops.CreateForeignKeyOp)
    def _foreign_key(context: Any, revision: Any, op: ops.CreateForeignKeyOp) -> Any:
        if op.source_table in fresh or not isinstance(op.constraint_name, str):
            return op
        return safe.CreateForeignKeyValidatedOp(
            op.constraint_name,
            op.source_table,
            op.referent_table,
            op.local_cols,
            op.remote_cols,
            **op.kw,
        )

    @writer.rewrites(ops.AlterColumnOp)
    def _not_null(context: Any, revision: Any, op: ops.AlterColumnOp) -> Any:
        if op.modify_nullable is not False or op.table_name in fresh:
            return op
        column = f"{op.table_name}.{op.column_name}"
        result: list[ops.MigrateOperation] = [
            ReviewNote(
                f"{column} becomes NOT NULL: existing NULLs make this fail. Backfill them first, "
                f"in an earlier revision: {safe.backfill_hint(op.table_name, op.column_name)}"
            )
        ]
        op.modify_nullable = None
        op.existing_nullable = True
        if op.has_changes():
            result.append(op)
        result.append(safe.SetNotNullOp(op.table_name, op.column_name, schema=op.schema))
        return result

    @writer.rewrites(ops.AddColumnOp)
    def _add_column(context: Any, revision: Any, op: ops.AddColumnOp) -> Any:
        if op.table_name in fresh or not phase_split.added_not_null_without_default(op):
            return op
        return [ReviewNote(_not_null_column(op.table_name, op.column.name)), op]

    return writer


def _not_null_column(table: str, column: str) -> str:
    return (
        f"adds NOT NULL column {table}.{column} without a server default: fails on a table "
        "with rows. Add it nullable, backfill it, then make it NOT NULL (three revisions), "
        "or give it a server_default"
    )


def _column_notes(table: str, column: sa.Column[Any], metadata: Any, dialect: Any) -> list[str]:
    """What a new column's declaration gets wrong before any server sees it."""
    notes: list[str] = []
    stored = _stored(column.type)
    if (
        dialect.name == "mysql"
        and isinstance(stored, sa.String)
        and not isinstance(stored, sa.Text)
        and stored.length is None
    ):
        notes.append(
            f"adds {table}.{column.name} as VARCHAR without a length, which MySQL refuses at "
            "migrate: give it one (Field(max_length=255)) or make it sa.Text"
        )
    for key in column.foreign_keys:
        target_table, _, target_column = key.target_fullname.rpartition(".")
        tables = getattr(metadata, "tables", {})
        target = tables.get(target_table)
        if target is None or target_column not in target.c:
            continue
        width, target_width = _int_bytes(stored), _int_bytes(_stored(target.c[target_column].type))
        if width is not None and target_width is not None and width < target_width:
            notes.append(
                f"adds {table}.{column.name} ({_spell(stored, dialect)}) referencing "
                f"{key.target_fullname} ({_spell(_stored(target.c[target_column].type), dialect)}):"
                " MySQL refuses the foreign key at migrate (errno 150), PostgreSQL accepts it but"
                " the column cannot hold every id; declare it with the same type "
                "(Field(sa_type=sa.BigInteger, foreign_key=...))"
            )
    return notes


def _warnings(
    script: ops.MigrationScript,
    fresh: set[str],
    dialect: Any,
    metadata: Any = None,
    renamed: frozenset[tuple[str | None, str]] | set[tuple[str | None, str]] = frozenset(),
) -> list[tuple[str, str]]:
    """(warning, review note) for each operation of the upgrade a reviewer must look at."""
    found: list[tuple[str, str]] = []
    for upgrade_ops in script.upgrade_ops_list:
        for op in upgrade_ops.ops:
            if isinstance(op, ops.DropTableOp):
                text = f"drops table {op.table_name}"
                found.append((text, f"{text}: existing data is lost"))
            if isinstance(op, ops.CreateTableOp):
                for column in op.columns:
                    if isinstance(column, sa.Column):
                        notes = _column_notes(op.table_name, column, metadata, dialect)
                        found.extend((note, note) for note in notes)
            if not isinstance(op, ops.ModifyTableOps):
                continue
            for sub in op.ops:
                if isinstance(sub, ops.AddColumnOp):
                    notes = _column_notes(op.table_name, sub.column, metadata, dialect)
                    found.extend((note, note) for note in notes)
                if (
                    isinstance(sub, ops.DropColumnOp)
                    and (op.table_name, sub.column_name) in renamed
                ):
                    continue  # its values were copied to the new name: the rename's note says so
                if isinstance(sub, ops.DropColumnOp):
                    text = f"drops column {op.table_name}.{sub.column_name}"
                    found.append((text, f"{text}: existing data is lost"))
                elif isinstance(sub, ops.AlterColumnOp) and sub.modify_type is not None:
                    text = _type_change(op.table_name, sub, dialect)
                    found.append((text, text))
                elif isinstance(sub, safe.SetNotNullOp):
                    found.append(
                        (
                            f"makes {op.table_name}.{sub.column_name} NOT NULL: backfill its "
                            "NULLs first",
                            "",
                        )
                    )
                elif isinstance(sub, ops.AlterColumnOp) and sub.modify_nullable is False:
                    # (MySQL's: PostgreSQL's became a SetNotNullOp with its note beside it.)
                    text = (
                        f"makes {op.table_name}.{sub.column_name} NOT NULL: backfill its NULLs "
                        "first"
                    )
                    hint = safe.backfill_hint(op.table_name, sub.column_name)
                    found.append((text, f"{text}, in an earlier revision: {hint}"))
                elif (
                    isinstance(sub, ops.AddColumnOp)
                    and op.table_name not in fresh
                    and phase_split.added_not_null_without_default(sub)
                ):
                    found.append((_not_null_column(op.table_name, sub.column.name), ""))
    return found


# Operations that commit step by step outside the revision's transaction.
NON_TRANSACTIONAL = (
    safe.CreateIndexConcurrentlyOp,
    safe.CreateUniqueConstraintConcurrentlyOp,
    safe.DropIndexConcurrentlyOp,
    safe.SetNotNullOp,
    safe.CreateForeignKeyValidatedOp,
    safe.BackfillOp,
    renames.DropRenameSyncOp,
    RequireBackfillOp,  # a plain upgrade runs the backfill there, batch by batch
)


def _flatten(op_list: ops.OpContainer) -> list[ops.MigrateOperation]:
    flat: list[ops.MigrateOperation] = []
    for op in op_list.ops:
        flat.extend(_flatten(op) if isinstance(op, ops.OpContainer) else [op])
    return flat


def _make_rerunnable(op_list: ops.OpContainer) -> None:
    """A non-transactional operation commits whatever ran before it in the revision; if a later
    step fails, the revision is not recorded and runs again. So the plain operations of such a
    revision say IF NOT EXISTS / IF EXISTS, and the rerun skips what is already done."""
    flat = _flatten(op_list)
    if not any(isinstance(op, NON_TRANSACTIONAL) for op in flat):
        return
    for op in flat:
        if isinstance(op, ops.CreateTableOp | ops.AddColumnOp | ops.CreateIndexOp):
            op.if_not_exists = True
        elif isinstance(
            op, ops.DropTableOp | ops.DropColumnOp | ops.DropIndexOp | ops.DropConstraintOp
        ):
            op.if_exists = True


def process_revision_directives(
    context: MigrationContext,
    revision: Any,
    directives: list[ops.MigrationScript],
    *,
    renames_given: str | None = None,
) -> None:
    """Write no file when nothing changed; write a rename where the change drops and adds what
    was renamed (renames.py); put what removes or tightens in a post revision of its own
    (phase_split.py); write the non-blocking forms on existing tables; flag operations that can
    lose data, fail on existing rows, or block the table."""
    first = directives[0]
    if first.upgrade_ops is None or first.upgrade_ops.is_empty():
        directives[:] = []
        print("No changes between the models and the database: no revision written.")
        return
    postgresql = context.dialect.name == "postgresql"

    def same_type(old: sa.Column[Any], new: sa.Column[Any]) -> bool:
        return not context.impl.compare_type(old, new)

    chosen, guessed = renames.chosen(first.upgrade_ops, same_type, renames_given)
    # Columns are renamed as expand/contract where the backfill queue runs (PostgreSQL).
    expanded = [r for r in chosen if r.table is not None] if postgresql else []
    plain = [r for r in chosen if r not in expanded]
    indexes_of = renames.indexes_in(context.connection) if postgresql else None
    pre_notes = renames.plain(first.upgrade_ops, plain, indexes_of, same_type)
    expanding = renames.prepare_expand(first.upgrade_ops, expanded)
    if chosen:  # the drops and adds became renames: so does their reverse
        try:
            first.downgrade_ops = first.upgrade_ops.reverse()
        except (NotImplementedError, ValueError, AttributeError):
            raise CommandError(
                f"{chosen[0]} cannot be written as a rename: an operation of this change has no "
                "reverse. No revision written: make the rename alone, or give renames=none"
            ) from None
    fresh = _fresh_tables(first)
    post = phase_split.split_phases(context, directives, fresh)
    post_notes: list[str] = []
    for found in expanding:
        assert post is not None  # the old column's drop goes there
        renames.expand(directives[0], post, found, context.dialect)
        pre_note, post_note = renames.expand_notes(found, guessed)
        pre_notes.append(pre_note)
        post_notes.append(post_note)
    renamed = {(r.table, r.old) for r in expanded}
    # The safe forms (ops.py) are PostgreSQL's: CONCURRENTLY, NOT VALID and VALIDATE.
    if postgresql:
        for script in directives:
            _enum_swaps_keep_their_indexes(context, script)
        _safe_forms(fresh).process_revision_directives(context, revision, directives)
        for script in directives:
            for op_list in (*script.upgrade_ops_list, *script.downgrade_ops_list):
                _make_rerunnable(op_list)
    for script in directives:
        assert script.upgrade_ops is not None
        metadata = context.opts.get("target_metadata")
        warnings = _warnings(script, fresh, context.dialect, metadata, renamed)
        for warning, _ in warnings:
            print(f"WARNING: this revision {warning}; review it before applying.", file=sys.stderr)
        # The reviewer sees the same list in the revision, above the operations (notes on NOT
        # NULL changes sit next to the operation they are about).
        notes = [ReviewNote(note) for _, note in warnings if note]
        notes[:0] = [ReviewNote(note) for note in (post_notes if script is post else pre_notes)]
        if script is post:
            notes.insert(0, ReviewNote(phase_split.POST_NOTE))
        script.upgrade_ops.ops[:0] = notes + _enum_value_notes(script.upgrade_ops)
    for rename in chosen:
        print(f"Written as a rename: {rename} (see the # REVIEW: line).", file=sys.stderr)
    if post is not None:
        print(
            f"The change removes or tightens what the running release uses: that part is in "
            f"the post revision {post.rev_id}, applied after the rollout (phase=post)."
        )


# alembic-postgresql-enum's swap of a type's values (sync_enum_values: a new type, each column
# cast to it, the old one dropped).
ENUM_SWAP = "change_enum_variants"


def _is_enum_swap(op: ops.MigrateOperation) -> bool:
    return getattr(op, "operation_name", None) == ENUM_SWAP


def _enum_swaps_keep_their_indexes(context: MigrationContext, script: ops.MigrationScript) -> None:
    """An enum swap must drop and recreate the partial indexes whose predicate uses the type:
    they depend on the comparison operator it makes between the old type and the new one, so
    PostgreSQL refuses to drop that ("cannot drop operator =(status,status_old)").

    alembic-postgresql-enum lists them in a swap it writes for the upgrade (a value removed), but
    not in the swap it writes as the downgrade of an appended value (its AddEnumValuesOp keeps
    none): that downgrade failed on any such index. Chosen here: the written revision drops and
    recreates them both ways, as the library does in its own swaps (recreated from
    pg_get_indexdef, inside the revision's transaction: the swap rewrites the table under an
    ACCESS EXCLUSIVE lock anyway), rather than refusing: a user expects `make migration` to write
    a revision that goes up and down, and nothing is done by hand that this could not do.

    Both the columns and the indexes a swap lists are read from the database as it is before the
    upgrade, so the swap runs where the schema is in that state: first in the upgrade, last in
    the downgrade. (Alembic puts it after the table changes, so a partial index the same revision
    creates or changes was missing from the list, or stale.) `op.add_enum_value` stays where it
    is: it has no IF NOT EXISTS, so it must not commit ahead of a CONCURRENTLY step a rerun
    repeats. A dependent index whose predicate names a value the swap removes cannot be
    recreated: that is refused, naming the index."""
    for upgrade_ops, downgrade_ops in zip(
        script.upgrade_ops_list, script.downgrade_ops_list, strict=True
    ):
        swaps = [op for op in upgrade_ops.ops if _is_enum_swap(op)]
        upgrade_ops.ops[:] = swaps + [op for op in upgrade_ops.ops if not _is_enum_swap(op)]
        down_swaps = [op for op in downgrade_ops.ops if _is_enum_swap(op)]
        downgrade_ops.ops[:] = [
            op for op in downgrade_ops.ops if not _is_enum_swap(op)
        ] + down_swaps
        for op in (*swaps, *down_swaps):
            swap: Any = op
            if not swap.indexes_to_recreate and context.connection is not None:
                from alembic_postgresql_enum.sql_commands.indexes import get_dependent_indexes

                found = get_dependent_indexes(context.connection, swap.schema, swap.name)
                swap.indexes_to_recreate = sorted(found, key=lambda index: index.name)
            _refuse_removed_values_in_predicates(swap)


def _refuse_removed_values_in_predicates(swap: Any) -> None:
    removed = [value for value in swap.old_values if value not in swap.new_values]
    for index in swap.indexes_to_recreate:
        used = [value for value in removed if f"'{value}'::" in index.definition]
        if used:
            values = ", ".join(repr(value) for value in used)
            raise CommandError(
                f"Index {index.name} has a predicate using {values}, which this change removes "
                f"from enum {swap.name}: no revision written. Change or drop that index first "
                "(make migration with only that change), then remove the value"
            )


def _enum_value_notes(upgrade_ops: ops.UpgradeOps) -> list[ReviewNote]:
    """alembic-postgresql-enum writes an appended value as `op.add_enum_value` (ALTER TYPE ...
    ADD VALUE, no rewrite). PostgreSQL runs it in the revision's transaction but refuses to use
    the value before that commits ("unsafe use of new value"): say where such a use belongs."""
    notes = []
    for op in upgrade_ops.ops:
        if getattr(op, "operation_name", None) != "add_enum_value":
            continue
        added: Any = getattr(op, "new_values", [])
        old: Any = getattr(op, "old_values", [])
        values = ", ".join(repr(value) for value in added if value not in old)
        notes.append(
            ReviewNote(
                f"enum {getattr(op, 'name', '')} gets {values} here; PostgreSQL lets rows and "
                "defaults use a new value only once this revision committed: use it in a later one"
            )
        )
    return notes


def configure_options(
    *, writing_revision: bool, renames_given: str | None = None
) -> dict[str, Any]:
    """Options for `context.configure` when the models are compared with the database.

    `alembic check` runs the same comparison but must see every directive, so only a run that
    writes a revision gets the hook that skips empty ones.
    """
    options: dict[str, Any] = {
        "compare_type": True,
        "compare_server_default": True,
        "include_name": not_the_runners_tables(),
        "render_item": render_item,
        # Named CHECKs, partial-index predicates and primary-key sequences (compare.py).
        "autogenerate_plugins": compare.PLUGINS,
    }
    if writing_revision:
        options["process_revision_directives"] = functools.partial(
            process_revision_directives, renames_given=renames_given
        )
    return options


IncludeName = Callable[[str | None, str, Any], bool]


def not_the_runners_tables(*others: str) -> IncludeName:
    """autogenerate's `include_name`: the runner's own tables (the checksums, and a dialect's
    `others`), like alembic_version, are nobody's model."""
    excluded = {checksums.TABLE, backfill_jobs.TABLE, *others}

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return not (type_ == "table" and name in excluded)

    return include_name


def within_schemas(schemas: set[str | None], include_name: IncludeName) -> IncludeName:
    """`include_name` that also leaves out every schema but `schemas` (and the default): with
    `include_schemas`, autogenerate would otherwise compare all a server's schemas (MySQL's
    are its databases) and drop what the models do not name."""

    def included(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema" and name is not None and name not in schemas:
            return False
        return include_name(name, type_, parent_names)

    return included


Directives = Callable[[MigrationContext, Any, list[ops.MigrationScript]], None]


def _ddl_statements(upgrade_ops: ops.UpgradeOps, fresh: set[str]) -> int:
    """How many DDL statements the operations make, about: one per table-level operation. The
    indexes of a table the revision creates count with it: nothing can fail between them that a
    rerun would not meet again (the table is new and empty)."""
    count = 0
    for op in _flatten(upgrade_ops):
        if isinstance(op, ReviewNote):
            continue
        if isinstance(op, ops.CreateIndexOp) and op.table_name in fresh:
            continue
        count += 1
    return count


def warn_mixed_ddl(process: Directives) -> Directives:
    """Autogenerate's hook, plus a warning (on stderr and in the revision) when the revision
    runs several DDL statements: on MySQL a failure between them leaves it half applied."""

    def hook(
        context: MigrationContext, revision: Any, directives: list[ops.MigrationScript]
    ) -> None:
        process(context, revision, directives)
        if not directives or directives[0].upgrade_ops is None:
            return
        upgrade_ops = directives[0].upgrade_ops
        statements = _ddl_statements(upgrade_ops, _fresh_tables(directives[0]))
        if statements > 1:
            warning = (
                f"this revision runs {statements} DDL statements, and MySQL commits each on its "
                "own: a failure between them leaves it half applied (the error names what was "
                "committed). Consider one revision per statement"
            )
            print(f"WARNING: {warning}.", file=sys.stderr)
            upgrade_ops.ops.insert(0, ReviewNote(warning))

    return hook
