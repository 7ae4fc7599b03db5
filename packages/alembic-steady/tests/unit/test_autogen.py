"""authoring/autogen.py: how autogenerate writes a revision (types, review notes, warnings,
non-blocking forms), checked on operations built by hand and rendered by Alembic."""

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import mysql, postgresql

from alembic_steady.authoring import autogen
from alembic_steady.authoring import ops as safe
from alembic_steady.authoring.autogen import ReviewNote

# -- render_item ---------------------------------------------------------------------------


class AutoString(sa.types.TypeDecorator[str]):
    """Named as SQLModel's string type is (sqlmodel.sql.sqltypes.AutoString)."""

    impl = sa.String
    cache_ok = True


@pytest.mark.parametrize(
    ("type_", "rendered"),
    [(AutoString(80), "sa.String(length=80)"), (AutoString(), "sa.String()")],
)
def test_sqlmodels_autostring_renders_as_plain_sqlalchemy(type_: Any, rendered: str) -> None:
    assert autogen.render_item("type", type_, None) == rendered


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("type", sa.String(80)),
        ("type", sa.Integer()),
        ("column", AutoString(80)),  # only types are rendered here
        ("server_default", AutoString(80)),
    ],
)
def test_everything_else_is_left_to_alembic(kind: str, obj: Any) -> None:
    assert autogen.render_item(kind, obj, None) is False


def render(*operations: ops.MigrateOperation) -> str:
    context = MigrationContext.configure(dialect_name="postgresql")
    return render_python_code(
        ops.UpgradeOps(ops=list(operations)),
        migration_context=context,
        render_item=autogen.render_item,
    )


def test_a_revision_never_imports_sqlmodel() -> None:
    code = render(ops.AddColumnOp("item", sa.Column("name", AutoString(80), nullable=False)))
    assert "op.add_column('item', sa.Column('name', sa.String(length=80), nullable=False))" in code
    assert "AutoString" not in code and "sqlmodel" not in code


def test_review_notes_and_safe_operations_render_as_code() -> None:
    code = render(
        ReviewNote("look here"),
        safe.CreateIndexConcurrentlyOp("ix_item_name", "item", ["name"], unique=True),
        safe.SetNotNullOp("item", "name", schema="shop"),
    )
    assert "# REVIEW: look here" in code
    assert "op.create_index_concurrently('ix_item_name', 'item', ['name'], unique=True)" in code
    assert "op.set_not_null('item', 'name', schema='shop')" in code


# -- configure_options ---------------------------------------------------------------------


def test_writing_a_revision_gets_the_directives_hook() -> None:
    options = autogen.configure_options(writing_revision=True)
    assert options["process_revision_directives"] is autogen.process_revision_directives
    assert options["render_item"] is autogen.render_item
    assert options["compare_type"] is True and options["compare_server_default"] is True
    assert "autogenerate_plugins" in options


def test_check_sees_every_directive() -> None:
    options = autogen.configure_options(writing_revision=False)
    assert "process_revision_directives" not in options
    assert options["render_item"] is autogen.render_item
    assert options["compare_type"] is True and options["compare_server_default"] is True


# -- warn_mixed_ddl ------------------------------------------------------------------------


def script(*upgrade: ops.MigrateOperation) -> ops.MigrationScript:
    return ops.MigrationScript("rev", ops.UpgradeOps(ops=list(upgrade)), ops.DowngradeOps(ops=[]))


def passthrough(context: Any, revision: Any, directives: list[ops.MigrationScript]) -> None:
    pass


def test_several_ddl_statements_are_flagged_in_the_revision_and_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    directives = [
        script(
            ops.CreateTableOp("widget", [sa.Column("id", sa.Integer(), primary_key=True)]),
            ops.ModifyTableOps(
                "item",
                [
                    ops.AddColumnOp("item", sa.Column("price", sa.Integer())),
                    ops.CreateIndexOp("ix_item_price", "item", ["price"]),
                ],
            ),
        )
    ]
    called: list[object] = []

    def process(context: Any, revision: Any, given: list[ops.MigrationScript]) -> None:
        called.append(given)

    autogen.warn_mixed_ddl(process)(None, None, directives)
    assert called == [directives]  # the wrapped hook runs first
    upgrade_ops = directives[0].upgrade_ops
    assert upgrade_ops is not None
    note = upgrade_ops.ops[0]
    assert isinstance(note, ReviewNote)
    assert note.text == (
        "this revision runs 3 DDL statements, and MySQL commits each on its own: a failure "
        "between them leaves it half applied (the error names what was committed). Consider "
        "one revision per statement"
    )
    assert len(upgrade_ops.ops) == 3
    assert capsys.readouterr().err == f"WARNING: {note.text}.\n"


def test_two_ddl_statements_are_already_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    directives = [script(ops.DropTableOp("a"), ops.DropTableOp("b"))]
    autogen.warn_mixed_ddl(passthrough)(None, None, directives)
    assert directives[0].upgrade_ops is not None
    note = directives[0].upgrade_ops.ops[0]
    assert isinstance(note, ReviewNote) and note.text.startswith("this revision runs 2 DDL")
    assert capsys.readouterr().err.startswith("WARNING: this revision runs 2 DDL statements")


@pytest.mark.parametrize(
    "operations",
    [
        [ops.CreateTableOp("widget", [sa.Column("id", sa.Integer())])],
        [ReviewNote("a note"), ops.ModifyTableOps("item", [ops.DropColumnOp("item", "old")])],
        [],
        # A new table's indexes count with it: an indexed column of a new model is one step.
        [
            ops.CreateTableOp("tag", [sa.Column("id", sa.Integer()), sa.Column("tag", sa.Text())]),
            ops.CreateIndexOp("ix_tag_tag", "tag", ["tag"]),
            ops.CreateIndexOp("ix_tag_id", "tag", ["id"]),
        ],
    ],
)
def test_one_ddl_statement_is_not_flagged(
    capsys: pytest.CaptureFixture[str], operations: list[ops.MigrateOperation]
) -> None:
    directives = [script(*operations)]
    autogen.warn_mixed_ddl(passthrough)(None, None, directives)
    assert directives[0].upgrade_ops is not None
    assert directives[0].upgrade_ops.ops == operations
    assert capsys.readouterr().err == ""


def test_no_revision_written_is_not_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    def nothing(context: Any, revision: Any, directives: list[ops.MigrationScript]) -> None:
        directives[:] = []

    directives = [script(ops.DropTableOp("a"), ops.DropTableOp("b"))]
    autogen.warn_mixed_ddl(nothing)(None, None, directives)
    assert directives == []
    assert capsys.readouterr().err == ""


# -- process_revision_directives -----------------------------------------------------------


def on(dialect: str, metadata: sa.MetaData | None = None) -> Any:
    """A migration context on `dialect` (the real one), comparing with `metadata`."""
    real = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect()}[dialect]
    return SimpleNamespace(dialect=real, opts={"target_metadata": metadata})


def test_no_changes_write_no_revision(capsys: pytest.CaptureFixture[str]) -> None:
    directives = [script()]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert directives == []
    assert "No changes between the models and the database" in capsys.readouterr().out


def test_an_index_on_an_existing_table_is_built_concurrently_on_postgresql() -> None:
    index = ops.CreateIndexOp("ix_item_name", "item", ["name"])
    directives = [script(ops.ModifyTableOps("item", [index]))]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    upgrade_ops = directives[0].upgrade_ops
    assert upgrade_ops is not None
    [table_ops] = upgrade_ops.ops
    [rewritten] = table_ops.ops
    assert isinstance(rewritten, safe.CreateIndexConcurrentlyOp)
    assert (rewritten.index_name, rewritten.table_name) == ("ix_item_name", "item")


def test_an_index_on_a_new_table_keeps_the_plain_form() -> None:
    index = ops.CreateIndexOp("ix_widget_id", "widget", ["id"])
    directives = [
        script(
            ops.CreateTableOp("widget", [sa.Column("id", sa.Integer())]),
            ops.ModifyTableOps("widget", [index]),
        )
    ]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert directives[0].upgrade_ops is not None
    assert directives[0].upgrade_ops.ops[1].ops == [index]


def test_mysql_keeps_the_plain_forms() -> None:
    index = ops.CreateIndexOp("ix_item_name", "item", ["name"])
    directives = [script(ops.ModifyTableOps("item", [index]))]
    autogen.process_revision_directives(on("mysql"), None, directives)
    assert directives[0].upgrade_ops is not None
    assert directives[0].upgrade_ops.ops[0].ops == [index]


def test_a_dropped_table_is_flagged_for_review(capsys: pytest.CaptureFixture[str]) -> None:
    directives = [script(ops.DropTableOp("old"))]
    autogen.process_revision_directives(on("mysql"), None, directives)
    upgrade_ops = directives[0].upgrade_ops
    assert upgrade_ops is not None
    note = upgrade_ops.ops[0]
    assert isinstance(note, ReviewNote)
    assert note.text == "drops table old: existing data is lost"
    assert capsys.readouterr().err == (
        "WARNING: this revision drops table old; review it before applying.\n"
    )


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (sa.String(20), sa.String(80), "widens"),
        (sa.Integer(), sa.BigInteger(), "widens"),
        (sa.String(80), sa.String(20), "narrows"),
        (sa.String(20), sa.Integer(), "converts"),
    ],
)
def test_type_changes_are_worded_for_the_server_that_runs_them(
    old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any], kind: str
) -> None:
    from sqlalchemy.dialects import mysql, postgresql

    change = ops.AlterColumnOp("gadget", "size", existing_type=old, modify_type=new)
    on_mysql = autogen._type_change("gadget", change, mysql.dialect())
    on_postgresql = autogen._type_change("gadget", change, postgresql.dialect())
    assert on_mysql.startswith(f"{kind} gadget.size from ")
    assert on_postgresql.startswith(f"{kind} gadget.size from ")
    # A MySQL review note speaks of MySQL's table copy, never of PostgreSQL's lock modes.
    assert "ALGORITHM=COPY" in on_mysql and "ACCESS EXCLUSIVE" not in on_mysql
    assert "ACCESS EXCLUSIVE" in on_postgresql and "ALGORITHM" not in on_postgresql


def models() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("item", metadata, sa.Column("id", sa.BigInteger, primary_key=True))
    sa.Table(
        "tag",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("item.id")),  # a plain SQLModel `int`
        sa.Column("label", sa.String()),  # SQLModel's `str` without max_length
    )
    return metadata


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_foreign_key_narrower_than_its_target_is_flagged(
    dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = models()
    directives = [script(ops.CreateTableOp.from_table(metadata.tables["tag"]))]
    autogen.process_revision_directives(on(dialect, metadata), None, directives)
    err = capsys.readouterr().err
    assert "adds tag.item_id (INTEGER) referencing item.id (BIGINT): MySQL refuses" in err
    assert "sa_type=sa.BigInteger" in err


def test_a_varchar_without_length_is_flagged_at_make_migration_on_mysql(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metadata = models()
    for dialect in ("mysql", "postgresql"):
        directives = [script(ops.CreateTableOp.from_table(metadata.tables["tag"]))]
        autogen.process_revision_directives(on(dialect, metadata), None, directives)
        flagged = "tag.label as VARCHAR without a length" in capsys.readouterr().err
        assert flagged is (dialect == "mysql"), dialect  # PostgreSQL's VARCHAR needs none
