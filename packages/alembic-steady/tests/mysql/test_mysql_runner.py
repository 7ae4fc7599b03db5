"""The runner against a real MySQL or MariaDB, without a render: GET_LOCK per project and
database, a revision that fails half way named with what it committed, replicas racing."""

import demo_project
import pytest
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady.dialects.mysql import lock_name
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection


@pytest.fixture
def migrations(migration_project: object) -> Migrations:
    return Migrations(migration_project)  # type: ignore[arg-type]


def heads(connection: Connection) -> set[str]:
    return Migrations.current_heads(connection)


def test_upgrade_reaches_head_and_releases_the_named_lock(
    migrations: Migrations, database_url: URL
) -> None:
    migrations.upgrade(url=database_url)
    name = lock_name(migrations.project.package, database_url.database)
    assert on_connection(database_url, heads) == {"c3"}
    free = on_connection(
        database_url, lambda c: c.execute(text("SELECT IS_FREE_LOCK(:n)"), {"n": name}).scalar()
    )
    assert free == 1


HALF_WAY = """
import sqlalchemy as sa
from alembic import op

revision = "d4"
down_revision = "c3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("gadget", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("widget", sa.Column("name", sa.String(10)))  # exists: fails


def downgrade() -> None:
    op.drop_table("gadget")
"""


def test_a_revision_failing_half_way_names_what_it_committed(
    migrations: Migrations, database_url: URL
) -> None:
    planted = migrations.project.versions / "d4.py"
    planted.write_text(HALF_WAY, encoding="utf-8")
    try:
        with pytest.raises(CommandError) as failure:
            migrations.upgrade(url=database_url)
    finally:
        planted.unlink()
    message = str(failure.value)
    assert "these statements of the revision were already committed: CREATE TABLE gadget" in message
    assert "The version row was NOT advanced" in message
    assert "`make stamp rev=d4`" in message
    assert on_connection(database_url, heads) == {"c3"}


def test_replicas_racing_serialise(migrations: Migrations, database_url: URL) -> None:
    """Four replicas starting at once: each exits 0, and the chain is applied once."""
    outcomes = demo_project.race(migrations.project, database_url, 4)
    assert [status for status, _ in outcomes] == [0, 0, 0, 0], outcomes
    assert on_connection(database_url, heads) == {"c3"}


def test_checksums_are_recorded_and_an_edited_applied_revision_is_refused(
    database_url: URL,
) -> None:
    # A project of its own: the test edits a revision file. Its table is created before any
    # revision's transaction (MySQL's CREATE TABLE commits what is open).
    project = demo_project.write("mysql", name="checksums")
    migrations = Migrations(project)
    migrations.upgrade("b2", url=database_url)
    recorded = "SELECT revision FROM alembic_version_checksums ORDER BY revision"
    listed = on_connection(database_url, lambda c: c.execute(text(recorded)).scalars().all())
    assert listed == ["a1", "b2"]
    path = project.versions / "b2.py"
    path.write_text(path.read_text().replace('["name"]', '["name", "id"]'), encoding="utf-8")
    with pytest.raises(CommandError, match=r"Revision b2 \(b2.py\) was edited after"):
        migrations.upgrade(url=database_url)
    assert on_connection(database_url, heads) == {"b2"}
    assert migrations.accept_edit("b2", url=database_url).endswith("b2.py")
    migrations.upgrade(url=database_url)
    listed = on_connection(database_url, lambda c: c.execute(text(recorded)).scalars().all())
    assert listed == ["a1", "b2", "c3"]
