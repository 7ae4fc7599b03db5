"""authoring/drift.py: a difference between the models and the migrations, shown as the upgrade()
autogenerate would write, in the project's own prefixes and cut to a readable size."""

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from alembic_steady.authoring.drift import DRIFT_LINES, DRIFT_WIDTH, drift_as_code


class Money(sa.types.TypeDecorator[int]):
    """A project's own column type: autogenerate names it by the user module prefix."""

    impl = sa.Integer
    cache_ok = True


def context(**opts: Any) -> MigrationContext:
    return MigrationContext.configure(dialect_name="postgresql", opts=opts)


def adding(*columns: sa.Column[Any]) -> ops.UpgradeOps:
    return ops.UpgradeOps(ops=[ops.AddColumnOp("item", column) for column in columns])


def test_a_drift_is_written_in_the_projects_prefixes() -> None:
    # env.py's configure() options: the code shown is the code the project's revisions use.
    def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
        return "shop.types.Percent()" if kind == "type" and isinstance(obj, sa.Numeric) else False

    code = drift_as_code(
        adding(sa.Column("price", Money()), sa.Column("rate", sa.Numeric())),
        context(
            sqlalchemy_module_prefix="sqla.",
            alembic_module_prefix="alembic_op.",
            render_item=render_item,
            user_module_prefix="shop.types.",
        ),
    )
    assert code == (
        "    alembic_op.add_column('item', sqla.Column('price', shop.types.Money(), "
        "nullable=True))\n"
        "    alembic_op.add_column('item', sqla.Column('rate', shop.types.Percent(), "
        "nullable=True))"
    )


def test_without_options_alembics_own_prefixes_are_used() -> None:
    code = drift_as_code(adding(sa.Column("price", Money())), context())
    assert code == (
        f"    op.add_column('item', sa.Column('price', {__name__}.Money(), nullable=True))"
    )


def line_of(length: int) -> sa.Column[Any]:
    """A column whose add_column line is `length` characters long."""
    bare = drift_as_code(adding(sa.Column("note", sa.Text(), server_default="")), context())
    return sa.Column("note", sa.Text(), server_default="x" * (length - len(bare)))


def test_a_line_of_the_longest_width_is_shown_whole_and_a_longer_one_cut() -> None:
    whole = drift_as_code(adding(line_of(DRIFT_WIDTH)), context())
    assert len(whole) == DRIFT_WIDTH and not whole.endswith(" ...")
    cut = drift_as_code(adding(line_of(DRIFT_WIDTH + 1)), context())
    # One more x than the whole line: its first 200 characters drop the last parenthesis.
    end = "', nullable=True))"
    assert cut == f"{whole.removesuffix(end)}x{end[:-1]} ..."


def columns(count: int) -> ops.UpgradeOps:
    return adding(*(sa.Column(f"c{n}", sa.Integer()) for n in range(count)))


def test_the_longest_drift_shown_whole_and_a_longer_one_cut_with_a_count() -> None:
    whole = drift_as_code(columns(DRIFT_LINES), context()).split("\n")
    assert len(whole) == DRIFT_LINES
    last = DRIFT_LINES - 1
    assert (
        whole[-1] == f"    op.add_column('item', sa.Column('c{last}', sa.Integer(), nullable=True))"
    )
    cut = drift_as_code(columns(DRIFT_LINES + 3), context()).split("\n")
    assert cut[:DRIFT_LINES] == whole
    assert cut[DRIFT_LINES:] == ["    # ... 3 more line(s)"]


def test_a_drift_is_rendered_for_the_databases_dialect() -> None:
    # PostgreSQL's renderer writes JSONB's text type as sa.Text(): code that runs as written
    # (Alembic's default one writes a bare Text(), a NameError in a revision).
    code = drift_as_code(adding(sa.Column("meta", postgresql.JSONB())), context())
    assert code == (
        "    op.add_column('item', sa.Column('meta', postgresql.JSONB(astext_type=sa.Text()), "
        "nullable=True))"
    )
