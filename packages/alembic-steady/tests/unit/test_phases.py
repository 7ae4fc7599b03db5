"""Deploy phases on revision files alone (runner/phases.py, tools/phase_lint.py): which revision
is pre and which post, the heads each phase has, what a database at a set of revisions is ready
for, the rules a history breaks, and the pre revisions whose upgrade() removes what the running
release uses. The upgrades themselves run on real servers (test_pg_phases.py)."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic.operations import ops
from alembic.script import ScriptDirectory
from support import make_project

from alembic_steady import MAKE
from alembic_steady.authoring import phase_split
from alembic_steady.runner.phases import POST, PRE, Phases, phase_of, placement, upgrade_steps
from alembic_steady.tools import phase_lint

REVISION = '''"""{rev}"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}


def upgrade():
{body}


def downgrade():
    op.drop_table("anything")  # a downgrade may remove: it is not read
'''

# pre: a1 -> a2 -> a3 -> a4; post: p1 (depends on a2) -> p2 (depends on a4)
HISTORY = [
    ("a1", None, None, None, '    op.create_table("item", sa.Column("id", sa.Integer))'),
    ("a2", "a1", None, None, '    op.add_column("item", sa.Column("note", sa.Text))'),
    ("p1", None, ("post",), "a2", '    op.drop_column("item", "legacy")'),
    ("a3", "a2", None, None, '    op.add_column("item", sa.Column("sku", sa.Text))'),
    ("a4", "a3", None, None, "    pass"),
    ("p2", "p1", None, "a4", '    op.alter_column("item", "sku", nullable=False)'),
]


def write(folder: Path, history: list[tuple[str, str | None, object, object, str]]) -> Path:
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for rev, down, labels, depends, body in history:
        text = REVISION.format(rev=rev, down=down, labels=labels, depends=depends, body=body)
        (versions / f"{rev}.py").write_text(text, encoding="utf-8")
    return versions


def scripts(
    folder: Path, history: list[tuple[str, str | None, object, object, str]]
) -> ScriptDirectory:
    versions = write(folder, history)
    return ScriptDirectory(str(folder), version_locations=[str(versions)])


def test_the_post_line_is_its_labelled_first_revision_and_what_follows(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, HISTORY))
    assert phases.used
    assert phases.post == {"p1", "p2"}
    assert [phases.phase(r) for r in ("a1", "a4", "p1", "p2")] == ["pre", "pre", "post", "post"]
    assert phases.heads("pre") == ["a4"] and phases.heads("post") == ["p2"]
    assert phases.problems() == []
    # Alembic writes p2 alone once both lines are at head: p2 depends on a4.
    assert phases.head_rows() == ("p2",)


def test_a_history_without_the_label_is_all_pre(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, HISTORY[:2]))
    assert not phases.used and phases.post == set()
    assert phases.heads(PRE) == ["a2"] and phases.head_rows() == ("a2",)


def test_ready_means_every_pre_revision_applied_whatever_the_post_line(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, HISTORY))
    assert phases.ready(["a4"])  # the deploy's pre step ran; the post one waits for the rollout
    assert phases.ready(["a4", "p1"])
    assert phases.ready(["p2"])  # p2 depends on a4: every pre revision is in
    assert not phases.ready(["a3", "p1"])  # a4 missing: the new release is not served yet
    assert not phases.ready([])
    assert not phases.ready(["a4", "zz9"])  # a revision this code does not have


def test_deploy_order_puts_every_pre_revision_first(tmp_path: Path) -> None:
    script = scripts(tmp_path, HISTORY)
    phases = Phases(script)
    alembic_order = list(reversed(list(script.walk_revisions("base", "heads"))))
    ordered = [r.revision for r in phases.in_deploy_order(alembic_order)]
    assert ordered[:4] == [r for r in ordered if r.startswith("a")]
    assert ordered[4:] == ["p1", "p2"]


def test_a_revision_following_a_post_one_is_post_too(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, [*HISTORY, ("p3", "p2", None, None, "    pass")]))
    assert phases.phase("p3") == "post" and phases.heads("post") == ["p3"]


def test_a_pre_revision_depending_on_a_post_one_is_refused(tmp_path: Path) -> None:
    broken = [*HISTORY, ("a5", "a4", None, "p1", "    pass")]
    [problem] = Phases(scripts(tmp_path, broken)).problems()
    assert problem == (
        "a5 is a pre revision that follows or depends on the post revision p1: the pre phase "
        "could not apply it before the rollout. Base it on the pre line's head instead"
    )
    twice = [*HISTORY, ("a5", "a4", None, ("p1", "p2"), "    pass")]
    [problem] = Phases(scripts(tmp_path / "twice", twice)).problems()
    assert "depends on the post revision p1, p2:" in problem


def test_a_post_line_starting_from_a_merge_names_both(tmp_path: Path) -> None:
    merged = [*HISTORY[:2], ("a3", "a1", None, None, "    pass")]
    merged += [("p1", ("a2", "a3"), ("post",), None, "    pass")]
    problems = Phases(scripts(tmp_path, merged)).problems()
    assert problems[0].startswith("p1 starts the post line but follows a2, a3: ")


def test_a_history_of_one_revision_is_ready_once_it_is_applied(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, HISTORY[:1]))
    assert phases.ready(["a1"]) and not phases.ready([])


def test_a_merge_revision_applies_both_parents(tmp_path: Path) -> None:
    merged = [*HISTORY[:2], ("a3", "a1", None, None, "    pass")]
    merged += [("m4", ("a2", "a3"), None, None, "    pass")]
    phases = Phases(scripts(tmp_path, merged))
    assert phases.applied(["m4"]) == {"a1", "a2", "a3", "m4"}
    assert phases.heads(PRE) == ["m4"] and phases.ready(["m4"])
    assert phases.ready(["m4", "zz"]) is False  # a revision this history lacks


def test_a_post_line_that_does_not_start_from_base_is_refused(tmp_path: Path) -> None:
    broken = [row if row[0] != "p1" else ("p1", "a2", ("post",), None, row[4]) for row in HISTORY]
    problems = Phases(scripts(tmp_path, broken)).problems()
    assert problems == [
        "p1 starts the post line but follows a2: the post line starts from base "
        "(down_revision = None) and depends on the pre revision it comes with (depends_on)"
    ]


@pytest.mark.parametrize("given", [None, "", "pre", "post"])
def test_a_phase_is_pre_post_or_none(given: str | None) -> None:
    assert phase_of(given) == (given or None)


def test_any_other_phase_names_the_two() -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError) as refused:
        phase_of("later")
    assert str(refused.value) == (
        "phase='later' is not a phase: give pre (before the rollout) or post (after it), or "
        "leave it out for both"
    )


# -- lint-migrations' rule -------------------------------------------------------------------


def lint(
    tmp_path: Path, history: list[tuple[str, str | None, object, object, str]], **settings: str
) -> tuple[list[str], list[str]]:
    script = scripts(tmp_path / "migrations", history)
    if settings:
        lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
        (tmp_path / "pyproject.toml").write_text(
            f"[tool.alembic-steady]\n{lines}", encoding="utf-8"
        )
    project = make_project(tmp_path)
    findings, accepted = phase_lint.check(project, Phases(script))
    return [str(finding) for finding in findings], accepted


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ('    op.drop_column("item", "note")', "op.drop_column()"),
        ('    op.drop_table("item")', "op.drop_table()"),
        ('    op.drop_index("ix_item_note", table_name="item")', "op.drop_index()"),
        ('    op.drop_index_concurrently("ix_item_note", "item")', "op.drop_index_concurrently()"),
        ('    op.drop_constraint("fk_item", "item")', "op.drop_constraint()"),
        ('    op.rename_table("item", "items")', "op.rename_table()"),
        ('    op.set_not_null("item", "note")', "op.set_not_null()"),
        ('    op.alter_column("item", "note", nullable=False)', "op.alter_column(nullable=False)"),
        (
            '    op.alter_column("item", "note", new_column_name="body")',
            "op.alter_column(new_column_name=...)",
        ),
        (
            '    with op.batch_alter_table("item") as batch_op:\n'
            '        batch_op.drop_column("note")',
            "op.drop_column()",
        ),
        ('    op.execute("ALTER TABLE item DROP COLUMN note")', "op.execute() with DROP COLUMN"),
        ('    op.execute("alter table item rename to items")', "op.execute() with RENAME"),
        (
            '    op.execute("ALTER TABLE item ALTER note SET  NOT NULL")',
            "op.execute() with SET NOT NULL",
        ),
    ],
)
def test_a_pre_revision_that_removes_or_tightens_is_found(
    tmp_path: Path, body: str, what: str
) -> None:
    history = [*HISTORY[:2], ("a3", "a2", None, None, body)]
    findings, _ = lint(tmp_path, history, **{"phases-from": "base"})
    assert findings == [f"a3.py:{12 + (body.count(chr(10)))}: {what} in a pre revision"]


@pytest.mark.parametrize(
    "body",
    [
        '    op.add_column("item", sa.Column("body", sa.Text))',
        '    op.alter_column("item", "note", nullable=True)',
        '    op.alter_column("item", "note", type_=sa.Text())',
        '    op.create_index("ix_item_note", "item", ["note"])',
        "    op.execute(\"UPDATE item SET note = '' WHERE note IS NULL\")",
    ],
)
def test_what_the_running_release_keeps_working_with_passes(tmp_path: Path, body: str) -> None:
    history = [*HISTORY[:2], ("a3", "a2", None, None, body)]
    assert lint(tmp_path, history, **{"phases-from": "base"}) == ([], [])


def test_post_revisions_and_downgrades_may_remove(tmp_path: Path) -> None:
    assert lint(tmp_path, HISTORY) == ([], [])


def test_a_step_accepted_in_its_file_is_listed_with_the_reason(tmp_path: Path) -> None:
    body = (
        "    # lint-migrations: contracts in pre: the column was never released\n"
        '    op.drop_column("item", "note")'
    )
    history = [*HISTORY[:2], ("a3", "a2", None, None, body)]
    findings, accepted = lint(tmp_path, history, **{"phases-from": "base"})
    assert findings == []
    assert accepted == [
        "a3.py: contracts in pre (accepted in the file: the column was never released)"
    ]


def test_history_before_the_phases_is_left_alone(tmp_path: Path) -> None:
    old = [
        ("a1", None, None, None, '    op.drop_table("legacy")'),
        ("a2", "a1", None, None, '    op.drop_column("item", "old")'),
        ("a3", "a2", None, None, '    op.drop_column("item", "new")'),
    ]
    findings, _ = lint(tmp_path, old, **{"phases-from": "a2"})
    assert findings == ["a3.py:12: op.drop_column() in a pre revision"]


def test_a_project_without_phases_is_not_read_until_its_first_post_revision(
    tmp_path: Path,
) -> None:
    old = [*HISTORY[:2], ("a3", "a2", None, None, '    op.drop_column("item", "x")')]
    assert lint(tmp_path / "before", old) == ([], [])
    started = [*old, ("p1", None, ("post",), "a3", "    pass")]
    assert lint(tmp_path / "after", started)[0] == ["a3.py:12: op.drop_column() in a pre revision"]


def test_phases_from_naming_no_revision_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"phases-from = 'zz' in pyproject\.toml names no revision"
    ):
        lint(tmp_path, HISTORY[:2], **{"phases-from": "zz"})


# -- where a new revision goes (placement) and the steps of an upgrade --------------------------


def test_a_pre_revision_goes_on_the_pre_head_once_the_history_has_a_post_line(
    tmp_path: Path,
) -> None:
    assert placement(Phases(scripts(tmp_path, HISTORY)), PRE) == {"head": "a4"}
    assert placement(Phases(scripts(tmp_path / "plain", HISTORY[:2])), PRE) == {}
    assert placement(None, PRE) == {}


def test_a_post_revision_follows_the_post_head_and_depends_on_the_pre_head(
    tmp_path: Path,
) -> None:
    phases = Phases(scripts(tmp_path, HISTORY))
    assert placement(phases, POST) == {"head": "p2", "depends_on": "a4"}
    assert placement(phases, POST, "new") == {"head": "p2", "depends_on": "new"}


def test_the_first_post_revision_starts_the_line_from_base(tmp_path: Path) -> None:
    phases = Phases(scripts(tmp_path, HISTORY[:2]))
    assert placement(phases, POST) == {"head": "base", "branch_label": ["post"], "depends_on": "a2"}
    assert placement(None, POST) == {"head": "base", "branch_label": ["post"], "depends_on": None}


def steps_of(script: ScriptDirectory, phase: str | None, heads: tuple[str, ...] = ()) -> list[str]:
    chosen = upgrade_steps(Phases(script), phase, MAKE)
    return [step.revision.revision for step in chosen(heads, cast(Any, on_history(script)))]


def test_an_upgrade_takes_every_pre_revision_first_or_one_phase(tmp_path: Path) -> None:
    script = scripts(tmp_path, HISTORY)
    assert steps_of(script, None) == ["a1", "a2", "a3", "a4", "p1", "p2"]
    assert steps_of(script, "pre") == ["a1", "a2", "a3", "a4"]
    assert steps_of(script, "post", ("a4",)) == ["p1", "p2"]
    assert steps_of(script, None, ("a4", "p1")) == ["p2"]


def test_the_post_phase_before_the_pre_one_names_what_is_missing_in_its_callers_words(
    tmp_path: Path,
) -> None:
    from alembic.util import CommandError

    script = scripts(tmp_path, HISTORY)
    with pytest.raises(CommandError) as refused:
        steps_of(script, "post", ("a2",))
    assert str(refused.value) == (
        "phase=post: the pre revision(s) a3, a4 are not applied yet, and the release being "
        "finished needs them: run make migrate phase=pre first (before the rollout)"
    )
    module = upgrade_steps(Phases(script), "post", make_project(package="shop").module_commands)
    with pytest.raises(CommandError, match=r"run python -m shop\.migrations upgrade --phase pre"):
        list(module(("a2",), cast(Any, on_history(script))))


def test_labels_and_links_given_as_one_string_are_read_as_one(tmp_path: Path) -> None:
    history = [
        ("a1", None, None, None, "    pass"),
        ("a2", "a1", None, None, "    pass"),
        ("p1", None, "post", "a1", "    pass"),  # a label and a dependency as plain strings
        ("p2", "p1", None, ("a1", "a2"), "    pass"),
    ]
    phases = Phases(scripts(tmp_path, history))
    assert phases.post == {"p1", "p2"}
    assert phases.applied(["p2"]) == {"a1", "a2", "p1", "p2"}
    assert phases.ready(["p1"]) is False and phases.ready(["p2"]) is True


# -- autogenerate's split ------------------------------------------------------------------------


def autogenerated(*upgrade: ops.MigrateOperation, message: str | None = "change") -> Any:
    upgrade_ops = ops.UpgradeOps(ops=list(upgrade))
    return ops.MigrationScript(
        "newpre",
        upgrade_ops,
        upgrade_ops.reverse(),
        message=message,
        imports={"import sqlalchemy_utils"},
    )


def on_history(script: ScriptDirectory | None) -> Any:
    return SimpleNamespace(script=script)


LEGACY = sa.Column("legacy", sa.Text())


def test_a_drop_goes_to_a_post_revision_that_depends_on_the_pre_one(tmp_path: Path) -> None:
    add = ops.AddColumnOp("item", sa.Column("sku", sa.Text()))
    drop = ops.DropColumnOp.from_column_and_tablename(None, "item", LEGACY)
    directives = [autogenerated(ops.ModifyTableOps("item", [add, drop], schema="shop"))]
    post = phase_split.split_phases(on_history(scripts(tmp_path, HISTORY)), directives, set())
    pre = directives[0]
    assert directives == [pre, post] and post is not None
    assert (pre.head, post.head, post.depends_on) == ("a4", "p2", "newpre")
    assert post.message == "change (post)" and post.rev_id not in ("newpre", None)
    [pre_table] = pre.upgrade_ops.ops  # type: ignore[union-attr]
    [post_table] = post.upgrade_ops.ops  # type: ignore[union-attr]
    assert (pre_table.ops, post_table.ops) == ([add], [drop])
    assert (pre_table.table_name, post_table.table_name) == ("item", "item")
    assert (pre_table.schema, post_table.schema) == ("shop", "shop")
    # Each goes down on its own: the post revision adds the column back, the pre one drops sku.
    [post_down] = post.downgrade_ops.ops  # type: ignore[union-attr]
    assert (
        isinstance(post_down.ops[0], ops.AddColumnOp) and post_down.ops[0].column.name == "legacy"
    )
    [pre_down] = pre.downgrade_ops.ops  # type: ignore[union-attr]
    assert isinstance(pre_down.ops[0], ops.DropColumnOp) and pre_down.ops[0].column_name == "sku"


def test_only_what_removes_makes_a_post_revision_alone(tmp_path: Path) -> None:
    table = sa.Table("old", sa.MetaData(), sa.Column("id", sa.Integer))
    directives = [autogenerated(ops.DropTableOp.from_table(table), message=None)]
    post = phase_split.split_phases(on_history(scripts(tmp_path, HISTORY[:2])), directives, set())
    assert directives == [post] and post is not None
    assert (post.head, post.branch_label, post.depends_on) == ("base", ["post"], "a2")
    assert post.message == "(post)" and post.imports == {"import sqlalchemy_utils"}


def test_a_change_that_removes_nothing_stays_one_revision(tmp_path: Path) -> None:
    add = ops.AddColumnOp("item", sa.Column("sku", sa.Text()))
    directives = [autogenerated(ops.ModifyTableOps("item", [add]))]
    assert (
        phase_split.split_phases(on_history(scripts(tmp_path, HISTORY)), directives, set()) is None
    )
    assert len(directives) == 1 and directives[0].head == "a4"


def test_a_name_made_again_on_one_table_is_kept_whatever_the_tables_after_it() -> None:
    metadata = sa.MetaData()
    table = sa.Table("item", metadata, sa.Column("name", sa.Text()))
    dropped = ops.DropIndexOp.from_index(sa.Index("ix_item_name", table.c.name))
    made = ops.CreateIndexOp("ix_item_name", "item", ["name"], unique=True)
    other = ops.AddColumnOp("tag", sa.Column("label", sa.Text()))
    change = [ops.ModifyTableOps("item", [dropped, made]), ops.ModifyTableOps("tag", [other])]
    assert phase_split._created_names(change) == {"ix_item_name"}
    pre, post = phase_split._split(change, set(), phase_split._created_names(change))
    assert [t.table_name for t in pre] == ["item", "tag"] and post == []


def test_an_index_or_check_made_again_under_its_name_is_replaced_in_the_pre_revision() -> None:
    metadata = sa.MetaData()
    table = sa.Table("item", metadata, sa.Column("name", sa.Text()))
    old = sa.Index("ix_item_name", table.c.name)
    dropped = ops.DropIndexOp.from_index(old)
    made = ops.CreateIndexOp("ix_item_name", "item", ["name"], postgresql_where="name <> ''")
    check = ops.CreateCheckConstraintOp("ck_item_name", "item", "name <> ''")
    dropped_check = ops.DropConstraintOp("ck_item_name", "item", type_="check")
    gone = ops.DropIndexOp("ix_item_gone", "item")
    change = [ops.ModifyTableOps("item", [dropped, made, dropped_check, check, gone])]
    pre, post = phase_split._split(change, set(), phase_split._created_names(change))
    assert pre[0].ops == [dropped, made, dropped_check, check] and post[0].ops == [gone]


def test_a_new_required_column_is_added_nullable_and_made_not_null_after() -> None:
    required = ops.AddColumnOp(
        "item", sa.Column("sku", sa.String(20), nullable=False), schema="shop"
    )
    pre, post = phase_split._split([required], set(), set())
    [added] = pre
    assert added.column.nullable is True and required.column.nullable is False
    assert (added.table_name, added.schema, added.column.name) == ("item", "shop", "sku")
    [tighten] = post
    assert (tighten.table_name, tighten.column_name, tighten.modify_nullable) == (
        "item",
        "sku",
        False,
    )
    assert tighten.schema == "shop"
    assert (tighten.existing_nullable, str(tighten.existing_type)) == (True, "VARCHAR(20)")
    # On a table the change creates there are no rows, and no old release writing it.
    assert phase_split._split([required], {"item"}, set()) == ([required], [])


@pytest.mark.parametrize(
    "column",
    [
        sa.Column("sku", sa.String(20), nullable=True),
        sa.Column("sku", sa.String(20), nullable=False, server_default="x"),
        sa.Column("sku", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("sku", sa.Integer(), sa.Computed("id * 2"), nullable=False),
    ],
)
def test_a_column_the_old_release_can_leave_out_stays_in_the_pre_revision(
    column: sa.Column[Any],
) -> None:
    add = ops.AddColumnOp("item", column)
    assert phase_split._split([add], set(), set()) == ([add], [])


def test_a_change_alembic_cannot_reverse_stays_one_revision() -> None:
    drop = ops.DropColumnOp("item", "legacy")  # written by hand: no column to add back
    directives = [ops.MigrationScript("r", ops.UpgradeOps(ops=[drop]), ops.DowngradeOps(ops=[]))]
    assert phase_split.split_phases(on_history(None), directives, set()) is None
    assert len(directives) == 1
