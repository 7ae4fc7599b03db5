"""Deploy phases on a real PostgreSQL: `upgrade --phase pre` before the rollout leaves what the
old release uses, `--phase post` removes it after, a plain upgrade runs every pre revision first;
readiness counts the pre line; every way in (the API, plain `alembic` as `make migrate` and `make
sql` run it, the module CLI a Job runs) takes the phase; autogenerate writes what removes in a
post revision; the built-in tests pass on a phased history."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import checks_run
import demo_project
import pytest
from queries import execute, heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.runner.phases import Phases
from alembic_steady.testing.walk import on_connection
from alembic_steady.tools import lint

# After the demo chain (a1 widget, b2 its index, c3 price): the release that replaces price by
# note. d4 (pre) adds note, e5 (pre) copies price into it; p1 (post) drops price once the release
# before, which reads it, is gone; p2 (post) makes note NOT NULL. Alembic's own order for a plain
# upgrade is c3, d4, p1, p2, e5: e5 would find price dropped.
P2_UP = (
    "    op.execute(\"UPDATE widget SET note = '' WHERE note IS NULL\")\n"
    '    op.set_not_null("widget", "note")'
)
PHASED = [
    ("p1", None, '    op.drop_column("widget", "price")', ("post",), "c3"),
    (
        "d4",
        "c3",
        '    op.add_column("widget", sa.Column("note", sa.Text, nullable=True))',
        None,
        None,
    ),
    ("e5", "d4", "    op.execute(\"UPDATE widget SET note = 'price ' || price\")", None, None),
    ("p2", "p1", P2_UP, None, "d4"),
]
DOWN = {
    "p1": '    op.add_column("widget", sa.Column("price", sa.Integer, nullable=True))',
    "d4": '    op.drop_column("widget", "note")',
    "e5": "    pass",
    "p2": '    op.alter_column("widget", "note", nullable=True)',
}
MODELS = demo_project.MODELS.replace(
    '    sa.Column("price", sa.Integer, nullable=True),',
    '    sa.Column("note", sa.Text, nullable=False),',
)


def phased(name: str, models: str = MODELS) -> Project:
    project = demo_project.write("postgresql", name=name, models=models)
    for revision, down, upgrade, labels, depends in PHASED:
        demo_project.add_revision(
            project.versions,
            revision,
            down,
            upgrade,
            DOWN[revision],
            revision,
            labels=labels,
            depends=depends,
        )
    return project


@pytest.fixture(scope="module")
def project() -> Project:
    return phased("phases")


def columns(url: URL) -> list[str]:
    found = rows(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'widget' "
        "ORDER BY ordinal_position",
    )
    return [row[0] for row in found]


def ready(project: Project, url: URL) -> bool:
    return bool(on_connection(url, Migrations(project).is_at_head))


def test_pre_leaves_what_the_old_release_uses_and_post_removes_it(
    project: Project, database_url: URL
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("c3", url=database_url)  # the old release's schema
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('old', 7)")
    assert not ready(project, database_url)

    migrations.upgrade(url=database_url, phase="pre")
    assert heads(database_url) == {"e5"}
    assert columns(database_url) == ["id", "name", "price", "note"]
    # The old release still writes price, the new one reads note: both work.
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('during', 8)")
    assert rows(database_url, "SELECT note FROM widget WHERE name = 'old'") == [("price 7",)]
    assert ready(project, database_url)  # the new release may start serving

    migrations.upgrade(url=database_url, phase="post")
    assert columns(database_url) == ["id", "name", "note"]
    assert heads(database_url) == {"e5", "p2"}  # (d4 is p2's dependency: not kept apart)
    assert ready(project, database_url)
    migrations.upgrade(url=database_url, phase="post")  # again: nothing left, nothing happens
    assert heads(database_url) == {"e5", "p2"}


def test_a_plain_upgrade_runs_every_pre_revision_before_the_post_ones(
    project: Project, database_url: URL
) -> None:
    # e5 copies price, which p1 drops: in Alembic's own order (p1 before e5) e5 would fail.
    Migrations(project).upgrade(url=database_url)
    assert heads(database_url) == {"e5", "p2"}
    assert columns(database_url) == ["id", "name", "note"]


def test_post_before_pre_is_refused_and_changes_nothing(
    project: Project, database_url: URL
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("a1", url=database_url)
    with pytest.raises(Exception, match="phase=post: the pre revision") as refused:
        migrations.upgrade(url=database_url, phase="post")
    message = str(refused.value)
    assert "b2, c3, d4, e5 are not applied yet" in message
    assert "run make migrate phase=pre first (before the rollout)" in message
    assert heads(database_url) == {"a1"}


def test_a_phase_with_a_revision_is_refused(project: Project, database_url: URL) -> None:
    with pytest.raises(Exception, match=r"phase=pre upgrades to that phase's head: leave out"):
        Migrations(project).upgrade("c3", url=database_url, phase="pre")
    assert heads(database_url) == set()


def run_alembic(project: Project, url: URL | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Plain `alembic` with the project's alembic.ini, as the Make targets run it."""
    target = url.render_as_string(hide_password=False) if url else "postgresql://nobody@h:9/x"
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(demo_project.alembic_ini(project)), *args],
        env={**os.environ, "PYTHONPATH": demo_project.pythonpath(project), "DATABASE_URL": target},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_migrate_and_make_sql_take_the_phase(project: Project, database_url: URL) -> None:
    # `make migrate phase=pre` passes -x phase=pre to alembic upgrade head.
    pre = run_alembic(project, database_url, "-x", "phase=pre", "upgrade", "head")
    assert pre.returncode == 0, pre.stderr
    assert heads(database_url) == {"e5"}
    both = run_alembic(project, database_url, "upgrade", "head")  # two heads: both, pre first
    assert both.returncode == 0, both.stderr
    assert heads(database_url) == {"e5", "p2"}
    wrong = run_alembic(project, database_url, "-x", "phase=later", "upgrade", "head")
    assert wrong.returncode != 0
    assert "FAILED: phase='later' is not a phase: give pre" in wrong.stdout + wrong.stderr
    # `make sql`: no database; the post revisions' SQL comes after every pre revision's.
    sql = run_alembic(project, None, "upgrade", "head", "--sql")
    assert sql.returncode == 0, sql.stderr
    order = [line for line in sql.stdout.splitlines() if line.startswith("-- Running upgrade")]
    assert [line.rsplit(" ", 1)[-1] for line in order] == ["a1", "b2", "c3", "d4", "e5", "p1", "p2"]
    only_pre = run_alembic(project, None, "-x", "phase=pre", "upgrade", "head", "--sql")
    assert "DROP COLUMN price" not in only_pre.stdout and "ADD COLUMN note" in only_pre.stdout


def test_the_module_cli_migrates_one_phase_and_waits_for_the_pre_head(
    project: Project, database_url: URL
) -> None:
    waited = demo_project.module_cli(
        project, "wait-for-head", "--timeout", "1", "--interval", "0.2", url=database_url
    )
    assert waited.returncode == 1
    assert "run the migrations (python -m" in waited.stdout
    assert "upgrade --phase pre)" in waited.stdout
    pre = demo_project.module_cli(project, "upgrade", "--phase", "pre", url=database_url)
    assert pre.returncode == 0, pre.stdout
    assert heads(database_url) == {"e5"}
    waited = demo_project.module_cli(project, "wait-for-head", "--timeout", "5", url=database_url)
    assert waited.returncode == 0 and "At head." in waited.stdout  # p1, p2 still pending
    post = demo_project.module_cli(project, "upgrade", "--phase", "post", url=database_url)
    assert post.returncode == 0, post.stdout
    assert heads(database_url) == {"e5", "p2"}


def test_autogenerate_writes_what_removes_in_a_post_revision(database_url: URL) -> None:
    # The models drop price and add sku NOT NULL: the pre revision adds sku nullable, the post
    # one drops price and makes sku NOT NULL; a second change then goes on both lines' heads.
    models = demo_project.MODELS.replace(
        '    sa.Column("price", sa.Integer, nullable=True),',
        '    sa.Column("sku", sa.String(20), nullable=False),',
    )
    project = demo_project.write("postgresql", name="phases_autogen", models=models)
    Migrations(project).upgrade(url=database_url)
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('old', 7)")
    made = run_alembic(project, database_url, "revision", "--autogenerate", "-m", "sku")
    assert made.returncode == 0, made.stderr
    assert "the post revision" in made.stdout
    history = Phases(Migrations(project).script())
    [post_id] = sorted(history.post)
    [pre_id] = history.heads("pre")
    pre_file = Path(history.revisions[pre_id].path).read_text(encoding="utf-8")
    post_file = Path(history.revisions[post_id].path).read_text(encoding="utf-8")
    pre_upgrade = pre_file.split("def downgrade")[0]
    assert "nullable=True" in pre_upgrade and "drop_column" not in pre_upgrade
    assert "branch_labels = ('post',)" in post_file and f"depends_on = '{pre_id}'" in post_file
    assert "op.drop_column('widget', 'price'" in post_file and "op.set_not_null" in post_file
    assert "# REVIEW: a post revision: it runs after the new release has rolled out" in post_file

    pre = run_alembic(project, database_url, "-x", "phase=pre", "upgrade", "head")
    assert pre.returncode == 0, pre.stderr
    assert columns(database_url) == ["id", "name", "price", "sku"]
    execute(database_url, "UPDATE widget SET sku = 'w-' || id")  # the backfill
    both = run_alembic(project, database_url, "upgrade", "head")
    assert both.returncode == 0, both.stderr
    assert columns(database_url) == ["id", "name", "sku"]
    checked = run_alembic(project, database_url, "check")
    assert checked.returncode == 0, checked.stderr

    models_file = project.migrations.parent / "models.py"
    text = models_file.read_text(encoding="utf-8")
    models_file.write_text(
        text.replace('    sa.Index("ix_widget_name", "name"),', ""), encoding="utf-8"
    )
    again = run_alembic(project, database_url, "revision", "--autogenerate", "-m", "no index")
    assert again.returncode == 0, again.stderr
    history = Phases(Migrations(project).script())
    assert history.problems() == []
    assert history.heads("pre") == [pre_id]  # nothing to add first: no pre revision
    [new_post] = history.heads("post")
    assert history.revisions[new_post].down_revision == post_id
    assert history.revisions[new_post].dependencies == pre_id


def test_the_built_in_tests_pass_on_a_phased_history(server_url: URL) -> None:
    two_post_heads = phased("phases_two_heads")
    demo_project.add_revision(
        two_post_heads.versions, "p3", "p1", "    pass", "    pass", "p3", depends="d4"
    )
    run = checks_run.run_checks(
        {"phased": phased("phases_checks"), "forked": two_post_heads}, server_url
    )
    # Two post heads: named, and `make check` refuses to compare until they are merged.
    forked = {"test_single_head[forked]", "test_models_match_head_schema[forked]"}
    assert run.not_passed() == forked, run.output
    assert "more than one post head: ['p2', 'p3']" in run.failure("test_single_head", "forked")
    assert "There is more than one head (p2, p3)" in run.failure(
        "test_models_match_head_schema", "forked"
    )


def test_an_empty_revision_goes_where_its_phase_belongs() -> None:
    """`make migration-empty msg=... [phase=post]` runs the module CLI's `revision`."""
    project = phased("phases_blank")
    post = demo_project.module_cli(project, "revision", "-m", "drop legacy", "--phase", "post")
    assert post.returncode == 0, post.stdout
    pre = demo_project.module_cli(project, "revision", "-m", "add colour")
    assert pre.returncode == 0, pre.stdout
    history = Phases(Migrations(project).script())
    assert history.problems() == []
    by_doc = {revision.doc: revision for revision in history.revisions.values()}
    assert history.phase(by_doc["drop legacy"].revision) == "post"
    assert by_doc["drop legacy"].down_revision == "p2"
    assert by_doc["drop legacy"].dependencies == "e5"  # the pre head it follows
    assert history.phase(by_doc["add colour"].revision) == "pre"
    assert by_doc["add colour"].down_revision == "e5"
    # In a history without phases, the first post revision starts the line from base.
    plain = demo_project.write("postgresql", name="phases_first_post")
    first = demo_project.module_cli(plain, "revision", "-m", "drop price", "--phase", "post")
    assert first.returncode == 0, first.stdout
    history = Phases(Migrations(plain).script())
    [started] = history.post
    assert history.revisions[started].down_revision is None
    assert history.revisions[started].dependencies == "c3"
    assert history.heads("pre") == ["c3"] and history.problems() == []


def test_the_plan_lists_the_pending_revisions_in_deploy_order_with_their_phase(
    project: Project, database_url: URL
) -> None:
    Migrations(project).upgrade("c3", url=database_url)
    planned = demo_project.module_cli(project, "plan", url=database_url)
    assert planned.returncode == 0, planned.stdout
    headers = [line for line in planned.stdout.splitlines() if line[:2] in ("d4", "e5", "p1", "p2")]
    assert headers == [
        "d4 (d4) [pre: before the rollout]",
        "e5 (e5) [pre: before the rollout]",
        "p1 (p1) [post: after the rollout]",
        "p2 (p2) [post: after the rollout]",
    ]
    assert heads(database_url) == {"c3"}  # only read


def test_lint_passes_drops_in_post_revisions_and_names_one_in_a_pre_revision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = phased("phases_lint")
    demo_project.add_revision(
        project.versions, "f6", "e5", '    op.drop_column("widget", "note")', "    pass", "f6"
    )
    # `make lint-migrations`: alembic.ini beside the project (its root).
    root = demo_project.alembic_ini(project).parent
    assert lint.phase_rule(replace(project, root=root), Migrations(project).phases())
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        "phases: 1 step(s) the running release would break:",
        "  f6.py:13: op.drop_column() in a pre revision",
    ]  # p1's drop is where drops belong
