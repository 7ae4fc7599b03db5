"""cli.py: `python -m <package>.migrations`, driven with a recording Migrations stand-in."""

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.util import CommandError
from pydantic import BaseModel, ValidationError
from support import make_project

from alembic_steady import Project, cli
from alembic_steady.tools import devdb


class FakeMigrations:
    """What main() uses of Migrations; `raises` is raised by every command."""

    def __init__(self, project: Project, raises: BaseException | None = None) -> None:
        self.project = project
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.raises = raises

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if self.raises is not None:
            raise self.raises

    def upgrade(self, *args: Any, **kwargs: Any) -> None:
        self._record("upgrade", *args, **kwargs)

    def current(self, *args: Any, **kwargs: Any) -> None:
        self._record("current", *args, **kwargs)

    def wait_for_head(self, *args: Any, **kwargs: Any) -> None:
        self._record("wait_for_head", *args, **kwargs)

    def accept_edit(self, *args: Any, **kwargs: Any) -> str:
        self._record("accept_edit", *args, **kwargs)
        return f"/srv/shop/migrations/versions/{args[0]}_add_notes.py"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, package="shop")


def run(
    project: Project, *argv: str, raises: BaseException | None = None
) -> tuple[int, FakeMigrations]:
    migrations = FakeMigrations(project, raises)
    return cli.main(migrations, list(argv)), migrations


# -- migration commands --------------------------------------------------------------------


def test_upgrade_to_head_in_the_module_clis_words(project: Project) -> None:
    code, migrations = run(project, "upgrade")
    assert code == 0
    # A Job's or a container's PID 1 process only migrates: SIGTERM cancels the statement.
    assert migrations.calls == [
        (
            "upgrade",
            ("head",),
            {
                "commands": project.module_commands,
                "cancel_on_signals": True,
                "schema": None,
                "phase": None,
            },
        )
    ]
    words = migrations.calls[0][2]["commands"]
    assert words.migrate == "python -m shop.migrations upgrade"
    assert words.rollback == "make rollback"


def test_upgrade_to_a_revision(project: Project) -> None:
    _, migrations = run(project, "upgrade", "+1")
    assert migrations.calls[0][1] == ("+1",)


def test_upgrade_of_one_tenant_schema(project: Project) -> None:
    # A new tenant's sign-up migrates its schema alone, not every tenant's.
    _, migrations = run(project, "upgrade", "--schema", "acme")
    assert migrations.calls[0][1] == ("head",) and migrations.calls[0][2]["schema"] == "acme"


def test_current(project: Project) -> None:
    code, migrations = run(project, "current")
    assert code == 0
    assert migrations.calls == [("current", (), {"commands": project.module_commands})]


def test_wait_for_head(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, migrations = run(project, "wait-for-head", "--timeout", "30", "--interval", "0.5")
    assert code == 0
    assert migrations.calls == [
        ("wait_for_head", (30.0,), {"interval": 0.5, "commands": project.module_commands})
    ]
    assert capsys.readouterr().out == "At head.\n"


def test_wait_for_head_polls_every_second_by_default(project: Project) -> None:
    _, migrations = run(project, "wait-for-head", "--timeout", "5")
    assert migrations.calls[0][2]["interval"] == 1.0


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ("wait-for-head", "--timeout", "0"),
            "argument --timeout: '0': give a number of seconds above 0",
        ),
        (
            ("wait-for-head", "--timeout", "-5"),
            "argument --timeout: '-5': give a number of seconds above 0",
        ),
        (("wait-for-head", "--timeout", "x"), "argument --timeout: 'x' is not a number of seconds"),
        (("wait-for-head", "--timeout", "5", "--interval", "0"), "argument --interval: '0': give"),
        (("wait-for-head",), "the following arguments are required: --timeout"),
        ((), "the following arguments are required: command"),
        (("migrate",), "invalid choice: 'migrate'"),
        (("devdb", "restart"), "invalid choice: 'restart'"),
    ],
)
def test_usage_errors_exit_2_with_argparses_message(
    project: Project, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], error: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(project, *argv)
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("usage: python -m shop.migrations")
    assert error in stderr


def test_a_timeout_that_is_not_a_number_is_a_usage_error(project: Project) -> None:
    with pytest.raises(SystemExit):
        run(project, "wait-for-head", "--timeout", "nan")


def test_accept_edit_records_the_revision_and_names_its_file(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, migrations = run(project, "accept-edit", "b0b0")
    assert code == 0
    assert migrations.calls == [("accept_edit", ("b0b0",), {})]
    assert capsys.readouterr().out == (
        "Accepted: b0b0 (b0b0_add_notes.py) is recorded as its file is now.\n"
    )


def test_accept_edit_of_an_unknown_revision_fails_in_one_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    error = CommandError("No revision 'zz' in migrations/versions.")
    code, _ = run(project, "accept-edit", "zz", raises=error)
    assert code == 1
    assert capsys.readouterr().err == "FAILED: No revision 'zz' in migrations/versions.\n"


@pytest.mark.parametrize(
    "error",
    [
        CommandError("Revision b0b0 failed: boom."),
        TimeoutError("Not at head after 5s: the database is at base."),
    ],
)
def test_a_failure_prints_one_line_and_exits_1(
    project: Project, capsys: pytest.CaptureFixture[str], error: BaseException
) -> None:
    code, _ = run(project, "upgrade", raises=error)
    assert code == 1
    assert capsys.readouterr().err == f"FAILED: {error}\n"


def test_invalid_settings_name_the_variable_not_its_value(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    class Model(BaseModel):
        db_port: int

    with pytest.raises(ValidationError) as invalid:
        Model(db_port="s3cret")
    code, _ = run(project, "wait-for-head", "--timeout", "5", raises=invalid.value)
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        "FAILED: invalid settings (DB_PORT: Input should be a valid integer, unable to parse "
        "string as an integer); fix them in the environment or .env.\n"
    )
    assert "s3cret" not in err


def test_a_bug_keeps_its_traceback(project: Project) -> None:
    with pytest.raises(ZeroDivisionError):
        run(project, "upgrade", raises=ZeroDivisionError())


# -- chores --------------------------------------------------------------------------------


@pytest.fixture
def chores(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Project, list[str]]]:
    ran: list[tuple[str, Project, list[str]]] = []

    def chore(name: str) -> Any:
        def main(project: Project, argv: list[str]) -> int:
            ran.append((name, project, argv))
            return 7

        return main

    monkeypatch.setattr(cli, "_chore", chore)
    return ran


@pytest.mark.parametrize(
    "argv",
    [
        ["backup"],
        ["backup", "/srv/backups"],
        ["shell", "-c", "SELECT 1"],
        ["shell", "--help"],
        ["restore", "backups/shop-1.dump"],
        ["rehearse", "file=dump.sql", "--keep"],
        ["lint-migrations", "-v"],
    ],
)
def test_chores_get_their_arguments_untouched(
    project: Project, chores: list[tuple[str, Project, list[str]]], argv: list[str]
) -> None:
    code, migrations = run(project, *argv)
    assert code == 7  # the chore's own exit status
    assert chores == [(argv[0], project, argv[1:])]
    assert migrations.calls == []


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("backup", "backup"),
        ("restore", "restore"),
        ("shell", "shell"),
        ("rehearse", "rehearse"),
        ("lint-migrations", "lint"),
    ],
)
def test_every_chore_runs_its_tools_main(name: str, module: str) -> None:
    assert cli._chore(name) is importlib.import_module(f"alembic_steady.tools.{module}").main
    assert name in cli.CHORES


def test_the_history_chores_run_check_history_and_migration_rebase() -> None:
    from alembic_steady.tools import history

    assert cli._chore("check-history") is history.main
    assert cli._chore("migration-rebase") is history.rebase_main


@pytest.mark.parametrize("action", ["start", "stop", "reset"])
def test_devdb_runs_its_action(
    project: Project, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    ran: list[tuple[str, Project]] = []
    monkeypatch.setitem(devdb.ACTIONS, action, lambda p: ran.append((action, p)) or 3)
    code, _ = run(project, "devdb", action)
    assert code == 3
    assert ran == [(action, project)]


# -- help and the command line -------------------------------------------------------------


def test_without_arguments_it_reads_the_command_line(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/shop/migrations/__main__.py", "upgrade", "+1"])
    migrations = FakeMigrations(project)
    assert cli.main(migrations) == 0
    assert [(name, args) for name, args, _ in migrations.calls] == [("upgrade", ("+1",))]


def test_help_lists_every_command_with_what_it_does(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        run(project, "--help")
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith("usage: python -m shop.migrations [-h] {upgrade,current,")
    assert "Run the migrations that ship inside this package, and the chores around them." in shown
    for line in (
        "upgrade upgrade to head, or to REV, under the lock",
        "current print the revision the database is at",
        "wait-for-head exit 0 once the database is at head (init containers)",
        "backup dump the database to a private file (make backup)",
        "restore load a dump into the database (make restore)",
        "shell the server's shell on the database (make psql, make dbshell)",
        "rehearse pending revisions on a scratch copy of real data (make rehearse)",
        "lint-migrations squawk on each revision's SQL (make lint-migrations)",
        "check-history the branch's revisions follow the base's head in line (make check-history)",
        "migration-rebase re-point a branch's revision onto the base's head "
        "(make migration-rebase)",
        "accept-edit record a deliberate edit of an applied revision's file (make accept-edit)",
        "devdb the development database (make db-up, db-reset)",
    ):
        assert line in shown


@pytest.mark.parametrize(
    ("command", "lines"),
    [
        (
            ["upgrade"],
            [
                "revision head (default), +1, an id",
                "--schema SCHEMA a tenant schema of the database (PostgreSQL): migrate it alone",
            ],
        ),
        (["accept-edit"], ["revision the revision whose file was edited on purpose"]),
        (
            ["wait-for-head"],
            ["--timeout TIMEOUT seconds to wait", "--interval INTERVAL seconds between checks"],
        ),
    ],
)
def test_a_commands_help_explains_its_arguments(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    lines: list[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        run(project, *command, "--help")
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for line in lines:
        assert line in shown


def test_a_chore_on_the_command_line_runs_without_argparse(
    project: Project, monkeypatch: pytest.MonkeyPatch, chores: list[tuple[str, Project, list[str]]]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["/srv/shop/migrations/__main__.py", "shell", "-c", "SELECT 1"]
    )
    assert cli.main(FakeMigrations(project)) == 7
    assert chores == [("shell", project, ["-c", "SELECT 1"])]


def test_the_help_says_what_the_cli_is_for(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        run(project, "--help")
    lines = capsys.readouterr().out.splitlines()
    assert "Run the migrations that ship inside this package, and the chores around them." in lines


@pytest.mark.parametrize("phase", ["pre", "post"])
def test_upgrade_of_one_deploy_phase(project: Project, phase: str) -> None:
    _, migrations = run(project, "upgrade", "--phase", phase)
    assert migrations.calls[0][1] == ("head",) and migrations.calls[0][2]["phase"] == phase


def test_an_unknown_phase_is_a_usage_error(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(project, "upgrade", "--phase", "later")
    assert exited.value.code == 2
    assert "invalid choice: 'later' (choose from 'pre', 'post')" in capsys.readouterr().err
