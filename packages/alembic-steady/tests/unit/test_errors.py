"""runner/errors.py: failures turned into one line naming the cause, where the database stands
and the fix; with the real dialects and driver-style errors, no server."""

from pathlib import Path

import pytest
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from support import Settings, make_project, mysql_error, pg_error

from alembic_steady import Project
from alembic_steady.dialects import LockLost
from alembic_steady.dialects.base import Dialect
from alembic_steady.dialects.mysql import MySQL
from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.runner.errors import clear_errors, offline_failure
from alembic_steady.runner.messages import HINT_VERBOSE
from alembic_steady.runner.progress import Progress
from alembic_steady.runner.retries import LockRetriesExhausted

PG, MY = PostgreSQL(), MySQL()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


def running(*statements: str, committed: int = 0) -> Progress:
    progress = Progress()
    progress.start(("a",), "b0b0 (add price)")
    progress.statements.extend(statements)
    progress.committed = committed
    return progress


def answer(
    error: BaseException,
    project: Project,
    *,
    dialect: Dialect = PG,
    progress: Progress | None = None,
    command: str | None = "upgrade",
) -> str:
    """The one line clear_errors makes of `error`; it chains the original."""
    with (
        pytest.raises(CommandError) as raised,
        clear_errors(dialect, Settings(), progress or Progress(), project, command),
    ):
        raise error
    assert raised.value.__cause__ is error
    return str(raised.value)


def test_alembics_own_answers_are_explained(project: Project) -> None:
    error = CommandError("Relative revision -3 didn't produce 3 migrations")
    assert answer(error, project, command="downgrade").startswith("Cannot roll back 3 revisions")


def test_an_unknown_revision_points_at_history_and_heads(project: Project) -> None:
    try:
        raise CommandError("Can't locate revision identified by 'zzz'") from ResolutionError(
            "No such revision or branch 'zzz'", "zzz"
        )
    except CommandError as error:
        assert answer(error, project) == (
            "Can't locate revision identified by 'zzz': no revision file defines it. "
            "`make history` lists the revisions, `make heads` the heads."
        )


def test_other_command_errors_pass_unchanged(project: Project) -> None:
    error = CommandError("Target database is not up to date.")
    with (
        pytest.raises(CommandError) as raised,
        clear_errors(PG, Settings(), Progress(), project, "revision"),
    ):
        raise error
    assert raised.value is error


def test_a_lost_lock_stops_the_run_and_says_why(project: Project) -> None:
    progress = Progress(at=("b",), last="b0b0 (add price)")
    assert answer(LockLost(), project, progress=progress) == (
        "The migration lock is no longer held by this run (found out after revision b0b0 (add "
        "price)): its session was reset, as a pooler in transaction mode does. Stopped; the "
        "database's version stays at b. Migrate through a direct or session-pooled connection "
        "(MIGRATION_DATABASE_URL) and run make migrate again."
    )


def test_exhausted_retries_name_the_blockers_and_the_knobs(project: Project) -> None:
    error = LockRetriesExhausted(30, 61.4, "table item held by pid 42 (application_name 'api')")
    message = answer(error, project, progress=running("ALTER TABLE item ADD price int"))
    assert message == (
        "Revision b0b0 (add price) could not get its lock in 30 attempts over 61s (lock_timeout "
        "up to 1s): table item held by pid 42 (application_name 'api'). Nothing of it was "
        "applied; the database's version stays at a. End the blocking transaction (or "
        "pg_terminate_backend(pid)), or raise MIGRATION_LOCK_RETRIES / "
        "MIGRATION_LOCK_RETRY_TOTAL, and run make migrate again."
    )


def test_a_lost_connection_names_the_revision_and_the_causes(project: Project) -> None:
    error = pg_error("57P01", "terminating connection due to administrator command")
    message = answer(error, project, progress=running("ALTER TABLE item ADD price int"))
    assert message.startswith(
        "Lost the connection to PostgreSQL during revision b0b0 (add price): OperationalError: "
        "terminating connection due to administrator command. The server ended the session "
    )
    assert "(server restart, failover, pg_terminate_backend, a pooler)" in message
    assert message.endswith(HINT_VERBOSE)


def test_a_read_only_server_is_named(project: Project) -> None:
    error = mysql_error(1290, "The MySQL server is running with the --read-only option")
    message = answer(error, project, dialect=MY, progress=running("CREATE TABLE t (a INT)"))
    assert message.startswith("Revision b0b0 (add price) failed: the database is read-only ")


def test_a_failed_downgrade_gets_its_own_advice(project: Project) -> None:
    error = pg_error("23502", 'column "price" contains null values')
    message = answer(error, project, progress=running("ALTER TABLE item"), command="downgrade")
    assert message.startswith("The downgrade of revision b0b0 (add price) failed: ")
    assert "Fix that revision's downgrade()" in message
    assert "then run make rollback again; make current shows the version." in message


def test_a_failed_revision_says_to_fix_it_and_run_again(project: Project) -> None:
    error = pg_error("42P01", 'relation "nope" does not exist')
    message = answer(error, project, progress=running("SELECT * FROM nope"))
    assert message == (
        'Revision b0b0 (add price) failed: OperationalError: relation "nope" does not exist. '
        "Nothing of it was applied; the database's version stays at a. Fix the cause and run "
        f"make migrate again (make current shows the version). {HINT_VERBOSE}"
    )


def test_after_committed_mysql_ddl_a_plain_rerun_is_not_advised(project: Project) -> None:
    error = mysql_error(1146, "Table 'shop.nope' doesn't exist")
    progress = running("CREATE TABLE t (a INT)", "INSERT INTO nope VALUES (1)", committed=1)
    message = answer(error, project, dialect=MY, progress=progress)
    assert "make stamp rev=b0b0" in message
    assert "Fix the cause and run" not in message


def test_a_failure_outside_any_revision(project: Project) -> None:
    message = answer(pg_error("42501", "permission denied for schema public"), project)
    assert message == (
        "Migration run failed: OperationalError: permission denied for schema public. "
        f"{HINT_VERBOSE}"
    )


def test_a_bug_outside_the_revisions_keeps_its_traceback(project: Project) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        clear_errors(PG, Settings(), running(), project, "upgrade"),
    ):
        raise ZeroDivisionError


def test_offline_failure_names_the_revision_file(project: Project) -> None:
    path = project.versions / "b0b0_add_price.py"
    path.parent.mkdir(parents=True)
    source = "from alembic import op\n\nop.get_bind().execute('x')\n"
    path.write_text(source, encoding="utf-8")
    with pytest.raises(Exception) as raised:
        exec(compile(source, str(path), "exec"), {})
    message = str(offline_failure(raised.value, project))
    assert message.startswith("b0b0_add_price.py, line 3 cannot be rendered as SQL offline: ")
    assert "(make sql rev=from:to)" in message


def test_offline_failure_quotes_the_drivers_first_line(project: Project) -> None:
    # SQLAlchemy's own text adds the driver's class name and the statement: the driver's first
    # line is the cause the user reads.
    error = pg_error("0A000", "cannot run this offline\nDETAIL: more")
    assert str(offline_failure(error, project)) == (
        "a revision cannot be rendered as SQL offline: OperationalError: cannot run this "
        "offline. It needs a database (op.get_bind(), or data it reads): render the revisions "
        "before and after it apart (make sql rev=from:to) and review this one by hand. "
        f"{HINT_VERBOSE}"
    )


def test_offline_failure_of_an_error_without_a_message_names_its_type(project: Project) -> None:
    message = str(offline_failure(LookupError(), project))
    assert message.startswith("a revision cannot be rendered as SQL offline: LookupError. It ")
