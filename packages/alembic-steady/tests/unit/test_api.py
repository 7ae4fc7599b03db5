"""runner/api.py: what `Migrations` hands Alembic (the config env.py reads) and where it runs;
the runs themselves are the live tiers' (tests/postgresql/test_pg_runner.py, test_pg_live.py)."""

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from support import DEFAULT_URL, LINEAR, Settings, StandInEngine, make_project, write_revisions

from alembic_steady import MAKE, Project
from alembic_steady.runner import api
from alembic_steady.runner.api import Migrations, outside_running_loop


@pytest.fixture
def migrations(tmp_path: Path) -> Migrations:
    return Migrations(make_project(tmp_path / "100%"))


def test_the_config_needs_no_ini_file_and_keeps_a_percent_in_the_path(
    migrations: Migrations,
) -> None:
    config = migrations.alembic_config()
    assert config.get_main_option("script_location") == str(migrations.project.migrations)
    assert config.get_main_option("path_separator") == "os"
    assert config.attributes == {"configure_logger": False}  # the app's logging is kept


def test_the_config_carries_the_target_the_connection_and_the_words(
    migrations: Migrations,
) -> None:
    connection: Any = object()
    config = migrations.alembic_config(DEFAULT_URL, connection, MAKE)
    assert config.attributes["url"] is DEFAULT_URL
    assert config.attributes["connection"] is connection
    assert config.attributes["commands"] is MAKE


def test_the_script_heads_are_read_from_the_revision_files(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    write_revisions(project.migrations / "versions", (*LINEAR, ("x", "a")))
    assert Migrations(project).script_heads() == {"c", "x"}


def test_the_pending_revisions_run_in_order_from_where_the_database_stands(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    write_revisions(project.migrations / "versions", LINEAR)
    migrations = Migrations(project)
    assert [r.revision for r in migrations.pending(set())] == ["a", "b", "c"]
    assert [r.revision for r in migrations.pending({"a"})] == ["b", "c"]
    assert migrations.pending({"c"}) == []
    with pytest.raises(CommandError) as unknown:
        migrations.pending({"zz", "a", "yy"})
    assert str(unknown.value) == (
        "the database is at yy, zz, which no revision file here has: check out the branch it "
        "was migrated from, or point DATABASE_URL at the right database"
    )


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]]:
    """The Alembic commands run, with the config each got and the thread each ran in."""
    calls: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def run(config: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["thread"] = threading.get_ident()
            calls.append((name, config, args, kwargs))

        return run

    monkeypatch.setattr(api.command, "upgrade", recorder("upgrade"))
    monkeypatch.setattr(api.command, "current", recorder("current"))
    monkeypatch.setattr(api.command, "check", recorder("check"))
    return calls


def test_an_upgrade_tells_env_py_its_command_and_whether_signals_cancel_it(
    migrations: Migrations, ran: list[Any]
) -> None:
    migrations.upgrade("b2", url=DEFAULT_URL, commands=MAKE, cancel_on_signals=True)
    [(name, config, args, kwargs)] = ran
    assert (name, args) == ("upgrade", ("b2",))
    assert kwargs["thread"] == threading.get_ident()  # no event loop here: run in place
    assert config.attributes["command"] == "upgrade"
    assert config.attributes["cancel_on_signals"] is True
    assert config.attributes["url"] is DEFAULT_URL and config.attributes["commands"] is MAKE


def test_an_upgrade_of_a_tenant_schema_tells_env_py_the_schema(
    migrations: Migrations, ran: list[Any]
) -> None:
    migrations.upgrade(url=DEFAULT_URL, schema="acme")
    [(_, config, _, _)] = ran
    assert config.attributes["schema"] == "acme"
    migrations.upgrade(url=DEFAULT_URL)
    assert "schema" not in ran[-1][1].attributes  # the database's own: no schema named


def test_a_check_of_a_tenant_names_the_command_the_target_and_the_words(
    migrations: Migrations, ran: list[Any]
) -> None:
    async def in_a_loop() -> None:
        migrations.check(url=DEFAULT_URL, schema="acme", commands=MAKE)

    asyncio.run(in_a_loop())
    [(name, config, args, kwargs)] = ran
    assert (name, args) == ("check", ())
    assert kwargs["thread"] != threading.get_ident()  # a running loop: off to a worker thread
    assert config.attributes["command"] == "check" and config.attributes["schema"] == "acme"
    assert config.attributes["url"] is DEFAULT_URL and config.attributes["commands"] is MAKE
    assert "connection" not in config.attributes


def test_an_upgrade_goes_to_head_and_leaves_signals_to_the_caller_by_default(
    migrations: Migrations, ran: list[Any]
) -> None:
    migrations.upgrade()
    [(_, config, args, _)] = ran
    assert args == ("head",) and config.attributes["cancel_on_signals"] is False


def test_an_upgrade_on_the_callers_connection_runs_in_its_thread_even_in_a_loop(
    migrations: Migrations, ran: list[Any]
) -> None:
    connection: Any = object()

    async def main() -> None:
        migrations.upgrade("b2", connection=connection)  # as from conn.run_sync(...)

    asyncio.run(main())
    [(_, config, args, kwargs)] = ran
    assert args == ("b2",) and config.attributes["connection"] is connection
    assert kwargs["thread"] == threading.get_ident()


def test_an_upgrade_inside_a_running_loop_runs_in_a_worker_thread(
    migrations: Migrations, ran: list[Any]
) -> None:
    async def main() -> None:
        migrations.upgrade()  # asyncio.run() of env.py cannot nest in this loop

    asyncio.run(main())
    [(_, _, _, kwargs)] = ran
    assert kwargs["thread"] != threading.get_ident()


def test_an_async_upgrade_runs_off_the_event_loop(migrations: Migrations, ran: list[Any]) -> None:
    url = URL.create("postgresql+asyncpg", host="db", database="shop")
    asyncio.run(migrations.upgrade_async("b2", url=url))
    [(_, config, args, kwargs)] = ran
    assert args == ("b2",) and config.attributes["url"] is url
    assert kwargs["thread"] != threading.get_ident()
    asyncio.run(migrations.upgrade_async())
    assert ran[1][2] == ("head",)


def test_current_prints_verbosely_in_the_callers_words(
    migrations: Migrations, ran: list[Any]
) -> None:
    migrations.current(commands=MAKE)
    [(name, config, args, kwargs)] = ran
    assert (name, args, kwargs["verbose"]) == ("current", (), True)
    assert config.attributes["command"] == "current" and config.attributes["commands"] is MAKE


def test_outside_a_loop_a_function_runs_here_with_its_arguments() -> None:
    seen: list[tuple[object, ...]] = []
    outside_running_loop(lambda *args: seen.append((*args, threading.get_ident())), 1, "two")
    assert seen == [(1, "two", threading.get_ident())]


def test_waiting_for_head_passes_its_bounds_and_the_module_clis_words(
    migrations: Migrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Any, ...]] = []

    async def wait(self: Migrations, *args: Any) -> None:
        asked.append(args)

    monkeypatch.setattr(Migrations, "_wait_for_head", wait)
    migrations.wait_for_head(30.0, interval=0.5, url=DEFAULT_URL)
    migrations.wait_for_head(5.0, commands=MAKE)
    assert asked == [
        (30.0, 0.5, DEFAULT_URL, migrations.project.module_commands),
        (5.0, 1.0, None, MAKE),
    ]


def test_at_head_means_the_databases_heads_are_the_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    write_revisions(project.migrations / "versions", LINEAR)
    read: list[object] = []
    database = {"heads": {"b"}}

    def current_heads(connection: object) -> set[str]:
        read.append(connection)
        return database["heads"]

    monkeypatch.setattr(Migrations, "current_heads", staticmethod(current_heads))
    connection: Any = object()
    assert not Migrations(project).is_at_head(connection)
    database["heads"] = {"c"}
    assert Migrations(project).is_at_head(connection)
    assert read == [connection, connection]


def test_accepting_an_edit_hands_the_project_its_revisions_and_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    write_revisions(project.migrations / "versions", LINEAR)
    asked: list[tuple[Any, ...]] = []

    def accept_edit(*args: Any) -> str:
        asked.append((*args, threading.get_ident()))
        return "/v/b_step.py"

    monkeypatch.setattr(api, "accept_edit", accept_edit)
    assert Migrations(project).accept_edit("b", url=DEFAULT_URL) == "/v/b_step.py"
    ((given, script, revision, url, thread),) = asked
    assert given is project and revision == "b" and url is DEFAULT_URL
    assert script.get_current_head() == "c" and thread == threading.get_ident()

    async def in_a_loop() -> str:
        return Migrations(project).accept_edit("a")

    assert asyncio.run(in_a_loop()) == "/v/b_step.py"
    assert asked[1][3] is None and asked[1][4] != threading.get_ident()


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list[StandInEngine]:
    """The engines wait_for_head makes: stand-ins answering from `database`."""
    engines: list[StandInEngine] = []

    def engine(url: Any, **kwargs: Any) -> StandInEngine:
        engines.append(StandInEngine(url, **kwargs))
        return engines[-1]

    monkeypatch.setattr(api, "create_async_engine", engine)
    return engines


@pytest.fixture
def waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A project at c (scripts a, b, c) whose database is at `heads`; what the ledger verified."""
    project = make_project(tmp_path, settings=lambda: Settings())
    write_revisions(project.migrations / "versions", LINEAR)
    state: dict[str, Any] = {
        "heads": {"c"},
        "script heads": {"c"},
        "verified": [],
        "project": project,
    }
    monkeypatch.setattr(Migrations, "current_heads", staticmethod(lambda c: state["heads"]))

    class Ledger:
        def __init__(self, script: Any) -> None:
            assert set(script.get_heads()) == set(state["script heads"])

        def verify(self, connection: Any, heads: Any, commands: Any) -> None:
            state["verified"].append((connection, heads, commands))

    monkeypatch.setattr(api, "Ledger", Ledger)
    return state


def test_at_head_wait_for_head_compares_the_checksums_and_returns(
    waiting: dict[str, Any], stand_in: list[StandInEngine]
) -> None:
    Migrations(waiting["project"]).wait_for_head(5, interval=0.01)
    (engine,) = stand_in
    assert engine.url == DEFAULT_URL and engine.opened == ["connect"] and engine.disposed
    assert engine.kwargs["poolclass"] is api.pool.NullPool
    # Named as the service (not its migrations): a probe, not a migration session.
    assert engine.kwargs["connect_args"]["server_settings"]["application_name"] == "shop"
    words = waiting["project"].module_commands
    assert waiting["verified"] == [(engine.connection, {"c"}, words)]


def test_below_head_wait_for_head_says_where_the_database_is_after_its_timeout(
    waiting: dict[str, Any], stand_in: list[StandInEngine]
) -> None:
    waiting["heads"] = {"b"}
    with pytest.raises(TimeoutError) as waited:
        Migrations(waiting["project"]).wait_for_head(0.05, interval=0.01, commands=MAKE)
    assert str(waited.value) == (
        "Not at head after 0.05s: the database is at b, head is c: run the migrations "
        "(make migrate)."
    )
    assert len(stand_in[0].opened) >= 2 and stand_in[0].disposed
    assert waiting["verified"] == []
    waiting["heads"] = set()
    with pytest.raises(TimeoutError, match=r"the database is at base \(empty\), head is c"):
        Migrations(waiting["project"]).wait_for_head(0.01, interval=0.01)


def test_a_server_not_up_yet_is_waited_for_and_named(
    waiting: dict[str, Any], stand_in: list[StandInEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = StandInEngine.__init__

    def refusing(self: StandInEngine, url: Any, **kwargs: Any) -> None:
        original(self, url, **kwargs)
        self.refuse = OSError("Connect call failed\nsecond line")

    monkeypatch.setattr(StandInEngine, "__init__", refusing)
    with pytest.raises(TimeoutError) as waited:
        Migrations(waiting["project"]).wait_for_head(0.03, interval=0.01)
    assert str(waited.value) == (
        "Not at head after 0.03s: cannot connect (OSError: Connect call failed)."
    )


def test_every_head_is_named_where_there_are_several(
    waiting: dict[str, Any], stand_in: list[StandInEngine]
) -> None:
    write_revisions(waiting["project"].migrations / "versions", [("x", "a")])
    waiting["heads"], waiting["script heads"] = {"x", "b"}, {"c", "x"}
    with pytest.raises(TimeoutError) as waited:
        Migrations(waiting["project"]).wait_for_head(0.01, interval=0.01)
    assert "the database is at b, x, head is c, x: run the migrations" in str(waited.value)


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (
            OperationalError("SELECT 1", {}, OSError("server closed\nmore")),
            "OperationalError: server closed",
        ),
        (OSError(), "OSError: "),
    ],
)
def test_the_connection_error_is_named_by_its_first_line(
    waiting: dict[str, Any],
    stand_in: list[StandInEngine],
    monkeypatch: pytest.MonkeyPatch,
    refusal: BaseException,
    said: str,
) -> None:
    original = StandInEngine.__init__

    def refusing(self: StandInEngine, url: Any, **kwargs: Any) -> None:
        original(self, url, **kwargs)
        self.refuse = refusal

    monkeypatch.setattr(StandInEngine, "__init__", refusing)
    with pytest.raises(TimeoutError) as waited:
        Migrations(waiting["project"]).wait_for_head(0.01, interval=0.01)
    assert str(waited.value).endswith(f": cannot connect ({said}).")


def test_the_last_check_is_the_one_before_the_timeout_would_pass(
    waiting: dict[str, Any], stand_in: list[StandInEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clock of the test's own: each pause moves it on by the interval, exactly.
    clock = [100.0]

    async def pause(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(api.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(api.asyncio, "sleep", pause)
    waiting["heads"] = {"b"}
    with pytest.raises(TimeoutError):
        Migrations(waiting["project"]).wait_for_head(1.0, interval=0.25)
    # Checks at 0, 0.25, 0.5, 0.75 and 1.0 s: one more pause would pass the timeout.
    assert len(stand_in[0].opened) == 5 and clock[0] == 101.0


# -- an empty revision where its phase belongs (make migration-empty) ---------------------------

MAKO = '''"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}
'''


def blank_project(tmp_path: Path, ini: bool = False) -> Project:
    project = make_project(tmp_path)
    write_revisions(project.versions, [("a", None), ("b", "a")])
    (project.migrations / "script.py.mako").write_text(MAKO, encoding="utf-8")
    if ini:  # the project's own naming of revision files
        (tmp_path / "alembic.ini").write_text(
            f"[alembic]\nscript_location = {project.migrations}\n"
            "file_template = %%(rev)s_own_%%(slug)s\n",
            encoding="utf-8",
        )
    return project


def written(project: Project, message: str) -> Any:
    [script] = [s for s in Migrations(project).script().walk_revisions() if s.doc == message]
    return script


def test_an_empty_post_revision_starts_the_post_line_then_follows_it(tmp_path: Path) -> None:
    project = blank_project(tmp_path)
    migrations = Migrations(project)
    migrations.new_revision("drop legacy", phase="post")
    first = written(project, "drop legacy")
    assert (first.down_revision, first.dependencies) == (None, "b")
    assert first.branch_labels == {"post"}
    migrations.new_revision("add sku")  # a pre one: on the pre line's head
    pre = written(project, "add sku")
    assert pre.down_revision == "b"
    migrations.new_revision("drop sku default", phase="post")
    second = written(project, "drop sku default")
    assert (second.down_revision, second.dependencies) == (first.revision, pre.revision)
    assert migrations.phases().problems() == []


def test_an_empty_revision_is_named_as_the_projects_alembic_ini_says(tmp_path: Path) -> None:
    project = blank_project(tmp_path, ini=True)
    Migrations(project).new_revision("add sku")
    assert [p.name for p in project.versions.glob("*_own_add_sku.py")] != []


def test_an_upgrade_of_one_phase_tells_env_py_the_phase(
    migrations: Migrations, ran: list[Any]
) -> None:
    migrations.upgrade(url=DEFAULT_URL, phase="pre")
    assert ran[-1][1].attributes["phase"] == "pre"
    migrations.upgrade(url=DEFAULT_URL)
    assert "phase" not in ran[-1][1].attributes  # both phases: none named


def test_with_phases_wait_for_head_waits_for_the_pre_revisions_and_says_so(
    waiting: dict[str, Any], stand_in: list[StandInEngine]
) -> None:
    project = waiting["project"]
    post = (
        '"""post"""\nrevision = "p"\ndown_revision = None\nbranch_labels = ("post",)\n'
        'depends_on = "b"\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n'
    )
    (project.migrations / "versions" / "p_post.py").write_text(post, encoding="utf-8")
    waiting["script heads"] = {"c", "p"}
    waiting["heads"] = {"b", "p"}
    with pytest.raises(TimeoutError) as waited:
        Migrations(project).wait_for_head(0.03, interval=0.01, commands=MAKE)
    assert str(waited.value) == (
        "Not at head after 0.03s: the database is at b, p, head is c: run the migrations "
        "(make migrate phase=pre)."
    )
    waiting["heads"] = {"c"}  # the pre revisions, the post one still to come: at head
    Migrations(project).wait_for_head(1, interval=0.01, commands=MAKE)
    assert waiting["verified"][-1][1] == {"c"}
