"""`make rehearse` answers "will my pending migrations work on this data, and what do they lock":
on a restored copy of a dump with rows (or of a database read through a read-only pg_dump), it
fails naming a revision that adds a NOT NULL column without a default, and reports time, locks and
rows for revisions that fit; the source and the configured database are never changed, and the
scratch database is dropped. Bad input gets one clear line."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    Server,
    bake,
    clean_env,
    install,
    make,
    must,
    revision_id,
    versions,
    versions_dir,
)

REVISION = '''"""@doc@"""

import sqlalchemy as sa
from alembic import op

revision: str = "@id@"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("owner", sa.String(), nullable=False@default@))
    op.execute("UPDATE item SET description = 'rehearsed'")


def downgrade() -> None:
    op.drop_column("item", "owner")
'''


@pytest.fixture(scope="module")
def database(server: Server) -> Iterator[str]:
    with server.new_database("tmpl_rehearse") as name:
        yield name


@pytest.fixture(scope="module")
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


@pytest.fixture(scope="module")
def dump(
    tmp_path_factory: pytest.TempPathFactory, server: Server, database: str, env: dict[str, str]
) -> tuple[Path, Path]:
    """A project at head with 500 items, and a `make backup` of it."""
    project = install(bake(tmp_path_factory.mktemp("rehearse")))
    must(make(project, "migrate", env=env))
    server.execute(
        database, "INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, 500) g"
    )
    must(make(project, "backup", env=env))
    (backup,) = (project / "backups").glob("*.dump")
    return project, backup


def plant(project: Path, *, default: bool) -> Path:
    (first,) = versions(project)
    path = versions_dir(project) / "20990101_0000_0000rehearse_owner.py"
    path.write_text(
        REVISION.replace("@id@", "0000rehearse")
        .replace("@doc@", "add owner")
        .replace("@down@", revision_id(first))
        .replace("@default@", ', server_default="nobody"' if default else ""),
        encoding="utf-8",
    )
    return path


def scratch_databases(server: Server, database: str) -> list[str]:
    """The scratch databases rehearsals of `database` left behind."""
    query = f"SELECT datname FROM pg_database WHERE datname LIKE '{database}\\_rehearse\\_%'"
    return [row[0] for row in server.fetch("postgres", query)]


def test_a_not_null_column_without_default_fails_on_the_copy(
    dump: tuple[Path, Path], env: dict[str, str], server: Server, database: str
) -> None:
    project, backup = dump
    planted = plant(project, default=False)
    try:
        result = make(project, "rehearse", f"file={backup}", env=env)
    finally:
        planted.unlink()
    assert result.returncode != 0, result.stdout
    assert "Revision 0000rehearse (add owner) FAILED on this data" in result.stdout
    assert 'column "owner" of relation "item" contains null values' in result.stdout
    assert server.version(database) != {"0000rehearse"}
    assert not scratch_databases(server, database)


def test_revisions_that_fit_report_time_locks_and_rows(
    dump: tuple[Path, Path], env: dict[str, str], server: Server, database: str
) -> None:
    project, backup = dump
    before = server.version(database)
    planted = plant(project, default=True)
    try:
        from_file = make(project, "rehearse", f"file={backup}", env=env)
        # The configured database itself as the source: read through pg_dump, never written.
        from_url = make(project, "rehearse", f"from={env['DATABASE_URL']}", env=env)
    finally:
        planted.unlink()
    for result in (from_file, from_url):
        output = must(result)
        assert "1 pending revision(s)" in output
        assert "0000rehearse (add owner):" in output and "500 row(s) changed" in output
        assert "AccessExclusiveLock on item, held" in output
        assert "every pending revision went down and up again" in output
    assert server.version(database) == before
    assert server.fetch(database, "SELECT count(*) FROM item WHERE description IS NULL") == [(500,)]
    assert not scratch_databases(server, database)


def test_bad_input_is_named(
    dump: tuple[Path, Path], env: dict[str, str], server: Server, database: str
) -> None:
    project, _ = dump
    cases = {
        "file=backups/none.dump": "none.dump does not exist",
        "file=pyproject.toml": "is not a pg_dump custom-format dump",
        "from=postgresql://someone:s3cret-pw@127.0.0.1:1/app": "cannot reach the source database",
        "": "give one of file=... or from=...",
    }
    for argument, expected in cases.items():
        result = make(project, "rehearse", *([argument] if argument else []), env=env)
        assert result.returncode != 0, argument
        assert "Nothing rehearsed: " in result.stdout and expected in result.stdout, result.stdout
        assert "s3cret-pw" not in result.stdout
    assert not scratch_databases(server, database)
