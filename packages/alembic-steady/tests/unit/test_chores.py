"""tools/backup.py, restore.py and shell.py around their client programs: the files a backup
leaves, the refusals and messages of a restore, a shell's exit status. The programs themselves
(pg_dump, mysql, ...) run in the live tiers; here their Clients methods are stood in for."""

import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url
from support import Settings, make_project

from alembic_steady import Project
from alembic_steady.dialects.clients import ClientError, ToolFailed
from alembic_steady.dialects.mysql_clients import MySQLClients
from alembic_steady.dialects.postgresql_clients import PostgreSQLClients
from alembic_steady.tools import backup, restore, shell

PG_URL = make_url("postgresql+asyncpg://app:pw@localhost:5432/shop")
MY_URL = make_url("mysql+aiomysql://app:pw@localhost:3306/shop")
DUMP = b"-- MySQL dump 10.13\nINSERT INTO t VALUES (1);\n-- Dump completed on 2026-01-01\n"


def configured(tmp_path: Path, url: URL, **settings: object) -> Project:
    project = make_project(tmp_path, package="shop")
    return replace(project, settings=lambda: Settings(url=url, **settings))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- backup --------------------------------------------------------------------------------


def test_a_backup_is_a_private_file_in_a_private_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    written: list[Path] = []

    def dump(self: PostgreSQLClients, url: URL, settings: object, target: Path) -> str:
        target.write_text("dump", encoding="utf-8")
        target.chmod(0o644)
        written.append(target)
        return "pg_dump 16"

    monkeypatch.setattr(PostgreSQLClients, "backup", dump)
    assert backup.main(configured(tmp_path, PG_URL), []) == 0
    [target] = written
    assert target.parent == tmp_path / "backups"
    assert target.name.startswith("shop-") and target.name.endswith(".dump")
    assert len(target.name) == len("shop-20260101-120000.dump")
    assert mode(target.parent) == 0o700 and mode(target) == 0o600
    out, err = capsys.readouterr()
    assert out == (
        f"Backup written to {target} (pg_dump 16). Restore it with: make restore file={target}\n"
    )
    assert err == "Database: shop\n"


def writing(self: PostgreSQLClients, url: URL, settings: object, target: Path) -> str:
    target.write_text("dump", encoding="utf-8")
    return "pg_dump 16"


def test_a_backup_goes_to_the_folder_given_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir(mode=0o755)
    monkeypatch.setattr(PostgreSQLClients, "backup", writing)
    assert backup.main(configured(tmp_path, PG_URL), [str(folder)]) == 0
    assert mode(folder) == 0o700
    assert [path.suffix for path in folder.iterdir()] == [".dump"]
    assert not (tmp_path / "backups").exists()


def test_a_failed_dump_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(self: PostgreSQLClients, url: URL, settings: object, target: Path) -> str:
        target.write_text("half a dump", encoding="utf-8")
        raise ToolFailed("pg_dump failed: see its message above.")

    monkeypatch.setattr(PostgreSQLClients, "backup", failing)
    assert backup.main(configured(tmp_path, PG_URL), []) == 1
    assert list((tmp_path / "backups").iterdir()) == []
    out, err = capsys.readouterr()
    assert err.endswith("pg_dump failed: see its message above. No backup written.\n")
    assert out == ""


def test_a_backup_that_cannot_start_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(self: PostgreSQLClients, url: URL, settings: object, target: Path) -> str:
        raise ClientError("No pg_dump of PostgreSQL 16 or newer on this machine.")

    monkeypatch.setattr(PostgreSQLClients, "backup", missing)
    assert backup.main(configured(tmp_path, PG_URL), []) == 1
    out, err = capsys.readouterr()
    assert err.endswith(
        "No backup written. No pg_dump of PostgreSQL 16 or newer on this machine.\n"
    )
    assert out == ""


# -- restore -------------------------------------------------------------------------------


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def load(self: MySQLClients, url: URL, settings: object, dump: Path) -> str:
        calls.append(dump)
        return "mysql"

    monkeypatch.setattr(MySQLClients, "restore", load)
    return calls


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "shop-20260101-120000.sql"
    path.write_bytes(DUMP)
    return path


@pytest.mark.parametrize("argv", [[], [""]])
def test_restore_without_a_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], restored: list[Path]
) -> None:
    assert restore.main(configured(tmp_path, MY_URL), argv) == 2
    assert capsys.readouterr().err == (
        "Missing file=...: usage: make restore file=backups/<name>-<timestamp>.sql\n"
    )
    assert restored == []


def test_restore_loads_the_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restored: list[Path], dump: Path
) -> None:
    assert restore.main(configured(tmp_path, MY_URL), [str(dump)]) == 0
    assert restored == [dump]
    out, err = capsys.readouterr()
    assert out == f"Restored {dump} into shop (mysql).\n"
    assert err == "Database: shop\n"


def test_restore_refuses_what_is_no_dump_before_touching_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restored: list[Path]
) -> None:
    missing = tmp_path / "nope.sql"
    assert restore.main(configured(tmp_path, MY_URL), [str(missing)]) == 1
    assert capsys.readouterr().err.endswith(
        f"Nothing restored: {missing} does not exist (make backup writes dumps to backups/): "
        "make restore file=backups/<name>-<timestamp>.sql.\n"
    )
    assert restored == []


@pytest.mark.parametrize("confirm", [None, "YES", "no"])
def test_restore_over_production_needs_confirm_yes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restored: list[Path],
    dump: Path,
    confirm: str | None,
) -> None:
    if confirm is None:
        monkeypatch.delenv("CONFIRM", raising=False)
    else:
        monkeypatch.setenv("CONFIRM", confirm)
    project = configured(tmp_path, MY_URL, environment="production")
    assert restore.main(project, [str(dump)]) == 1
    assert capsys.readouterr().err.endswith(
        "Refusing to restore over a production database: it replaces all the database holds "
        "with the dump's contents. Run make backup first, then make restore file=... "
        "CONFIRM=yes.\n"
    )
    assert restored == []
    monkeypatch.setenv("CONFIRM", "yes")
    assert restore.main(project, [str(dump)]) == 0
    assert restored == [dump]


def test_a_failed_restore_says_what_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dump: Path
) -> None:
    def failing(self: MySQLClients, url: URL, settings: object, path: Path) -> str:
        raise ToolFailed("mysql failed (exit 1, see above).")

    monkeypatch.setattr(MySQLClients, "restore", failing)
    assert restore.main(configured(tmp_path, MY_URL), [str(dump)]) == 1
    out, err = capsys.readouterr()
    assert err.endswith("\nmysql failed (exit 1, see above).\n") and out == ""


def test_a_restore_that_cannot_start_changed_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dump: Path
) -> None:
    def missing(self: MySQLClients, url: URL, settings: object, path: Path) -> str:
        raise ClientError("mysql is not installed.")

    monkeypatch.setattr(MySQLClients, "restore", missing)
    assert restore.main(configured(tmp_path, MY_URL), [str(dump)]) == 1
    out, err = capsys.readouterr()
    assert err.endswith("\nNothing restored. mysql is not installed.\n") and out == ""


# -- shell ---------------------------------------------------------------------------------


def test_the_shell_gets_its_arguments_and_its_exit_status_is_the_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[tuple[URL, list[str]]] = []

    def open_shell(self: PostgreSQLClients, url: URL, settings: object, argv: list[str]) -> int:
        ran.append((url, argv))
        return 3

    monkeypatch.setattr(PostgreSQLClients, "shell", open_shell)
    assert shell.main(configured(tmp_path, PG_URL), ["-c", "SELECT 1"]) == 3
    assert ran == [(PG_URL, ["-c", "SELECT 1"])]
    assert capsys.readouterr().err == "Database: shop\n"


def test_a_shell_that_cannot_start_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(self: PostgreSQLClients, url: URL, settings: object, argv: list[str]) -> int:
        raise ClientError("No psql of PostgreSQL 16 or newer on this machine.")

    monkeypatch.setattr(PostgreSQLClients, "shell", missing)
    assert shell.main(configured(tmp_path, PG_URL), []) == 1
    assert capsys.readouterr().err == (
        "Database: shop\nNo psql of PostgreSQL 16 or newer on this machine.\n"
    )


def test_the_chores_hand_the_configured_url_and_settings_to_the_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dump: Path
) -> None:
    seen: list[tuple[str, URL, object]] = []
    monkeypatch.setattr(
        PostgreSQLClients,
        "backup",
        lambda self, url, settings, target: (
            seen.append(("backup", url, settings)) or writing(self, url, settings, target)
        ),
    )
    monkeypatch.setattr(
        PostgreSQLClients,
        "shell",
        lambda self, url, settings, argv: seen.append(("shell", url, settings)) or 0,
    )
    monkeypatch.setattr(
        MySQLClients,
        "restore",
        lambda self, url, settings, path: seen.append(("restore", url, settings)) or "x",
    )
    for chore, url, argv in (
        (backup, PG_URL, []),
        (shell, PG_URL, []),
        (restore, MY_URL, [str(dump)]),
    ):
        settings = Settings(url=url)
        project = replace(
            make_project(tmp_path, package="shop"), settings=lambda given=settings: given
        )
        assert chore.main(project, argv) == 0
        assert seen[-1][1:] == (url, settings)


def test_a_backup_folder_is_private_from_its_creation_nested_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgreSQLClients, "backup", writing)
    folder = tmp_path / "a" / "b"
    modes: list[int] = []
    chmod = Path.chmod

    def chmod_seen(self: Path, new_mode: int) -> None:
        if self == folder:
            modes.append(mode(self))
        chmod(self, new_mode)

    monkeypatch.setattr(Path, "chmod", chmod_seen)
    umask = os.umask(0)
    try:
        assert backup.main(configured(tmp_path, PG_URL), [str(folder)]) == 0
    finally:
        os.umask(umask)
    assert modes == [0o700]


def test_backups_are_stamped_in_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:
        @staticmethod
        def now(tz: object = None) -> datetime:
            # 23:30 in UTC is already the next day east of it.
            utc = datetime(2026, 1, 1, 23, 30, 5, tzinfo=UTC)
            return utc if tz is UTC else utc.astimezone(timezone(timedelta(hours=9)))

    monkeypatch.setattr(backup, "datetime", Clock)
    written: list[Path] = []
    monkeypatch.setattr(
        PostgreSQLClients,
        "backup",
        lambda self, url, settings, target: (
            written.append(target) or writing(self, url, settings, target)
        ),
    )
    assert backup.main(configured(tmp_path, PG_URL), []) == 0
    assert [path.name for path in written] == ["shop-20260101-233005.dump"]


def test_a_dump_program_that_wrote_nothing_still_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(self: PostgreSQLClients, url: URL, settings: object, target: Path) -> str:
        raise ToolFailed("pg_dump failed: see its message above.")

    monkeypatch.setattr(PostgreSQLClients, "backup", failing)
    assert backup.main(configured(tmp_path, PG_URL), []) == 1
    assert capsys.readouterr().err.endswith("No backup written.\n")
