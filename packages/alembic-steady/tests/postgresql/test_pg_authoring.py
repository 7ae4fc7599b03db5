"""What `make migration` (`alembic revision --autogenerate` through the project's env.py) writes,
as the template's README promises: no file at all when nothing changed, and SQLModel's
`AutoString` as plain `sa.String`, so a revision never imports sqlmodel or the application. (The
non-blocking forms on existing tables are test_pg_operations.py's.)"""

from pathlib import Path

import demo_project
import pytest
from alembic import command
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations

# The demo models and a column of a type named as SQLModel's string type is
# (sqlmodel.sql.sqltypes.AutoString): the hook knows it by that name, so sqlmodel is not needed.
AUTOSTRING_MODELS = """
import sqlalchemy as sa


class AutoString(sa.types.TypeDecorator):
    impl = sa.String
    cache_ok = True


metadata = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s",
                                          "pk": "pk_%(table_name)s"})
widget = sa.Table(
    "widget", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("price", sa.Integer, nullable=True),
    sa.Column("sku", AutoString(40), nullable=True),
    sa.Index("ix_widget_name", "name"),
)
"""


def autogenerate(project: Project, url: URL, message: str) -> list[Path]:
    """`alembic revision --autogenerate -m MESSAGE`, as `make migration` runs it: the files it
    wrote."""
    before = set(project.versions.glob("*.py"))
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = "revision"
    command.revision(config, message=message, autogenerate=True)
    return sorted(set(project.versions.glob("*.py")) - before)


def test_nothing_changed_writes_no_revision(
    database_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo models are exactly what the chain builds.
    project = demo_project.write("postgresql", name="authoring_unchanged")
    Migrations(project).upgrade(url=database_url)
    capsys.readouterr()
    assert autogenerate(project, database_url, "nothing new") == []
    assert "No changes between the models and the database: no revision written." in (
        capsys.readouterr().out
    )


def test_autostring_is_written_as_plain_sqlalchemy(database_url: URL) -> None:
    project = demo_project.write(
        "postgresql", name="authoring_autostring", models=AUTOSTRING_MODELS
    )
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    (revision,) = autogenerate(project, database_url, "add sku")
    text = revision.read_text(encoding="utf-8")
    assert "sa.Column('sku', sa.String(length=40), nullable=True)" in text, text
    assert "AutoString" not in text and project.package not in text, text
    # The file runs on SQLAlchemy alone, and the models then match.
    migrations.upgrade(url=database_url)
    assert autogenerate(project, database_url, "nothing new") == []
