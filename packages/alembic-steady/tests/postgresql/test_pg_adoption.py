"""A stock Alembic project (`alembic init -t async`) adopts the runner and the test plugin with
the few lines the README shows: its `alembic upgrade` then takes the migration lock, and its
tests are the plugin's."""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import demo_project
import pytest
from pg_sessions import session_holding
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady.dialects.postgresql import lock_key
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection

BIN = Path(sys.executable).parent

# What the README tells a stock project to put in place of its env.py's four functions.
ADOPTION = """
from pathlib import Path

from alembic_steady import Project, StaticSettings
from alembic_steady.runner.environment import MigrationEnvironment

from models import metadata as target_metadata

PROJECT = Project(
    package="stock_app",
    migrations=Path(__file__).parent,
    settings=lambda: StaticSettings(config.get_main_option("sqlalchemy.url")),
)
environment = MigrationEnvironment(context, PROJECT, lambda: target_metadata)
"""

CONFTEST = """
from pathlib import Path

import pytest
from alembic_steady import Project, StaticSettings

pytest_plugins = ["alembic_steady.testing.plugin"]


@pytest.fixture(scope="session")
def migration_project() -> Project:
    here = Path(__file__).parent
    return Project("stock_app", here / "alembic", settings=lambda: StaticSettings(None))
"""

MODELS = """
import sqlalchemy as sa

metadata = sa.MetaData()
thing = sa.Table("thing", metadata, sa.Column("id", sa.Integer, primary_key=True))
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "5t0c4"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("thing", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("thing")
"""


@pytest.fixture(scope="module")
def stock(server_url: URL) -> Iterator[Path]:
    """A stock project, adopted: the env.py of `alembic init -t async` up to its functions,
    then the README's lines."""
    with tempfile.TemporaryDirectory(prefix="stock-") as folder:
        root = Path(folder)
        subprocess.run(
            [BIN / "alembic", "init", "-t", "async", "alembic"],
            cwd=root,
            check=True,
            capture_output=True,
        )
        env_py = root / "alembic" / "env.py"
        stock_text = env_py.read_text(encoding="utf-8")
        kept = stock_text[: stock_text.index("def run_migrations_offline")]
        kept = kept.replace("target_metadata = None\n", "")
        env_py.write_text(kept + ADOPTION + demo_project.FOUR_FUNCTIONS, encoding="utf-8")
        (root / "alembic" / "versions" / "5t0c4_thing.py").write_text(REVISION, encoding="utf-8")
        (root / "models.py").write_text(MODELS, encoding="utf-8")
        (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
        (root / "test_migrations.py").write_text(
            "from alembic_steady.testing.checks import *  # noqa: F403\n", encoding="utf-8"
        )
        yield root


def test_the_adoption_is_a_few_lines() -> None:
    lines = [line for line in (ADOPTION + demo_project.FOUR_FUNCTIONS).splitlines() if line.strip()]
    assert len(lines) <= 25


def on_path(root: Path) -> str:
    """PYTHONPATH for the stock project's processes: its folder, and this toolkit's source
    ahead of the installed one (so a mutated copy's code is what they run)."""
    return os.pathsep.join([str(root), str(Path(__file__).resolve().parents[2] / "src")])


def run_alembic(root: Path, url: URL, *args: str) -> subprocess.Popen[str]:
    ini = root / "alembic.ini"
    text_ = ini.read_text(encoding="utf-8")
    # As alembic.ini often has it (shared with sync tools): no driver named, run on asyncpg.
    plain = url.set(drivername="postgresql")
    rendered = plain.render_as_string(hide_password=False).replace("%", "%%")
    lines = [
        f"sqlalchemy.url = {rendered}" if line.startswith("sqlalchemy.url") else line
        for line in text_.splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.Popen(
        [BIN / "alembic", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": on_path(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_stock_alembic_upgrade_waits_for_the_migration_lock(stock: Path, database_url: URL) -> None:
    def waiting(connection: Connection) -> int:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'stock_app migrations'"
                )
            ).scalar_one()
        )

    with session_holding(database_url, f"SELECT pg_advisory_lock({lock_key('stock_app')})"):
        upgrade = run_alembic(stock, database_url, "upgrade", "head")
        deadline = time.monotonic() + 30
        while on_connection(database_url, waiting) == 0:
            assert upgrade.poll() is None, upgrade.communicate()[0]
            assert time.monotonic() < deadline, "alembic upgrade never connected"
        # Connected, and waiting: nothing applied while the other session holds the lock.
        assert on_connection(database_url, Migrations.current_heads) == set()
        assert upgrade.poll() is None
    output = upgrade.communicate(timeout=60)[0]
    assert upgrade.returncode == 0, output
    assert on_connection(database_url, Migrations.current_heads) == {"5t0c4"}


@pytest.mark.parametrize("workers", [["-p", "no:xdist"], ["-p", "xdist", "-n", "2"]])
def test_the_plugin_tests_a_stock_project(stock: Path, server_url: URL, workers: list[str]) -> None:
    result = subprocess.run(
        [BIN / "pytest", "-q", "-p", "no:cacheprovider", *workers, str(stock)],
        cwd=stock,
        env={
            **os.environ,
            "PYTHONPATH": on_path(stock),
            "TEST_DATABASE_URL": server_url.render_as_string(hide_password=False),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 passed" in result.stdout, result.stdout
    # No git history here: the old release's check says it checked nothing, with workers too.
    assert result.stdout.count("Old release NOT checked: ") == 1, result.stdout
    # Which server the tests ran on, said once, with workers too (theirs reach the summary).
    assert result.stdout.count("PostgreSQL used: ") == 1, result.stdout
