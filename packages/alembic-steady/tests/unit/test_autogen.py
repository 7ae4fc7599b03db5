"""authoring/autogen.py: how autogenerate writes a revision (types, review notes, warnings,
non-blocking forms), checked on operations built by hand and rendered by Alembic."""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import mysql, postgresql

from alembic_steady.authoring import autogen, phase_split
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
    options = autogen.configure_options(writing_revision=True, renames_given="item.a=b")
    hook = options["process_revision_directives"]
    assert hook.func is autogen.process_revision_directives
    assert hook.keywords == {"renames_given": "item.a=b"}
    assert options["render_item"] is autogen.render_item
    assert options["compare_type"] is True and options["compare_server_default"] is True
    assert "autogenerate_plugins" in options


@pytest.mark.parametrize("writing", [True, False])
def test_the_runners_checksums_are_nobodys_model(writing: bool) -> None:
    include = autogen.configure_options(writing_revision=writing)["include_name"]
    assert not include("alembic_version_checksums", "table", {})
    assert include("alembic_version_checksums", "column", {})
    assert include("item", "table", {}) and include(None, "schema", {})


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
    impl = MigrationContext.configure(dialect_name=dialect).impl  # autogenerate's compare_type
    return SimpleNamespace(
        dialect=real, impl=impl, opts={"target_metadata": metadata}, connection=None, script=None
    )


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
    # The old release still reads it: the drop waits for the post phase.
    [post] = directives
    assert post.branch_label == ["post"] and post.head == "base"
    assert notes_of(directives) == [POST_NOTE, "drops table old: existing data is lost"]
    written = capsys.readouterr()
    assert written.err == "WARNING: this revision drops table old; review it before applying.\n"
    assert f"that part is in the post revision {post.rev_id}, applied after the rollout" in (
        written.out
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


# -- type changes: which way the data goes, and whether the table is rewritten ---------------


def kind_of(old: Any, new: Any) -> str:
    change = ops.AlterColumnOp("item", "amount", existing_type=old, modify_type=new)
    return autogen._type_change("item", change, postgresql.dialect()).split(" ", 1)[0]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (sa.Numeric(10, 2), sa.Numeric(12, 2), "widens"),
        (sa.Numeric(10, 2), sa.Numeric(11, 3), "widens"),  # one more digit on each side
        (sa.Numeric(10, 2), sa.Numeric(), "widens"),  # unbounded
        (sa.Numeric(10), sa.Numeric(12), "widens"),
        (sa.Numeric(10), sa.Numeric(10, 0), "widens"),  # no scale is scale 0
        (sa.Numeric(10, 2), sa.Numeric(8, 2), "narrows"),
        (sa.Numeric(10, 2), sa.Numeric(9, 2), "narrows"),
        (sa.Numeric(10, 2), sa.Numeric(10, 0), "narrows"),  # the cents are cut
        (sa.Numeric(10, 2), sa.Numeric(20, 0), "narrows"),
        (sa.Numeric(), sa.Numeric(10, 2), "narrows"),
        (sa.Numeric(10, 2), sa.String(20), "converts"),
        (sa.Enum("a", "bb", name="size"), sa.String(80), "converts"),
        (sa.String(20), sa.CHAR(20), "widens"),  # the same length holds every value
        (sa.Integer(), postgresql.INTEGER(), "widens"),
        (AutoString(20), AutoString(80), "widens"),  # SQLModel's str(max_length=...)
    ],
)
def test_which_way_a_type_change_goes(old: Any, new: Any, kind: str) -> None:
    assert kind_of(old, new) == kind


IN_PLACE = "a catalog change under a brief ACCESS EXCLUSIVE lock, no rewrite"


@pytest.mark.parametrize(
    ("old", "new", "in_place"),
    [
        (sa.String(20), sa.String(80), True),
        (sa.Numeric(10, 2), sa.Numeric(12, 2), True),
        (sa.Numeric(10), sa.Numeric(12), True),
        (sa.Numeric(10, 2), sa.Numeric(12, 3), False),  # a new scale rewrites every value
        (sa.Integer(), sa.BigInteger(), False),  # a wider integer is stored anew
    ],
)
def test_a_widening_postgresql_makes_in_the_catalog_says_so(
    old: Any, new: Any, in_place: bool
) -> None:
    change = ops.AlterColumnOp("item", "amount", existing_type=old, modify_type=new)
    text = autogen._type_change("item", change, postgresql.dialect())
    assert text.startswith("widens item.amount from ")
    assert (IN_PLACE in text) is in_place, text


def test_a_type_change_is_spelled_as_the_server_writes_it_both_ways() -> None:
    change = ops.AlterColumnOp(
        "item",
        "code",
        existing_type=mysql.VARCHAR(20, charset="utf8mb4"),
        modify_type=mysql.VARCHAR(80, charset="utf8mb4"),
    )
    assert autogen._type_change("item", change, mysql.dialect()) == (
        "widens item.code from VARCHAR(20) CHARACTER SET utf8mb4 to VARCHAR(80) CHARACTER SET "
        "utf8mb4: in place while the column's length prefix stays the same (a VARCHAR up to 255 "
        "bytes), else MySQL copies the table (ALGORITHM=COPY), and writes wait until it ends; on "
        "a large table add a new column, backfill it and switch over instead; its downgrade "
        "narrows it back to VARCHAR(20) CHARACTER SET utf8mb4 and can lose data written since"
    )


def test_a_type_the_server_cannot_spell_is_named_as_sqlalchemy_names_it() -> None:
    change = ops.AlterColumnOp(
        "item", "doc", existing_type=postgresql.TSVECTOR(), modify_type=sa.Text()
    )
    assert autogen._type_change("item", change, mysql.dialect()).startswith(
        "converts item.doc from TSVECTOR() to TEXT: "
    )


# -- warnings and review notes on existing tables -------------------------------------------


def upgrade_of(directives: list[ops.MigrationScript]) -> list[Any]:
    upgrade_ops = directives[0].upgrade_ops
    assert upgrade_ops is not None
    return upgrade_ops.ops


def notes_of(directives: list[ops.MigrationScript]) -> list[str]:
    return [op.text for op in upgrade_of(directives) if isinstance(op, ReviewNote)]


def warned(err: str) -> list[str]:
    prefix, suffix = "WARNING: this revision ", "; review it before applying."
    lines = err.splitlines()
    assert all(line.startswith(prefix) and line.endswith(suffix) for line in lines), err
    return [line.removeprefix(prefix).removesuffix(suffix) for line in lines]


POST_NOTE = phase_split.POST_NOTE
NOT_NULL_SKU_LATER = (
    "makes item.sku NOT NULL: backfill its NULLs first, in an earlier revision: "
    'op.backfill("item", {"sku": "<value>"}, where="sku IS NULL")'
)
NOT_NULL_SKU = (
    "adds NOT NULL column item.sku without a server default: fails on a table with rows. Add "
    "it nullable, backfill it, then make it NOT NULL (three revisions), or give it a "
    "server_default"
)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_not_null_column_without_default_on_an_existing_table_is_added_nullable_first(
    dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old release's inserts leave the column out: it is added nullable now, and made NOT
    NULL in the post revision, once only the new release (which writes it) runs."""
    add = ops.AddColumnOp("item", sa.Column("sku", sa.String(20), nullable=False))
    directives = [script(ops.ModifyTableOps("item", [add]))]
    autogen.process_revision_directives(on(dialect), None, directives)
    assert warned(capsys.readouterr().err) == ["makes item.sku NOT NULL: backfill its NULLs first"]
    pre, post = directives
    [pre_table] = upgrade_of([pre])
    [added] = pre_table.ops
    assert isinstance(added, ops.AddColumnOp) and added.column.nullable is True
    assert post.depends_on == pre.rev_id
    post_table = upgrade_of([post])[-1]
    steps = [type(op) for op in post_table.ops]
    if dialect == "postgresql":  # the note sits next to the operation it is about
        assert steps == [ReviewNote, safe.SetNotNullOp]
        assert notes_of([post]) == [POST_NOTE]
    else:
        assert steps == [ops.AlterColumnOp] and post_table.ops[0].modify_nullable is False
        assert notes_of([post]) == [POST_NOTE, NOT_NULL_SKU_LATER]
    # Each revision goes down on its own: the post one to nullable, the pre one drops the column.
    assert post.downgrade_ops is not None and pre.downgrade_ops is not None
    [post_down] = post.downgrade_ops.ops
    assert post_down.ops[0].modify_nullable is True
    [pre_down] = pre.downgrade_ops.ops
    assert isinstance(pre_down.ops[0], ops.DropColumnOp)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_change_that_cannot_be_split_still_flags_its_not_null_column(
    dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an operation Alembic cannot reverse (written without its column), the change stays
    one revision: its new NOT NULL column is flagged as before the phases."""
    add = ops.AddColumnOp("item", sa.Column("sku", sa.String(20), nullable=False))
    drop = ops.DropColumnOp("item", "legacy")
    directives = [script(ops.ModifyTableOps("item", [add, drop]))]
    autogen.process_revision_directives(on(dialect), None, directives)
    [single] = directives
    assert single.branch_label is None
    assert NOT_NULL_SKU in warned(capsys.readouterr().err)
    # Its note sits next to the operation (PostgreSQL) or nowhere: not again at the top.
    assert notes_of(directives) == ["drops column item.legacy: existing data is lost"]
    if dialect == "postgresql":
        table_ops = upgrade_of(directives)[-1]
        assert [type(op) for op in table_ops.ops][:2] == [ReviewNote, ops.AddColumnOp]
        assert table_ops.ops[0].text == NOT_NULL_SKU


@pytest.mark.parametrize(
    "make",
    [
        lambda: sa.Column("sku", sa.String(20), nullable=True),
        lambda: sa.Column("sku", sa.String(20), nullable=False, server_default="none"),
        lambda: sa.Column("sku", sa.Integer(), sa.Identity(), nullable=False),
        lambda: sa.Column("sku", sa.Integer(), sa.Computed("id * 2"), nullable=False),
    ],
)
def test_a_column_existing_rows_can_get_is_not_flagged(
    make: Callable[[], sa.Column[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    add = ops.AddColumnOp("item", make())
    directives = [script(ops.ModifyTableOps("item", [add]))]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert capsys.readouterr().err == ""
    assert upgrade_of(directives)[0].ops == [add]


def test_a_not_null_column_of_a_table_the_revision_creates_is_not_flagged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    add = ops.AddColumnOp("widget", sa.Column("sku", sa.String(20), nullable=False))
    directives = [
        script(
            ops.CreateTableOp("widget", [sa.Column("id", sa.Integer())]),
            ops.ModifyTableOps("widget", [add]),
        )
    ]
    autogen.process_revision_directives(on("mysql"), None, directives)
    assert capsys.readouterr().err == ""


def test_every_change_a_reviewer_must_see_is_listed_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    directives = [
        script(
            ops.DropTableOp("old"),
            ops.ModifyTableOps(
                "item",
                [
                    ops.AddColumnOp("item", sa.Column("label", sa.String())),
                    ops.DropColumnOp("item", "legacy"),
                    ops.AlterColumnOp(
                        "item", "code", existing_type=sa.String(80), modify_type=sa.String(20)
                    ),
                ],
            ),
        )
    ]
    autogen.process_revision_directives(on("mysql"), None, directives)
    narrows = (
        "narrows item.code from VARCHAR(80) to VARCHAR(20): can lose data (in strict mode values "
        "that do not fit fail the upgrade); MySQL copies the table (ALGORITHM=COPY), and writes "
        "wait until it ends; on a large table add a new column, backfill it and switch over "
        "instead"
    )
    varchar = (
        "adds item.label as VARCHAR without a length, which MySQL refuses at migrate: give it "
        "one (Field(max_length=255)) or make it sa.Text"
    )
    assert warned(capsys.readouterr().err) == [
        "drops table old",
        varchar,
        "drops column item.legacy",
        narrows,
    ]
    assert notes_of(directives) == [
        "drops table old: existing data is lost",
        varchar,
        "drops column item.legacy: existing data is lost",
        narrows,
    ]


def test_a_column_made_not_null_on_postgresql_is_flagged_with_its_backfill(
    capsys: pytest.CaptureFixture[str],
) -> None:
    change = ops.AlterColumnOp("item", "sku", existing_type=sa.String(20), modify_nullable=False)
    directives = [script(ops.ModifyTableOps("item", [change]))]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert warned(capsys.readouterr().err) == ["makes item.sku NOT NULL: backfill its NULLs first"]
    [post] = directives  # the old release may still write NULLs: a post revision
    assert post.branch_label == ["post"]
    [_, table_ops] = upgrade_of(directives)
    assert [type(op) for op in table_ops.ops] == [ReviewNote, safe.SetNotNullOp]
    assert notes_of(directives) == [POST_NOTE]  # its own note is the one next to the operation


# -- foreign keys narrower than their target -------------------------------------------------


def fk_models(*columns: sa.Column[Any], schema: str | None = None) -> sa.MetaData:
    metadata = sa.MetaData(schema=schema)
    sa.Table("item", metadata, sa.Column("id", sa.BigInteger, primary_key=True))
    sa.Table("unsigned", metadata, sa.Column("id", mysql.BIGINT(unsigned=True), primary_key=True))
    sa.Table("small", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("tag", metadata, sa.Column("id", sa.Integer, primary_key=True), *columns)
    return metadata


def flagged_fks(metadata: sa.MetaData | None, table: sa.Table, dialect: str = "mysql") -> list[str]:
    directives = [script(ops.CreateTableOp.from_table(table))]
    autogen.process_revision_directives(on(dialect, metadata), None, directives)
    return [note for note in notes_of(directives) if "referencing" in note]


def test_a_narrower_foreign_key_is_explained_in_the_servers_types() -> None:
    metadata = fk_models(
        sa.Column("item_id", mysql.INTEGER(unsigned=True), sa.ForeignKey("item.id")),
        sa.Column("other_id", sa.Integer, sa.ForeignKey("unsigned.id")),
    )
    assert flagged_fks(metadata, metadata.tables["tag"]) == [
        "adds tag.item_id (INTEGER UNSIGNED) referencing item.id (BIGINT): MySQL refuses the "
        "foreign key at migrate (errno 150), PostgreSQL accepts it but the column cannot hold "
        "every id; declare it with the same type (Field(sa_type=sa.BigInteger, foreign_key=...))",
        "adds tag.other_id (INTEGER) referencing unsigned.id (BIGINT UNSIGNED): MySQL refuses the "
        "foreign key at migrate (errno 150), PostgreSQL accepts it but the column cannot hold "
        "every id; declare it with the same type (Field(sa_type=sa.BigInteger, foreign_key=...))",
    ]


def test_a_foreign_key_in_a_schema_is_checked_against_its_target() -> None:
    metadata = fk_models(
        sa.Column("item_id", sa.Integer, sa.ForeignKey("shop.item.id")), schema="shop"
    )
    [note] = flagged_fks(metadata, metadata.tables["shop.tag"])
    assert note.startswith("adds tag.item_id (INTEGER) referencing shop.item.id (BIGINT): ")


@pytest.mark.parametrize(
    "make",
    [
        lambda: sa.Column("item_id", sa.BigInteger, sa.ForeignKey("item.id")),  # as wide
        lambda: sa.Column("small_id", sa.Integer, sa.ForeignKey("small.id")),  # as wide
        lambda: sa.Column("big_id", sa.BigInteger, sa.ForeignKey("small.id")),  # wider
        lambda: sa.Column("code", sa.String(20), sa.ForeignKey("small.id")),  # not an integer
        lambda: sa.Column("gone_id", sa.Integer, sa.ForeignKey("gone.id")),  # no such model
        lambda: sa.Column("nope_id", sa.Integer, sa.ForeignKey("item.nope")),  # no such column
    ],
)
def test_a_foreign_key_that_can_hold_every_id_is_not_flagged(
    make: Callable[[], sa.Column[Any]],
) -> None:
    metadata = fk_models(make())  # a column of its own: a Table takes it over
    assert flagged_fks(metadata, metadata.tables["tag"]) == []


def test_a_foreign_key_after_an_unknown_one_is_still_checked() -> None:
    column = sa.Column("item_id", sa.Integer, sa.ForeignKey("gone.id"), sa.ForeignKey("item.id"))
    metadata = fk_models(column)
    keys = sorted(column.foreign_keys, key=lambda key: key.target_fullname)
    for order in (keys, keys[::-1]):  # a set: whichever comes first, both are checked
        column.foreign_keys = order  # type: ignore[assignment]
        [note] = autogen._column_notes("tag", column, metadata, mysql.dialect())
        assert note.startswith("adds tag.item_id (INTEGER) referencing item.id (BIGINT): ")


def test_a_narrower_foreign_key_added_to_an_existing_table_is_flagged() -> None:
    metadata = fk_models(sa.Column("item_id", sa.Integer, sa.ForeignKey("item.id")))
    add = ops.AddColumnOp("tag", metadata.tables["tag"].c.item_id)
    directives = [script(ops.ModifyTableOps("tag", [add]))]
    autogen.process_revision_directives(on("postgresql", metadata), None, directives)
    [note] = notes_of(directives)
    assert note.startswith("adds tag.item_id (INTEGER) referencing item.id (BIGINT): ")


def test_without_the_models_metadata_foreign_keys_are_not_checked() -> None:
    metadata = fk_models(sa.Column("item_id", sa.Integer, sa.ForeignKey("item.id")))
    assert flagged_fks(None, metadata.tables["tag"]) == []


# -- rerunnable revisions ------------------------------------------------------------------


def test_plain_operations_beside_a_concurrent_one_skip_what_a_rerun_finds_done() -> None:
    add = ops.AddColumnOp("item", sa.Column("price", sa.Integer()))
    drop = ops.DropColumnOp("item", "legacy")
    index = ops.CreateIndexOp("ix_item_price", "item", ["price"])
    directives = [script(ops.ModifyTableOps("item", [add, drop, index]))]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert add.if_not_exists is True and drop.if_exists is True


def test_a_revision_of_plain_operations_keeps_them_as_written() -> None:
    add = ops.AddColumnOp("item", sa.Column("price", sa.Integer()))
    drop = ops.DropColumnOp("item", "legacy")
    directives = [script(ops.ModifyTableOps("item", [add, drop]))]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    assert add.if_not_exists is None and drop.if_exists is None


def test_no_changes_are_said_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    autogen.process_revision_directives(on("postgresql"), None, [script()])
    assert capsys.readouterr().out == (
        "No changes between the models and the database: no revision written.\n"
    )


# -- mixed DDL: what is counted --------------------------------------------------------------


@pytest.mark.parametrize(
    "operations",
    [
        [ReviewNote("a note"), ops.DropTableOp("a"), ops.DropTableOp("b")],
        [
            ops.CreateTableOp("tag", [sa.Column("id", sa.Integer())]),
            ops.CreateIndexOp("ix_tag_id", "tag", ["id"]),
            ops.DropTableOp("b"),
        ],
    ],
)
def test_what_follows_a_note_or_a_new_tables_index_is_counted(
    capsys: pytest.CaptureFixture[str], operations: list[ops.MigrateOperation]
) -> None:
    autogen.warn_mixed_ddl(passthrough)(None, None, [script(*operations)])
    assert capsys.readouterr().err.startswith("WARNING: this revision runs 2 DDL statements")


def test_the_wrapped_hook_gets_the_context_and_the_revision() -> None:
    called: list[tuple[Any, Any]] = []

    def process(context: Any, revision: Any, given: list[ops.MigrationScript]) -> None:
        called.append((context, revision))

    context, revision = on("mysql"), ("rev1",)
    autogen.warn_mixed_ddl(process)(context, revision, [script()])
    assert called == [(context, revision)]


# -- enums: swaps and appended values --------------------------------------------------------


def swap(old: list[str], new: list[str], indexes: list[Any] | None = None) -> Any:
    from alembic_postgresql_enum.operations.sync_enum_values import SyncEnumValuesOp

    return SyncEnumValuesOp("public", "status", old, new, [], indexes)


def index(name: str, definition: str) -> Any:
    from alembic_postgresql_enum.sql_commands.indexes import TableIndex

    return TableIndex(name, definition)


@pytest.fixture
def dependent_indexes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The lookups of a swap's dependent indexes; each answers two, out of name order."""
    from alembic_postgresql_enum.sql_commands import indexes

    asked: list[tuple[Any, ...]] = []

    def found(connection: Any, schema: str, name: str) -> list[Any]:
        asked.append((connection, schema, name))
        return [
            index("ix_b", "CREATE INDEX ix_b ON item (id) WHERE status = 'a'::status"),
            index("ix_a", "CREATE INDEX ix_a ON item (id) WHERE status = 'a'::status"),
        ]

    monkeypatch.setattr(indexes, "get_dependent_indexes", found)
    return asked


def enum_context(connection: Any = None) -> Any:
    dialect = postgresql.dialect()
    impl = MigrationContext.configure(dialect_name="postgresql").impl
    return SimpleNamespace(dialect=dialect, impl=impl, opts={}, connection=connection, script=None)


def test_an_enum_swap_runs_first_up_and_last_down_with_its_indexes(
    dependent_indexes: list[tuple[Any, ...]],
) -> None:
    connection = object()
    up = swap(["a", "b"], ["a", "b", "c"])
    table_up = ops.ModifyTableOps("item", [ops.DropColumnOp("item", "legacy")])
    table_down = ops.ModifyTableOps(
        "item", [ops.AddColumnOp("item", sa.Column("legacy", sa.Text()))]
    )
    down = up.reverse()
    directives = [
        ops.MigrationScript(
            "rev", ops.UpgradeOps(ops=[table_up, up]), ops.DowngradeOps(ops=[down, table_down])
        )
    ]
    autogen.process_revision_directives(enum_context(connection), None, directives)
    # (after the review note on the dropped column, which is written above everything)
    assert [op for op in upgrade_of(directives) if not isinstance(op, ReviewNote)] == [
        up,
        table_up,
    ]
    downgrade_ops = directives[0].downgrade_ops
    assert downgrade_ops is not None and downgrade_ops.ops == [table_down, down]
    # Read from the database, in name order, for both swaps (the upgrade's listed none).
    assert dependent_indexes == [(connection, "public", "status")] * 2
    assert [ix.name for ix in up.indexes_to_recreate] == ["ix_a", "ix_b"]
    assert [ix.name for ix in down.indexes_to_recreate] == ["ix_a", "ix_b"]


def test_a_swap_listing_its_indexes_or_offline_is_not_looked_up(
    dependent_indexes: list[tuple[Any, ...]],
) -> None:
    listed = swap(["a", "b"], ["a", "b", "c"], [index("ix_z", "CREATE INDEX ix_z ON item (id)")])
    directives = [
        ops.MigrationScript("rev", ops.UpgradeOps(ops=[listed]), ops.DowngradeOps(ops=[]))
    ]
    autogen.process_revision_directives(enum_context(object()), None, directives)
    unread = swap(["a", "b"], ["a", "b", "c"])
    offline = [ops.MigrationScript("rev", ops.UpgradeOps(ops=[unread]), ops.DowngradeOps(ops=[]))]
    autogen.process_revision_directives(enum_context(None), None, offline)
    assert dependent_indexes == []
    assert [ix.name for ix in listed.indexes_to_recreate] == ["ix_z"]
    assert unread.indexes_to_recreate == []


def test_a_removed_value_an_index_predicate_uses_is_refused() -> None:
    removing = swap(
        ["draft", "gone", "old", "live"],
        ["draft", "live"],
        [
            index("ix_live", "CREATE INDEX ix_live ON item (id) WHERE status = 'live'::status"),
            index(
                "ix_stale",
                "CREATE INDEX ix_stale ON item (id) WHERE status IN ('gone'::status, "
                "'old'::status)",
            ),
        ],
    )
    directives = [
        ops.MigrationScript("rev", ops.UpgradeOps(ops=[removing]), ops.DowngradeOps(ops=[]))
    ]
    with pytest.raises(autogen.CommandError) as raised:
        autogen.process_revision_directives(enum_context(), None, directives)
    assert str(raised.value) == (
        "Index ix_stale has a predicate using 'gone', 'old', which this change removes from enum "
        "status: no revision written. Change or drop that index first (make migration with only "
        "that change), then remove the value"
    )


def test_a_predicate_using_only_kept_values_is_recreated() -> None:
    keeping = swap(
        ["draft", "gone", "live"],
        ["draft", "live"],
        [index("ix_live", "CREATE INDEX ix_live ON item (id) WHERE status = 'live'::status")],
    )
    directives = [
        ops.MigrationScript("rev", ops.UpgradeOps(ops=[keeping]), ops.DowngradeOps(ops=[]))
    ]
    autogen.process_revision_directives(enum_context(), None, directives)
    assert upgrade_of(directives) == [keeping]


def test_each_appended_enum_value_gets_a_note_on_where_it_may_be_used() -> None:
    from alembic_postgresql_enum.operations.add_enum_values import AddEnumValuesOp

    directives = [
        script(
            ops.ModifyTableOps("item", [ops.AddColumnOp("item", sa.Column("note", sa.Text()))]),
            AddEnumValuesOp("public", "status", ["draft"], ["draft", "live", "gone"], []),
            AddEnumValuesOp("public", "size", ["s"], ["s", "m"], []),
        )
    ]
    autogen.process_revision_directives(enum_context(), None, directives)
    later = (
        "here; PostgreSQL lets rows and defaults use a new value only once this revision "
        "committed: use it in a later one"
    )
    assert notes_of(directives) == [
        f"enum status gets 'live', 'gone' {later}",
        f"enum size gets 'm' {later}",
    ]


def test_within_schemas_leaves_out_other_schemas_and_asks_the_rest_of_include_name() -> None:
    asked: list[tuple[object, ...]] = []

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        asked.append((name, type_, parent_names))
        return name != "hidden"

    included = autogen.within_schemas({"tenant"}, include_name)
    parents = {"schema_name": "tenant"}
    assert included("tenant", "schema", parents) and included(None, "schema", parents)
    assert not included("mysql", "schema", parents)
    assert included("item", "table", parents) and not included("hidden", "table", parents)
    assert asked == [
        ("tenant", "schema", parents),
        (None, "schema", parents),
        ("item", "table", parents),
        ("hidden", "table", parents),
    ]
