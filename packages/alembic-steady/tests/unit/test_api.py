"""runner/api.py: what `Migrations` hands Alembic (the config env.py reads) and where it runs;
the runs themselves are the live tiers' (tests/postgresql/test_pg_runner.py, test_pg_live.py)."""

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL
from support import DEFAULT_URL, LINEAR, make_project, write_revisions

from alembic_steady import MAKE
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
