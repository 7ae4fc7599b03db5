"""JSON and JSONB values written as SQL literals, for `make sql` and `make lint-migrations`.

Offline, every value of `op.bulk_insert` (a seed or data migration) is printed into the SQL.
SQLAlchemy has no literal form for JSON, so a dict or list in a JSON/JSONB column stopped the
whole script with a traceback. Here the offline dialect writes them as JSON text in a quoted
string, which PostgreSQL casts to the column's type on INSERT.
"""

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import types
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


def _quoted_json(value: Any) -> str:
    return "'" + json.dumps(value).replace("'", "''") + "'"


class _LiteralJSON(postgresql.JSON):
    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        return _quoted_json


class _LiteralJSONB(postgresql.JSONB):
    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        return _quoted_json


def render_json_literals(dialect: Dialect) -> None:
    """Give this (offline) dialect a literal form for JSON and JSONB values."""
    colspecs: dict[Any, Any] = {**getattr(dialect, "colspecs", {})}
    colspecs[types.JSON] = _LiteralJSON
    colspecs[postgresql.JSONB] = _LiteralJSONB
    dialect.colspecs = colspecs
