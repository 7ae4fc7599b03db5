"""dialects/postgresql_schema.py without a server: the stairway's bookkeeping of schema objects
(what a refresh says changed, which relations are new, a rebuilt index under a new oid), on a
connection that answers with catalog rows. The catalog queries run in tests/postgresql."""

from types import SimpleNamespace
from typing import Any

from support import FakeConnection, FakeResult

from alembic_steady.dialects.postgresql_schema import (
    PROBE_SQL,
    ROW_CHANGES,
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
    dialect = SimpleNamespace(server_version_info=(15, 20))

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


def test_what_the_snapshot_does_not_read_is_read_whole_and_said() -> None:
    # An operator, a collation, a default privilege, ...: the stairway cannot compare them, so
    # the walk must not vouch for a round trip that touched one.
    connection = Catalog(
        results=[
            [(True,)],
            *([[]] * len(PROBE_SQL)),
            ITEM,
            [("u", 0, "", None), ("k", 10, "r", None)],
            ITEM,
            [("k", 10, "r", None), *ITEM],
        ]
    )
    schema = PostgreSQLSchema(connection)
    assert schema.complete and not schema.unread
    schema.refresh()
    assert connection.sql[-1] == (SNAPSHOT_ALL, None) and schema.unread
    schema.refresh()
    assert not schema.unread  # said of the steps since the refresh before only


def test_a_checkpoint_puts_back_what_the_tracker_knew() -> None:
    # A refresh inside a transaction that is then rolled back: the tracker goes back with it.
    connection = Catalog(
        results=[[(True,)], *([[]] * len(PROBE_SQL)), ITEM + MOOD, [("k", 20, "t", None)]]
    )
    schema = PostgreSQLSchema(connection)
    known = dict(schema.objects)
    restore = schema.checkpoint()
    schema.refresh()
    assert set(schema.objects) == {("r", 10)}
    restore()
    assert schema.objects == known and schema.created is None


def test_row_changes_are_read_with_each_tables_file() -> None:
    connection = Catalog(
        results=[[(True,)], *([[]] * len(PROBE_SQL)), ITEM + INDEX + MOOD, [(10, 7, 16384)]]
    )
    schema = PostgreSQLSchema(connection)
    assert schema.row_changes() == {10: (7, 16384)}
    assert connection.sql[-1] == (ROW_CHANGES, None)


def test_before_postgresql_15_or_without_a_superuser_row_changes_are_not_told() -> None:
    # Before 15 the counts a session sent reached the statistics some time later: they could
    # not be added up. Without a superuser, no event triggers say what a step touched.
    old = Catalog(results=[[(True,)], *([[]] * len(PROBE_SQL)), ITEM])
    old.dialect = SimpleNamespace(server_version_info=(14, 11))
    for connection in (old, Catalog(results=[[(False,)], ITEM])):
        schema = PostgreSQLSchema(connection)
        assert not schema.complete and schema.row_changes() is None
