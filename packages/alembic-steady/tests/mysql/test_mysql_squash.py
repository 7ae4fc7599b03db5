"""`squash` on a real MySQL/MariaDB and a real git repository: the baseline keeps the chain's
tables, index, foreign key, a view, a procedure, a trigger and seed rows (a quote and a backslash
among them, which MySQL escapes), proved before the files change; a database at R upgrades as
before, one older is refused naming the release, a fresh one builds the chain's very schema."""

import subprocess
import uuid
from collections.abc import Iterator

import demo_project
import git_repo
import pytest
from queries import heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.base import by_name
from alembic_steady.dialects.clients import Clients
from alembic_steady.testing.walk import on_connection

DIALECT = by_name("mysql")
CHAIN = [
    *demo_project.CHAIN["mysql"],
    (
        "s4",
        """    op.create_table(
        "kind",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("widget_id", sa.Integer, sa.ForeignKey("widget.id"), nullable=True),
    )
    op.execute("INSERT INTO kind (label) VALUES ('it''s open'), ('a\\\\\\\\b')")
    op.execute("CREATE VIEW priced AS SELECT id, name FROM widget WHERE price IS NOT NULL")
    op.execute("CREATE PROCEDURE noop() BEGIN END")
    op.execute(
        "CREATE TRIGGER widget_lower BEFORE INSERT ON widget "
        "FOR EACH ROW SET NEW.name = LOWER(NEW.name)"
    )""",
        """    op.execute("DROP TRIGGER widget_lower")
    op.execute("DROP PROCEDURE noop")
    op.execute("DROP VIEW priced")
    op.drop_table("kind")""",
    ),
    (
        "d5",
        '    op.add_column("widget", sa.Column("note", sa.Text, nullable=True))',
        '    op.drop_column("widget", "note")',
    ),
]


def new_project(name: str) -> Project:
    return demo_project.write("mysql", name=f"{name}_{uuid.uuid4().hex[:8]}", chain=CHAIN)


@pytest.fixture
def databases(server_url: URL, server_clients: Clients) -> Iterator[dict[str, URL]]:
    """Databases of their own: `dev` (names the squash's server), three to upgrade, and `ref`
    built by the chain before the squash."""
    roles = ("dev", "at_r", "old", "new", "ref")
    with demo_project.databases(server_url, server_clients, *roles) as urls:
        yield urls


def cli(project: Project, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return demo_project.module_cli(project, *args, url=url)


def schema_and_rows(url: URL) -> tuple[set[tuple[str, str]], list[tuple[object, ...]]]:
    kinds = rows(url, "SELECT id, label FROM kind ORDER BY id")
    return on_connection(url, DIALECT.schema_snapshot), kinds


def test_squash_on_mysql_keeps_views_routines_triggers_and_seed_rows(
    databases: dict[str, URL],
) -> None:
    project = new_project("squash")
    git_repo.repository(project.migrations.parents[1], "chain", tag="v3")
    assert cli(project, databases["at_r"], "upgrade", "s4").returncode == 0
    assert cli(project, databases["old"], "upgrade", "b2").returncode == 0
    assert cli(new_project("squash_ref"), databases["ref"], "upgrade").returncode == 0
    built_by_chain = schema_and_rows(databases["ref"])
    assert built_by_chain[1] == [(1, "it's open"), (2, "a\\b")]

    result = cli(project, databases["dev"], "squash", "s4")
    assert result.returncode == 0, result.stdout
    assert "seed rows (2 in 1 tables)" in result.stdout

    assert cli(project, databases["at_r"], "upgrade").returncode == 0
    assert heads(databases["at_r"]) == {"d5"}
    refused = cli(project, databases["old"], "upgrade")
    assert refused.returncode == 1 and "(the last is v3)" in refused.stdout
    assert heads(databases["old"]) == {"b2"}
    assert cli(project, databases["new"], "upgrade").returncode == 0
    assert schema_and_rows(databases["new"]) == built_by_chain
