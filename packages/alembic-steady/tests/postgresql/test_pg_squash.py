"""`squash` (tools/squash.py) on a real PostgreSQL and a real git repository: the revisions up to
R become one baseline under R's id, proved to build what the chain builds (tables, an index built
concurrently, enum types, a function and its trigger, a view, seed rows and their sequence)
before any file is deleted. Then a database at R upgrades as before (its checksums too), one
older than R is refused naming the release that can upgrade it, a fresh one builds from the
baseline the very schema the old chain built; what the squash cannot rebuild stops it with
nothing changed."""

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import replace
from io import StringIO

import demo_project
import git_repo
import pytest
from alembic.script import ScriptDirectory
from queries import heads, rows
from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import URL

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.base import by_name
from alembic_steady.dialects.clients import Clients
from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection
from alembic_steady.tools import squash

DIALECT = by_name("postgresql")
CHAIN = [
    *demo_project.CHAIN["postgresql"],
    (
        "s4",
        """    op.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')")
    op.create_table(
        "kind",
        sa.Column("id", sa.Integer, sa.Identity(always=True), primary_key=True),
        sa.Column("state", sa.Enum("open", "shut", name="state"), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
    )
    op.execute("INSERT INTO kind (state, label) VALUES ('open', 'it''s open'), ('shut', 'a\\\\b')")
    op.execute(
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.name := lower(NEW.name); RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER widget_touch BEFORE INSERT ON widget "
        "FOR EACH ROW EXECUTE FUNCTION touch()"
    )
    op.execute("CREATE VIEW priced AS SELECT id, name FROM widget WHERE price IS NOT NULL")
    # A renamed table keeps its key's sequence name, a renamed column its index's column name;
    # a sequence of its own counts for a column that is no key.
    op.create_table(
        "old_name",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False),
    )
    op.create_index("ix_old_name_code", "old_name", ["code"])
    op.rename_table("old_name", "renamed")
    op.alter_column("renamed", "code", new_column_name="label")
    op.execute("CREATE SEQUENCE ticket_seq START 100")
    op.add_column(
        "renamed",
        sa.Column("ticket", sa.Integer, server_default=sa.text("nextval('ticket_seq')")),
    )""",
        """    op.drop_table("renamed")
    op.execute("DROP SEQUENCE ticket_seq")
    op.execute("DROP VIEW priced")
    op.execute("DROP TRIGGER widget_touch ON widget")
    op.execute("DROP FUNCTION touch()")
    op.drop_table("kind")
    op.execute("DROP TYPE state")
    op.execute("DROP TYPE mood")""",
    ),
    (
        "d5",
        '    op.add_column("widget", sa.Column("note", sa.Text, nullable=True))',
        '    op.drop_column("widget", "note")',
    ),
]


@pytest.fixture
def project() -> Iterator[Project]:
    project = demo_project.write("postgresql", name=f"squash_{uuid.uuid4().hex[:8]}", chain=CHAIN)
    git_repo.repository(project.migrations.parents[1], "chain", tag="v1.0")
    yield project


@pytest.fixture
def databases(server_url: URL, server_clients: Clients) -> Iterator[dict[str, URL]]:
    """Databases of their own: `dev` (names the squash's server), three to upgrade, and `ref`
    built by the chain before the squash."""
    roles = ("dev", "at_r", "old", "new", "ref")
    with demo_project.databases(server_url, server_clients, *roles) as urls:
        yield urls


@pytest.fixture
def dev(server_url: URL, server_clients: Clients) -> Iterator[URL]:
    """A database of its own naming the squash's server, for a squash that stops."""
    with demo_project.databases(server_url, server_clients, "dev") as urls:
        yield urls["dev"]


def cli(project: Project, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return demo_project.module_cli(project, *args, url=url)


def revisions(project: Project) -> list[str]:
    script = ScriptDirectory.from_config(Migrations(project).alembic_config())
    return sorted(revision.revision for revision in script.walk_revisions())


def schema_and_rows(url: URL) -> tuple[set[tuple[str, str]], list[tuple[object, ...]]]:
    kinds = rows(url, "SELECT id, state::text, label FROM kind ORDER BY id")
    return on_connection(url, DIALECT.schema_snapshot), kinds


def test_squash_proves_the_baseline_then_keeps_every_database_on_its_way(
    project: Project, databases: dict[str, URL]
) -> None:
    at_r, old, new = databases["at_r"], databases["old"], databases["new"]
    assert cli(project, at_r, "upgrade", "s4").returncode == 0
    assert cli(project, old, "upgrade", "b2").returncode == 0
    reference = demo_project.write(
        "postgresql", name=f"squash_ref_{uuid.uuid4().hex[:8]}", chain=CHAIN
    )
    assert cli(reference, databases["ref"], "upgrade").returncode == 0
    built_by_chain = schema_and_rows(databases["ref"])

    result = cli(project, databases["dev"], "squash", "s4")
    assert result.returncode == 0, result.stdout
    assert "Proved: the chain up to s4 and the baseline build the same schema" in result.stdout
    assert "seed rows (2 in 1 tables)" in result.stdout
    assert "an older one is refused, naming v1.0" in result.stdout
    assert revisions(project) == ["d5", "s4"]
    # The baseline is written in s4's file: it keeps its place among the others.
    assert sorted(p.name for p in project.versions.glob("*.py")) == ["d5.py", "s4.py"]
    baseline = project.versions / "s4.py"
    source = baseline.read_text(encoding="utf-8")
    assert "down_revision = None" in source and '"a1",' in source
    assert 'squashed_release: str = "v1.0"' in source

    # At R: upgrades as before, its recorded checksum of the old s4 accepted.
    result = cli(project, at_r, "upgrade")
    assert result.returncode == 0, result.stdout
    assert heads(at_r) == {"d5"}
    # Older than R: refused, naming the release; left where it was.
    result = cli(project, old, "upgrade")
    assert result.returncode == 1
    assert "The database is at b2, which `make squash` folded into the baseline s4" in result.stdout
    assert "(the last is v1.0)" in result.stdout and "Traceback" not in result.stdout
    assert heads(old) == {"b2"}
    # Fresh: the baseline builds what the old chain built, rows and all.
    assert cli(project, new, "upgrade").returncode == 0
    assert schema_and_rows(new) == built_by_chain


def test_what_the_baseline_cannot_rebuild_stops_the_squash_with_nothing_changed(
    project: Project, dev: URL
) -> None:
    demo_project.add_revision(
        project.versions,
        "e6",
        "d5",
        '    op.execute("CREATE DOMAIN positive AS integer CHECK (VALUE > 0)")',
        '    op.execute("DROP DOMAIN positive")',
    )
    root = project.migrations.parents[1]
    result = cli(project, dev, "squash", "e6")
    assert result.returncode == 1
    assert "uncommitted changes: commit them first" in result.stdout
    git_repo.commit(root, "domain")
    before = sorted(p.name for p in project.versions.glob("*.py"))
    result = cli(project, dev, "squash", "e6")
    assert result.returncode == 1, result.stdout
    assert (
        "the baseline does not build what the chain builds, so nothing was changed" in result.stdout
    )
    assert "type public.positive" in result.stdout
    assert sorted(p.name for p in project.versions.glob("*.py")) == before
    assert git_repo.git(root, "status", "--porcelain") == ""


def test_a_baseline_whose_downgrade_leaves_objects_stops_the_squash(
    project: Project, dev: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planted: the catalog reader forgets what the downgrade must drop last (the function, the
    enum types), so the baseline builds the right schema and cannot take it away again."""
    read = PostgreSQL.squash_objects

    def without_last_drops(self: PostgreSQL, connection: Connection, metadata: MetaData):  # type: ignore[no-untyped-def]
        objects = read(self, connection, metadata)
        return replace(objects, drop_last=[])

    monkeypatch.setattr(PostgreSQL, "squash_objects", without_last_drops)
    here = replace(project, settings=lambda: StaticSettings(dev))
    before = sorted(p.name for p in project.versions.glob("*.py"))
    output = StringIO()
    with redirect_stdout(output):
        assert squash.main(here, ["s4"]) == 1
    assert "the baseline's downgrade leaves [" in output.getvalue()
    assert "type public.mood calm,busy" in output.getvalue()
    assert "nothing was changed" in output.getvalue()
    assert sorted(p.name for p in project.versions.glob("*.py")) == before
