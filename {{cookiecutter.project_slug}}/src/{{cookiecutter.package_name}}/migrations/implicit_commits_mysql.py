"""MySQL commits each DDL statement on its own (and whatever the transaction ran before it), so a
revision is not atomic there. Every statement a revision runs through `op` is recorded, with how
many of them are committed, so a failure half way names what stands (see errors.py).

Alembic offers no public hook around one statement; `impl._exec` is where every `op.*` operation
and `op.execute()` land. Statements run on `op.get_bind()` directly bypass it.
"""

import re
import sys
from collections.abc import Callable
from typing import Any

from alembic.operations import ops
from alembic.runtime.migration import MigrationContext

from .progress import Progress

# Statements that commit implicitly, before and after they run.
_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE)
_HEAD = re.compile(r"^[^(;]*")


def is_ddl(sql: str) -> bool:
    return _DDL.match(sql) is not None


def name_statement(sql: str) -> str:
    """The statement up to its column list, e.g. "CREATE TABLE widget" or
    "ALTER TABLE widget ADD COLUMN price INTEGER", for a message."""
    match = _HEAD.match(sql.strip())
    head = " ".join((match.group(0) if match else sql).replace("`", "").split())
    return head if len(head) <= 100 else head[:97] + "..."


def instrument(context: MigrationContext, progress: Progress) -> None:
    """Record each statement; a DDL statement commits all before it, and itself once it ran."""
    impl = context.impl
    run = impl._exec

    def _exec(construct: Any, *args: Any, **kwargs: Any) -> Any:
        compiled = (
            construct if isinstance(construct, str) else construct.compile(dialect=impl.dialect)
        )
        sql = str(compiled)
        progress.statements.append(sql)
        if not is_ddl(sql):
            return run(construct, *args, **kwargs)
        progress.committed = len(progress.statements) - 1
        result = run(construct, *args, **kwargs)
        progress.committed = len(progress.statements)
        return result

    setattr(impl, "_exec", _exec)  # noqa: B010  (mypy refuses assigning to a method)


def committed_objects(progress: Progress) -> list[str]:
    """The committed statements of the current revision, named."""
    return [name_statement(sql) for sql in progress.statements[: progress.committed]]


Directives = Callable[[MigrationContext, Any, list[ops.MigrationScript]], None]


def _ddl_statements(upgrade_ops: ops.UpgradeOps) -> int:
    """How many DDL statements the operations make, about: one per table-level operation."""
    count = 0
    for op in upgrade_ops.ops:
        if isinstance(op, ops.ModifyTableOps):
            count += len(op.ops)
        elif isinstance(op, ops.MigrateOperation) and type(op).__name__ != "ReviewNote":
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
        statements = _ddl_statements(upgrade_ops)
        if statements > 1:
            from .autogen import ReviewNote

            warning = (
                f"this revision runs {statements} DDL statements, and MySQL commits each on its "
                "own: a failure between them leaves it half applied (the error names what was "
                "committed). Consider one revision per statement"
            )
            print(f"WARNING: {warning}.", file=sys.stderr)
            upgrade_ops.ops.insert(0, ReviewNote(warning))

    return hook
