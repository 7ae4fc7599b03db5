"""The stairway's schema snapshots on MySQL: read from information_schema, whole after each step
(it answers in milliseconds for a project's tables; MySQL has no event triggers to narrow it
down).
"""

from collections.abc import Callable

from sqlalchemy import Connection, text

from ..runner import checksums
from . import mysql_progress

Row = tuple[str, str]  # (what, description), e.g. ("column", "item.name varchar(255) NO")

# What a revision can create in the database, each as one line per object part: tables and
# views, columns (type, nullability, default, extra, collation, comment), index columns,
# constraints (primary, unique, foreign with their rules, check with its clause), view
# definitions (without the database's own name, which the server writes into them), routines and
# triggers. Alembic's version table, the runner's checksums of applied
# revisions (runner/checksums.py) and its record of a revision part way (mysql_progress.py) are
# left out.
_LEFT_OUT = ", ".join(
    f"'{name}'" for name in ("alembic_version", checksums.TABLE, mysql_progress.TABLE)
)
SNAPSHOT = """
SELECT 'table', CONCAT_WS(' ', TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION, TABLE_COMMENT)
  FROM information_schema.TABLES
 WHERE TABLE_SCHEMA = DATABASE()
   AND TABLE_NAME NOT IN (@left_out@)
UNION ALL
SELECT 'column', CONCAT_WS(' ', TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE,
                           IS_NULLABLE, CONCAT('default=', COALESCE(COLUMN_DEFAULT, 'none')),
                           EXTRA, COLLATION_NAME, COLUMN_COMMENT)
  FROM information_schema.COLUMNS
 WHERE TABLE_SCHEMA = DATABASE()
   AND TABLE_NAME NOT IN (@left_out@)
UNION ALL
SELECT 'index', CONCAT_WS(' ', TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME,
                          COALESCE(SUB_PART, ''), INDEX_TYPE)
  FROM information_schema.STATISTICS
 WHERE TABLE_SCHEMA = DATABASE()
   AND TABLE_NAME NOT IN (@left_out@)
UNION ALL
SELECT 'constraint', CONCAT_WS(' ', t.TABLE_NAME, t.CONSTRAINT_NAME, t.CONSTRAINT_TYPE,
                               k.COLUMN_NAME, k.ORDINAL_POSITION, k.REFERENCED_TABLE_NAME,
                               k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE,
                               c.CHECK_CLAUSE)
  FROM information_schema.TABLE_CONSTRAINTS t
  LEFT JOIN information_schema.KEY_COLUMN_USAGE k
    ON k.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME
   AND k.CONSTRAINT_NAME = t.CONSTRAINT_NAME
  LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r
    ON r.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = t.CONSTRAINT_NAME
   AND r.TABLE_NAME = t.TABLE_NAME
  LEFT JOIN information_schema.CHECK_CONSTRAINTS c
    ON c.CONSTRAINT_SCHEMA = t.CONSTRAINT_SCHEMA AND c.CONSTRAINT_NAME = t.CONSTRAINT_NAME
   AND t.CONSTRAINT_TYPE = 'CHECK'
 WHERE t.CONSTRAINT_SCHEMA = DATABASE()
   AND t.TABLE_NAME NOT IN (@left_out@)
UNION ALL
SELECT 'view', CONCAT_WS(' ', TABLE_NAME,
                         REPLACE(VIEW_DEFINITION, CONCAT('`', DATABASE(), '`.'), ''),
                         CHECK_OPTION, SECURITY_TYPE)
  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()
UNION ALL
SELECT 'routine', CONCAT_WS(' ', ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION)
  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()
UNION ALL
SELECT 'trigger', CONCAT_WS(' ', TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION,
                            EVENT_OBJECT_TABLE, ACTION_ORDER, ACTION_STATEMENT)
  FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()
""".replace("@left_out@", _LEFT_OUT)


class MySQLSchema:
    """The database's schema, re-read whole after each step (information_schema answers in
    milliseconds for a project's tables; MySQL has no event triggers to narrow it down)."""

    # Rows carry names, not ids: the walk's filler (none on MySQL) is not told what is new.
    created = None
    # A DDL statement commits on its own here: every round trip is taken down and up again.
    complete = False
    unread = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.rows = self._read()

    def row_changes(self) -> None:
        return None

    def checkpoint(self) -> Callable[[], None]:
        rows = self.rows

        def restore() -> None:
            self.rows = rows

        return restore

    def refresh(self) -> tuple[set[Row], set[Row]]:
        """The schema as it was at the last refresh, and as it is now."""
        old, self.rows = self.rows, self._read()
        return old, self.rows

    def _read(self) -> set[Row]:
        rows = {(str(what), str(item)) for what, item in self.connection.execute(text(SNAPSHOT))}
        self.connection.commit()
        return rows
