"""Deploy phases on revision files alone (runner/phases.py, tools/phase_lint.py): which revision
is pre and which post, the heads each phase has, what a database at a set of revisions is ready
for, the rules a history breaks, and the pre revisions whose upgrade() removes what the running
release uses. The upgrades themselves run on real servers (test_pg_phases.py)."""

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from support import make_project

from alembic_steady.runner.phases import PRE, Phases, phase_of
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
    assert problem.startswith(
        "a5 is a pre revision that follows or depends on the post revision p1"
    )
    assert "Base it on the pre line's head instead" in problem


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

    with pytest.raises(CommandError, match=r"phase='later' is not a phase: give pre .* or post"):
        phase_of("later")


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
    findings, accepted = phase_lint.check(project, script)
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
