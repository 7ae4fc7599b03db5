"""dialects/postgresql_schema.py without a server: the stairway's bookkeeping of schema objects
(what a refresh says changed, which relations are new, a rebuilt index under a new oid), on a
connection that answers with catalog rows. The catalog queries run in tests/postgresql."""

from typing import Any

from support import FakeConnection, FakeResult

from alembic_steady.dialects.postgresql_schema import (
    PROBE_SQL,
    SNAPSHOT_ALL,
    SNAPSHOT_TOUCHED,
    PostgreSQLSchema,
)

SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"


class Rows(FakeResult):
    def __iter__(self) -> Any:
        return iter(self.rows)

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Catalog(FakeConnection):
    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Rows:
        return Rows(super().execute(statement, params).rows)

    def exec_driver_sql(self, statement: str) -> Rows:
        self.log.append("driver")
        return self.execute(statement)


ITEM = [
    ("r", 10, "relation", "r public.item"),
    ("r", 10, "column", "public.item.id integer not null"),
]
ITEM_ROWS = [row[2:] for row in ITEM]
INDEX = [("r", 11, "relation", "i public.ix_item"), ("r", 11, "index", "CREATE INDEX ix_item")]
MOOD = [("t", 20, "type", "public.mood enum (a, b)")]


def test_without_a_superuser_every_refresh_reads_the_whole_schema() -> None:
    widened = [("r", 10, "relation", "r public.item"), ("r", 10, "column", "public.item.id bigint")]
    connection = Catalog(results=[[(False,)], ITEM + MOOD, widened + MOOD + INDEX])
    schema = PostgreSQLSchema(connection)
    assert not schema.probed
    assert [sql for sql, _ in connection.sql] == [SUPERUSER, SNAPSHOT_ALL]
    assert connection.log[-1] == "commit"
    assert schema.objects == {
        ("r", 10): (
            ("column", "public.item.id integer not null"),
            ("relation", "r public.item"),
        ),
        ("t", 20): (("type", "public.mood enum (a, b)"),),
    }
    assert schema.created is None
    before, after = schema.refresh()
    assert connection.sql[-1] == (SNAPSHOT_ALL, None)
    assert before - after == {("column", "public.item.id integer not null")}
    assert after - before == {
        ("column", "public.item.id bigint"),
        ("relation", "i public.ix_item"),
        ("index", "CREATE INDEX ix_item"),
    }
    assert schema.created == {11}


def test_with_a_superuser_event_triggers_are_installed_and_a_refresh_reads_what_was_touched() -> (
    None
):
    touched = [("k", 10, "r", None), ("k", 21, "t", None)]
    widened = [("r", 10, "relation", "r public.item"), ("r", 10, "column", "public.item.id bigint")]
    connection = Catalog(
        results=[[(True,)], *([[]] * len(PROBE_SQL)), ITEM + MOOD, touched + widened + INDEX]
    )
    schema = PostgreSQLSchema(connection)
    assert schema.probed
    assert [sql for sql, _ in connection.sql[1 : 1 + len(PROBE_SQL)]] == list(PROBE_SQL)
    assert connection.log.count("driver") == len(PROBE_SQL)
    before, after = schema.refresh()
    assert connection.sql[-1] == (SNAPSHOT_TOUCHED, None)
    # Only the touched item was read again; the untouched type stays as it was.
    assert before == set(ITEM_ROWS)
    assert after == {row[2:] for row in widened + INDEX}
    assert schema.created == {11}
    assert schema.objects[("t", 20)] == (("type", "public.mood enum (a, b)"),)
    assert set(schema.objects) == {("r", 10), ("r", 11), ("t", 20)}


def test_a_touched_object_now_gone_leaves_the_schema() -> None:
    connection = Catalog(
        results=[[(True,)], *([[]] * len(PROBE_SQL)), ITEM + MOOD, [("k", 20, "t", None)]]
    )
    schema = PostgreSQLSchema(connection)
    before, after = schema.refresh()
    assert before == {("type", "public.mood enum (a, b)")} and after == set()
    assert set(schema.objects) == {("r", 10)}
    assert schema.created == set()


def test_an_index_rebuilt_under_a_new_oid_replaces_the_old_one() -> None:
    # ALTER COLUMN TYPE rebuilds the table's indexes: new oids, no event for the old ones.
    rebuilt = [
        ("r", 12, "relation", "i public.ix_item"),
        ("r", 12, "index", "CREATE INDEX ix_item"),
    ]
    connection = Catalog(
        results=[
            [(True,)],
            *([[]] * len(PROBE_SQL)),
            ITEM + INDEX,
            [("k", 12, "r", None), *rebuilt],
        ]
    )
    schema = PostgreSQLSchema(connection)
    before, after = schema.refresh()
    assert before == {row[2:] for row in INDEX} and after == {row[2:] for row in rebuilt}
    assert set(schema.objects) == {("r", 10), ("r", 12)}
    # The new one is known by its name too: the next rebuild replaces it in turn.
    again = [("r", 13, "relation", "i public.ix_item"), ("r", 13, "index", "CREATE INDEX ix_item")]
    connection.results.append([("k", 13, "r", None), *again])
    schema.refresh()
    assert set(schema.objects) == {("r", 10), ("r", 13)}


def test_what_the_triggers_cannot_pin_down_makes_a_full_read() -> None:
    connection = Catalog(
        results=[
            [(True,)],
            *([[]] * len(PROBE_SQL)),
            ITEM,
            [("x", 0, "", None), ("k", 10, "r", None)],
            ITEM + MOOD,
        ]
    )
    schema = PostgreSQLSchema(connection)
    before, after = schema.refresh()
    assert [sql for sql, _ in connection.sql[-2:]] == [SNAPSHOT_TOUCHED, SNAPSHOT_ALL]
    assert before == set(ITEM_ROWS) and after == set(ITEM_ROWS) | {MOOD[0][2:]}
    assert schema.created == set()
