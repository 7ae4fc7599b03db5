"""`make db-up` without Docker: the embedded PostgreSQL, then `make migrate` with no edits."""

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import bake, clean_env, install, make, must, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return install(bake(tmp_path))


def test_db_up_then_migrate_with_no_edits(project: Path) -> None:
    docker = (
        subprocess.run(["docker", "info"], capture_output=True, check=False)
        if _has_docker_cli()
        else None
    )
    if docker is not None and docker.returncode == 0:
        pytest.fail("a Docker engine answers here: this test covers the embedded path only")
    env = clean_env()
    try:
        up = must(make(project, "db-up", env=env))
        assert "Embedded PostgreSQL running" in up
        assert (project / ".env").is_file() and (project / ".devdb" / "PG_VERSION").is_file()
        must(make(project, "migrate", env=env))
        assert "(head)" in must(make(project, "current", env=env))
        # Plain Alembic from the project root reads the same .env.
        assert "(head)" in must(run(project, ".venv/bin/alembic", "current", env=env))
        # A second db-up finds the server running and leaves .env consistent.
        must(make(project, "db-up", env=env))
        env_file = (project / ".env").read_text(encoding="utf-8")
        assert len(re.findall(r"^DATABASE_URL=", env_file, re.M)) == 1
    finally:
        down = make(project, "db-down", env=env)
    assert "stopped" in must(down)
    stopped = make(project, "migrate", env=clean_env(DB_CONNECT_TIMEOUT="3"))
    assert stopped.returncode != 0
    assert "Cannot connect to PostgreSQL" in stopped.stdout and "make db-up" in stopped.stdout
    assert "Traceback" not in stopped.stdout


def _has_docker_cli() -> bool:
    from shutil import which

    return which("docker") is not None
