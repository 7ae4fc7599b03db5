"""A difference between the models and the migrations, shown as the `upgrade()` autogenerate
would write for it: what `make check` and the models test print (rather than Alembic's list of
`Table(...)` reprs, one line of up to hundreds of kilobytes)."""

from alembic.autogenerate import render_python_code
from alembic.operations.ops import UpgradeOps
from alembic.runtime.migration import MigrationContext

from ..project import Commands

# The most of a drift's revision shown (a new model's table is a few lines), and the longest
# line (a long server default or CHECK is cut).
DRIFT_LINES, DRIFT_WIDTH = 40, 200


# How every drift message begins (the fleet's status tells a drift from other failures by it).
DRIFT_SAYS = "The models differ from the migrations"


def drift_message(upgrade_ops: UpgradeOps, context: MigrationContext, commands: Commands) -> str:
    return (
        f"{DRIFT_SAYS}: write a revision for the change with "
        f"{commands.migration}. Its upgrade() would be:\n{drift_as_code(upgrade_ops, context)}"
    )


def drift_as_code(upgrade_ops: UpgradeOps, context: MigrationContext) -> str:
    """The upgrade() autogenerate would write for `upgrade_ops`, cut to DRIFT_LINES lines of
    DRIFT_WIDTH characters at most."""
    opts = context.opts
    code = render_python_code(
        upgrade_ops,
        sqlalchemy_module_prefix=opts.get("sqlalchemy_module_prefix", "sa."),
        alembic_module_prefix=opts.get("alembic_module_prefix", "op."),
        render_item=opts.get("render_item"),
        # The dialect's, without the env's script (whose context would want the metadata).
        migration_context=MigrationContext.configure(dialect=context.dialect),
        user_module_prefix=opts.get("user_module_prefix"),
    )
    lines = [
        line if len(line) <= DRIFT_WIDTH else f"{line[:DRIFT_WIDTH]} ..."
        for line in code.splitlines()
        if "###" not in line  # Alembic's "commands auto generated" markers
    ]
    if len(lines) > DRIFT_LINES:
        rest = len(lines) - DRIFT_LINES
        lines = [*lines[:DRIFT_LINES], f"    # ... {rest} more line(s)"]
    return "\n".join(lines)
