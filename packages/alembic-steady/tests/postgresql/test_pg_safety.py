"""Migration safety against a real PostgreSQL, without a render: a held lock, a revision that fails
half-way, bad input, bad credentials and the production guards, each as a user meets it: the exit
status and one-line message of `python -m <package>.migrations` (what a Job runs; `make migrate`
runs the same env.py), or the CommandError of Alembic's commands where the module CLI has none
(rollback, stamp, check, --sql), and the state the database is left in.

(Replicas racing and the lock-wait bound of the API are test_pg_runner.py's.)
"""

import io
import sys
import time
from dataclasses import replace
from subprocess import CompletedProcess
from types import ModuleType
from urllib.parse import quote

import demo_project
import pytest
from alembic import command
from alembic.util import CommandError
from pg_safety_support import (
    as_role,
    closed_port,
    login_role,
    new_database,
    password_server,
    state,
)
from pg_sessions import session_holding
from sqlalchemy import text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.postgresql import lock_key
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.walk import on_connection

CHAIN = demo_project.CHAIN["postgresql"]
HEAD = ({"alembic_version", "widget"}, {"c3"})
# Every character that breaks a URL or an ini file when written there unescaped.
AWKWARD_PASSWORD = "p%ss@w:rd/x?#"
PLANTED_TABLE = "planted_before_failure"
# A model no revision creates: `check` must name it.
DRIFTED_MODELS = (
    demo_project.MODELS
    + 'drift = sa.Table("drift", metadata, sa.Column("id", sa.Integer, primary_key=True))\n'
)


@pytest.fixture(scope="module")
def project() -> Project:
    return demo_project.write("postgresql", name="safety", models=DRIFTED_MODELS)


@pytest.fixture(scope="module")
def failing_project() -> Project:
    """The chain, then a revision that creates a table and fails after it."""
    failing = (
        "d4",
        f'    op.create_table("{PLANTED_TABLE}", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    op.execute("SELECT 1/0")',
        "    pass",
    )
    return demo_project.write("postgresql", name="safety_fails", chain=[*CHAIN, failing])


@pytest.fixture(scope="module")
def two_heads_project() -> Project:
    """The chain, and a second root revision next to it, as two branches merged in git leave."""
    project = demo_project.write("postgresql", name="safety_heads")
    demo_project.add_revision(
        project.versions, "e5", None, '    op.execute("CREATE TABLE other (id int)")', "    pass"
    )
    return project


def cli(project: Project, url: URL | str, *args: str, **env: str) -> CompletedProcess[str]:
    """`python -m <package>.migrations ARGS` on the database `url`."""
    return demo_project.module_cli(project, *args, url=url, env=env)


def alembic(project: Project, name: str, *args: str, url: URL | None = None) -> None:
    """Alembic's command `name` (downgrade, stamp, check) through the project's env.py, as
    `make rollback`, `make stamp` and `make check` run it."""
    config = Migrations(project).alembic_config(url=url)
    config.attributes["command"] = name
    getattr(command, name)(config, *args)


def assert_short_failure(
    result: CompletedProcess[str], *expected: str, secret: str | None = None
) -> None:
    """A refusal a user can act on: non-zero, the expected words, no traceback, no secret."""
    output = result.stdout
    assert result.returncode != 0, output
    for words in expected:
        assert words in output, f"{words!r} missing from:\n{output}"
    assert "Traceback" not in output, output
    if secret is not None:
        assert secret not in output and quote(secret, safe="") not in output, output


@pytest.fixture
def settings_of(project: Project) -> ModuleType:
    """The project's settings module: a test replaces its SETTINGS (env.py reads them)."""
    return sys.modules[f"{project.package}.migrations"]


# 1. The migration lock


def test_a_held_lock_is_given_up_after_migration_lock_wait(
    project: Project, database_url: URL
) -> None:
    before = state(database_url)
    with session_holding(database_url, f"SELECT pg_advisory_lock({lock_key(project.package)})"):
        started = time.monotonic()
        result = cli(project, database_url, "upgrade", MIGRATION_LOCK_WAIT="1")
        elapsed = time.monotonic() - started
    assert_short_failure(result, "holds the lock", "MIGRATION_LOCK_WAIT")
    # The demo's default wait is 20 s: this one gave up after its 1 s (and a start-up).
    assert elapsed < 10, f"gave up after {elapsed:.0f}s, not after MIGRATION_LOCK_WAIT=1"
    assert state(database_url) == before
    # Once the other session lets go, the same command goes through.
    assert cli(project, database_url, "upgrade").returncode == 0
    assert state(database_url) == HEAD


# 2. A revision that fails half-way


def test_a_failing_revision_is_named_and_leaves_the_last_good_head(
    failing_project: Project, database_url: URL
) -> None:
    Migrations(failing_project).upgrade("c3", url=database_url)
    assert state(database_url) == HEAD
    failed = cli(failing_project, database_url, "upgrade")
    assert_short_failure(failed, "d4.py", "division by zero")
    assert state(database_url) == HEAD  # PLANTED_TABLE is not there either


# 3. Bad input


def test_an_unknown_revision_says_where_the_revisions_are_listed(
    project: Project, database_url: URL
) -> None:
    before = state(database_url)
    result = cli(project, database_url, "upgrade", "deadbeef")
    # The cause (the revision nobody defines) and where to find the real ones.
    assert_short_failure(result, "deadbeef", "make history")
    assert state(database_url) == before


def test_a_wrong_direction_or_count_names_the_command_that_does_it(
    project: Project, database_url: URL
) -> None:
    Migrations(project).upgrade(url=database_url)
    assert_short_failure(cli(project, database_url, "upgrade", "-1"), "make rollback steps=1")
    with pytest.raises(CommandError) as too_many:
        alembic(project, "downgrade", "-5", url=database_url)
    assert "Cannot roll back 5 revisions" in str(too_many.value)
    assert "make rollback rev=base" in str(too_many.value)
    assert state(database_url) == HEAD


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("older", ["a1", "base"])
def test_an_upgrade_to_an_older_revision_refuses_in_every_environment(
    project: Project, database_url: URL, environment: str, older: str
) -> None:
    Migrations(project).upgrade(url=database_url)
    # Alembic's own upgrade would do nothing and exit 0, leaving the user to think it went back;
    # CONFIRM=yes, which lets a production rollback through, changes nothing here.
    result = cli(project, database_url, "upgrade", older, ENVIRONMENT=environment, CONFIRM="yes")
    assert_short_failure(
        result,
        f"{older} is below the database's revision (c3), and an upgrade never goes down.",
        f"`make rollback rev={older}`",
    )
    assert state(database_url) == HEAD


UNKNOWN_VERSION = (
    "The database is at f00dfeedbeef, which no revision file here defines. After switching git "
    "branches, that is the other branch's revision: switch back, roll it back there, then return."
)


@pytest.mark.parametrize(
    "args", [("downgrade", "-1"), ("check",), ("upgrade", "head")], ids=["rollback", "check", "up"]
)
def test_a_version_no_file_defines_is_explained_by_the_next_command(
    project: Project, database_url: URL, args: tuple[str, ...]
) -> None:
    # What switching git branches leaves: the database at the other branch's revision.
    Migrations(project).upgrade(url=database_url)
    on_connection(
        database_url,
        lambda c: c.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")),
    )
    before = state(database_url)
    if args[0] == "upgrade":  # as a deploy Job runs it: one line, no traceback
        assert_short_failure(cli(project, database_url, *args), UNKNOWN_VERSION)
    else:
        with pytest.raises(CommandError) as refused:
            alembic(project, *args, url=database_url)
        assert str(refused.value).startswith(UNKNOWN_VERSION), str(refused.value)
    assert state(database_url) == before


def test_two_heads_name_make_merge(two_heads_project: Project, database_url: URL) -> None:
    result = cli(two_heads_project, database_url, "upgrade")
    assert_short_failure(result, "more than one head", "make merge")
    assert state(database_url) == (set(), None)


@pytest.fixture(scope="module")
def applied_heads_project() -> Project:
    """The chain and a second root revision that changes nothing: with both heads applied
    (`alembic upgrade heads`) the schema matches the models, so only the heads are wrong."""
    project = demo_project.write("postgresql", name="safety_applied_heads")
    demo_project.add_revision(project.versions, "f6", None, "    pass", "    pass")
    return project


def test_check_refuses_two_heads_even_when_both_are_applied(
    applied_heads_project: Project, database_url: URL
) -> None:
    alembic(applied_heads_project, "upgrade", "heads", url=database_url)
    assert state(database_url) == ({"alembic_version", "widget"}, {"c3", "f6"})
    # No model differs from the schema: a comparison alone would pass the two heads.
    with pytest.raises(CommandError) as refused:
        alembic(applied_heads_project, "check", url=database_url)
    assert str(refused.value) == "There is more than one head (c3, f6): run `make merge` first."


@pytest.mark.parametrize(("at", "found"), [("a1", "a1"), ("b2", "b2"), ("base", "base")])
def test_check_refuses_a_database_behind_head(
    migration_project: Project, database_url: URL, at: str, found: str
) -> None:
    if at != "base":
        Migrations(migration_project).upgrade(at, url=database_url)
    before = state(database_url)
    with pytest.raises(CommandError) as refused:
        alembic(migration_project, "check", url=database_url)
    # Not Alembic's "Target database is not up to date": what is behind, and what to run.
    assert str(refused.value) == (
        f"The database is at {found}, behind head c3: run `make migrate` first."
    )
    assert state(database_url) == before


def test_model_drift_names_the_command_that_writes_a_revision(
    project: Project, database_url: URL
) -> None:
    Migrations(project).upgrade(url=database_url)
    with pytest.raises(CommandError) as drift:
        alembic(project, "check", url=database_url)
    message = str(drift.value)
    assert message.startswith(
        "The models differ from the migrations: write a revision for the change with make "
        'migration msg="...". Its upgrade() would be:\n'
    ), message
    assert "op.create_table('drift'," in message, message


# 4. Servers and credentials


def test_an_unreachable_server_is_named_without_the_password(
    project: Project, database_url: URL
) -> None:
    before = state(database_url)
    port = closed_port()
    url = (
        f"postgresql+asyncpg://postgres:{quote(AWKWARD_PASSWORD, safe='')}@127.0.0.1:{port}/"
        f"{database_url.database}"
    )
    started = time.monotonic()
    result = cli(project, url, "upgrade")
    assert time.monotonic() - started < 60
    assert_short_failure(
        result,
        "Cannot connect to PostgreSQL",
        f"127.0.0.1:{port}",
        "DATABASE_URL",
        "make db-up",
        secret=AWKWARD_PASSWORD,
    )
    assert state(database_url) == before


def test_an_unknown_role_is_named(project: Project, database_url: URL) -> None:
    # Also the refusal path of a wrong password on servers that trust every password: the
    # server says no, the message names it.
    before = state(database_url)
    url = as_role(database_url, str(database_url.database), "nobody_here", "s3cr3t-pw")
    result = cli(project, url, "upgrade")
    assert_short_failure(
        result, "Cannot connect to PostgreSQL", "nobody_here", "DATABASE_URL", secret="s3cr3t-pw"
    )
    # A trusting server says the role is missing; a password-auth one does not tell them apart.
    assert (
        'role "nobody_here" does not exist' in result.stdout
        or 'password authentication failed for user "nobody_here"' in result.stdout
    ), result.stdout
    assert state(database_url) == before


@pytest.fixture(scope="module")
def checked(request: pytest.FixtureRequest, server_url: URL) -> URL:
    """A server that refuses a wrong password."""
    return password_server(request, server_url)


def test_a_wrong_password_is_named(project: Project, checked: URL) -> None:
    wrong = "not-the-s3cr3t"
    with new_database(checked) as database, login_role(checked, database, AWKWARD_PASSWORD) as name:
        result = cli(project, as_role(checked, database, name, wrong), "upgrade")
        assert_short_failure(
            result,
            "Cannot connect to PostgreSQL",
            f'password authentication failed for user "{name}"',
            "DATABASE_URL",
            secret=wrong,
        )
        assert AWKWARD_PASSWORD not in result.stdout
        assert state(checked.set(database=database)) == (set(), None)


def test_an_awkward_password_percent_encoded_in_the_url(project: Project, checked: URL) -> None:
    with new_database(checked) as database, login_role(checked, database, AWKWARD_PASSWORD) as role:
        url = as_role(checked, database, role, AWKWARD_PASSWORD)
        assert quote(AWKWARD_PASSWORD, safe="") in url  # as a user writes it in DATABASE_URL
        output = cli(project, url, "upgrade")
        assert output.returncode == 0, output.stdout
        assert AWKWARD_PASSWORD not in output.stdout
        assert quote(AWKWARD_PASSWORD, safe="") not in output.stdout
        admin = checked.set(database=database)
        assert state(admin) == HEAD
        assert table_owner(admin, "widget") == role  # migrated as the URL's role
        # A failing command with the password set prints neither it nor its encoded form.
        assert_short_failure(
            cli(project, url, "upgrade", "deadbeef"), "deadbeef", secret=AWKWARD_PASSWORD
        )


def table_owner(url: URL, table: str) -> str:
    query = text("SELECT tableowner FROM pg_tables WHERE tablename = :table")
    return str(on_connection(url, lambda c: c.execute(query, {"table": table}).scalar_one()))


# 5. Production guards


@pytest.mark.parametrize(
    ("target", "after"),
    [
        (("downgrade", "-1"), ({"alembic_version", "widget"}, {"b2"})),
        (("stamp", "base"), ({"alembic_version", "widget"}, set())),  # the version only
    ],
    ids=["rollback", "stamp"],
)
def test_production_refuses_rollback_and_stamp_without_confirm(
    project: Project,
    database_url: URL,
    settings_of: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    target: tuple[str, str],
    after: tuple[set[str], set[str]],
) -> None:
    production = replace(settings_of.SETTINGS, environment="production")
    monkeypatch.setattr(settings_of, "SETTINGS", production)
    monkeypatch.delenv("CONFIRM", raising=False)
    # Upgrades are not guarded: production deploys migrate as usual.
    Migrations(project).upgrade(url=database_url)
    assert state(database_url) == HEAD

    with pytest.raises(CommandError) as refused:
        alembic(project, *target, url=database_url)
    assert "production" in str(refused.value) and "CONFIRM=yes" in str(refused.value)
    assert state(database_url) == HEAD
    monkeypatch.setenv("CONFIRM", "no")
    with pytest.raises(CommandError, match="CONFIRM=yes"):
        alembic(project, *target, url=database_url)
    assert state(database_url) == HEAD

    monkeypatch.setenv("CONFIRM", "yes")
    alembic(project, *target, url=database_url)
    assert state(database_url) == after


def test_production_prints_sql_offline(
    project: Project, settings_of: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = replace(
        settings_of.SETTINGS,
        url="postgresql+asyncpg://nobody:s3cr3t-pw@127.0.0.1:1/none",
        environment="production",
    )
    monkeypatch.setattr(settings_of, "SETTINGS", offline)
    config = Migrations(project).alembic_config()
    config.output_buffer = io.StringIO()
    config.attributes["command"] = "upgrade"
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE widget" in sql and "INSERT INTO alembic_version" in sql
    assert "s3cr3t-pw" not in sql
