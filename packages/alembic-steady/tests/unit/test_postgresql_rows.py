"""dialects/postgresql_rows.py without a server: the values generated per column type (the SQL
the walk inserts), the order of tables by foreign key, and how refused rows are retried, on a
connection that records and answers."""

from typing import Any

import pytest
from alembic.util import CommandError
from support import FakeConnection, FakeResult, pg_error

from alembic_steady.dialects.postgresql_rows import (
    COLUMNS,
    NEW_TABLES,
    NEW_TABLES_AMONG,
    TRY_INSERTS,
    PostgreSQLRows,
    _Column,
    _insert,
    _referenced_first,
    _row,
)


def column(
    type_: str = "integer",
    *,
    name: str = "c",
    category: str = "N",
    typtype: str = "b",
    base: str | None = None,
    typmod: int = -1,
    not_null: bool = False,
    fills_itself: bool = False,
    unique: bool = False,
    refers: str | None = None,
) -> _Column:
    return _Column(
        name,
        type_,
        category,
        typtype,
        base or type_,
        typmod,
        not_null,
        fills_itself,
        unique,
        refers,
    )


@pytest.mark.parametrize(
    ("made", "values"),
    [
        # Above the range of the next narrower type; a unique column counts up.
        (column("smallint"), ["16384", "16384"]),
        (column("integer", unique=True), ["1073741824", "1073741825"]),
        (column("bigint", unique=True), ["1099511627776", "1099511627777"]),
        (column("numeric(10,2)", base="numeric"), ["CAST(1 AS numeric(10,2))"] * 2),
        (column("real", unique=True), ["CAST(1 AS real)", "CAST(2 AS real)"]),
        # The declared length filled (typmod is the length plus 4); 40 without one.
        (
            column("character varying(6)", category="S", base="character varying", typmod=10),
            ["CAST('0xxxxx' AS character varying(6))"] * 2,
        ),
        (
            column(
                "character varying(5)",
                category="S",
                base="character varying",
                typmod=9,
                unique=True,
            ),
            ["CAST('0xxxx' AS character varying(5))", "CAST('1xxxx' AS character varying(5))"],
        ),
        (column("text", category="S"), ["CAST('0" + "x" * 39 + "' AS text)"] * 2),
        (
            column("character(4)", category="S", base="character", typmod=4),
            ["CAST('0" + "x" * 39 + "' AS character(4))"] * 2,
        ),
        (column("boolean", category="B"), ["true", "true"]),
        (
            column("timestamp with time zone", category="D", base="timestamptz"),
            ["CAST(now() AS timestamp with time zone)"] * 2,
        ),
        (
            column("time without time zone", category="X", base="time"),
            ["CAST(now() AS time without time zone)"] * 2,
        ),
        (column("interval", category="T"), ["CAST('1 day' AS interval)"] * 2),
        (column("mood", category="E", typtype="e"), ["(enum_range(NULL::mood))[1]"] * 2),
        (column("uuid", category="U"), ["gen_random_uuid()"] * 2),
        (
            column("jsonb", category="U", unique=True),
            ["CAST('{\"row\": 0}' AS jsonb)", "CAST('{\"row\": 1}' AS jsonb)"],
        ),
        (column("json", category="U"), ["CAST('{\"row\": 0}' AS json)"] * 2),
        (column("integer[]", category="A", base="integer[]"), ["'{}'", "'{}'"]),
        (column("bytea", category="U", unique=True), ["'\\x00'", "'\\x01'"]),
        (column("point", category="G"), [None, None]),
        (
            column("integer", refers="public.item id"),
            ["(SELECT id FROM public.item ORDER BY 1 LIMIT 1)"] * 2,
        ),
    ],
)
def test_each_type_gets_a_value_that_tests_what_revisions_change(
    made: _Column, values: list[str | None]
) -> None:
    assert [made.value(0), made.value(1)] == values


def test_a_row_leaves_out_columns_that_fill_themselves_and_the_last_row_is_null() -> None:
    columns = [
        column("integer", name="id", fills_itself=True, not_null=True),
        column("integer", name="qty", not_null=True, unique=True),
        column("boolean", name="flag", category="B"),
    ]
    assert _row(columns, 0) == ["1073741824", "true"]
    assert _row(columns, 1) == ["1073741825", "true"]
    assert _row(columns, 2) == ["1073741826", "NULL"]


def test_a_row_that_cannot_fill_a_not_null_column_is_none() -> None:
    columns = [column("point", category="G", not_null=True), column("integer")]
    assert _row(columns, 0) is None
    assert _row([column("point", category="G")], 0) == ["NULL"]


def test_insert_names_the_columns_it_gives() -> None:
    columns = [column("integer", name="id", fills_itself=True), column("integer", name="qty")]
    assert _insert("public.item", columns, [["1"], ["2"]]) == (
        "INSERT INTO public.item (qty) VALUES (1), (2)"
    )
    columns = [column("integer", name="a"), column("integer", name="b")]
    assert _insert("t", columns, [["1", "2"]]) == "INSERT INTO t (a, b) VALUES (1, 2)"


def test_a_table_whose_columns_all_fill_themselves_gets_default_rows() -> None:
    columns = [column("integer", name="id", fills_itself=True), column("x", fills_itself=True)]
    assert _insert("t", columns, [[], [], []]) == (
        "INSERT INTO t (id) VALUES (DEFAULT), (DEFAULT), (DEFAULT)"
    )


def named(*tables: tuple[str, list[_Column]]) -> list[str]:
    return [table for table, _ in _referenced_first(list(tables))]


def test_referenced_tables_come_first() -> None:
    line = ("line", [column(refers="orders id"), column(refers="item id")])
    orders = ("orders", [column(refers="customer id")])
    item = ("item", [column()])
    customer = ("customer", [column()])
    assert named(line, orders, item, customer) == ["item", "customer", "orders", "line"]


def test_a_reference_to_itself_or_to_an_older_table_waits_for_nothing() -> None:
    tree = ("tree", [column(refers="tree id")])
    old = ("audit", [column(refers="users id")])  # users was there before: not among these
    assert named(tree, old) == ["tree", "audit"]


def test_a_cycle_starts_with_its_first_table() -> None:
    a = ("a", [column(refers="b id")])
    b = ("b", [column(refers="a id")])
    c = ("c", [column(refers="a id")])
    # Nothing is ready: the first pending table goes, then the rest as before.
    assert named(c, a, b) == ["c", "a", "b"]
    assert named(a, b) == ["a", "b"]
    assert named(b, a) == ["b", "a"]


# -- the walk's filler on a recording connection -------------------------------------------


class Rows(FakeResult):
    def __iter__(self) -> Any:
        return iter(self.rows)


class Catalog(FakeConnection):
    """Answers like a server, its results iterable as a cursor's rows."""

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Rows:
        return Rows(super().execute(statement, params).rows)

    def exec_driver_sql(self, statement: str) -> Rows:
        self.log.append("driver")
        return self.execute(statement)


TRY = "SELECT pg_temp.alembic_steady_try(CAST(:statements AS text[]))"
# (oid, table, name, type, category, typtype, base, typmod, not null, fills itself, unique, refers)
ITEM = [
    (1, "public.item", "id", "integer", "N", "b", "integer", -1, True, True, True, None),
    (1, "public.item", "qty", "integer", "N", "b", "integer", -1, True, False, False, None),
]
LINE = [
    (
        2,
        "public.line",
        "item_id",
        "integer",
        "N",
        "b",
        "integer",
        -1,
        False,
        False,
        False,
        "public.item id",
    )
]


def test_the_session_function_that_tries_inserts_is_made_first() -> None:
    connection = Catalog()
    filler = PostgreSQLRows(connection, {})
    assert connection.sql == [(TRY_INSERTS, None)]
    assert filler.filled == [] and filler.seen == []


def test_new_tables_get_their_rows_in_one_round_trip() -> None:
    connection = Catalog(results=[[], [(2,), (1,)], LINE + ITEM, [(0,)]])
    filler = PostgreSQLRows(connection, {})
    filler.fill_new_tables()
    # (The list of tables seen is the filler's own, grown since: it held none then.)
    assert connection.sql[1] == (NEW_TABLES, {"seen": filler.seen})
    assert connection.sql[2] == (COLUMNS, {"tables": [2, 1]})
    assert connection.sql[3] == (
        TRY,
        {
            "statements": [
                "INSERT INTO public.item (qty) VALUES (1073741824), (1073741824), (1073741824)",
                "INSERT INTO public.line (item_id) VALUES "
                "((SELECT id FROM public.item ORDER BY 1 LIMIT 1)), "
                "((SELECT id FROM public.item ORDER BY 1 LIMIT 1)), (NULL)",
            ]
        },
    )
    assert filler.filled == ["public.item", "public.line"]
    assert filler.seen == [2, 1]


def test_only_the_relations_a_step_created_are_looked_at() -> None:
    connection = Catalog(results=[[], [(7,)], [], []])
    filler = PostgreSQLRows(connection, {})
    filler.seen = [1]
    filler.fill_new_tables(among={9, 7})
    assert connection.sql[1] == (NEW_TABLES_AMONG, {"seen": filler.seen, "among": [7, 9]})
    assert filler.seen == [1, 7]
    filler.fill_new_tables(among=set())  # no step created a relation: nothing is asked
    assert len(connection.sql) == 3


def test_no_new_table_asks_no_more() -> None:
    connection = Catalog()
    PostgreSQLRows(connection, {}).fill_new_tables()
    assert len(connection.sql) == 2


def test_a_refused_table_gets_its_rows_one_by_one_and_the_next_tables_still_go_in() -> None:
    other = [
        (3, "public.other", "n", "integer", "N", "b", "integer", -1, False, False, False, None)
    ]
    # The item's statement is refused (2nd of 3 tables... here 1st of 2), then row by row: the
    # first row refused, the others in; then the table after it.
    connection = Catalog(
        results=[[], [(1,), (3,)], ITEM + other, [(1,)], [(1,)], [(0,)], [(0,)], [(0,)]]
    )
    filler = PostgreSQLRows(connection, {})
    filler.fill_new_tables()
    tried = [params["statements"] for sql, params in connection.sql if sql == TRY]
    assert tried[1:4] == [
        ["INSERT INTO public.item (qty) VALUES (1073741824)"],
        ["INSERT INTO public.item (qty) VALUES (1073741824)"],
        ["INSERT INTO public.item (qty) VALUES (1073741824)"],
    ]
    assert tried[4] == ["INSERT INTO public.other (n) VALUES (1073741824), (1073741824), (NULL)"]
    assert filler.filled == ["public.item", "public.other"]


def test_a_table_refusing_every_row_is_not_filled() -> None:
    connection = Catalog(results=[[], [(1,)], ITEM, [(1,)], [(1,)], [(1,)], [(1,)]])
    filler = PostgreSQLRows(connection, {})
    filler.fill_new_tables()
    assert filler.filled == []


def test_a_marker_gives_the_rows_of_its_table_in_order() -> None:
    given = {"public.line": "INSERT INTO public.line (item_id) VALUES (NULL)", "public.x": None}
    connection = Catalog(results=[[], [(1,), (2,)], ITEM + LINE, [(0,)]])
    filler = PostgreSQLRows(connection, given)
    filler.fill_new_tables()
    # The item's generated rows first (the line refers to it), then the marker's statement.
    assert connection.sql[3][0] == TRY
    assert connection.sql[4] == ("INSERT INTO public.line (item_id) VALUES (NULL)", None)
    assert filler.filled == ["public.item", "public.line"]
    assert filler.never_seen() == ["public.x"]


def test_no_rows_for_a_table_puts_none_in_it() -> None:
    connection = Catalog(results=[[], [(1,)], ITEM])
    filler = PostgreSQLRows(connection, {"public.item": None})
    filler.fill_new_tables()
    assert [sql for sql, _ in connection.sql[3:]] == []
    assert filler.filled == [] and filler.never_seen() == []


def test_rows_a_marker_gives_that_are_refused_name_the_line() -> None:
    class Refusing(Catalog):
        def exec_driver_sql(self, statement: str) -> Rows:
            if statement.startswith("INSERT"):
                raise pg_error("23502", 'null value in column "qty"\nDETAIL: row')
            return super().exec_driver_sql(statement)

    connection = Refusing(results=[[], [(1,)], ITEM])
    filler = PostgreSQLRows(
        connection, {"public.item": "INSERT INTO public.item (qty) VALUES (NULL)"}
    )
    with pytest.raises(CommandError) as raised:
        filler.fill_new_tables()
    assert str(raised.value) == (
        "The rows the `# migration-tests: rows for public.item` line gives were refused: null "
        'value in column "qty". Fix that INSERT statement.'
    )


def test_a_table_name_holding_a_space_is_referred_to_whole() -> None:
    made = column("integer", refers='public."order line" id')
    assert made.value(0) == '(SELECT id FROM public."order line" ORDER BY 1 LIMIT 1)'
    line = ("public.x", [column(refers='public."order line" id')])
    target = ('public."order line"', [column()])
    assert named(line, target) == ['public."order line"', "public.x"]
    older = ("public.y", [column(refers='public."old table" id')])  # not among the new ones
    assert named(line, older, target) == ["public.y", 'public."order line"', "public.x"]
    itself = ('public."a b"', [column(refers='public."a b" id')])
    assert named(line, itself, target) == ['public."a b"', 'public."order line"', "public.x"]


def test_a_table_referring_to_an_older_one_or_to_itself_goes_before_its_referrers() -> None:
    x = ("x", [column(refers="y id")])
    assert named(x, ("y", [column(refers="users id")])) == ["y", "x"]
    assert named(x, ("y", [column(refers="y id")])) == ["y", "x"]


def test_a_cycle_lets_one_table_go_then_waits_for_the_rest_again() -> None:
    a = ("a", [column(refers="b id")])
    c = ("c", [column(refers="b id")])
    b = ("b", [column(refers="a id")])
    assert named(a, c, b) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("made", "value"),
    [
        (
            column("character varying(1)", category="S", base="character varying", typmod=5),
            "CAST('0' AS character varying(1))",
        ),
        (
            column("timestamp(3) with time zone", category="D", base="timestamp with time zone"),
            "CAST(now() AS timestamp(3) with time zone)",
        ),
    ],
)
def test_edges_of_the_generated_values(made: _Column, value: str) -> None:
    assert made.value(0) == value


def test_tables_after_one_a_marker_fills_get_their_generated_rows() -> None:
    other = [
        (
            3,
            "public.other",
            "line_id",
            "integer",
            "N",
            "b",
            "integer",
            -1,
            False,
            False,
            False,
            "public.line item_id",
        ),
    ]
    given = {"public.line": "INSERT INTO public.line (item_id) VALUES (NULL)"}
    connection = Catalog(results=[[], [(1,), (2,), (3,)], ITEM + LINE + other, [(0,)], [], [(0,)]])
    filler = PostgreSQLRows(connection, given)
    filler.fill_new_tables()
    assert filler.filled == ["public.item", "public.line", "public.other"]
    assert connection.sql[-1][1] == {
        "statements": [
            "INSERT INTO public.other (line_id) VALUES "
            + ", ".join(["((SELECT item_id FROM public.line ORDER BY 1 LIMIT 1))"] * 2)
            + ", (NULL)"
        ]
    }


def test_a_refusal_without_a_driver_error_is_named_too() -> None:
    class Refusing(Catalog):
        def exec_driver_sql(self, statement: str) -> Rows:
            if statement.startswith("INSERT"):
                raise ValueError("  no such table\nmore")
            return super().exec_driver_sql(statement)

    filler = PostgreSQLRows(Refusing(results=[[], [(1,)], ITEM]), {"public.item": "INSERT x"})
    with pytest.raises(CommandError, match=r"line gives were refused: no such table\. Fix"):
        filler.fill_new_tables()


def test_a_table_waiting_for_a_spaced_name_goes_as_soon_as_it_is_placed() -> None:
    target = ('public."order line"', [column()])
    p = ("p", [column()])
    line = ("line", [column(refers='public."order line" id')])
    z = ("z", [column(refers="p id")])
    assert named(line, z, target, p) == ['public."order line"', "p", "line", "z"]
