"""What only a rendered project proves of migration safety and its chores, on a real PostgreSQL
through the Make targets: the render's settings.py (DB_* parts holding an awkward password, a bad
DATABASE_URL), the revision `make migration-empty` writes, the Make wiring of VERBOSE=1,
CONFIRM=yes and steps=, and `make backup`, `make restore` and `make rehearse` end to end.

The runner and the chores themselves (the migration lock, failing revisions, bad input and
credentials, production guards, private dumps, rehearsals) are proven without a render by the
toolkit's tests/postgresql/test_pg_safety.py and test_pg_tools.py.
"""

import re
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

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

# Every character that breaks a URL or an ini file when written there unescaped.
AWKWARD_PASSWORD = "p%ss@w:rd/x?#"
PLANTED_TABLE = "planted_before_failure"
# A pending revision that adds a NOT NULL column without a default: `make rehearse` fails it.
ADD_OWNER = '''"""add owner"""

import sqlalchemy as sa
from alembic import op

revision: str = "0000rehearse"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("owner", sa.String(), nullable=False))


def downgrade() -> None:
    op.drop_column("item", "owner")
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("safety")))


@pytest.fixture(scope="module")
def head(project: Path) -> str:
    (only,) = versions(project)
    return revision_id(only)


@pytest.fixture
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


@pytest.fixture
def role(server: Server, database: str) -> Iterator[str]:
    """A login role with AWKWARD_PASSWORD that may migrate `database`; its name."""
    name = f"tmpl_role_{uuid.uuid4().hex[:12]}"
    server.execute("postgres", f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{AWKWARD_PASSWORD}'")
    server.execute("postgres", f'GRANT ALL ON DATABASE "{database}" TO "{name}"')
    # PostgreSQL 15+ no longer lets every role create tables in `public`.
    server.execute(database, f'GRANT ALL ON SCHEMA public TO "{name}"')
    try:
        yield name
    finally:
        # Before the database itself is dropped: the role's tables go first.
        server.execute(database, f'DROP OWNED BY "{name}"')
        server.execute("postgres", f'DROP ROLE "{name}"')


def state(server: Server, database: str) -> tuple[set[str], set[str] | None]:
    """Every table of `public` and the version rows (None while there is no alembic_version).
    The runner's checksums, beside the version table, are not listed."""
    rows = server.fetch(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    tables = {row[0] for row in rows} - {"alembic_version_checksums"}
    return tables, server.version(database) if "alembic_version" in tables else None


def port_of(server: Server) -> int:
    if server.port is not None:
        return server.port
    # A socket server's port names its socket file, so DB_PORT still has to match it.
    return int(server.fetch("postgres", "SHOW port")[0][0])


def closed_port() -> int:
    """A local TCP port nothing listens on: one the kernel just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_short_failure(
    result: subprocess.CompletedProcess[str], *expected: str, secret: str | None = None
) -> None:
    """A refusal a user can act on: non-zero, the expected words, no traceback, no secret."""
    output = result.stdout
    assert result.returncode != 0, output
    for words in expected:
        assert words in output, f"{words!r} missing from:\n{output}"
    assert "Traceback" not in output, output
    if secret is not None:
        assert secret not in output and quote(secret, safe="") not in output, output


# 1. A hand-written revision that fails half-way


def test_failing_revision_is_named_and_leaves_the_last_good_head(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    must(make(project, "migrate", env=env))
    before = state(server, database)
    assert before == ({"alembic_version", "item"}, {head})
    must(make(project, "migration-empty", "msg=planted failure", env=env))
    (planted,) = set(versions(project)) - {p for p in versions(project) if revision_id(p) == head}
    try:
        text = planted.read_text(encoding="utf-8")
        # A blank revision exists to be filled in by hand with `op.*` and `sa.*` calls; without
        # the imports the first run of the edited revision fails with a NameError.
        assert "from alembic import op" in text, text
        assert "import sqlalchemy as sa" in text, text
        body = (
            f'    op.create_table("{PLANTED_TABLE}", sa.Column("id", sa.Integer, primary_key=True))'
            '\n    op.execute("SELECT 1/0")\n'
        )
        assert "def upgrade() -> None:\n    pass\n" in text, text
        text = text.replace("def upgrade() -> None:\n    pass\n", f"def upgrade() -> None:\n{body}")
        planted.write_text(text, encoding="utf-8")

        failed = make(project, "migrate", env=env)
        assert_short_failure(failed, planted.name, "division by zero")
        assert state(server, database) == before  # PLANTED_TABLE is not there either

        verbose = make(project, "migrate", "VERBOSE=1", env=env)
        assert verbose.returncode != 0
        assert "Traceback" in verbose.stdout and "division by zero" in verbose.stdout
        assert state(server, database) == before
    finally:
        planted.unlink()
    assert len(versions(project)) == 1


# 2. The render's database settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://postgres:s3cr3t-pw@localhost:port/db",
            ("DATABASE_URL", "not a valid URL", "postgresql://USER:PASSWORD@HOST:PORT/NAME"),
            id="malformed",
        ),
        pytest.param(
            "postgres:s3cr3t-pw@localhost/db",
            ("DATABASE_URL", "not a valid URL", "percent-encode"),
            id="no-scheme",
        ),
        pytest.param(
            "mysql://root:s3cr3t-pw@localhost/db",
            ("DATABASE_URL", "unsupported scheme", "'mysql'", "use postgresql://"),
            id="mysql",
        ),
    ],
)
def test_bad_database_url(
    project: Path, server: Server, database: str, url: str, expected: tuple[str, ...]
) -> None:
    before = state(server, database)
    result = make(project, "migrate", env=clean_env(DATABASE_URL=url))
    assert_short_failure(result, *expected, secret="s3cr3t-pw")
    assert state(server, database) == before


def test_awkward_password_in_db_parts(
    project: Path, server: Server, database: str, role: str, head: str
) -> None:
    parts = clean_env(
        DB_HOST=server.host,
        DB_PORT=str(port_of(server)),
        DB_USER=role,
        DB_PASSWORD=AWKWARD_PASSWORD,
        DB_NAME=database,
    )
    output = must(make(project, "migrate", env=parts))
    assert AWKWARD_PASSWORD not in output
    assert state(server, database) == ({"alembic_version", "item"}, {head})
    owner = server.fetch(database, "SELECT tableowner FROM pg_tables WHERE tablename = 'item'")
    assert owner == [(role,)]

    # A failing command with the password set prints neither it nor its encoded form.
    assert_short_failure(
        make(project, "migrate", "rev=deadbeef", env=parts), "deadbeef", secret=AWKWARD_PASSWORD
    )
    unreachable = {**parts, "DB_HOST": "127.0.0.1", "DB_PORT": str(closed_port())}
    unreachable["DB_CONNECT_TIMEOUT"] = "3"
    assert_short_failure(
        make(project, "migrate", env=unreachable),
        "Cannot connect to PostgreSQL",
        secret=AWKWARD_PASSWORD,
    )
    assert state(server, database) == ({"alembic_version", "item"}, {head})


# 3. make rollback's arguments and guard


def test_make_rollback_takes_steps_and_confirm(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    assert_short_failure(
        make(project, "rollback", "steps=abc", env=env), "steps=abc is not a number"
    )
    production = {**env, "ENVIRONMENT": "production"}
    must(make(project, "migrate", env=production))
    before = state(server, database)
    assert before == ({"alembic_version", "item"}, {head})
    # CONFIRM is a Make variable on the command line; it has to reach the runner.
    assert_short_failure(make(project, "rollback", env=production), "production", "CONFIRM=yes")
    assert state(server, database) == before
    must(make(project, "rollback", "CONFIRM=yes", env=production))
    assert state(server, database) == ({"alembic_version"}, set())


# 4. The chores end to end


def test_make_backup_restore_and_rehearse(
    project: Path, env: dict[str, str], server: Server, database: str, head: str
) -> None:
    must(make(project, "migrate", env=env))
    server.execute(database, "INSERT INTO item (name) VALUES ('kept')")
    output = must(make(project, "backup", env=env))
    assert f"Database '{database}' on {server.host}" in output
    dump = Path(re.findall(r"Backup written to (\S+)", output)[0])
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    server.execute(database, "DELETE FROM item")
    output = must(make(project, "restore", f"file={dump}", env=env))
    assert f"Restored {dump} into {database}" in output
    assert server.fetch(database, "SELECT name FROM item") == [("kept",)]

    planted = versions_dir(project) / "20990101_0000_0000rehearse_owner.py"
    planted.write_text(ADD_OWNER.replace("@down@", head), encoding="utf-8")
    try:
        result = make(project, "rehearse", f"file={dump}", env=env)
    finally:
        planted.unlink()
        dump.unlink()
    assert result.returncode != 0, result.stdout
    assert "Revision 0000rehearse (add owner) FAILED on this data" in result.stdout
    assert 'column "owner" of relation "item" contains null values' in result.stdout
    assert server.version(database) == {head}
