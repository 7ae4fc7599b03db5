"""How the walk's and make rehearse's findings name what they found: schema rows one object part
each, sorted and readable (not Python's tuple reprs); the tables holding generated rows, the
first few and a count (a history's walk fills dozens)."""

from alembic_steady.dialects.base import described
from alembic_steady.testing.walk import some_of


def test_rows_are_listed_as_kind_then_description_sorted() -> None:
    rows = {("type", "public.status open,closed"), ("column", "public.item.name text not null")}
    assert described(rows) == (
        "[column public.item.name text not null; type public.status open,closed]"
    )
    assert described(set()) == "[]"


def test_a_walk_names_the_first_filled_tables_and_counts_the_rest() -> None:
    assert some_of(["a", "b"]) == "a, b"
    assert some_of([f"t{n}" for n in range(50)]) == "t0, t1, t2, t3, t4 and 45 more"


def test_some_of_exactly_as_many_as_shown_says_no_more() -> None:
    assert some_of(["a", "b", "c"], shown=3) == "a, b, c"
    assert some_of(["a", "b", "c", "d"], shown=3) == "a, b, c and 1 more"
