"""The old release against the new schema on MySQL/MariaDB (testing/old_release.py): the same
check as on PostgreSQL. What differs: each DDL statement commits on its own, which the check
does not need (the old release's statements run in a transaction that is rolled back; InnoDB
rolls DML back)."""

import demo_project
import pytest
from git_repo import repository
from sqlalchemy.engine import URL

from alembic_steady.testing import checks
from alembic_steady.testing.walk import Harness


def test_a_not_null_column_without_default_breaks_the_old_releases_insert(
    database_url: URL,
) -> None:
    project = demo_project.write("mysql", name="old_release")
    repository(project.migrations.parent.parent, tag="v1")
    demo_project.add_revision(
        project.versions,
        "d4",
        "c3",
        '    op.add_column("widget", sa.Column("colour", sa.String(20), nullable=False))',
        '    op.drop_column("widget", "colour")',
        doc="add colour, NOT NULL",
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        checks.test_the_old_release_works_on_the_new_schema(Harness(project), database_url)
    message = str(failed.value)
    assert (
        "d4 (add colour, NOT NULL) breaks the old release's INSERT widget: INSERT INTO" in message
    )
    assert "Field 'colour' doesn't have a default value" in message, message
