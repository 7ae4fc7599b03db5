"""The old release's check without a server: the values made for its rows, the columns its
INSERT names, and which release is taken (testing/old_release.py, old_release_child.py)."""

import datetime
import decimal
import enum
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from git_repo import git, repository

from alembic_steady.testing import markers, old_release
from alembic_steady.testing.old_release_child import NoValue, value, written


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


class AutoString(sa.types.TypeDecorator[str]):
    """As SQLModel's str columns: a TypeDecorator, whose own python_type raises."""

    impl = sa.String
    cache_ok = True


metadata = sa.MetaData()
thing = sa.Table(
    "thing",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(5), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("code", AutoString(length=4), nullable=False),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("ratio", sa.Float, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("naive", sa.DateTime, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("key", sa.Uuid, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Column("colour", sa.Enum(Colour), nullable=False),
    sa.Column("kind", sa.Enum("a", "b", name="kind"), nullable=False),
    sa.Column("made", sa.Integer, server_default="1", nullable=False),
    sa.Column("counted", sa.Integer, default=0, nullable=False),
    sa.Column("double", sa.Integer, sa.Computed("made * 2")),
    sa.Column("odd", sa.types.NullType(), nullable=False),
    sa.Column("maybe", sa.types.NullType(), nullable=True),
)
unkeyed = sa.Table(
    "unkeyed", metadata, sa.Column("code", sa.Integer, primary_key=True, autoincrement=False)
)


def test_each_type_gets_a_value_of_its_own_kind_unique_per_row() -> None:
    c = thing.c
    assert value(c.name, 7) == "old7" and value(c.name, 123) == "old12"  # within String(5)
    assert value(c.note, 3) == "old3"
    assert value(c.code, 12) == "old1"  # the type a TypeDecorator wraps
    assert value(c.flag, 2) is True and value(c.flag, 3) is False
    assert value(c.price, 4) == decimal.Decimal(4)
    assert value(c.ratio, 4) == 4.5
    at, naive = value(c.at, 1), value(c.naive, 1)
    assert at.tzinfo is not None and naive.tzinfo is None
    assert isinstance(value(c.day, 1), datetime.date)
    assert isinstance(value(c.key, 1), uuid.UUID) and value(c.key, 1) != value(c.key, 1)
    assert value(c.data, 5) == {"old": 5}
    assert value(c.blob, 5) == b"old5"
    assert value(c.colour, 0) is Colour.red and value(c.colour, 1) is Colour.blue
    assert value(c.kind, 1) == "b"
    assert value(c.maybe, 1) is None
    with pytest.raises(NoValue, match=r"no value is made for thing.odd"):
        value(c.odd, 1)


def test_the_insert_names_what_the_old_code_sets() -> None:
    named = [column.name for column in thing.columns if written(column)]
    assert "id" not in named  # the generated key
    assert "made" not in named and "counted" not in named  # the server's and SQLAlchemy's default
    assert "double" not in named  # computed
    assert "name" in named and "note" in named
    assert written(unkeyed.c.code)  # a key the code gives


def test_the_release_is_the_variable_else_the_setting_else_the_newest_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(old_release.VARIABLE, raising=False)
    assert old_release.release_ref(tmp_path, None)[0] is None
    assert "is not in a git repository" in old_release.release_ref(tmp_path, None)[1]
    (tmp_path / "a.txt").write_text("a")
    repository(tmp_path)
    assert old_release.release_ref(tmp_path, None) == (
        None,
        f"no tag is reachable from HEAD; set {old_release.VARIABLE}=<git ref> to name one",
    )
    git(tmp_path, "tag", "v1")
    assert old_release.release_ref(tmp_path, None) == ("v1", "the newest tag")
    assert old_release.release_ref(tmp_path, "main") == ("main", "old-release in pyproject.toml")
    monkeypatch.setenv(old_release.VARIABLE, "origin/main")
    assert old_release.release_ref(tmp_path, "main") == ("origin/main", old_release.VARIABLE)


def test_extract_takes_the_source_folder_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "repo" / "src"
    source.mkdir(parents=True)
    (source / "m.py").write_text("old\n")
    repository(tmp_path / "repo", tag="v1")
    (source / "m.py").write_text("new\n")
    got = old_release.extract(source, "v1", tmp_path / "out")
    assert (got / "m.py").read_text() == "old\n"
    with pytest.raises(LookupError, match="git archive v9"):
        old_release.extract(source, "v9", tmp_path / "out2")


def test_a_revision_may_say_it_breaks_the_old_release(tmp_path: Path) -> None:
    path = tmp_path / "r.py"
    path.write_text("# migration-tests: breaks the old release: stopped for this deploy\n")
    assert markers.read(path).breaks_old_release == "stopped for this deploy"
    path.write_text("# migration-tests: breaks the old release\n")
    with pytest.raises(Exception, match="breaks the old release: <reason>"):
        markers.read(path)


def test_the_servers_error_is_said_without_the_drivers_class() -> None:
    from alembic_steady.testing.old_release_child import _server_said

    class Wrapped(Exception):
        def __init__(self, orig: Exception) -> None:
            self.orig = orig

    older = Wrapped(Exception("<class 'asyncpg.exceptions.UndefinedTableError'>: relation x\nLINE"))
    assert _server_said(older) == "relation x"
    assert _server_said(Wrapped(Exception("relation x"))) == "relation x"
    assert _server_said(ValueError("no value")) == "no value"
