"""tools/devdb.py: `.env` pointed at the development database, never touching a user's own
DATABASE_URL; `reset` refusals, which need no server."""

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url
from support import Settings, make_project, pg_error

from alembic_steady import Project
from alembic_steady.dialects.mysql_clients import MySQLClients
from alembic_steady.dialects.postgresql_clients import PostgreSQLClients
from alembic_steady.tools.devdb import (
    ACTIONS,
    MARKER,
    on_this_machine,
    point_env_file_at,
    reset,
    write_private,
)

URL_1 = "postgresql://postgres@/shop?host=/src/shop/.devdb"
URL_2 = "postgresql://postgres@/shop?host=/srv/other/.devdb"

EXAMPLE = """\
# Copy to .env at the project root.
ENVIRONMENT=development

# DATABASE_URL=postgresql://postgres:postgres@localhost:5432/shop

DB_HOST=localhost
DB_PORT=5432
DB_USER=postgres
DB_PASSWORD=postgres
DB_NAME=shop
DB_CONNECT_TIMEOUT=10
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


def env_file(project: Project) -> Path:
    return project.folder / ".env"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_env_is_created_from_the_example_with_db_parts_commented_out(project: Project) -> None:
    (project.folder / ".env.example").write_text(EXAMPLE, encoding="utf-8")
    assert point_env_file_at(project, URL_1) == "created .env for it"
    assert env_file(project).read_text(encoding="utf-8") == (
        "# Copy to .env at the project root.\n"
        "ENVIRONMENT=development\n"
        "\n"
        "# DATABASE_URL=postgresql://postgres:postgres@localhost:5432/shop\n"
        "\n"
        "# DB_HOST=localhost\n"
        "# DB_PORT=5432\n"
        "# DB_USER=postgres\n"
        "# DB_PASSWORD=postgres\n"
        "# DB_NAME=shop\n"
        "DB_CONNECT_TIMEOUT=10\n"  # not a part of the URL: stays active
        f"DATABASE_URL={URL_1}  {MARKER}\n"
    )
    assert mode(env_file(project)) == 0o600


def test_env_is_created_without_an_example(project: Project) -> None:
    assert point_env_file_at(project, URL_1) == "created .env for it"
    assert env_file(project).read_text(encoding="utf-8") == f"DATABASE_URL={URL_1}  {MARKER}\n"
    assert mode(env_file(project)) == 0o600


def test_its_own_line_is_replaced(project: Project) -> None:
    point_env_file_at(project, URL_1)
    env = env_file(project)
    env.write_text(f"ENVIRONMENT=development\n{env.read_text()}DEBUG=1\n", encoding="utf-8")
    env.chmod(0o644)
    assert point_env_file_at(project, URL_2) == "updated .env"
    assert env.read_text(encoding="utf-8") == (
        f"ENVIRONMENT=development\nDATABASE_URL={URL_2}  {MARKER}\nDEBUG=1\n"
    )
    assert mode(env) == 0o600  # made private again


def test_its_own_line_is_replaced_with_a_url_holding_a_backslash(project: Project) -> None:
    point_env_file_at(project, URL_1)
    odd = r"postgresql://postgres@/shop?host=/src/a\1b/.devdb"
    assert point_env_file_at(project, odd) == "updated .env"
    assert env_file(project).read_text(encoding="utf-8") == f"DATABASE_URL={odd}  {MARKER}\n"


@pytest.mark.parametrize(
    "line",
    [
        "DATABASE_URL=postgresql://me:pw@db/shop",
        "  DATABASE_URL = postgresql://me:pw@db/shop",
    ],
)
def test_a_users_database_url_is_left_alone(project: Project, line: str) -> None:
    text = f"ENVIRONMENT=development\n{line}\n"
    env_file(project).write_text(text, encoding="utf-8")
    assert point_env_file_at(project, URL_1) == (
        f"left your DATABASE_URL in .env as it is; to use this server set DATABASE_URL={URL_1}"
    )
    assert env_file(project).read_text(encoding="utf-8") == text


def test_a_url_is_added_to_an_env_without_one(project: Project) -> None:
    env_file(project).write_text(
        "ENVIRONMENT=development\n# DATABASE_URL=postgresql://x@y/z\n\n", encoding="utf-8"
    )
    assert point_env_file_at(project, URL_1) == "added DATABASE_URL to .env"
    assert env_file(project).read_text(encoding="utf-8") == (
        "ENVIRONMENT=development\n"
        "# DATABASE_URL=postgresql://x@y/z\n"
        f"DATABASE_URL={URL_1}  {MARKER}\n"
    )
    assert mode(env_file(project)) == 0o600


def test_the_example_is_left_as_it_is(project: Project) -> None:
    example = project.folder / ".env.example"
    example.write_text(EXAMPLE, encoding="utf-8")
    point_env_file_at(project, URL_1)
    assert example.read_text(encoding="utf-8") == EXAMPLE


# -- reset's refusals ----------------------------------------------------------------------


def with_settings(project: Project, settings: Settings) -> Project:
    return replace(project, settings=lambda: settings)


def test_reset_runs_only_in_development(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert reset(with_settings(project, Settings(environment="staging"))) == 1
    err = capsys.readouterr().err
    assert "Refusing: make db-reset drops the database, and ENVIRONMENT is staging." in err
    assert "Database: shop" in err  # which database it is about, first


@pytest.mark.parametrize(
    ("driver", "database"),
    [
        ("postgresql+asyncpg", "postgres"),
        ("postgresql+asyncpg", "template1"),
        ("postgresql+asyncpg", None),
        ("mysql+aiomysql", "mysql"),
        ("mysql+aiomysql", "INFORMATION_SCHEMA"),
    ],
)
def test_reset_never_drops_the_servers_own_database(
    project: Project, capsys: pytest.CaptureFixture[str], driver: str, database: str | None
) -> None:
    url = URL.create(driver, "root", "pw", "localhost", None, database)
    assert reset(with_settings(project, Settings(url=url))) == 1
    assert f"Refusing to drop the server's own database {database!r}." in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:pw@db.shared.internal:5432/shop",
        "mysql+aiomysql://app:pw@mysql.shared.invalid:3306/shop",
    ],
)
def test_reset_refuses_a_server_elsewhere_without_confirm(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    # A shared development server: ENVIRONMENT=development (the default) is not enough there.
    monkeypatch.delenv("CONFIRM", raising=False)
    assert reset(with_settings(project, Settings(url=make_url(url)))) == 1
    err = capsys.readouterr().err
    assert "Refusing: make db-reset drops database 'shop' on " in err
    assert "make db-reset CONFIRM=yes" in err and ":pw@" not in err


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql+asyncpg://postgres@/shop?host=/src/shop/.devdb", True),
        ("postgresql+asyncpg://postgres@/shop", True),  # libpq's default socket
        ("postgresql+asyncpg://postgres:pw@localhost:5432/shop", True),
        ("mysql+aiomysql://root@127.0.0.1:3306/shop", True),
        ("postgresql+asyncpg://postgres@[::1]:5432/shop", True),
        ("postgresql+asyncpg://app@db.shared.internal/shop", False),
        ("postgresql+asyncpg://app@/shop?host=db.shared.internal", False),
    ],
)
def test_the_servers_make_db_up_runs_are_on_this_machine(url: str, local: bool) -> None:
    assert on_this_machine(make_url(url)) is local


def test_a_private_file_is_never_readable_by_others_even_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".env"
    modes: list[int] = []
    chmod = Path.chmod

    def chmod_seen(self: Path, new_mode: int) -> None:
        modes.append(mode(self))
        chmod(self, new_mode)

    monkeypatch.setattr(Path, "chmod", chmod_seen)
    umask = os.umask(0)  # the file's rights come from the code alone
    try:
        write_private(path, "DB_PASSWORD=s3cret\n")
    finally:
        os.umask(umask)
    assert modes == [0o600]  # private from its creation, before the chmod
    assert path.read_text(encoding="utf-8") == "DB_PASSWORD=s3cret\n"


# -- reset ---------------------------------------------------------------------------------


@pytest.fixture
def recreated(monkeypatch: pytest.MonkeyPatch) -> list[tuple[URL, object]]:
    """PostgreSQL's recreate, recorded instead of run."""
    calls: list[tuple[URL, object]] = []

    async def recreate(self: PostgreSQLClients, url: URL, settings: object) -> None:
        calls.append((url, settings))

    monkeypatch.setattr(PostgreSQLClients, "recreate", recreate)
    return calls


LOCAL = make_url("postgresql+asyncpg://postgres:pw@localhost:5432/shop")
MY_LOCAL = make_url("mysql+aiomysql://root@127.0.0.1:3306/shop")


def test_reset_recreates_the_database_and_says_what_next(
    project: Project, capsys: pytest.CaptureFixture[str], recreated: list[tuple[URL, object]]
) -> None:
    settings = Settings(url=LOCAL)
    assert reset(with_settings(project, settings)) == 0
    assert recreated == [(LOCAL, settings)]
    assert capsys.readouterr().out == (
        "Database shop dropped and created empty; make migrate applies the schema.\n"
    )


def test_confirm_yes_resets_a_server_elsewhere(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    recreated: list[tuple[URL, object]],
) -> None:
    monkeypatch.setenv("CONFIRM", "yes")
    url = make_url("postgresql+asyncpg://app:pw@db.shared.internal:5432/shop")
    assert reset(with_settings(project, Settings(url=url))) == 0
    assert [called for called, _ in recreated] == [url]


@pytest.mark.parametrize("confirm", ["YES", "y", "no"])
def test_only_confirm_yes_resets_a_server_elsewhere(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    recreated: list[tuple[URL, object]],
    capsys: pytest.CaptureFixture[str],
    confirm: str,
) -> None:
    monkeypatch.setenv("CONFIRM", confirm)
    url = make_url("postgresql+asyncpg://app:pw@db.shared.internal:5432/shop")
    assert reset(with_settings(project, Settings(url=url))) == 1
    assert recreated == []
    assert capsys.readouterr().err.endswith(
        "Refusing: make db-reset drops database 'shop' on db.shared.internal, a server "
        "elsewhere (make db-up's servers run on this machine: localhost or a socket), which "
        "others may use. If it is yours to empty, run make db-reset CONFIRM=yes.\n"
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            pg_error("57P03", "the database system is starting up\nDETAIL: x"),
            "the database system is starting up",
        ),
        (ConnectionRefusedError(), "ConnectionRefusedError"),
        (OSError("  Connect call failed  "), "Connect call failed"),
    ],
)
def test_a_failed_reset_says_why_in_the_drivers_words(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    reason: str,
) -> None:
    async def recreate(self: PostgreSQLClients, url: URL, settings: object) -> None:
        raise error

    monkeypatch.setattr(PostgreSQLClients, "recreate", recreate)
    assert reset(with_settings(project, Settings(url=LOCAL))) == 1
    out, err = capsys.readouterr()
    assert err.endswith(f"Reset failed: {reason}. Is the server running (make db-up)?\n")
    assert out == ""


@pytest.mark.parametrize("action", ["start", "stop"])
def test_start_and_stop_are_the_configured_servers(
    project: Project, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    ran: list[tuple[str, Project]] = []
    for clients in (PostgreSQLClients, MySQLClients):
        monkeypatch.setattr(
            clients,
            f"{action}_dev_server",
            lambda self, given, name=clients.__name__: ran.append((name, given)) or 5,
        )
    for url, name in ((LOCAL, "PostgreSQLClients"), (MY_LOCAL, "MySQLClients")):
        configured = with_settings(project, Settings(url=url))
        assert ACTIONS[action](configured) == 5
        assert ran[-1] == (name, configured)
