"""Renames in `make migration` on a real PostgreSQL: a renamed column is written as expand/contract
(the old release keeps reading and writing the old name while the new one uses the new, the rows
are copied by the backfill runner, the old column goes in the post revision) and keeps every
value; `renames=` says what was renamed, or that nothing was; a renamed table keeps its rows and
its indexes; the built-in tests pass on the history written."""

import os
import subprocess
import sys
from pathlib import Path

import checks_run
import demo_project
from git_repo import repository
from queries import execute, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.runner.phases import Phases
from alembic_steady.testing import checks
from alembic_steady.testing.plugin import SERVER_USED
from alembic_steady.testing.walk import Harness

# The demo models with widget.name renamed title (String(100) NOT NULL, indexed) and
# widget.price renamed cost (Integer, nullable): each the one column of its type dropped and
# added, so both are guessed.
RENAMED = (
    demo_project.MODELS.replace('sa.Column("name",', 'sa.Column("title",')
    .replace('sa.Column("price",', 'sa.Column("cost",')
    .replace('sa.Index("ix_widget_name", "name")', 'sa.Index("ix_widget_title", "title")')
)


def alembic(project: Project, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    """Plain `alembic` with the project's alembic.ini, as `make migration` and `make migrate`
    run it: no terminal (as in CI), so nothing is asked."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(demo_project.alembic_ini(project)), *args],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": url.render_as_string(hide_password=False),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def renamed_project(name: str, database_url: URL, models: str = RENAMED) -> Project:
    """The demo project at its head with three rows, its models then edited by `models`."""
    project = demo_project.write("postgresql", name=name)
    Migrations(project).upgrade(url=database_url)
    execute(
        database_url,
        "INSERT INTO widget (name, price) VALUES ('bolt', 3), ('nut', NULL), ('gear', 12)",
    )
    (project.migrations.parent / "models.py").write_text(models, encoding="utf-8")
    return project


def written(project: Project) -> tuple[str, str]:
    """The pre and the post revision's files."""
    history = Phases(Migrations(project).script())
    [pre] = [rev for rev in history.heads("pre") if rev not in ("a1", "b2", "c3")]
    [post] = history.heads("post")
    return tuple(  # type: ignore[return-value]
        Path(history.revisions[rev].path).read_text(encoding="utf-8") for rev in (pre, post)
    )


def widgets(url: URL, *columns: str) -> list[tuple[object, ...]]:
    return rows(url, f"SELECT {', '.join(columns)} FROM widget ORDER BY id")


def test_a_renamed_column_keeps_its_values_and_both_releases_work_during_the_deploy(
    database_url: URL,
) -> None:
    project = renamed_project("renames_expand", database_url)
    made = alembic(project, database_url, "revision", "--autogenerate", "-m", "rename")
    assert made.returncode == 0, made.stderr
    pre, post = written(project)
    pre_up, post_up = pre.split("def downgrade")[0], post.split("def downgrade")[0]
    # pre: the new columns, nullable, kept in sync and queued for the copy; nothing dropped.
    assert "# REVIEW: widget.name is renamed title (a guess" in pre_up, pre
    assert "op.create_rename_sync('widget', 'name', 'title')" in pre_up, pre
    assert "op.queue_backfill('widget', {'title': 'name'}, where='title IS NULL', " in pre_up
    assert "sa.Column('title', sa.String(length=100), nullable=True)" in pre_up, pre
    assert "drop_column" not in pre_up and "existing data is lost" not in pre + post
    # post: the copy finished, the trigger gone, title NOT NULL, the old columns dropped.
    # The backfills' checks come first: a refusal changes nothing.
    assert post_up.index("op.require_backfill('widget.title')") < post_up.index("op.drop_"), post
    assert "op.set_not_null('widget', 'title')" in post_up, post
    assert "op.drop_column('widget', 'name'" in post_up, post
    assert "op.drop_column('widget', 'price'" in post_up, post

    # The deploy's first step, then both releases at once.
    assert alembic(project, database_url, "-x", "phase=pre", "upgrade", "head").returncode == 0
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('old release', 7)")
    execute(database_url, "INSERT INTO widget (title, cost) VALUES ('new release', 8)")
    execute(database_url, "UPDATE widget SET price = 4 WHERE name = 'bolt'")  # the old release
    execute(database_url, "UPDATE widget SET title = 'gear 2' WHERE name = 'gear'")  # the new
    assert widgets(database_url, "name", "price", "title", "cost") == [
        ("bolt", 4, None, 4),  # the copy has not run: title waits for the backfill
        ("nut", None, None, None),
        ("gear 2", 12, "gear 2", None),
        ("old release", 7, "old release", 7),
        ("new release", 8, "new release", 8),
    ]
    # The post phase waits for the copy, changing nothing.
    refused = alembic(project, database_url, "-x", "phase=post", "upgrade", "head")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "the backfill widget.title is not finished (queued, 0 rows done)" in said, said
    assert rows(
        database_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_widget_name'"
    ) == [(1,)]
    ran = demo_project.module_cli(project, "backfill", "run", url=database_url)
    assert ran.returncode == 0, ran.stdout
    post_phase = alembic(project, database_url, "-x", "phase=post", "upgrade", "head")
    assert post_phase.returncode == 0, post_phase.stderr
    assert widgets(database_url, "title", "cost") == [
        ("bolt", 4),
        ("nut", None),
        ("gear 2", 12),
        ("old release", 7),
        ("new release", 8),
    ]
    assert rows(database_url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert alembic(project, database_url, "check").returncode == 0  # the models match
    # Both downgrades bring the old columns back with their values.
    back = alembic(project, database_url, "downgrade", "c3")
    assert back.returncode == 0, back.stderr
    assert widgets(database_url, "name", "price")[:3] == [
        ("bolt", 4),
        ("nut", None),
        ("gear 2", 12),
    ]


TABLE_RENAMED = demo_project.MODELS.replace('"widget", metadata', '"gadget", metadata').replace(
    'sa.Index("ix_widget_name", "name")', 'sa.Index("ix_gadget_name", "name")'
)


def test_the_built_in_tests_pass_on_the_renames_written(database_url: URL, server_url: URL) -> None:
    """The walk, the stairway (each downgrade restores the schema: the old column back, NOT
    NULL again, the trigger back in pre), the data and the models tests, on both kinds."""
    projects = {}
    for kind, models in (("columns", RENAMED), ("table", TABLE_RENAMED)):
        execute(database_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        project = renamed_project(f"renames_checked_{kind}", database_url, models)
        made = alembic(project, database_url, "revision", "--autogenerate", "-m", "rename")
        assert made.returncode == 0, made.stderr
        projects[kind] = project
    run = checks_run.run_checks(projects, server_url)
    assert run.not_passed() == set(), run.output


def test_the_old_release_works_on_the_renames_pre_revision(database_url: URL) -> None:
    """The last release (tagged v1) runs its INSERT, SELECT and UPDATE of widget, which name
    `name` and `price`, after the pre revision of their rename."""
    project = renamed_project("renames_old_release", database_url, demo_project.MODELS)
    repository(project.migrations.parent.parent, tag="v1")
    (project.migrations.parent / "models.py").write_text(RENAMED, encoding="utf-8")
    made = alembic(project, database_url, "revision", "--autogenerate", "-m", "rename")
    assert made.returncode == 0, made.stderr
    execute(database_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    before = len(SERVER_USED)  # the run's list of lines, each once: other tests' are in it too
    checks.test_the_old_release_works_on_the_new_schema(Harness(project), database_url)  # no fail
    said = "Old release v1 (the newest tag) checked against 1 pre revision(s) since"
    assert said in SERVER_USED, SERVER_USED
    # Nothing left out as failing at the old release's own heads (that line would be new).
    assert not [line for line in SERVER_USED[before:] if "not checked" in line], SERVER_USED


def forget_written(project: Project, demo: set[Path]) -> None:
    """Delete the revisions a test wrote, keeping the demo's own (`demo`: its files before)."""
    for path in set(project.versions.glob("*.py")) - demo:
        path.unlink()


def test_renames_says_what_was_renamed_or_that_nothing_was(database_url: URL) -> None:
    project = renamed_project("renames_given", database_url)
    demo = set(project.versions.glob("*.py"))  # a written file's name is random hex: may be a1...
    only = alembic(
        project,
        database_url,
        "-x",
        "renames=widget.price=cost",
        "revision",
        "--autogenerate",
        "-m",
        "cost",
    )
    assert only.returncode == 0, only.stderr
    pre, post = written(project)
    assert "widget.price is renamed cost (as renames= said)" in pre
    assert (
        "create_rename_sync('widget', 'price', 'cost')" in pre
        and "'title'" not in pre.split("create_rename_sync")[1].split("\n")[0]
    )
    assert "op.drop_column('widget', 'name'" in post  # not said: dropped and added
    forget_written(project, demo)

    none = alembic(
        project, database_url, "-x", "renames=none", "revision", "--autogenerate", "-m", "x"
    )
    assert none.returncode == 0, none.stderr
    pre, post = written(project)
    assert "rename" not in pre + post and "op.drop_column('widget', 'price'" in post
    forget_written(project, demo)

    wrong = alembic(
        project,
        database_url,
        "-x",
        "renames=widget.prize=cost",
        "revision",
        "--autogenerate",
        "-m",
        "x",
    )
    assert wrong.returncode != 0
    said = wrong.stdout + wrong.stderr
    assert (
        "renames='widget.prize=cost': this change does not drop widget.prize and add "
        "widget.cost (it drops widget.name, widget.price; adds widget.cost, widget.title)" in said
    ), said
    assert set(project.versions.glob("*.py")) == demo


def test_a_renamed_table_keeps_its_rows_and_its_indexes(database_url: URL) -> None:
    project = renamed_project("renames_table", database_url, TABLE_RENAMED)
    made = alembic(project, database_url, "revision", "--autogenerate", "-m", "gadget")
    assert made.returncode == 0, made.stderr
    history = Phases(Migrations(project).script())
    assert history.post == set()  # nothing dropped
    [head] = history.heads("pre")
    text = Path(history.revisions[head].path).read_text(encoding="utf-8")
    assert "op.rename_table('widget', 'gadget')" in text, text
    assert "op.rename_index('ix_widget_name', 'ix_gadget_name')" in text, text
    assert "# REVIEW: table widget is renamed gadget" in text
    assert "create_table" not in text and "drop_table" not in text
    upgraded = alembic(project, database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert rows(database_url, "SELECT name, price FROM gadget ORDER BY id") == [
        ("bolt", 3),
        ("nut", None),
        ("gear", 12),
    ]
    assert alembic(project, database_url, "check").returncode == 0
    down = alembic(project, database_url, "downgrade", "-1")
    assert down.returncode == 0, down.stderr
    assert rows(
        database_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'widget' ORDER BY 1"
    ) == [("ix_widget_name",), ("pk_widget",)]
