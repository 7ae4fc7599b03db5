"""The MySQL tier's shared steps: the module CLI on a database, and the tables it holds."""

import demo_project
from queries import rows
from sqlalchemy.engine import URL

from alembic_steady import Project


def cli(project: Project, url: URL, *args: str, **env: str) -> tuple[int, str]:
    """`python -m <package>.migrations ARGS` on `url`, MIGRATION_* settings from `env`: its exit
    status and output."""
    result = demo_project.module_cli(project, *args, url=url, env=env)
    return result.returncode, result.stdout


def tables(url: URL) -> set[str]:
    found = rows(
        url, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    )
    runners = {"alembic_version", "alembic_version_checksums", "alembic_steady_progress"}
    return {str(name) for (name,) in found} - runners
