"""Renames in `make migration`: what autogenerate sees as a drop and an add is written as a rename.

Autogenerate compares names only, so a renamed column comes out as `drop_column` + `add_column`,
which loses the column's data. Read as a rename here:

- a column dropped and one added on the same table in one change, when they are the only ones
  of their type dropped and added there (a guess: the revision says so in a `# REVIEW:` line);
- a table dropped and one created in one change with the same columns (names and types);
- what `renames=` says (`make migration renames="item.title=name,old_table=new_table"`), in
  place of any guess; `renames=none` takes none. An interactive run asks about each guess; a
  run without a terminal (CI, a script) never asks and takes the guesses.

A column rename on PostgreSQL is written as expand/contract, since the release still serving
during the deploy reads and writes the old name and the new release the new one:

    pre revision    op.add_column(new, nullable)           # no default yet: see the trigger
                    op.create_rename_sync(table, old, new)   # a trigger copies writes both ways
                    op.queue_backfill(table, {new: old}, where="new IS NULL")
    post revision   op.require_backfill("table.new")
                    op.drop_rename_sync(table, old, new)
                    op.set_not_null(table, new)            # where the model says NOT NULL
                    op.drop_column(table, old)

On MySQL (no backfill queue) and for tables it is a plain rename (`op.alter_column(...,
new_column_name=...)`, with what the models changed on the column; `op.rename_table`): the old
release fails on the old name from the moment it runs, which its `# REVIEW:` line says and
`make lint-migrations` flags in a pre revision.
"""

import hashlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.operations import MigrateOperation, Operations, ops
from alembic.util import CommandError

from . import ops as safe
from .backfill_queue import CancelBackfillOp, QueueBackfillOp, RequireBackfillOp

NONE = "none"
SYNC_PREFIX = "rename_sync_"
NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Rename:
    """`old` renamed `new`: columns of `table`, or tables when `table` is None."""

    table: str | None
    old: str
    new: str

    def __str__(self) -> str:
        if self.table is None:
            return f"table {self.old} -> {self.new}"
        return f"{self.table}.{self.old} -> {self.table}.{self.new}"

    @property
    def backfill_name(self) -> str:
        return f"{self.table}.{self.new}"


def parse(given: str | None) -> list[Rename] | None:
    """`renames=` as the author wrote it: None when not given (guess), [] for "none"."""
    if given is None or not given.strip():
        return None
    if given.strip().lower() == NONE:
        return []
    found = []
    for item in given.split(","):
        old, sep, new = item.strip().partition("=")
        table, dot, column = old.partition(".")
        if (
            not sep
            or not new.strip()
            or "." in new
            or "=" in new
            or old.count(".") > 1
            or (dot and not (table and column))
        ):
            raise CommandError(
                f"renames={given!r}: {item.strip()!r} is not `table.old=new` (a column) or "
                "`old=new` (a table); separate several with commas, or give renames=none"
            )
        if dot:
            found.append(Rename(table.strip(), column.strip(), new.strip()))
        else:
            found.append(Rename(None, old.strip(), new.strip()))
    return found


# -- what the change drops and adds ------------------------------------------------------------
# Whether a column of the database and one of the models have the same type, as autogenerate
# judges it (its dialect's compare_type: MariaDB's INTEGER(11) is the models' Integer).
SameType = Callable[[sa.Column[Any], sa.Column[Any]], bool]


def _table_ops(upgrade_ops: ops.UpgradeOps) -> Iterator[ops.ModifyTableOps]:
    yield from (op for op in upgrade_ops.ops if isinstance(op, ops.ModifyTableOps))


def _one_to_one(
    olds: list[sa.Column[Any]], news: list[sa.Column[Any]], same_type: SameType
) -> list[tuple[str, str]]:
    """(old, new) for each old column whose type exactly one new column has, and no other old."""
    pairs = []
    for old in olds:
        matches = [new for new in news if same_type(old, new)]
        if len(matches) != 1:
            continue
        rivals = [other for other in olds if same_type(other, matches[0])]
        if rivals == [old]:
            pairs.append((old.name, matches[0].name))
    return pairs


def _column_pairs(upgrade_ops: ops.UpgradeOps, same_type: SameType) -> list[Rename]:
    """The columns dropped and added on one table that are the only ones of their type there."""
    found = []
    for table_ops in _table_ops(upgrade_ops):
        dropped = [op.to_column() for op in table_ops.ops if isinstance(op, ops.DropColumnOp)]
        # (A drop written by hand, not reflected, has no type to compare.)
        olds = [column for column in dropped if not isinstance(column.type, sa.types.NullType)]
        news = [op.column for op in table_ops.ops if isinstance(op, ops.AddColumnOp)]
        found += [
            Rename(table_ops.table_name, old, new)
            for old, new in _one_to_one(olds, news, same_type)
        ]
    return found


def _same_columns(old: sa.Table, new: sa.Table, same_type: SameType) -> bool:
    if set(old.columns.keys()) != set(new.columns.keys()):
        return False
    return all(same_type(column, new.columns[column.key]) for column in old.columns)


def _table_pairs(upgrade_ops: ops.UpgradeOps, same_type: SameType) -> list[Rename]:
    """A table dropped and one created with the same columns, the only such pair."""
    dropped = [op.to_table() for op in upgrade_ops.ops if isinstance(op, ops.DropTableOp)]
    created = [op.to_table() for op in upgrade_ops.ops if isinstance(op, ops.CreateTableOp)]
    found = []
    for old in dropped:
        same = [new for new in created if _same_columns(old, new, same_type)]
        if len(same) == 1:
            found.append(Rename(None, old.name, same[0].name))
    return found


def guessed(upgrade_ops: ops.UpgradeOps, same_type: SameType) -> list[Rename]:
    # In a stable order (autogenerate's varies): tables, then columns, each by name.
    return sorted(_table_pairs(upgrade_ops, same_type), key=str) + sorted(
        _column_pairs(upgrade_ops, same_type), key=str
    )


def _ask(rename: Rename) -> bool:
    answer = input(f"Was {rename} renamed (not dropped and added)? [Y/n] ").strip().lower()
    return answer in ("", "y", "yes")


def chosen(
    upgrade_ops: ops.UpgradeOps,
    same_type: SameType,
    given: str | None,
    ask: Callable[[Rename], bool] | None = None,
) -> tuple[list[Rename], bool]:
    """(the renames to write, whether they are guesses). `given` (renames=) replaces the
    guesses; each must name a drop and an add of this change. `ask` confirms each guess (an
    interactive run)."""
    wanted = parse(given)
    if wanted is None:
        found = guessed(upgrade_ops, same_type)
        if ask is None and sys.stdin is not None and sys.stdin.isatty():
            ask = _ask
        return [rename for rename in found if ask is None or ask(rename)], ask is None
    for rename in wanted:
        _check_given(upgrade_ops, rename, given)
    return wanted, False


def _check_given(upgrade_ops: ops.UpgradeOps, rename: Rename, given: str | None) -> None:
    if rename.table is None:
        dropped = [op.table_name for op in upgrade_ops.ops if isinstance(op, ops.DropTableOp)]
        added = [op.table_name for op in upgrade_ops.ops if isinstance(op, ops.CreateTableOp)]
        prefix = "table "
    else:
        subs = [op for t in _table_ops(upgrade_ops) if t.table_name == rename.table for op in t.ops]
        dropped = [op.column_name for op in subs if isinstance(op, ops.DropColumnOp)]
        added = [op.column.name for op in subs if isinstance(op, ops.AddColumnOp)]
        prefix = f"{rename.table}."
    if rename.old not in dropped or rename.new not in added:

        def listed(names: list[str]) -> str:
            return ", ".join(prefix + name for name in sorted(names)) or "nothing"

        raise CommandError(
            f"renames={given!r}: this change does not drop {prefix}{rename.old} and add "
            f"{prefix}{rename.new} (it drops {listed(dropped)}; adds {listed(added)}): name what "
            "the models renamed; no revision written"
        )


# -- the plain forms ---------------------------------------------------------------------------
# A table's indexes in the database, by their columns: {("name",): "ix_widget_name"}.
IndexesOf = Callable[[str, str | None], dict[tuple[str, ...], str]]


def indexes_in(connection: sa.Connection | None) -> IndexesOf | None:
    """The database's indexes of a table, by their columns (none without a database)."""
    if connection is None:
        return None

    def read(table: str, schema: str | None) -> dict[tuple[str, ...], str]:
        found = sa.inspect(connection).get_indexes(table, schema=schema)
        return {tuple(map(str, i["column_names"])): i["name"] for i in found if i["name"]}

    return read


def plain(
    upgrade_ops: ops.UpgradeOps,
    renames: list[Rename],
    indexes_of: IndexesOf | None,
    same_type: SameType,
) -> list[str]:
    """Replace each rename's drop and add by a rename in place; a renamed table's indexes are
    renamed where `indexes_of` reads the database's (PostgreSQL). Returns the review notes."""
    notes = []
    for rename in renames:
        if rename.table is None:
            _plain_table(upgrade_ops, rename, indexes_of)
            notes.append(
                f"table {rename.old} is renamed {rename.new} (the models dropped one and created "
                "the other with the same columns): check it is a rename. The release still "
                f"serving during the deploy fails on {rename.old} from here: deploy it with a "
                "pause, or keep the old name (__tablename__)"
            )
            continue
        table_ops = _table_ops_of(upgrade_ops, rename.table)
        drop = table_ops.ops[_index_of(table_ops, ops.DropColumnOp, rename.old)]
        at = _index_of(table_ops, ops.AddColumnOp, rename.new)
        add = table_ops.ops[at]
        assert isinstance(drop, ops.DropColumnOp) and isinstance(add, ops.AddColumnOp)
        steps = _renamed_column(rename, table_ops.schema, drop.to_column(), add.column, same_type)
        table_ops.ops[at : at + 1] = steps
        table_ops.ops.remove(drop)
        notes.append(_column_note(rename, steps))
    return notes


def _default_sql(default: Any) -> str | None:
    """The text of a server default's DEFAULT clause: 'x' for the models' "x" (SQLAlchemy
    quotes a plain string), the SQL itself for text() or an expression; a number bare, quoted
    or not (MariaDB reports an INT's default as 0, the models' "0" is '0': the same value)."""
    if default is None:
        return None
    arg = getattr(default, "arg", default)
    sql = "'" + arg.replace("'", "''") + "'" if isinstance(arg, str) else str(arg)
    bare = sql[1:-1] if len(sql) > 1 and sql[0] == sql[-1] == "'" else sql
    return bare if NUMBER.fullmatch(bare) else sql


def _renamed_column(
    rename: Rename,
    schema: str | None,
    old: sa.Column[Any],
    new: sa.Column[Any],
    same_type: SameType,
) -> list[ops.AlterColumnOp]:
    """The rename, carrying what the models changed on the column with it (MySQL's CHANGE
    COLUMN states the whole definition: what it leaves out is lost, and the next autogenerate
    finds it again); then, where the models add NOT NULL, that step, which the phase split puts
    in the post revision as any NOT NULL (the rename stays in pre: the new release uses the new
    name from its rollout on)."""
    assert rename.table is not None
    op = RenameColumnOp(
        rename.table,
        rename.old,
        schema=schema,
        modify_name=rename.new,
        existing_type=old.type,
        existing_nullable=old.nullable,
        existing_server_default=old.server_default,
        existing_comment=old.comment,
    )
    if not same_type(old, new):  # a guess pairs one type; renames= may name two
        op.modify_type = new.type
    # Compared as the SQL of the DEFAULT clause, not as objects: the dropped column's default
    # is reflected (text() of what the server reports, 'x') and the added one's is the models'
    # (a plain "x", or text()), so two equal defaults are never the same object, nor always
    # the same kind. Text errs one way only: a default spelled otherwise (CURRENT_TIMESTAMP and
    # current_timestamp()) is restated, which CHANGE COLUMN does anyway; a changed one is never
    # taken for the same.
    if _default_sql(new.server_default) != _default_sql(old.server_default):
        op.modify_server_default = new.server_default
    if new.comment != old.comment:
        op.modify_comment = new.comment
    if new.nullable and not old.nullable:
        op.modify_nullable = True
    if new.nullable or not old.nullable:
        return [op]
    not_null = ops.AlterColumnOp(
        rename.table,
        rename.new,
        schema=schema,
        existing_type=new.type,
        existing_nullable=True,
        # MySQL's MODIFY restates the default and comment too: the models' ones, as renamed.
        existing_server_default=new.server_default,
        existing_comment=new.comment,
        modify_nullable=False,
    )
    return [op, not_null]


def _column_note(rename: Rename, steps: list[ops.AlterColumnOp]) -> str:
    """The rename's review note, with what else changes on the column."""
    op = steps[0]
    changes = []
    if op.modify_type is not None:
        changes.append("its type changed")  # (the type change's own note spells both types)
    if op.modify_nullable:
        changes.append("made nullable")
    if op.modify_server_default is not False:
        default = _default_sql(op.modify_server_default)
        changes.append(f"given the default {default}" if default else "its default dropped")
    if op.modify_comment is not False:
        changes.append("its comment changed")
    note = f"{rename.table}.{rename.old} is renamed {rename.new}"
    if changes:
        note += ", and " + ", ".join(changes)
    note += (
        f": check it is a rename. The release still serving during the deploy fails on "
        f"{rename.old} from here"
    )
    if len(steps) > 1:
        note += (
            f". {rename.new} is made NOT NULL in the post revision: rows holding NULL make that "
            "ALTER fail (MySQL's strict mode); give them a value before it runs"
        )
    return note


class RenameColumnOp(ops.AlterColumnOp):
    """Alembic's `alter_column(..., new_column_name=...)`, whose reverse renames back to the old
    name and definition (Alembic's own reverse of an AlterColumnOp leaves the name out)."""

    def reverse(self) -> "RenameColumnOp":
        assert self.modify_name is not None
        back = super().reverse()  # the definition as it was: Alembic swaps modify_ and existing_
        assert isinstance(back, RenameColumnOp)
        back.column_name, back.modify_name = self.modify_name, self.column_name
        return back


class RenameTableOp(ops.RenameTableOp):
    """Alembic's `rename_table`, with the reverse Alembic's lacks."""

    def reverse(self) -> "RenameTableOp":
        return RenameTableOp(self.new_table_name, self.table_name, schema=self.schema)


def _plain_table(upgrade_ops: ops.UpgradeOps, rename: Rename, indexes_of: IndexesOf | None) -> None:
    created = next(
        op
        for op in upgrade_ops.ops
        if isinstance(op, ops.CreateTableOp) and op.table_name == rename.new
    )
    at = upgrade_ops.ops.index(created)
    upgrade_ops.ops[at] = RenameTableOp(rename.old, rename.new, schema=created.schema)
    upgrade_ops.ops[:] = [
        op
        for op in upgrade_ops.ops
        if not (isinstance(op, ops.DropTableOp) and op.table_name == rename.old)
    ]
    # The renamed table keeps its indexes: an index the models want under a new name is the old
    # one (same columns) renamed, not a second one built (where the database's are read).
    existing = indexes_of(rename.old, created.schema) if indexes_of is not None else {}
    renamed = set()
    for table_ops in _table_ops(upgrade_ops):
        if table_ops.table_name != rename.new:
            continue
        for at, op in enumerate(table_ops.ops):
            if isinstance(op, ops.CreateIndexOp) and op.index_name is not None:
                columns = tuple(str(getattr(c, "name", c)) for c in op.columns)
                if (old_name := existing.get(columns)) is not None:
                    table_ops.ops[at] = RenameIndexOp(old_name, str(op.index_name), op.schema)
                    renamed.add(old_name)
    # Autogenerate drops the old table's indexes: those renamed stay, the others now belong to
    # the table under its new name.
    for table_ops in _table_ops(upgrade_ops):
        if table_ops.table_name == rename.old:
            table_ops.table_name = rename.new
            table_ops.ops[:] = [
                op
                for op in table_ops.ops
                if not (isinstance(op, ops.DropIndexOp) and op.index_name in renamed)
            ]
            for op in table_ops.ops:
                if isinstance(op, ops.DropIndexOp):
                    op.table_name = rename.new
    upgrade_ops.ops[:] = [
        op for op in upgrade_ops.ops if not (isinstance(op, ops.ModifyTableOps) and not op.ops)
    ]


@Operations.register_operation("rename_index")
class RenameIndexOp(MigrateOperation):
    """ALTER INDEX ... RENAME TO: a catalog change, a moment's lock."""

    def __init__(self, old_name: str, new_name: str, schema: str | None = None) -> None:
        self.old_name = old_name
        self.new_name = new_name
        self.schema = schema

    @classmethod
    def rename_index(
        cls, operations: Operations, old_name: str, new_name: str, *, schema: str | None = None
    ) -> None:  # pragma: no mutate block
        """Rename an index (what a renamed table's indexes need to match the models)."""
        operations.invoke(cls(old_name, new_name, schema))

    def reverse(self) -> "RenameIndexOp":
        return RenameIndexOp(self.new_name, self.old_name, self.schema)


@Operations.implementation_for(RenameIndexOp)
def _rename_index(operations: Operations, op: RenameIndexOp) -> None:
    old = safe._table(operations, op.old_name, op.schema)
    new = safe._quote(operations, op.new_name)
    if operations.get_context().dialect.name == "mysql":
        raise CommandError(
            "op.rename_index is PostgreSQL's: on MySQL use ALTER TABLE ... RENAME INDEX"
        )
    operations.execute(f"ALTER INDEX {old} RENAME TO {new}")


# -- the expand/contract form (PostgreSQL) -----------------------------------------------------
def sync_name(table: str, old: str, new: str) -> str:
    """The trigger's (and its function's) name, cut to PostgreSQL's 63 bytes with a hash."""
    name = f"{SYNC_PREFIX}{table}_{old}_{new}"
    if len(name.encode()) <= safe.IDENTIFIER_MAX:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: safe.IDENTIFIER_MAX - 9].decode(errors='ignore')}_{digest}"


class _Sync(MigrateOperation):
    def __init__(self, table_name: str, old: str, new: str, *, schema: str | None = None) -> None:
        self.table_name = table_name
        self.old = old
        self.new = new
        self.schema = schema


@Operations.register_operation("create_rename_sync")
class CreateRenameSyncOp(_Sync):
    """While both releases run, a trigger copies each write of `old` to `new` and back: the
    old release writes `old` only, the new one `new` only, and each reads what the other wrote.

    On INSERT the new column wins when given (the pre revision adds it without a default, so a
    value there is the new release's); on UPDATE the column the statement changed wins."""

    @classmethod
    def create_rename_sync(
        cls,
        operations: Operations,
        table_name: str,
        old: str,
        new: str,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Keep `old` and `new` of `table_name` equal on every write (a trigger)."""
        operations.invoke(cls(table_name, old, new, schema=schema))

    def reverse(self) -> "DropRenameSyncOp":
        return DropRenameSyncOp(self.table_name, self.old, self.new, schema=self.schema)


@Operations.register_operation("drop_rename_sync")
class DropRenameSyncOp(_Sync):
    """Drop the trigger of `create_rename_sync` (the post revision, before the old column goes)."""

    @classmethod
    def drop_rename_sync(
        cls,
        operations: Operations,
        table_name: str,
        old: str,
        new: str,
        *,
        schema: str | None = None,
    ) -> None:  # pragma: no mutate block
        """Stop copying writes between `old` and `new`."""
        operations.invoke(cls(table_name, old, new, schema=schema))

    def reverse(self) -> CreateRenameSyncOp:
        return CreateRenameSyncOp(self.table_name, self.old, self.new, schema=self.schema)


def _sync_parts(operations: Operations, op: _Sync) -> tuple[str, str]:
    if operations.get_context().dialect.name != "postgresql":
        raise CommandError(
            "op.create_rename_sync and op.drop_rename_sync are PostgreSQL's: on MySQL rename "
            "with op.alter_column(..., new_column_name=...) (docs/deploy-phases.md, Renames)"
        )
    name = sync_name(op.table_name, op.old, op.new)
    function = safe._table(operations, name, op.schema)
    return function, safe._quote(operations, name)


@Operations.implementation_for(CreateRenameSyncOp)
def _create_rename_sync(operations: Operations, op: CreateRenameSyncOp) -> None:
    function, trigger = _sync_parts(operations, op)
    old, new = safe._quote(operations, op.old), safe._quote(operations, op.new)
    operations.execute(
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    IF NEW.{new} IS NULL THEN NEW.{new} := NEW.{old}; ELSE NEW.{old} := NEW.{new}; "
        "END IF;\n"
        f"  ELSIF NEW.{new} IS DISTINCT FROM OLD.{new} THEN NEW.{old} := NEW.{new};\n"
        f"  ELSIF NEW.{old} IS DISTINCT FROM OLD.{old} THEN NEW.{new} := NEW.{old};\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END $$"
    )
    # In the pre revision it follows add_column on the same table, whose lock it already holds.
    # Dropped first: a revision rerun after a later step failed makes it again.
    table = safe._table(operations, op.table_name, op.schema)
    operations.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    operations.execute(
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


@Operations.implementation_for(DropRenameSyncOp)
def _drop_rename_sync(operations: Operations, op: DropRenameSyncOp) -> None:
    function, trigger = _sync_parts(operations, op)
    table = safe._table(operations, op.table_name, op.schema)
    # DROP TRIGGER takes the table's ACCESS EXCLUSIVE lock for a moment: waited for briefly,
    # outside the revision's transaction, as the other brief locks of a post revision are.
    with safe._step_by_step(operations):
        safe._briefly(
            operations, lambda: operations.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        )
        operations.execute(f"DROP FUNCTION IF EXISTS {function}()")


def _table_ops_of(op_list: ops.OpContainer, table: str) -> ops.ModifyTableOps:
    """`table`'s operations in `op_list` (the split keeps a table's operations together)."""
    return next(
        op for op in op_list.ops if isinstance(op, ops.ModifyTableOps) and op.table_name == table
    )


def _index_of(table_ops: ops.ModifyTableOps, kind: type, column: str) -> int:
    """Where the AddColumnOp or DropColumnOp (`kind`) of `column` is in `table_ops`."""
    return next(
        at
        for at, op in enumerate(table_ops.ops)
        if (isinstance(op, ops.AddColumnOp) and op.column.name == column)
        or (isinstance(op, ops.DropColumnOp) and op.column_name == column)
        if isinstance(op, kind)
    )


@dataclass
class Expanding:
    """A column rename on its way through the phase split: the new column as the models have
    it, added in the pre revision without its NOT NULL and default (they come in post)."""

    rename: Rename
    schema: str | None
    new: sa.Column[Any]
    old: sa.Column[Any]


def prepare_expand(upgrade_ops: ops.UpgradeOps, renames: list[Rename]) -> list[Expanding]:
    """Before the phase split: the new column is added nullable and without a default, so the
    sync trigger can tell the new release's inserts (a value there) from the old one's."""
    expanding = []
    for rename in renames:
        assert rename.table is not None
        table_ops = _table_ops_of(upgrade_ops, rename.table)
        add = table_ops.ops[_index_of(table_ops, ops.AddColumnOp, rename.new)]
        drop = table_ops.ops[_index_of(table_ops, ops.DropColumnOp, rename.old)]
        assert isinstance(add, ops.AddColumnOp) and isinstance(drop, ops.DropColumnOp)
        column = add.column._copy()
        column.nullable, column.server_default = True, None
        table_ops.ops[table_ops.ops.index(add)] = ops.AddColumnOp(
            rename.table, column, schema=add.schema
        )
        expanding.append(Expanding(rename, add.schema, add.column, drop.to_column()))
    return expanding


def expand(
    pre: ops.MigrationScript, post: ops.MigrationScript, found: Expanding, dialect: Any
) -> None:
    """After the phase split: the pre revision keeps both columns equal and queues the copy of
    the rows; the post revision waits for the copy, then makes the new column what the models
    say and drops the old one. Each downgrade undoes its own part."""
    rename, schema = found.rename, found.schema
    assert rename.table is not None and pre.upgrade_ops and pre.downgrade_ops
    assert post.upgrade_ops and post.downgrade_ops
    table = rename.table
    quote = dialect.identifier_preparer.quote
    old, new = quote(rename.old), quote(rename.new)
    sync = CreateRenameSyncOp(table, rename.old, rename.new, schema=schema)
    # Named "<table>.<new>" (rename.backfill_name), as a queued backfill is by default.
    queued = QueueBackfillOp(table, {rename.new: old}, where=f"{new} IS NULL", schema=schema)
    # pre: add the new column (already there), keep it in sync, queue the copy.
    up = _table_ops_of(pre.upgrade_ops, table)
    at = _index_of(up, ops.AddColumnOp, rename.new) + 1
    up.ops[at:at] = [sync, queued]
    down = _table_ops_of(pre.downgrade_ops, table)
    at = _index_of(down, ops.DropColumnOp, rename.new)
    down.ops[at:at] = [CancelBackfillOp(rename.backfill_name), sync.reverse()]
    # post: the copy finished, no trigger; the new column as the models have it; the old dropped.
    # The check comes first in the revision, before any table's step: a refusal changes nothing.
    checks = [op for op in post.upgrade_ops.ops if isinstance(op, RequireBackfillOp)]
    post.upgrade_ops.ops.insert(len(checks), RequireBackfillOp(rename.backfill_name))
    up = _table_ops_of(post.upgrade_ops, table)
    at = _index_of(up, ops.DropColumnOp, rename.old)
    new_type = found.new.type
    finishing: list[MigrateOperation] = [sync.reverse()]
    if found.new.server_default is not None:
        finishing.append(
            ops.AlterColumnOp(
                table,
                rename.new,
                schema=schema,
                existing_type=new_type,
                existing_nullable=True,
                existing_server_default=None,  # so its reverse drops the default
                modify_server_default=found.new.server_default,
            )
        )
    if not found.new.nullable:
        finishing.append(safe.SetNotNullOp(table, rename.new, schema=schema))
    up.ops[at:at] = finishing
    # post's downgrade: the old column back, filled from the new one, then as it was.
    down = _table_ops_of(post.downgrade_ops, table)
    at = _index_of(down, ops.AddColumnOp, rename.old)
    column = found.old._copy()
    column.nullable, column.server_default = True, None
    restoring: list[MigrateOperation] = [
        ops.AddColumnOp(table, column, schema=schema),
        sync,
        safe.BackfillOp(table, {rename.old: new}, where=f"{old} IS NULL", schema=schema),
    ]
    if found.old.server_default is not None:
        restoring.append(
            ops.AlterColumnOp(
                table,
                rename.old,
                schema=schema,
                existing_type=found.old.type,
                existing_nullable=True,
                modify_server_default=found.old.server_default,
            )
        )
    if not found.old.nullable:
        restoring.append(safe.SetNotNullOp(table, rename.old, schema=schema))
    down.ops[at : at + 1] = restoring
    # What the post upgrade changed on the new column goes back (it comes after in `down`, as
    # the reverse of the steps inserted above).
    undo = [op.reverse() for op in reversed(finishing[1:])]
    down.ops[0:0] = undo


def expand_notes(found: Expanding, guessed: bool) -> tuple[str, str]:
    """(the pre revision's review note, the post revision's)."""
    rename = found.rename
    why = (
        "a guess: the one column of its type dropped and added there"
        if guessed
        else "as renames= said"
    )
    pre = (
        f"{rename.table}.{rename.old} is renamed {rename.new} ({why}), as expand/contract: "
        f"{rename.new} is added, a trigger keeps both equal while the old and the new release "
        f"run, `make backfill` copies the rows, and the post revision drops {rename.old}. Not a "
        f'rename? make migration again with renames=none (or renames="table.old=new")'
    )
    post = (
        f"drops {rename.table}.{rename.old}, renamed {rename.new}: its values are in "
        f"{rename.new} once the backfill {rename.backfill_name} has finished (required above)"
    )
    return pre, post
