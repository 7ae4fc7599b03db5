"""Data that must survive migrations: per-revision checks the migration walk runs.

Register a check for a revision to prove that rows written at that revision come through every
later revision intact: `before` runs once the revision is applied, `after` at head. In between,
each later revision is upgraded, downgraded and upgraded again (the stairway), so the rows must
survive that round trip too. Add one whenever a revision moves, splits or converts existing data.
The walk also puts a few generated rows in every table{% if cookiecutter.database == "mysql" %} (on PostgreSQL){% endif %}: read your own rows.
"""

from alembic_steady.testing.data_checks import data_check
from sqlalchemy import Connection, text


@data_check("0b1c2d3e4f50")
class ItemsSurvive:
    """Example: items written right after the table was created are still there at head."""

    @staticmethod
    def before(connection: Connection) -> None:
        connection.execute(text("INSERT INTO item (name) VALUES ('kept'), ('also kept')"))

    @staticmethod
    def after(connection: Connection) -> None:
        # Only its own rows: the walk puts generated rows in every table too.
        rows = connection.execute(
            text("SELECT name, created_at FROM item WHERE name LIKE '%kept' ORDER BY id")
        ).all()
        assert [name for name, _ in rows] == ["kept", "also kept"]
        assert all(created_at is not None for _, created_at in rows)
