"""Offline SQL (`make sql`, `alembic upgrade --sql`) of a data migration: the JSONB values of
op.bulk_insert are written as literals PostgreSQL casts on INSERT, and a revision that cannot be
rendered without a database is named, with why, in one line instead of a traceback."""

import io
import os
import subprocess
import sys

import demo_project
import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection

SEED_REVISION = '''"""Seed settings: JSONB values of op.bulk_insert (a data migration)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0000seedjson"
down_revision: str | None = "c3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "setting",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", postgresql.JSONB(), nullable=False),
    )
    rows = [{"id": 1, "value": {"tags": ["it's", 2]}}, {"id": 2, "value": []}]
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("setting")
'''
READS_DATA_REVISION = '''"""Reads rows through op.get_bind(): there are none offline."""

from alembic import op

revision: str = "0000readsdata"
down_revision: str | None = "0000seedjson"
branch_labels = None
depends_on = None


def upgrade() -> None:
    count = op.get_bind().exec_driver_sql("SELECT count(*) FROM widget").scalar()
    op.execute(f"COMMENT ON TABLE widget IS '{count} widgets'")


def downgrade() -> None:
    op.execute("COMMENT ON TABLE widget IS NULL")
'''


@pytest.fixture(scope="module")
def project() -> Project:
    """The demo chain (a1, b2, c3), then a JSONB seed and a revision that reads data."""
    project = demo_project.write("postgresql", name="offline")
    for name, body in {
        "0000seedjson_seed.py": SEED_REVISION,
        "0000readsdata_count.py": READS_DATA_REVISION,
    }.items():
        (project.versions / name).write_text(body, encoding="utf-8")
    return project


def offline_sql(project: Project, revisions: str) -> str:
    """`alembic upgrade <revisions> --sql`, in this process: the script it prints."""
    config = Migrations(project).alembic_config(url=URL.create("postgresql+asyncpg", database="x"))
    config.output_buffer = io.StringIO()
    config.attributes["command"] = "upgrade"
    command.upgrade(config, revisions, sql=True)
    return config.output_buffer.getvalue()


def test_sql_renders_the_jsonb_values_of_bulk_insert(project: Project, database_url: URL) -> None:
    sql = offline_sql(project, "c3:0000seedjson")
    assert "INSERT INTO setting (id, value) VALUES (1, '{\"tags\": [\"it''s\", 2]}')" in sql
    # And the script does what the online upgrade does: a DBA running it gets the same rows.
    Migrations(project).upgrade("c3", url=database_url)
    statements = [s.strip() for s in sql.split(";\n")]

    def run(connection: Connection) -> list[tuple[int, object]]:
        for statement in statements:
            if statement and statement not in ("BEGIN", "COMMIT"):
                connection.exec_driver_sql(statement)
        return [tuple(row) for row in connection.execute(text("SELECT * FROM setting ORDER BY 1"))]

    assert on_connection(database_url, run) == [(1, {"tags": ["it's", 2]}), (2, [])]


def test_a_revision_that_cannot_be_rendered_offline_is_named_without_a_traceback(
    project: Project,
) -> None:
    ini = demo_project.alembic_ini(project)
    # `make sql rev=c3:head`, as the Makefile runs it; no database is needed, nor reached.
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "c3:head", "--sql"],
        env={
            **os.environ,
            "PYTHONPATH": demo_project.pythonpath(project),
            "DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/nowhere",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    failed = next(line for line in output.splitlines() if line.startswith("FAILED: "))
    assert failed.startswith("FAILED: 0000readsdata_count.py, line 12 cannot be rendered"), failed
    assert "op.get_bind()" in failed and "make sql rev=from:to" in failed
    # The revisions before it were rendered.
    assert "INSERT INTO setting" in result.stdout
