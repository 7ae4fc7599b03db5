"""What a squashed baseline makes on MySQL beyond autogenerate's tables, read from the database
the chain built: views, stored procedures and functions, and triggers, each as the server prints
its CREATE statement, without the DEFINER clause (the baseline runs as whoever migrates). The
squash's proof compares the result, so what is not read here (an event) shows up there, named.
"""

import re

from sqlalchemy import Connection, text

from .base import SquashObjects

_DEFINER = re.compile(r"\s+DEFINER\s*=\s*(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)", re.I)
VIEWS = (
    "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() "
    "ORDER BY TABLE_NAME"
)
ROUTINES = (
    "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
    "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY CREATED, ROUTINE_NAME"
)
TRIGGERS = (
    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() "
    "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _create(connection: Connection, kind: str, name: str, column: int) -> str:
    row = connection.execute(text(f"SHOW CREATE {kind} {_quoted(name)}")).one()
    return _DEFINER.sub("", str(row[column]), count=1)


def squash_objects(connection: Connection) -> SquashObjects:
    objects = SquashObjects()
    for kind, name in connection.execute(text(ROUTINES)).all():
        objects.before.append(_create(connection, kind, name, 2))
        objects.drop_last.insert(0, f"DROP {kind} {_quoted(name)}")
    # In name order: a view over a view named after it fails the baseline's run in the proof.
    for (name,) in connection.execute(text(VIEWS)).all():
        objects.after.append(_create(connection, "VIEW", name, 1))
        objects.drop_first.insert(0, f"DROP VIEW {_quoted(name)}")
    for (name,) in connection.execute(text(TRIGGERS)).all():
        objects.after.append(_create(connection, "TRIGGER", name, 2))
    return objects
