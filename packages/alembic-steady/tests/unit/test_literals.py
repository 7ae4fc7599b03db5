"""authoring/literals.py: JSON and JSONB values of `make sql` written as quoted JSON text, which
PostgreSQL casts to the column's type on INSERT."""

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic_steady.authoring.literals import render_json_literals

ITEM = sa.table(
    "item",
    sa.column("id", sa.Integer()),
    sa.column("meta", sa.JSON()),
    sa.column("tags", postgresql.JSONB()),
)


def offline_sql(statement: Any, dialect: Any) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def test_json_and_jsonb_values_are_written_as_quoted_json() -> None:
    dialect = postgresql.dialect()
    render_json_literals(dialect)
    insert = sa.insert(ITEM).values(id=1, meta={"note": "it's"}, tags=["a", "b"])
    assert offline_sql(insert, dialect) == (
        'INSERT INTO item (id, meta, tags) VALUES (1, \'{"note": "it\'\'s"}\', \'["a", "b"]\')'
    )


def test_the_dialects_other_types_are_kept() -> None:
    dialect = postgresql.dialect()
    before = dict(dialect.colspecs)
    render_json_literals(dialect)
    kept = {k: v for k, v in before.items() if k not in (sa.JSON, postgresql.JSONB)}
    assert kept and all(dialect.colspecs[k] is v for k, v in kept.items())
    assert postgresql.dialect().colspecs == before  # the class's own mapping is not changed


def test_a_dialect_without_type_mappings_gets_the_two() -> None:
    dialect = SimpleNamespace()
    render_json_literals(dialect)  # type: ignore[arg-type]
    assert set(dialect.colspecs) == {sa.JSON, postgresql.JSONB}
