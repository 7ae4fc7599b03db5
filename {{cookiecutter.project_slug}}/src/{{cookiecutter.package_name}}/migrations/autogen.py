"""Autogenerate hooks: loaded only by `make migration` and `make check`, never by upgrades."""

import sys
from collections.abc import Iterable
from typing import Any

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlmodel.sql.sqltypes import AutoString

from . import compare


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render SQLModel's `AutoString` as plain `sa.String`.

    A revision then depends on SQLAlchemy alone: it never imports `sqlmodel` or the application,
    so it keeps working after the models change or SQLModel is upgraded.
    """
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


class ReviewNote(ops.MigrateOperation):
    """A comment placed in a generated revision for its reviewer; it runs nothing."""

    def __init__(self, text: str) -> None:
        self.text = text


@renderers.dispatch_for(ReviewNote)
def _render_review_note(autogen_context: AutogenContext, op: ReviewNote) -> str:
    return f"# REVIEW: {op.text}"


def _destructive(upgrade_ops: ops.UpgradeOps) -> Iterable[str]:
    """Describe each operation in `upgrade_ops` that can lose data."""
    for op in upgrade_ops.ops:
        if isinstance(op, ops.DropTableOp):
            yield f"drops table {op.table_name}"
        elif isinstance(op, ops.ModifyTableOps):
            for sub in op.ops:
                if isinstance(sub, ops.DropColumnOp):
                    yield f"drops column {op.table_name}.{sub.column_name}"
                elif isinstance(sub, ops.AlterColumnOp) and sub.modify_type is not None:
                    yield (
                        f"changes the type of {op.table_name}.{sub.column_name} "
                        f"from {sub.existing_type} to {sub.modify_type}"
                    )


def process_revision_directives(
    context: MigrationContext, revision: Any, directives: list[ops.MigrationScript]
) -> None:
    """Write no file when nothing changed; flag operations that can lose data."""
    script = directives[0]
    upgrade_ops = script.upgrade_ops
    if upgrade_ops is None or upgrade_ops.is_empty():
        directives[:] = []
        print("No changes between the models and the database: no revision written.")
        return
    warnings = list(_destructive(upgrade_ops))
    for warning in warnings:
        print(f"WARNING: this revision {warning}; review it before applying.", file=sys.stderr)
    # The reviewer sees the same list in the revision, above the operations.
    notes = [ReviewNote(f"{warning}: existing data is lost") for warning in warnings]
    upgrade_ops.ops[:0] = notes


def configure_options(*, writing_revision: bool) -> dict[str, Any]:
    """Options for `context.configure` when the models are compared with the database.

    `alembic check` runs the same comparison but must see every directive, so only a run that
    writes a revision gets the hook that skips empty ones.
    """
    options: dict[str, Any] = {
        "compare_type": True,
        "compare_server_default": True,
        "render_item": render_item,
        # Named CHECKs, partial-index predicates and primary-key sequences (compare.py).
        "autogenerate_plugins": compare.PLUGINS,
    }
    if writing_revision:
        options["process_revision_directives"] = process_revision_directives
    return options
