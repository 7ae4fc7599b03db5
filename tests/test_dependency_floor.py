"""The lowest end of every bound: a render installed with the lowest versions its pyproject.toml
allows for its direct dependencies (`uv pip install --resolution lowest-direct`, past the lock),
on which its own tests pass and its URL spellings run on the async driver. The newest end is
every other module's: a render resolves fresh versions, or locks them, when it is made.

A bound nobody installs rots: each is checked to be the version installed here, so raising what
the code needs means raising the bound (with a comment saying what broke below it).

The floor holds SQLAlchemy 2.0, the newest end 2.1 (which made psycopg 3 the driver of a bare
postgresql:// URL): the render keeps every spelling on asyncpg on both.

The mysql render runs where TEST_MYSQL_URL names a server, and is skipped saying so otherwise.
"""

import json
import os
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import Server, bake, clean_env, make, must, run

# The installed distributions of a render's venv, by canonical name.
INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)
# Each URL through the render's own settings and engine: the driver it ran on, and a query.
CONNECT = """
import asyncio, sys
from sqlalchemy import text
from my_service.db import create_engine
from my_service.settings import Settings

async def main() -> None:
    for url in sys.argv[1:]:
        engine = create_engine(Settings(_env_file=None, database_url=url))
        async with engine.connect() as connection:
            answer = await connection.scalar(text("SELECT 41 + 1"))
        await engine.dispose()
        print(url.split("://", 1)[0], engine.dialect.driver, answer)

asyncio.run(main())
"""
POSTGRESQL_SPELLINGS = ("postgresql", "postgres", "postgresql+asyncpg")


def install_floor(project: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Install the render and its dev tools at the lowest versions of their bounds into its
    .venv, bypassing any lock; print and return the installed versions."""
    env = clean_env(UV_PYTHON_DOWNLOADS="never")
    must(run(project, "uv", "venv", "--quiet", "--python", sys.executable, ".venv", env=env))
    must(
        run(
            project,
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            ".venv/bin/python",
            "--resolution",
            "lowest-direct",
            "-e",
            "vendor/alembic-steady",
            "-e",
            ".[dev]",
            env=env,
        )
    )
    found = json.loads(must(run(project, ".venv/bin/python", "-c", INSTALLED)))
    installed = {canonicalize_name(name): version for name, version in found.items()}
    with capsys.disabled():
        listing = ", ".join(f"{name} {installed[name]}" for name in sorted(installed))
        print(f"\nLowest versions ({project.name}): {listing}")
    return installed


def lowest_allowed(project: Path) -> dict[str, Version]:
    """The lower bound (>= or ==) of each direct dependency and dev tool of the render."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bounds = {}
    for line in [*pyproject["dependencies"], *pyproject["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
        assert floors, f"{line}: no lower bound, so the floor test installs whatever is oldest"
        bounds[canonicalize_name(requirement.name)] = max(floors)
    return bounds


def assert_bounds_are_installed(project: Path, installed: dict[str, str]) -> None:
    # A bound above what exists, or one that conflicts with another, would have uv pick a
    # higher version: then the bound is not what the tests prove.
    bounds = lowest_allowed(project)
    untested = {
        name: f"bound {bound}, installed {installed.get(name)}"
        for name, bound in bounds.items()
        if name not in installed or Version(installed[name]) != bound
    }
    assert not untested, f"bounds that are not the versions installed at the floor: {untested}"


def test_postgresql_render_passes_at_the_lowest_versions(
    tmp_path: Path, server: Server, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = bake(tmp_path)
    installed = install_floor(project, capsys)
    assert_bounds_are_installed(project, installed)
    assert installed["sqlalchemy"].startswith("2.0."), installed["sqlalchemy"]
    # The generated tests (on TEST_DATABASE_URL's server, or the embedded one), and the linters
    # on the generated code (mypy reads the lowest SQLAlchemy's and SQLModel's types).
    must(make(project, "test"))
    must(make(project, "lint"))
    # Every spelling a hosting provider hands out runs on asyncpg (psycopg is not even
    # installed), through the app's engine and through the migrations.
    url = server.url(database)
    urls = [url.replace("postgresql://", f"{scheme}://", 1) for scheme in POSTGRESQL_SPELLINGS]
    ran = must(run(project, ".venv/bin/python", "-c", CONNECT, *urls)).split("\n")
    assert [line for line in ran if line] == [f"{s} asyncpg 42" for s in POSTGRESQL_SPELLINGS]
    must(make(project, "migrate", env=clean_env(DATABASE_URL=urls[1])))
    must(make(project, "check", env=clean_env(DATABASE_URL=urls[0])))
    assert server.tables(database) == {"item"}


MYSQL_URL = os.environ.get("TEST_MYSQL_URL")


@pytest.mark.skipif(
    not MYSQL_URL,
    reason="MySQL floor NOT run: no server named. Set TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/"
    "mysql (.ci/run does when 127.0.0.1:3306 answers)",
)
def test_mysql_render_passes_at_the_lowest_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = bake(tmp_path, database="mysql")
    installed = install_floor(project, capsys)
    assert_bounds_are_installed(project, installed)
    assert installed["sqlalchemy"].startswith("2.0."), installed["sqlalchemy"]
    must(make(project, "test", env=clean_env(TEST_DATABASE_URL=str(MYSQL_URL))))


def test_every_spelling_runs_on_asyncpg_at_the_newest_end(
    default_project: Path, server: Server, database: str
) -> None:
    """SQLAlchemy 2.1, where a bare postgresql:// means psycopg 3: the render's lock holds it,
    and the render still runs every spelling on asyncpg."""
    version = "import sqlalchemy; print(sqlalchemy.__version__)"
    newest = must(run(default_project, ".venv/bin/python", "-c", version)).strip()
    assert Version(newest) >= Version("2.1"), newest
    url = server.url(database)
    urls = [url.replace("postgresql://", f"{scheme}://", 1) for scheme in POSTGRESQL_SPELLINGS]
    ran = must(run(default_project, ".venv/bin/python", "-c", CONNECT, *urls)).split("\n")
    assert [line for line in ran if line] == [f"{s} asyncpg 42" for s in POSTGRESQL_SPELLINGS]
