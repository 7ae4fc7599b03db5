"""The old release against the new schema (testing/old_release.py), from a real git history:
the demo project committed and tagged, then revisions added as the next release's."""

from pathlib import Path

import demo_project
import pytest
from git_repo import commit, git, repository
from queries import rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.testing import checks, old_release
from alembic_steady.testing.plugin import ACCEPTED, SERVER_USED
from alembic_steady.testing.walk import Harness

# The next release's pre revisions: each as `make migration` would not write it, or would.
NOT_NULL_WITHOUT_DEFAULT = (
    "d4",
    '    op.add_column("widget", sa.Column("colour", sa.String(20), nullable=False))',
    '    op.drop_column("widget", "colour")',
    "add colour, NOT NULL",
)
NULLABLE = (
    "d4",
    '    op.add_column("widget", sa.Column("colour", sa.String(20), nullable=True))',
    '    op.drop_column("widget", "colour")',
    "add colour, nullable",
)
DROP_PRICE = (
    "e5",
    '    op.drop_column("widget", "price")',
    '    op.add_column("widget", sa.Column("price", sa.Integer, nullable=True))',
    "drop price",
)


def released(
    name: str,
    *later: tuple[str, str, str, str],
    marker: str = "",
    models: str = demo_project.MODELS,
) -> Project:
    """The demo project tagged v1 at c3, with `later` revisions added after the tag."""
    project = demo_project.write("postgresql", name=name, models=models)
    root = project.migrations.parent.parent
    repository(root, tag="v1")
    down = "c3"
    for revision, upgrade, downgrade, doc in later:
        path = demo_project.add_revision(
            project.versions, revision, down, upgrade, downgrade, doc=doc
        )
        if marker:
            path.write_text(path.read_text() + f"\n# migration-tests: {marker}\n")
        down = revision
    return project


def run(project: Project, url: URL) -> str:
    """The generated test's failure message; '' when it passes."""
    try:
        checks.test_the_old_release_works_on_the_new_schema(Harness(project), url)
    except pytest.fail.Exception as failed:
        return str(failed)
    return ""


def test_a_not_null_column_without_default_breaks_the_old_releases_insert(
    database_url: URL,
) -> None:
    project = released("old_notnull", NOT_NULL_WITHOUT_DEFAULT)
    message = run(project, database_url)
    assert "1 statement(s) of the old release fail on the new schema" in message, message
    assert (
        "d4 (add colour, NOT NULL) breaks the old release's INSERT widget: INSERT INTO" in message
    )
    assert 'null value in column "colour"' in message
    assert "make it NOT NULL, drop or rename things in a post revision" in message
    said = "Old release v1 (the newest tag) checked against 1 pre revision(s) since"
    assert any(line.startswith(said) for line in SERVER_USED), SERVER_USED


def test_the_old_models_load_even_from_the_projects_own_folder(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the project's root, where its package sits (no src/ layout), with the next
    release's models there: the check still loads the tagged release's, not those (python -m
    would put the working folder first on the child's path)."""
    project = released("old_cwd", NOT_NULL_WITHOUT_DEFAULT)
    models = project.migrations.parent / "models.py"
    models.write_text(
        models.read_text().replace(
            '    sa.Column("price", sa.Integer, nullable=True),',
            '    sa.Column("price", sa.Integer, nullable=True),\n'
            '    sa.Column("colour", sa.String(20), nullable=False),',
        )
    )
    monkeypatch.chdir(project.migrations.parent.parent)
    message = run(project, database_url)
    assert "d4 (add colour, NOT NULL) breaks the old release's INSERT widget" in message, message


# The old models also have a table no revision makes: its statements fail at the old release's
# own heads already, so they are listed as not checked, and blamed on no revision.
AHEAD = (
    demo_project.MODELS
    + """
gadget = sa.Table("gadget", metadata, sa.Column("id", sa.Integer, primary_key=True))
"""
)


def test_a_nullable_column_keeps_the_old_release_working(database_url: URL) -> None:
    project = released("old_nullable", NULLABLE, models=AHEAD)
    assert run(project, database_url) == ""
    said = [line for line in SERVER_USED if line.startswith("Old release v1")][-1]
    assert "checked against 1 pre revision(s) since; not checked (failing at the old " in said
    assert (
        'INSERT gadget: INSERT INTO gadget DEFAULT VALUES RETURNING gadget.id: relation "gadget"'
        in said
    )


def test_a_dropped_column_breaks_the_old_releases_select_naming_the_revision(
    database_url: URL,
) -> None:
    project = released("old_drop", NULLABLE, DROP_PRICE)
    message = run(project, database_url)
    assert "e5 (drop price) breaks the old release's INSERT widget" in message, message
    assert 'column "price" of relation "widget" does not exist' in message
    assert "e5 (drop price) breaks the old release's SELECT widget" in message
    assert "d4" not in message


def test_a_revision_that_accepts_breaking_the_old_release_is_listed(database_url: URL) -> None:
    project = released(
        "old_accepted", NOT_NULL_WITHOUT_DEFAULT, marker="breaks the old release: downtime"
    )
    assert run(project, database_url) == ""
    assert any(
        "d4 (add colour, NOT NULL) breaks" in line and "(accepted: downtime)" in line
        for line in ACCEPTED
    ), ACCEPTED


def test_old_release_names_another_ref_and_post_revisions_are_not_checked(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = released("old_ref")
    root = project.migrations.parent.parent
    # The next release: a post revision drops price (allowed after the rollout).
    demo_project.add_revision(
        project.versions,
        "p1",
        None,
        DROP_PRICE[1],
        DROP_PRICE[2],
        doc="drop price",
        labels=("post",),
        depends="c3",
    )
    commit(root, "next")
    monkeypatch.setenv(old_release.VARIABLE, "v1")
    assert run(project, database_url) == ""
    said = "Old release v1 (OLD_RELEASE) checked against 0 pre revision(s) since: none to check."
    assert said in SERVER_USED


def test_without_a_tag_it_says_what_was_not_checked(database_url: URL, tmp_path: Path) -> None:
    project = demo_project.write("postgresql", name="old_untagged")
    root = project.migrations.parent.parent
    repository(root)
    assert run(project, database_url) == ""
    assert (
        "Old release NOT checked: no tag is reachable from HEAD; set OLD_RELEASE=<git ref> to "
        "name one." in SERVER_USED
    )
    assert rows(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [
        (0,)
    ]
    assert git(root, "tag") == ""
