"""Deploy phases on MySQL/MariaDB: the pre phase leaves what the old release uses, the post phase
removes it after, a plain upgrade runs every pre revision first, post before pre is refused. What
differs from PostgreSQL: each DDL statement commits on its own (a failing revision can be half
applied, as any MySQL revision), so a phase stops at the revision that failed, as `make migrate`
does."""

import demo_project
import pytest
from queries import execute, heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations

# As on PostgreSQL (test_pg_phases.py): d4 adds note, e5 copies price into it, p1 drops price,
# p2 makes note NOT NULL. Alembic's own order would run p1 before e5.
PHASED = [
    ("p1", None, '    op.drop_column("widget", "price")', ("post",), "c3"),
    (
        "d4",
        "c3",
        '    op.add_column("widget", sa.Column("note", sa.String(40), nullable=True))',
        None,
        None,
    ),
    (
        "e5",
        "d4",
        "    op.execute(\"UPDATE widget SET note = CONCAT('price ', price)\")",
        None,
        None,
    ),
    (
        "p2",
        "p1",
        "    op.execute(\"UPDATE widget SET note = '' WHERE note IS NULL\")\n"
        '    op.alter_column("widget", "note", existing_type=sa.String(40), nullable=False)',
        None,
        "d4",
    ),
]


@pytest.fixture(scope="module")
def project() -> Project:
    project = demo_project.write("mysql", name="phases")
    for revision, down, upgrade, labels, depends in PHASED:
        demo_project.add_revision(
            project.versions, revision, down, upgrade, "    pass", labels=labels, depends=depends
        )
    return project


def columns(url: URL) -> list[str]:
    found = rows(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
        "AND table_name = 'widget' ORDER BY ordinal_position",
    )
    return [row[0] for row in found]


def test_pre_then_post_and_a_plain_upgrade_in_deploy_order(
    project: Project, database_url: URL
) -> None:
    migrations = Migrations(project)
    migrations.upgrade("c3", url=database_url)
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('old', 7)")
    with pytest.raises(Exception, match="phase=post: the pre revision\\(s\\) d4, e5 are not"):
        migrations.upgrade(url=database_url, phase="post")
    assert heads(database_url) == {"c3"}

    migrations.upgrade(url=database_url, phase="pre")
    assert heads(database_url) == {"e5"}
    assert columns(database_url) == ["id", "name", "price", "note"]
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('during', 8)")  # old release
    assert rows(database_url, "SELECT note FROM widget WHERE name = 'old'") == [("price 7",)]

    migrations.upgrade(url=database_url, phase="post")
    assert heads(database_url) == {"e5", "p2"}
    assert columns(database_url) == ["id", "name", "note"]


def test_a_plain_upgrade_runs_every_pre_revision_first(project: Project, database_url: URL) -> None:
    Migrations(project).upgrade(url=database_url)
    assert heads(database_url) == {"e5", "p2"}
    assert columns(database_url) == ["id", "name", "note"]
