"""What `make migration` reads as a rename (authoring/renames.py), without a database: the
guesses, `renames=` as written, and the names the trigger gets."""

import io
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql

from alembic_steady.authoring import autogen, renames
from alembic_steady.authoring.renames import Rename

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def same_type(old: sa.Column[Any], new: sa.Column[Any]) -> bool:
    """Types compared as PostgreSQL spells them (autogenerate's compare_type, live, is the
    tiers' with a server)."""
    return str(old.type.compile(dialect=DIALECT)) == str(new.type.compile(dialect=DIALECT))


def dropped(name: str, type_: sa.types.TypeEngine[Any]) -> ops.DropColumnOp:
    return ops.DropColumnOp.from_column_and_tablename(None, "item", sa.Column(name, type_))


def added(name: str, type_: sa.types.TypeEngine[Any]) -> ops.AddColumnOp:
    return ops.AddColumnOp("item", sa.Column(name, type_))


def change(*table_ops: ops.MigrateOperation) -> ops.UpgradeOps:
    return ops.UpgradeOps(ops=[ops.ModifyTableOps("item", list(table_ops))])


def test_the_one_column_of_a_type_dropped_and_added_is_guessed_renamed() -> None:
    found = renames.guessed(
        change(
            dropped("title", sa.String(40)),
            added("name", sa.String(40)),
            dropped("n", sa.Integer()),
            added("count", sa.Integer()),
        ),
        same_type,
    )
    assert found == [Rename("item", "n", "count"), Rename("item", "title", "name")]


def test_no_guess_where_the_types_differ_or_two_of_a_type_change() -> None:
    assert (
        renames.guessed(
            change(dropped("title", sa.String(40)), added("name", sa.String(80))), same_type
        )
        == []
    )
    two = change(
        dropped("a", sa.Integer()),
        dropped("b", sa.Integer()),
        added("c", sa.Integer()),
    )
    assert renames.guessed(two, same_type) == []


def test_a_table_dropped_and_one_created_with_the_same_columns_is_guessed_renamed() -> None:
    metadata = sa.MetaData()
    old = sa.Table("widget", metadata, sa.Column("id", sa.Integer), sa.Column("n", sa.Text))
    new = sa.Table("gadget", metadata, sa.Column("id", sa.Integer), sa.Column("n", sa.Text))
    other = sa.Table("other", metadata, sa.Column("id", sa.Integer))
    upgrade = ops.UpgradeOps(
        ops=[
            ops.CreateTableOp.from_table(new),
            ops.CreateTableOp.from_table(other),
            ops.DropTableOp.from_table(old),
        ]
    )
    assert renames.guessed(upgrade, same_type) == [Rename(None, "widget", "gadget")]


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        (None, None),
        ("", None),
        ("none", []),
        ("item.title=name", [Rename("item", "title", "name")]),
        ("widget=gadget, item.a=b", [Rename(None, "widget", "gadget"), Rename("item", "a", "b")]),
    ],
)
def test_renames_as_written(given: str | None, wanted: list[Rename] | None) -> None:
    assert renames.parse(given) == wanted


@pytest.mark.parametrize(
    "given", ["item.title", "item.title=", "item.=name", ".a=b", "a=b.c", "t.a=b=c", "s.t.a=b"]
)
def test_renames_written_wrong_is_refused_with_the_form(given: str) -> None:
    with pytest.raises(CommandError, match=r"is not `table.old=new` \(a column\) or `old=new`"):
        renames.parse(given)


def test_given_renames_replace_the_guesses_and_must_name_what_the_change_does() -> None:
    upgrade = change(dropped("title", sa.String(40)), added("name", sa.String(40)))
    assert renames.chosen(upgrade, same_type, "none") == ([], False)
    # No terminal (CI, a script, this test): the guesses are taken, never asked.
    assert renames.chosen(upgrade, same_type, None) == ([Rename("item", "title", "name")], True)
    with pytest.raises(
        CommandError,
        match=r"does not drop item.titel and add item.name \(it "
        r"drops item.title; adds item.name\)",
    ):
        renames.chosen(upgrade, same_type, "item.titel=name")


def test_an_interactive_run_asks_about_each_guess() -> None:
    upgrade = change(dropped("title", sa.String(40)), added("name", sa.String(40)))
    asked: list[Rename] = []

    def no(rename: Rename) -> bool:
        asked.append(rename)
        return False

    assert renames.chosen(upgrade, same_type, None, ask=no) == ([], False)
    assert asked == [Rename("item", "title", "name")]


def test_the_trigger_name_fits_postgresql_and_stays_apart() -> None:
    short = renames.sync_name("item", "title", "name")
    assert short == "rename_sync_item_title_name"
    long = renames.sync_name("t" * 40, "c" * 30, "d" * 30)
    other = renames.sync_name("t" * 40, "c" * 30, "e" * 30)
    assert len(long.encode()) <= 63 and long != other


# -- what make migration writes --------------------------------------------------------------


def on(dialect: str) -> Any:
    """A migration context of `dialect` with no database, as the unit tier's autogen tests use."""
    context = MigrationContext.configure(dialect_name=dialect)
    return SimpleNamespace(
        dialect=context.dialect, impl=context.impl, opts={}, connection=None, script=None
    )


def rendered(op_list: ops.OpContainer, dialect: str = "postgresql") -> list[str]:
    code = render_python_code(
        op_list, migration_context=MigrationContext.configure(dialect_name=dialect)
    )
    return [line.strip() for line in code.splitlines() if line.strip() and "###" not in line]


def renamed_column(
    dialect: str, given: str | None = None, schema: str | None = None
) -> list[ops.MigrationScript]:
    """item.title (String(40) NOT NULL, default 'x') renamed name (NOT NULL, default 'y')."""
    old = sa.Column("title", sa.String(40), nullable=False, server_default="x")
    new = sa.Column("name", sa.String(40), nullable=False, server_default="y")
    table_ops = [
        ops.DropColumnOp.from_column_and_tablename(schema, "item", old),
        ops.AddColumnOp("item", new, schema=schema),
    ]
    upgrade = ops.UpgradeOps(ops=[ops.ModifyTableOps("item", table_ops, schema=schema)])
    directives = [
        ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="rename", imports=set())
    ]
    autogen.process_revision_directives(on(dialect), None, directives, renames_given=given)
    return directives


SHOP = "schema='shop'"


def test_a_renamed_column_is_written_as_expand_contract_on_postgresql() -> None:
    pre, post = renamed_column("postgresql", schema="shop")
    assert pre.upgrade_ops is not None and pre.downgrade_ops is not None
    assert post.upgrade_ops is not None and post.downgrade_ops is not None
    up = rendered(pre.upgrade_ops)
    assert up[0] == (
        "# REVIEW: item.title is renamed name (a guess: the one column of its type dropped and "
        "added there), as expand/contract: name is added, a trigger keeps both equal while the "
        "old and the new release run, `make backfill` copies the rows, and the post revision "
        'drops title. Not a rename? make migration again with renames=none (or renames="table.'
        'old=new")'
    )
    assert up[1:] == [
        f"op.add_column('item', sa.Column('name', sa.String(length=40), nullable=True), {SHOP})",
        f"op.create_rename_sync('item', 'title', 'name', {SHOP})",
        "op.queue_backfill('item', {'name': 'title'}, where='name IS NULL', name='item.name', "
        f"{SHOP})",
    ]
    assert rendered(pre.downgrade_ops) == [
        "op.cancel_backfill('item.name')",
        f"op.drop_rename_sync('item', 'title', 'name', {SHOP})",
        f"op.drop_column('item', 'name', {SHOP}, if_exists=True)",
    ]
    assert rendered(post.upgrade_ops) == [
        "# REVIEW: a post revision: it runs after the new release has rolled out (make migrate "
        "phase=post), once no instance of the old release uses what it removes",
        "# REVIEW: drops item.title, renamed name: its values are in name once the backfill "
        "item.name has finished (required above)",
        "op.require_backfill('item.name')",
        f"op.drop_rename_sync('item', 'title', 'name', {SHOP})",
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "server_default='y',",
        "existing_nullable=True,",
        f"{SHOP})",
        f"op.set_not_null('item', 'name', {SHOP})",
        f"op.drop_column('item', 'title', {SHOP}, if_exists=True)",
    ]
    assert rendered(post.downgrade_ops) == [
        f"op.drop_not_null('item', 'name', {SHOP})",
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "server_default=None,",
        "existing_nullable=True,",
        f"{SHOP})",
        "op.add_column('item', sa.Column('title', sa.String(length=40), nullable=True), "
        f"{SHOP}, if_not_exists=True)",
        f"op.create_rename_sync('item', 'title', 'name', {SHOP})",
        f"op.backfill('item', {{'title': 'name'}}, where='title IS NULL', {SHOP})",
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "server_default='x',",
        "existing_nullable=True,",
        f"{SHOP})",
        f"op.set_not_null('item', 'title', {SHOP})",
    ]


def test_each_renamed_column_gets_its_own_steps_and_the_checks_come_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = [sa.Column("a", sa.Integer()), sa.Column("b", sa.Text())]
    new = [sa.Column("c", sa.Integer(), nullable=True), sa.Column("d", sa.Text())]
    upgrade = change(
        *[ops.DropColumnOp.from_column_and_tablename(None, "item", c) for c in old],
        *[ops.AddColumnOp("item", c) for c in new],
        ops.CreateIndexOp("ix_item_d", "item", ["d"]),
    )
    directives = [ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m")]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    said = capsys.readouterr().err
    assert "Written as a rename: item.a -> item.c (see the # REVIEW: line)." in said
    assert "Written as a rename: item.b -> item.d (see the # REVIEW: line)." in said
    pre, post = directives
    assert pre.upgrade_ops is not None and post.downgrade_ops is not None
    assert rendered(pre.upgrade_ops)[2:] == [
        # (IF NOT EXISTS: the concurrent index commits on its own, so a rerun may find it.)
        "op.add_column('item', sa.Column('c', sa.Integer(), nullable=True), if_not_exists=True)",
        "op.create_rename_sync('item', 'a', 'c')",
        "op.queue_backfill('item', {'c': 'a'}, where='c IS NULL', name='item.c')",
        "op.add_column('item', sa.Column('d', sa.Text(), nullable=True), if_not_exists=True)",
        "op.create_rename_sync('item', 'b', 'd')",
        "op.queue_backfill('item', {'d': 'b'}, where='d IS NULL', name='item.d')",
        "op.create_index_concurrently('ix_item_d', 'item', ['d'], unique=False)",
    ]
    assert rendered(post.downgrade_ops) == [
        "op.add_column('item', sa.Column('b', sa.Text(), nullable=True), if_not_exists=True)",
        "op.create_rename_sync('item', 'b', 'd')",
        "op.backfill('item', {'b': 'd'}, where='b IS NULL')",
        "op.add_column('item', sa.Column('a', sa.Integer(), nullable=True), if_not_exists=True)",
        "op.create_rename_sync('item', 'a', 'c')",
        "op.backfill('item', {'a': 'c'}, where='a IS NULL')",
    ]
    assert post.upgrade_ops is not None
    assert rendered(post.upgrade_ops)[3:] == [
        "op.require_backfill('item.c')",
        "op.require_backfill('item.d')",
        "op.drop_rename_sync('item', 'a', 'c')",
        "op.drop_column('item', 'a', if_exists=True)",
        "op.drop_rename_sync('item', 'b', 'd')",
        "op.drop_column('item', 'b', if_exists=True)",
    ]


def test_a_column_rename_given_on_mysql_is_a_plain_rename_both_ways() -> None:
    [script] = renamed_column("mysql", given="item.title=name", schema="shop")
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    # The default the models changed ('x' to 'y') comes with the rename, and goes back with it.
    assert rendered(script.upgrade_ops, "mysql") == [
        "# REVIEW: item.title is renamed name, and given the default 'y': check it is a rename. "
        "The release still serving during the deploy fails on title from here",
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "server_default='y',",
        "new_column_name='name',",
        "existing_nullable=False,",
        f"{SHOP})",
    ]
    assert rendered(script.downgrade_ops, "mysql") == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "server_default='x',",
        "new_column_name='title',",
        "existing_nullable=False,",
        f"{SHOP})",
    ]


def renamed_on_mysql(
    old: sa.Column[Any], new: sa.Column[Any], given: str | None = None
) -> list[ops.MigrationScript]:
    """item's column `old` dropped and `new` added, through the hook on MySQL."""
    upgrade = change(
        ops.DropColumnOp.from_column_and_tablename(None, "item", old), ops.AddColumnOp("item", new)
    )
    directives = [
        ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m", imports=set())
    ]
    autogen.process_revision_directives(on("mysql"), None, directives, renames_given=given)
    return directives


def test_a_mysql_rename_made_not_null_gets_its_default_now_and_not_null_after_the_rollout() -> None:
    pre, post = renamed_on_mysql(
        sa.Column("title", sa.String(40)),
        sa.Column("name", sa.String(40), nullable=False, server_default="y"),
    )
    assert pre.upgrade_ops is not None and pre.downgrade_ops is not None
    assert post.upgrade_ops is not None and post.downgrade_ops is not None
    assert rendered(pre.upgrade_ops, "mysql") == [
        "# REVIEW: item.title is renamed name, and given the default 'y': check it is a rename. "
        "The release still serving during the deploy fails on title from here. name is made NOT "
        "NULL in the post revision: rows holding NULL make that ALTER fail (MySQL's strict "
        "mode); give them a value before it runs",
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "server_default='y',",
        "new_column_name='name',",
        "existing_nullable=True)",
    ]
    assert rendered(pre.downgrade_ops, "mysql") == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "server_default=None,",
        "new_column_name='title',",
        "existing_nullable=True)",
    ]
    # NOT NULL waits for the post revision, as any; its MODIFY keeps the new default.
    assert rendered(post.upgrade_ops, "mysql")[2:] == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "nullable=False,",
        "existing_server_default='y')",
    ]
    assert rendered(post.downgrade_ops, "mysql") == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "nullable=True,",
        "existing_server_default='y')",
    ]


def test_a_mysql_rename_carries_a_new_type_nullability_default_and_comment_both_ways() -> None:
    [script] = renamed_on_mysql(
        sa.Column("title", sa.String(40), nullable=False, server_default="x", comment="old"),
        sa.Column("name", sa.String(80), comment="new"),
        given="item.title=name",
    )
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    up = rendered(script.upgrade_ops, "mysql")
    assert up[0] == (
        "# REVIEW: item.title is renamed name, and its type changed, made nullable, its default "
        "dropped, its comment changed: check it is a rename. The release still serving during "
        "the deploy fails on title from here"
    )
    # What MySQL does to the table for the type is said as for any type change.
    assert up[1].startswith("# REVIEW: widens item.title from VARCHAR(40) to VARCHAR(80): ")
    assert up[2:] == [
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "server_default=None,",
        "new_column_name='name',",
        "type_=sa.String(length=80),",
        "nullable=True,",
        "comment='new',",
        "existing_comment='old')",
    ]
    assert rendered(script.downgrade_ops, "mysql") == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=80),",
        "server_default='x',",
        "new_column_name='title',",
        "type_=sa.String(length=40),",
        "nullable=False,",
        "comment='old',",
        "existing_comment='new')",
    ]


def test_a_mysql_rename_in_autogenerates_order_keeps_its_schema_and_comment() -> None:
    """Autogenerate lists a table's added columns before its dropped ones: the add becomes the
    rename, the drop goes, nothing else is touched; the NOT NULL after it names the schema and
    restates the comment (MySQL's MODIFY would drop it otherwise)."""
    old = sa.Column("title", sa.String(40), comment="what it is")
    new = sa.Column("name", sa.String(40), nullable=False, comment="what it is")
    upgrade = ops.UpgradeOps(
        ops=[
            ops.ModifyTableOps(
                "item",
                [
                    ops.AddColumnOp("item", new, schema="shop"),
                    ops.DropColumnOp.from_column_and_tablename("shop", "item", old),
                    ops.CreateIndexOp("ix_item_name", "item", ["name"], schema="shop"),
                ],
                schema="shop",
            )
        ]
    )
    directives = [
        ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m", imports=set())
    ]
    autogen.process_revision_directives(on("mysql"), None, directives, renames_given=None)
    pre, post = directives
    assert pre.upgrade_ops is not None and post.upgrade_ops is not None
    up = rendered(pre.upgrade_ops, "mysql")
    ops_ = [line for line in up if line.startswith("op.")]
    assert ops_ == [
        "op.alter_column('item', 'title',",
        "op.create_index('ix_item_name', 'item', ['name'], unique=False, schema='shop')",
    ]
    rename = up[up.index("op.alter_column('item', 'title',") : up.index(ops_[1])]
    assert "new_column_name='name'," in rename and "schema='shop')" in rename
    assert rendered(post.upgrade_ops, "mysql")[2:] == [
        "op.alter_column('item', 'name',",
        "existing_type=sa.String(length=40),",
        "nullable=False,",
        "existing_comment='what it is',",
        "schema='shop')",
    ]


@pytest.mark.parametrize(
    ("reported", "declared"),
    [
        ("'it''s'", "it's"),  # a string, as the server reports it and as the models write it
        ("0", "0"),  # MariaDB reports an INT's default bare, the models' string is quoted
        ("'1.5'", sa.text("1.5")),
        ("100", "100"),  # longer than two: the bare number is kept whole, not cut
    ],
)
def test_a_default_the_server_reports_as_sql_is_the_same_as_the_models_one(
    reported: str, declared: Any
) -> None:
    # The dropped column is reflected: its default is the text of its DEFAULT clause.
    [script] = renamed_on_mysql(
        sa.Column("title", sa.String(40), nullable=False, server_default=sa.text(reported)),
        sa.Column("name", sa.String(40), nullable=False, server_default=declared),
    )
    assert script.upgrade_ops is not None
    up = rendered(script.upgrade_ops, "mysql")
    assert up[0].startswith("# REVIEW: item.title is renamed name: check it is a rename.")
    assert up[1:] == [
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "new_column_name='name',",
        "existing_nullable=False,",
        f"existing_server_default=sa.text({reported!r}))",
    ]


OTHER = "op.drop_index('ix_other_x', table_name='other')"
CHECK = "op.create_check_constraint('ck_gadget_id', 'gadget', 'id > 0', schema='shop')"


def renamed_table(indexes_of: renames.IndexesOf | None) -> ops.MigrationScript:
    """widget (indexed on name and on size) renamed gadget, whose models name the name index
    ix_gadget_name and have no size index: what autogenerate lists, through the hook."""
    metadata = sa.MetaData()
    columns = [("id", sa.Integer()), ("name", sa.Text()), ("size", sa.Integer())]
    old = sa.Table("widget", metadata, *[sa.Column(n, t) for n, t in columns], schema="shop")
    new = sa.Table("gadget", metadata, *[sa.Column(n, t) for n, t in columns], schema="shop")
    name_index = ops.CreateIndexOp.from_index(sa.Index("ix_gadget_name", new.c.name))
    dropped = [
        ops.DropIndexOp.from_index(sa.Index("ix_widget_name", old.c.name)),
        ops.DropIndexOp.from_index(sa.Index("ix_widget_size", old.c.size)),
    ]
    check = ops.CreateCheckConstraintOp("ck_gadget_id", "gadget", "id > 0", schema="shop")
    upgrade = ops.UpgradeOps(
        ops=[
            ops.ModifyTableOps("other", [ops.DropIndexOp("ix_other_x", "other")]),
            ops.CreateTableOp.from_table(new),
            ops.ModifyTableOps("gadget", [check, name_index], schema="shop"),
            ops.ModifyTableOps("widget", dropped, schema="shop"),
            ops.DropTableOp.from_table(old),
        ]
    )
    directives = [
        ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="gadget", imports=set())
    ]
    [plain] = renames.chosen(upgrade, same_type, None)[0]
    notes = renames.plain(upgrade, [plain], indexes_of, same_type)
    assert notes == [
        "table widget is renamed gadget (the models dropped one and created the other with the "
        "same columns): check it is a rename. The release still serving during the deploy fails "
        "on widget from here: deploy it with a pause, or keep the old name (__tablename__)"
    ]
    directives[0].downgrade_ops = upgrade.reverse()
    return directives[0]


def test_a_renamed_table_is_a_plain_rename_both_ways() -> None:
    asked: list[tuple[str, str | None]] = []

    def indexes_of(table: str, schema: str | None) -> dict[tuple[str, ...], str]:
        asked.append((table, schema))
        return {("name",): "ix_widget_name", ("size",): "ix_widget_size"}

    script = renamed_table(indexes_of)
    assert asked == [("widget", "shop")]
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    assert rendered(script.upgrade_ops) == [
        OTHER,
        "op.rename_table('widget', 'gadget', schema='shop')",
        CHECK,
        "op.rename_index('ix_widget_name', 'ix_gadget_name', schema='shop')",
        "op.drop_index('ix_widget_size', table_name='gadget', schema='shop')",
    ]
    assert rendered(script.downgrade_ops)[:2] == [
        "op.create_index('ix_widget_size', 'gadget', ['size'], unique=False, schema='shop')",
        "op.rename_index('ix_gadget_name', 'ix_widget_name', schema='shop')",
    ]
    assert "op.rename_table('gadget', 'widget', schema='shop')" in rendered(script.downgrade_ops)


def test_without_the_databases_indexes_a_renamed_tables_are_dropped_and_built() -> None:
    script = renamed_table(None)  # MySQL: no index is renamed
    assert script.upgrade_ops is not None
    assert rendered(script.upgrade_ops) == [
        OTHER,
        "op.rename_table('widget', 'gadget', schema='shop')",
        CHECK,
        "op.create_index('ix_gadget_name', 'gadget', ['name'], unique=False, schema='shop')",
        "op.drop_index('ix_widget_name', table_name='gadget', schema='shop')",
        "op.drop_index('ix_widget_size', table_name='gadget', schema='shop')",
    ]


@pytest.mark.parametrize(
    ("answer", "taken"), [("", True), ("y", True), (" YES ", True), ("n", False)]
)
def test_a_terminal_is_asked_and_an_empty_answer_is_yes(
    monkeypatch: pytest.MonkeyPatch, answer: str, taken: bool
) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or answer)
    assert renames._ask(Rename("item", "title", "name")) is taken
    assert prompts == ["Was item.title -> item.name renamed (not dropped and added)? [Y/n] "]


def test_each_operation_reverses_into_its_opposite() -> None:
    sync = renames.CreateRenameSyncOp("item", "a", "b", schema="shop")
    back = sync.reverse()
    assert isinstance(back, renames.DropRenameSyncOp)
    assert vars(back) == vars(sync)
    again = back.reverse()
    assert isinstance(again, renames.CreateRenameSyncOp) and vars(again) == vars(sync)
    index = renames.RenameIndexOp("ix_a", "ix_b", "shop").reverse()
    assert (index.old_name, index.new_name, index.schema) == ("ix_b", "ix_a", "shop")
    table = renames.RenameTableOp("a", "b", schema="shop").reverse()
    assert (table.table_name, table.new_table_name, table.schema) == ("b", "a", "shop")
    column = renames.RenameColumnOp(
        "item",
        "a",
        schema="shop",
        modify_name="b",
        existing_type=sa.Integer(),
        existing_nullable=False,
        existing_server_default="1",
    ).reverse()
    assert (column.table_name, column.column_name, column.modify_name) == ("item", "b", "a")
    assert (column.schema, column.existing_nullable, column.existing_server_default) == (
        "shop",
        False,
        "1",
    )
    assert isinstance(column.existing_type, sa.Integer)
    assert str(Rename("item", "a", "b")) == "item.a -> item.b"
    assert str(Rename(None, "a", "b")) == "table a -> b"


def test_a_given_table_rename_must_name_a_table_the_change_drops_and_creates() -> None:
    metadata = sa.MetaData()
    upgrade = ops.UpgradeOps(
        ops=[
            ops.CreateTableOp.from_table(sa.Table("gadget", metadata, sa.Column("id", sa.Integer))),
            ops.DropTableOp.from_table(sa.Table("widget", metadata, sa.Column("id", sa.Integer))),
        ]
    )
    with pytest.raises(CommandError) as refused:
        renames.chosen(upgrade, same_type, "widgets=gadget")
    assert str(refused.value) == (
        "renames='widgets=gadget': this change does not drop table widgets and add table gadget "
        "(it drops table widget; adds table gadget): name what the models renamed; no revision "
        "written"
    )
    with pytest.raises(CommandError, match=r"\(it drops nothing; adds item.x\)"):
        renames.chosen(change(added("x", sa.Text())), same_type, "item.a=x")
    with pytest.raises(CommandError, match=r"\(it drops item.a, item.b; adds nothing\)"):
        two = change(dropped("b", sa.Text()), dropped("a", sa.Text()))
        renames.chosen(two, same_type, "item.a=x")
    assert renames.chosen(upgrade, same_type, "widget=gadget") == (
        [Rename(None, "widget", "gadget")],
        False,
    )


def test_the_operations_print_their_sql(offline: tuple[Operations, io.StringIO]) -> None:
    op, output = offline
    op.create_rename_sync("item", "title", "name", schema="shop")  # type: ignore[attr-defined]
    op.drop_rename_sync("item", "title", "name")  # type: ignore[attr-defined]
    op.rename_index("ix_a", "ix_b", schema="shop")  # type: ignore[attr-defined]
    sql = output.getvalue()
    assert "CREATE OR REPLACE FUNCTION shop.rename_sync_item_title_name() RETURNS trigger" in sql
    assert "IF NEW.name IS NULL THEN NEW.name := NEW.title; ELSE NEW.title := NEW.name;" in sql
    assert "ELSIF NEW.name IS DISTINCT FROM OLD.name THEN NEW.title := NEW.name;" in sql
    assert "ELSIF NEW.title IS DISTINCT FROM OLD.title THEN NEW.name := NEW.title;" in sql
    assert "DROP TRIGGER IF EXISTS rename_sync_item_title_name ON shop.item;" in sql
    assert (
        "CREATE TRIGGER rename_sync_item_title_name BEFORE INSERT OR UPDATE ON shop.item "
        "FOR EACH ROW EXECUTE FUNCTION shop.rename_sync_item_title_name();" in sql
    )
    assert "DROP TRIGGER IF EXISTS rename_sync_item_title_name ON item;" in sql
    assert "DROP FUNCTION IF EXISTS rename_sync_item_title_name();" in sql
    assert "ALTER INDEX shop.ix_a RENAME TO ix_b;" in sql


def test_on_mysql_the_trigger_and_the_index_rename_say_they_are_postgresqls() -> None:
    context = MigrationContext.configure(
        dialect_name="mysql", opts={"as_sql": True, "output_buffer": io.StringIO()}
    )
    op: Any = Operations(context)
    with pytest.raises(CommandError) as refused:
        op.create_rename_sync("item", "title", "name")
    assert str(refused.value) == (
        "op.create_rename_sync and op.drop_rename_sync are PostgreSQL's: on MySQL rename with "
        "op.alter_column(..., new_column_name=...) (docs/deploy-phases.md, Renames)"
    )
    with pytest.raises(CommandError, match=r"op\.rename_index is PostgreSQL's"):
        op.rename_index("ix_a", "ix_b")


def test_a_rename_given_on_postgresql_says_so_and_two_tables_are_read_apart() -> None:
    upgrade = ops.UpgradeOps(
        ops=[
            ops.ModifyTableOps(
                table,
                [
                    ops.DropColumnOp.from_column_and_tablename(
                        None, table, sa.Column("a", sa.Text())
                    ),
                    ops.AddColumnOp(table, sa.Column("b", sa.Text())),
                ],
            )
            for table in ("one", "two")
        ]
    )
    assert renames.guessed(upgrade, same_type) == [Rename("one", "a", "b"), Rename("two", "a", "b")]
    directives = [ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m")]
    autogen.process_revision_directives(on("postgresql"), None, directives, renames_given="two.a=b")
    assert directives[0].upgrade_ops is not None
    notes = [line for line in rendered(directives[0].upgrade_ops) if "renamed" in line]
    assert notes == [
        "# REVIEW: two.a is renamed b (as renames= said), as expand/contract: b is added, a "
        "trigger keeps both equal while the old and the new release run, `make backfill` copies "
        "the rows, and the post revision drops a. Not a rename? make migration again with "
        'renames=none (or renames="table.old=new")'
    ]


def test_a_column_with_no_match_does_not_end_the_search() -> None:
    upgrade = change(
        dropped("gone", sa.Boolean()),
        dropped("title", sa.String(40)),
        added("name", sa.String(40)),
    )
    assert renames.guessed(upgrade, same_type) == [Rename("item", "title", "name")]


def test_two_renamed_tables_come_in_order() -> None:
    metadata = sa.MetaData()
    created, dropped_tables = [], []
    for old, new in (("b_old", "b_new"), ("a_old", "a_new")):
        width = 1 if old == "a_old" else 2
        columns = [sa.Column("id", sa.Integer), sa.Column("x", sa.String(width))]
        dropped_tables.append(ops.DropTableOp.from_table(sa.Table(old, metadata, *columns)))
        columns = [sa.Column("id", sa.Integer), sa.Column("x", sa.String(width))]
        created.append(ops.CreateTableOp.from_table(sa.Table(new, metadata, *columns)))
    upgrade = ops.UpgradeOps(ops=[*created, *dropped_tables])
    assert renames.guessed(upgrade, same_type) == [
        Rename(None, "a_old", "a_new"),
        Rename(None, "b_old", "b_new"),
    ]


def test_a_rename_that_cannot_be_split_writes_nothing() -> None:
    class Opaque(ops.MigrateOperation):
        """An operation with no reverse, as some plugins' are."""

    upgrade = change(dropped("title", sa.String(40)), added("name", sa.String(40)))
    upgrade.ops.append(Opaque())
    directives = [ops.MigrationScript("rev", upgrade, ops.DowngradeOps(ops=[]), message="m")]
    with pytest.raises(CommandError) as refused:
        autogen.process_revision_directives(on("postgresql"), None, directives)
    assert str(refused.value) == (
        "item.title -> item.name cannot be written as a rename: an operation of this change has "
        "no reverse. No revision written: make the rename alone, or give renames=none"
    )


def test_a_terminal_run_asks_before_taking_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    upgrade = change(dropped("title", sa.String(40)), added("name", sa.String(40)))
    assert renames.chosen(upgrade, same_type, None) == ([], False)
    monkeypatch.setattr("sys.stdin", None)  # no stdin at all (a daemon): never asked
    assert renames.chosen(upgrade, same_type, None) == ([Rename("item", "title", "name")], True)


def test_the_trigger_name_is_cut_at_63_bytes_with_a_hash() -> None:
    fits = renames.sync_name("t" * 20, "c" * 10, "d" * 20)  # 12 + 20 + 1 + 10 + 1 + 20 = 64
    assert fits == "rename_sync_" + "t" * 20 + "_" + "c" * 10 + "_" + "d" * 10 + "_" + fits[-8:]
    exact = renames.sync_name("t" * 20, "c" * 10, "d" * 19)  # 63 bytes: kept whole
    assert exact == "rename_sync_" + "t" * 20 + "_" + "c" * 10 + "_" + "d" * 19
    accented = renames.sync_name("x" + "é" * 30, "a", "b")  # the cut falls inside an é
    assert len(accented.encode()) <= 63 and accented.isprintable()


def test_on_mysql_a_table_and_a_column_renamed_in_one_change_are_both_plain() -> None:
    metadata = sa.MetaData()
    upgrade = ops.UpgradeOps(
        ops=[
            ops.CreateTableOp.from_table(sa.Table("gadget", metadata, sa.Column("id", sa.Integer))),
            ops.DropTableOp.from_table(sa.Table("widget", metadata, sa.Column("id", sa.Integer))),
            ops.ModifyTableOps(
                "item",
                [
                    added("note", sa.Text()),
                    dropped("title", sa.String(40)),
                    added("name", sa.String(40)),
                ],
            ),
        ]
    )
    directives = [ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m")]
    autogen.process_revision_directives(on("mysql"), None, directives)
    assert directives[0].upgrade_ops is not None
    code = [line for line in rendered(directives[0].upgrade_ops, "mysql") if "REVIEW" not in line]
    assert code == [
        "op.rename_table('widget', 'gadget')",
        "op.add_column('item', sa.Column('note', sa.Text(), nullable=True))",
        "op.alter_column('item', 'title',",
        "existing_type=sa.String(length=40),",
        "new_column_name='name',",
        "existing_nullable=True)",
    ]


def test_a_drop_beside_a_rename_is_still_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    upgrade = change(
        dropped("title", sa.String(40)), dropped("z", sa.Text()), added("name", sa.String(40))
    )
    directives = [ops.MigrationScript("rev", upgrade, upgrade.reverse(), message="m")]
    autogen.process_revision_directives(on("postgresql"), None, directives)
    said = capsys.readouterr().err
    assert "WARNING: this revision drops column item.z; review it" in said
    assert "drops column item.title" not in said
