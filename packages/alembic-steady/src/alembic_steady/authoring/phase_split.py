"""Autogenerate writes what removes or tightens (drops, NOT NULL) in a `post` revision of its own,
which runs once the old release is gone; the rest stays in the `pre` revision, which runs before
the new release rolls out (runner/phases.py has the two lines).

The old release still reads and writes the columns, tables and indexes a change drops, and
inserts rows without the column a change makes NOT NULL: those steps wait for `phase=post`. A new
NOT NULL column without a default is added nullable now and made NOT NULL after.
"""

from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.util import rev_id

from ..runner.phases import POST, PRE, Phases, placement

CONTRACTING = (ops.DropTableOp, ops.DropColumnOp, ops.DropIndexOp, ops.DropConstraintOp)
POST_NOTE = (
    "a post revision: it runs after the new release has rolled out (make migrate phase=post), "
    "once no instance of the old release uses what it removes"
)


def _tightens(op: ops.MigrateOperation) -> bool:
    return isinstance(op, ops.AlterColumnOp) and op.modify_nullable is False


def added_not_null_without_default(op: ops.AddColumnOp) -> bool:
    """A NOT NULL column whose rows get no value of their own: existing rows fail it, and so do
    the old release's inserts, which leave it out."""
    column = op.column
    return (
        not column.nullable
        and column.server_default is None
        and column.identity is None
        and column.computed is None
    )


def _name(op: ops.MigrateOperation) -> object:
    """The index's or constraint's name an operation makes or drops, else None."""
    return getattr(op, "index_name", None) or getattr(op, "constraint_name", None)


def _created_names(ops_list: list[ops.MigrateOperation]) -> set[object]:
    names: set[object] = set()
    for op in ops_list:
        if isinstance(op, ops.ModifyTableOps):
            names |= _created_names(op.ops)
        elif not isinstance(op, CONTRACTING) and _name(op) is not None:
            names.add(_name(op))
    return names


def _split(
    ops_list: list[ops.MigrateOperation], fresh: set[str], replaced: set[object]
) -> tuple[list[ops.MigrateOperation], list[ops.MigrateOperation]]:
    """(pre, post) operations of `ops_list`, a table's operations kept together per phase. A
    drop of what the change makes again under its name (a CHECK or an index predicate changed)
    is a replacement: it stays with the new one."""
    pre: list[ops.MigrateOperation] = []
    post: list[ops.MigrateOperation] = []
    for op in ops_list:
        if isinstance(op, ops.ModifyTableOps):
            mine, theirs = _split(op.ops, fresh, replaced)
            if mine:
                pre.append(ops.ModifyTableOps(op.table_name, mine, schema=op.schema))
            if theirs:
                post.append(ops.ModifyTableOps(op.table_name, theirs, schema=op.schema))
        elif isinstance(op, CONTRACTING) and _name(op) in replaced and _name(op) is not None:
            pre.append(op)
        elif isinstance(op, CONTRACTING) or _tightens(op):
            post.append(op)
        elif (
            isinstance(op, ops.AddColumnOp)
            and op.table_name not in fresh
            and added_not_null_without_default(op)
        ):
            column = op.column._copy()
            column.nullable = True
            pre.append(ops.AddColumnOp(op.table_name, column, schema=op.schema))
            post.append(
                ops.AlterColumnOp(
                    op.table_name,
                    column.name,
                    schema=op.schema,
                    existing_type=column.type,
                    existing_nullable=True,
                    modify_nullable=False,
                )
            )
        else:
            pre.append(op)
    return pre, post


def _reversible(upgrade_ops: ops.UpgradeOps) -> ops.DowngradeOps | None:
    try:
        return upgrade_ops.reverse()
    except (NotImplementedError, ValueError, AttributeError):
        return None


def split_phases(
    context: MigrationContext, directives: list[ops.MigrationScript], fresh: set[str]
) -> ops.MigrationScript | None:
    """Move the contracting operations of the revision autogenerate made into a post revision,
    appended to `directives`; place both on their lines' heads. The post revision, or None."""
    script = directives[0]
    upgrade_ops = script.upgrade_ops
    assert upgrade_ops is not None
    phases = Phases(context.script) if context.script is not None else None
    for key, value in placement(phases, PRE).items():
        setattr(script, key, value)  # not Alembic's "head" when the history has two
    pre_ops, post_ops = _split(list(upgrade_ops.ops), fresh, _created_names(upgrade_ops.ops))
    if not post_ops:
        return None
    pre_upgrade, post_upgrade = ops.UpgradeOps(ops=pre_ops), ops.UpgradeOps(ops=post_ops)
    pre_downgrade, post_downgrade = _reversible(pre_upgrade), _reversible(post_upgrade)
    if pre_downgrade is None or post_downgrade is None:
        return None  # an operation Alembic cannot reverse: kept in one revision, as written
    post = ops.MigrationScript(
        rev_id(),
        post_upgrade,
        post_downgrade,
        message=f"{script.message or ''} (post)".strip(),
        imports=set(script.imports),
    )
    # It depends on the pre revision it comes with (or the pre line's head, when the change has
    # nothing to add first): the post phase never runs before what it follows.
    comes_after = script.rev_id if pre_ops else None
    for key, value in placement(phases, POST, comes_after).items():
        setattr(post, key, value)
    if pre_ops:
        script.upgrade_ops, script.downgrade_ops = pre_upgrade, pre_downgrade
        directives.append(post)
    else:
        directives[:] = [post]
    return post
