"""tools/rehearse.py, the parts that need no server: its arguments, the source URL's password
kept off the command line, and the report lines of a step."""

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from support import FakeConnection, Settings, make_project

from alembic_steady import Project
from alembic_steady.dialects.clients import ClientError
from alembic_steady.dialects.measured import Watched
from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.tools import rehearse
from alembic_steady.tools.rehearse import RehearsalError, StepReport, parse

USAGE = "make rehearse file=backups/<name>-<timestamp>.dump, or from=postgresql://user@host/db"


@pytest.fixture(autouse=True)
def no_source_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REHEARSE_FROM", raising=False)


def test_a_dump_file() -> None:
    assert parse(["file=backups/shop-1.dump", "--keep"]) == (Path("backups/shop-1.dump"), None)


def test_a_source_url_without_its_password() -> None:
    assert parse(["from=postgresql+asyncpg://app@db.internal:5433/shop"]) == (
        None,
        make_url("postgresql://app@db.internal:5433/shop"),
    )


def test_a_value_may_hold_an_equals_sign() -> None:
    assert parse(["from=postgresql://app@db/shop?options=-c%20a=1"])[1] == make_url(
        "postgresql://app@db/shop?options=-c%20a=1"
    )


@pytest.mark.parametrize("argv", [[], ["file="], ["file=a.dump", "from=postgresql://db/x"]])
def test_exactly_one_source_is_given(argv: list[str]) -> None:
    with pytest.raises(RehearsalError) as raised:
        parse(argv)
    assert str(raised.value) == f"give one of file=... or from=... (REHEARSE_FROM): {USAGE}"


def test_a_source_that_is_no_url() -> None:
    with pytest.raises(RehearsalError) as raised:
        parse(["from=not a url"])
    assert str(raised.value) == f"from=... is not a database URL: {USAGE}"


def test_a_password_on_the_command_line_is_refused() -> None:
    with pytest.raises(RehearsalError) as raised:
        parse(["from=postgresql://app:s3cret@db/shop"])
    assert str(raised.value) == (
        "from=... holds a password, which the process list (ps) shows to every user of this "
        "machine: give the URL in the environment instead (REHEARSE_FROM=postgresql://user:"
        "password@host/db make rehearse), or keep the password in ~/.pgpass"
    )


def test_the_environment_may_give_the_source_with_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REHEARSE_FROM", "postgresql://app:s3cret@db/shop")
    assert parse([]) == (None, make_url("postgresql://app:s3cret@db/shop"))
    # A file given says which source: the environment's is not a second one.
    with pytest.raises(RehearsalError, match="give one of"):
        parse(["file=a.dump"])
    assert parse(["from=postgresql://app@other/shop"]) == (
        None,
        make_url("postgresql://app@other/shop"),
    )
    monkeypatch.setenv("REHEARSE_FROM", "")
    assert parse(["file=a.dump"]) == (Path("a.dump"), None)


def test_a_steps_report_lists_the_locks_longest_held_first() -> None:
    held = {("item", "ShareLock"): 0.5, ("orders", "AccessExclusiveLock"): 1.0}
    report = StepReport("b2 (add index)", seconds=1.234, watched=Watched(rows=3, held=held))
    assert report.lines(PostgreSQL().mode_name) == [
        "b2 (add index): 1.23 s, 3 row(s) changed",
        "    ACCESS EXCLUSIVE on orders, held 1.00 s",
        "    SHARE on item, held 0.50 s",
    ]
    assert StepReport("a1").lines(str) == ["a1: 0.00 s, 0 row(s) changed"]


def test_first_line_leaves_the_runners_advice_out() -> None:
    error = RuntimeError("Revision a1 failed. Fix the cause and run again.\nmore")
    assert rehearse._first_line(error) == "Revision a1 failed."
    assert rehearse._first_line(RuntimeError("  ")) == "RuntimeError"


def test_an_unreachable_source_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def server_major_version(url: object, settings: object) -> int:
        asked.append(url)
        raise ClientError("Cannot connect")

    monkeypatch.setattr(rehearse, "server_major_version", server_major_version)
    with pytest.raises(RehearsalError) as raised:
        rehearse.source_server(make_url("postgresql://app@db.internal/shop"), Settings())
    assert str(raised.value) == (
        "cannot reach the source database db.internal/shop as app: check from=... (host, port, "
        "user, password) and that it accepts connections"
    )
    assert asked == [make_url("postgresql+asyncpg://app@db.internal/shop")]
    with pytest.raises(RehearsalError, match=r"source database local socket/ as \(default\):"):
        rehearse.source_server(make_url("postgresql://"), Settings())


def test_a_reachable_source_gives_its_major_version(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    asked: list[object] = []
    monkeypatch.setattr(
        rehearse, "server_major_version", lambda url, given: asked.append(given) or 16
    )
    assert rehearse.source_server(make_url("postgresql://app@db/shop"), settings) == 16
    assert asked == [settings]


class Catalog(FakeConnection):
    """A connection whose results are iterated, as a cursor's rows are."""

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        return iter(super().execute(statement, params).all())


def test_schema_is_the_set_of_lines_the_catalog_query_gives() -> None:
    connection = Catalog(results=[[("public.item.id integer not null",), ("x",)]])
    assert rehearse.schema(connection) == {"public.item.id integer not null", "x"}
    assert connection.sql == [(rehearse.SCHEMA, None)]


# -- main's refusals, before any database is touched ---------------------------------------


def configured(tmp_path: Path, url: str, **settings: Any) -> Project:
    project = make_project(tmp_path, package="shop")
    return replace(project, settings=lambda: Settings(url=make_url(url), **settings))


LOCAL = "postgresql+asyncpg://postgres@localhost:5432/shop"


def test_production_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rehearse.main(configured(tmp_path, LOCAL, environment="production"), []) == 1
    assert capsys.readouterr().err == (
        "make rehearse restores a copy into a scratch database: run it against a development "
        "or test server, not production (ENVIRONMENT=production).\n"
    )


@pytest.mark.parametrize("confirm", [None, "YES"])
def test_a_server_elsewhere_needs_confirm_yes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    confirm: str | None,
) -> None:
    if confirm is None:
        monkeypatch.delenv("CONFIRM", raising=False)
    else:
        monkeypatch.setenv("CONFIRM", confirm)
    project = configured(tmp_path, "postgresql+asyncpg://app@db.shared.internal/shop")
    assert rehearse.main(project, ["file=x.dump"]) == 1
    assert capsys.readouterr().err == (
        "make rehearse creates its scratch database on the configured server, "
        "db.shared.internal, which is not on this machine (make db-up's are: localhost or a "
        "socket) and may serve others. Point DATABASE_URL at a development server, or run "
        "again with CONFIRM=yes if that server is there for it.\n"
    )


def test_with_confirm_yes_a_server_elsewhere_gets_as_far_as_the_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONFIRM", "yes")
    project = configured(tmp_path, "postgresql+asyncpg://app@db.shared.internal/shop")
    assert rehearse.main(project, []) == 1
    assert capsys.readouterr().err == (
        f"Nothing rehearsed: give one of file=... or from=... (REHEARSE_FROM): {USAGE}.\n"
    )


def test_a_file_that_is_no_dump_is_named_with_rehearses_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.dump"
    assert rehearse.main(configured(tmp_path, LOCAL), [f"file={missing}"]) == 1
    assert capsys.readouterr().err == (
        f"Nothing rehearsed: {missing} does not exist (make backup writes dumps to backups/): "
        "make rehearse file=backups/<name>-<timestamp>.dump.\n"
    )


def test_the_sigterm_handler_is_put_back(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    rehearse.main(configured(tmp_path, LOCAL), [])
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(
    ("interruption", "name", "status"),
    [(KeyboardInterrupt(), "SIGINT", 130), (rehearse.Stopped(signal.SIGTERM), "SIGTERM", 143)],
)
def test_an_interrupted_rehearsal_says_what_it_left(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    interruption: BaseException,
    name: str,
    status: int,
) -> None:
    def interrupted(argv: list[str]) -> Any:
        raise interruption

    monkeypatch.setattr(rehearse, "parse", interrupted)
    assert rehearse.main(configured(tmp_path, LOCAL), []) == status
    assert capsys.readouterr().err == (
        f"Interrupted by {name}: no scratch database is left; nothing else was changed.\n"
    )


def test_sigterm_unwinds_as_stopped() -> None:
    with pytest.raises(rehearse.Stopped) as raised:
        rehearse.stop(signal.SIGTERM, None)
    assert raised.value.signum == signal.SIGTERM


# -- the round trips -----------------------------------------------------------------------


# What the next schema reads find (by default the same schema), and the steps that fail.
SCHEMAS: list[set[str]] = []
FAILING: set[tuple[str, str]] = set()


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What the round trips run (step, target), and the schema each read finds: by default the
    same every time; a test puts others in `schemas`."""
    ran: list[tuple[str, str]] = []

    def run(engine: object, migrations: object, step: str, target: str) -> None:
        ran.append((step, target))
        if (step, target) in FAILING:
            raise RuntimeError(f"{step} broke\nTraceback ... Fix the cause")

    async def read(engine: object, fn: object, *args: object) -> set[str]:
        return SCHEMAS.pop(0) if SCHEMAS else {"item.id integer"}

    monkeypatch.setattr(rehearse, "run", run)
    monkeypatch.setattr(rehearse, "_read", read)
    SCHEMAS.clear()
    FAILING.clear()
    return ran


def revision(tmp_path: Path, rev: str, *lines: str) -> Any:
    path = tmp_path / f"{rev}.py"
    path.write_text('"""x"""\n' + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return SimpleNamespace(revision=rev, path=str(path), doc="x")


def test_every_pending_revision_goes_down_and_up_from_the_last(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    revisions = [revision(tmp_path, "a"), revision(tmp_path, "b")]
    assert rehearse.round_trip(None, revisions, None) == (None, [])
    assert steps == [
        ("downgrade", "-1"),
        ("upgrade", "b"),
        ("downgrade", "-1"),  # down to a, for a's round trip
        ("downgrade", "-1"),
        ("upgrade", "a"),
    ]


def test_a_schema_that_does_not_come_back_is_named(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    SCHEMAS.extend([{"item.id integer", "ix_item"}, {"item.id integer", "ix_item2", "z"}])
    problem, accepted = rehearse.round_trip(None, [revision(tmp_path, "b")], None)
    assert problem == (
        "revision b does not go down and up again on this data: the schema gains [ix_item2; z], "
        "loses [ix_item]"
    )
    assert accepted == []


def test_a_failing_step_is_named_and_ends_the_round_trips(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    FAILING.add(("downgrade", "-1"))
    revisions = [revision(tmp_path, "a"), revision(tmp_path, "b")]
    problem, _ = rehearse.round_trip(None, revisions, None)
    assert problem == "the downgrade of revision b failed: downgrade broke"
    assert steps == [("downgrade", "-1")]


def test_a_one_way_revision_stops_the_round_trips_there(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    revisions = [
        revision(tmp_path, "a"),
        revision(tmp_path, "b", "# migration-tests: one-way: drops the legacy table"),
        revision(tmp_path, "c"),
    ]
    problem, accepted = rehearse.round_trip(None, revisions, None)
    assert problem is None
    assert accepted == [
        "revision b is one-way (drops the legacy table); the 1 revision(s) below it were not "
        "taken down"
    ]
    assert steps == [("downgrade", "-1"), ("upgrade", "c"), ("downgrade", "-1")]


def test_an_accepted_difference_is_listed_and_stops_the_round_trips(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    SCHEMAS.extend([{"a"}, {"b"}])
    revisions = [
        revision(tmp_path, "a"),
        revision(tmp_path, "b", "# migration-tests: accept stairway: the view is rebuilt later"),
    ]
    problem, accepted = rehearse.round_trip(None, revisions, None)
    assert problem is None
    assert accepted == [
        "revision b does not go down and up again on this data: the schema gains [b], loses "
        "[a] (accepted: the view is rebuilt later); the 1 revision(s) below it were not taken "
        "down"
    ]
    assert steps == [("downgrade", "-1"), ("upgrade", "b")]


def test_the_first_pending_revision_accepted_says_nothing_of_revisions_below(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    only = revision(tmp_path, "a", "# migration-tests: one-way: no way back")
    assert rehearse.round_trip(None, [only], None) == (
        None,
        ["revision a is one-way (no way back)"],
    )


def test_the_round_trips_run_on_the_engine_and_migrations_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, migrations = object(), object()
    seen: list[tuple[object, ...]] = []

    def run(*args: object) -> None:
        seen.append(args[:2])

    async def read(*args: object) -> set[str]:
        seen.append(args)
        return {"x"}

    monkeypatch.setattr(rehearse, "run", run)
    monkeypatch.setattr(rehearse, "_read", read)
    revisions = [revision(tmp_path, "a"), revision(tmp_path, "b")]
    rehearse.round_trip(engine, revisions, migrations)
    assert set(seen) == {(engine, migrations), (engine, rehearse.schema)}


def test_what_the_schema_loses_is_listed_in_order(
    tmp_path: Path, steps: list[tuple[str, str]]
) -> None:
    SCHEMAS.extend([{"b", "a", "c"}, {"c"}])
    problem, _ = rehearse.round_trip(None, [revision(tmp_path, "b")], None)
    assert problem is not None and problem.endswith("gains [], loses [a; b]")


# -- main, around the scratch copy ---------------------------------------------------------


@pytest.fixture
def scratch_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What main does with the scratch database: the copy and the rehearsal, recorded."""
    calls: list[tuple[Any, ...]] = []
    scratch = make_url("postgresql+asyncpg://postgres@localhost/shop_rehearse_1")

    @contextmanager
    def scratch_database(url: Any, settings: Any) -> Iterator[Any]:
        calls.append(("scratch", url, settings))
        yield scratch

    monkeypatch.setattr(rehearse, "scratch_database", scratch_database)
    monkeypatch.setattr(rehearse, "source_server", lambda *a: calls.append(("server", *a)) or 15)
    monkeypatch.setattr(rehearse, "copy_source", lambda *a: calls.append(("copy", *a)))
    monkeypatch.setattr(rehearse, "restore", lambda *a: calls.append(("restore", *a)))
    monkeypatch.setattr(rehearse, "rehearse", lambda *a: calls.append(("rehearse", *a)) or 6)
    return calls


def test_a_dump_file_is_restored_into_the_scratch_copy_and_rehearsed(
    tmp_path: Path, scratch_run: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "shop.dump"
    dump.write_bytes(b"PGDMP\x01\x0e" + b"\x00" * 20)
    project = configured(tmp_path, LOCAL)
    settings = project.settings()
    project = replace(project, settings=lambda: settings)
    assert rehearse.main(project, [f"file={dump}"]) == 6
    scratch = make_url("postgresql+asyncpg://postgres@localhost/shop_rehearse_1")
    assert [call[0] for call in scratch_run] == ["scratch", "restore", "rehearse"]
    assert scratch_run[0] == ("scratch", settings.sqlalchemy_url, settings)
    assert scratch_run[1] == ("restore", dump, scratch, settings)
    assert scratch_run[2][:3] == ("rehearse", scratch, settings)
    assert scratch_run[2][3].project is project
    copied = re.fullmatch(
        r"Copy restored into scratch database shop_rehearse_1 in (\d+\.\d\d) s\.\n",
        capsys.readouterr().out,
    )
    assert copied is not None and float(copied[1]) < 60  # the time it took, not a clock reading


def test_a_source_database_is_copied_with_its_servers_version(
    tmp_path: Path, scratch_run: list[tuple[Any, ...]]
) -> None:
    project = configured(tmp_path, LOCAL)
    settings = project.settings()
    project = replace(project, settings=lambda: settings)
    assert rehearse.main(project, ["from=postgresql://app@prod.internal/shop"]) == 6
    source = make_url("postgresql://app@prod.internal/shop")
    scratch = make_url("postgresql+asyncpg://postgres@localhost/shop_rehearse_1")
    assert scratch_run[:3] == [
        ("server", source, settings),
        ("scratch", settings.sqlalchemy_url, settings),
        ("copy", source, 15, scratch, settings),
    ]
