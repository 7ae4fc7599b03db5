"""Renames in `make migration` on a real MySQL or MariaDB: no backfill queue or trigger here, so a
renamed column or table is written as a plain rename, which keeps every row and goes back down;
its review line says the release still serving fails on the old name (docs/zero-downtime.md)."""

from pathlib import Path

import demo_project
from alembic import command
from queries import execute, rows
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import Harness, Walk

RENAMED = demo_project.MODELS.replace('sa.Column("price",', 'sa.Column("cost",')
# Renamed, and made NOT NULL with a default, in the same change.
TIGHTENED = demo_project.MODELS.replace(
    'sa.Column("price", sa.Integer, nullable=True)',
    'sa.Column("cost", sa.Integer, nullable=False, server_default="0")',
)
COLUMN = (
    "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'widget' AND COLUMN_NAME IN ('price', 'cost')"
)


def autogenerate(project: Project, url: URL, message: str) -> list[Path]:
    """`alembic revision --autogenerate`, as `make migration` runs it: the files written."""
    before = set(project.versions.glob("*.py"))
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = "revision"
    command.revision(config, message=message, autogenerate=True)
    return sorted(set(project.versions.glob("*.py")) - before)


def test_a_renamed_column_is_a_plain_rename_that_keeps_its_values(database_url: URL) -> None:
    project = demo_project.write("mysql", name="renames")
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('bolt', 3), ('nut', NULL)")
    (project.migrations.parent / "models.py").write_text(RENAMED, encoding="utf-8")
    (written,) = autogenerate(project, database_url, "cost")
    text = written.read_text(encoding="utf-8")
    assert "op.alter_column('widget', 'price'," in text and "new_column_name='cost'," in text, text
    assert "# REVIEW: widget.price is renamed cost: check it is a rename" in text
    assert "drop_column" not in text and "add_column" not in text
    migrations.upgrade(url=database_url)
    assert rows(database_url, "SELECT name, cost FROM widget ORDER BY id") == [
        ("bolt", 3),
        ("nut", None),
    ]
    config = migrations.alembic_config(url=database_url)
    config.attributes["command"] = "check"
    command.check(config)  # the models match: no exception
    config.attributes["command"] = "downgrade"
    command.downgrade(config, "c3")
    assert rows(database_url, "SELECT price FROM widget ORDER BY id") == [(3,), (None,)]
    # The stairway takes the rename down and up again on rows.
    execute(database_url, "DROP TABLE widget", "DROP TABLE alembic_version")
    walked = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, walked, stairway=True)
    assert (walked.upgrade_failure, walked.stairway_failure) == (None, None)


def test_a_column_renamed_and_made_not_null_with_a_default_keeps_both(database_url: URL) -> None:
    project = demo_project.write("mysql", name="renames_tightened")
    migrations = Migrations(project)
    migrations.upgrade(url=database_url)
    before = rows(database_url, COLUMN)
    assert before == [("price", "YES", "NULL")]  # (MariaDB spells "no default" NULL)
    execute(database_url, "INSERT INTO widget (name, price) VALUES ('bolt', 3), ('nut', 5)")
    (project.migrations.parent / "models.py").write_text(TIGHTENED, encoding="utf-8")
    pre, post = sorted(autogenerate(project, database_url, "cost"), key=lambda p: "post" in p.name)
    text = pre.read_text(encoding="utf-8")
    assert "# REVIEW: widget.price is renamed cost, and given the default 0: check it" in text
    assert "rows holding NULL make that ALTER fail (MySQL's strict mode)" in text
    assert "nullable=False" in post.read_text(encoding="utf-8")  # NOT NULL after the rollout
    migrations.upgrade(url=database_url)
    assert rows(database_url, COLUMN) == [("cost", "NO", "0")]
    assert rows(database_url, "SELECT name, cost FROM widget ORDER BY id") == [
        ("bolt", 3),
        ("nut", 5),
    ]
    config = migrations.alembic_config(url=database_url)
    config.attributes["command"] = "check"
    command.check(config)  # the models match, default and NOT NULL included: no exception
    config.attributes["command"] = "downgrade"
    command.downgrade(config, "c3")
    assert rows(database_url, COLUMN) == before
    assert rows(database_url, "SELECT price FROM widget ORDER BY id") == [(3,), (5,)]
