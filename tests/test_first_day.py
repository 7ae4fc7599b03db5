"""A newcomer's first day in a generated project: the database settings do what the README says
(one precedence rule, `.env` found from any folder, the database named in one line), `make install`
checks the Python first, targets run before `make install` say so, `make test` hides the test
server's password and names the server, and no noise (INFO chatter, colour codes in logs)."""

import json
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import Server, bake, clean_env, embedded_server, install, make, must, run, url_as

ESC = "\x1b["
GADGET = '''"""A model with a SERIAL key."""

from sqlmodel import Field, SQLModel


class Gadget(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("first_day")))


def port_of(server: Server) -> int:
    # A socket server's port names its socket file, so DB_PORT has to match it too.
    return server.port or int(server.fetch("postgres", "SHOW port")[0][0])


def parts_env(server: Server, database: str) -> dict[str, str]:
    """The DB_* variables naming `database` on `server`."""
    return {
        "DB_HOST": server.host,
        "DB_PORT": str(port_of(server)),
        "DB_USER": server.user,
        "DB_PASSWORD": server.password or "",
        "DB_NAME": database,
    }


def write_env_file(project: Path, **values: str) -> None:
    lines = [f"{name}={value}" for name, value in values.items()]
    (project / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def connected_database(project: Path, env: dict[str, str]) -> tuple[str, str]:
    """The line `make psql` prints first, and the database psql actually reached."""
    output = must(make(project, "psql", "args=-tAc 'SELECT current_database()'", env=env))
    line = next(line for line in output.splitlines() if line.startswith("Database "))
    return line, output.strip().splitlines()[-1]


# 1. One precedence rule; every command names its database


def test_a_database_setting_in_the_environment_replaces_all_of_env_file(
    project: Path, server: Server
) -> None:
    with (
        server.new_database("tmpl_dotenv") as in_env_file,
        server.new_database("tmpl_env") as chosen,
    ):
        # What `make db-up` leaves: a DATABASE_URL in .env.
        write_env_file(project, DATABASE_URL=server.url(in_env_file))
        env = clean_env(**parts_env(server, chosen))
        line, reached = connected_database(project, env)
        assert reached == chosen, line
        assert line.startswith(f"Database '{chosen}' on {server.host}")
        assert "(settings from the environment)" in line
        # The case: `DB_HOST=... DB_NAME=x make migrate` migrates x, never .env's database.
        migrated = must(make(project, "migrate", env=env))
        assert f"Database '{chosen}' on {server.host}" in migrated, migrated
        assert "(settings from the environment)" in migrated
        assert server.tables(chosen) == {"item"}
        assert server.tables(in_env_file) == set()
        # A MIGRATION_DATABASE_URL left in .env is a database setting of .env like the others.
        write_env_file(project, MIGRATION_DATABASE_URL=server.url(in_env_file))
        must(make(project, "rollback", env=env))
        assert server.tables(chosen) == set() and server.tables(in_env_file) == set()
        write_env_file(project, DATABASE_URL=server.url(in_env_file))
        # With nothing in the environment, .env's URL counts again.
        line, reached = connected_database(project, clean_env())
        assert reached == in_env_file and str(project / ".env") in line


def test_editing_db_name_in_env_file_takes_effect(project: Path, server: Server) -> None:
    with server.new_database("tmpl_first") as first, server.new_database("tmpl_second") as second:
        write_env_file(project, **parts_env(server, first))
        assert connected_database(project, clean_env())[1] == first
        write_env_file(project, **parts_env(server, second))
        assert connected_database(project, clean_env())[1] == second


def test_a_database_url_wins_over_the_parts_beside_it(project: Path, server: Server) -> None:
    with (
        server.new_database("tmpl_by_url") as by_url,
        server.new_database("tmpl_by_parts") as by_parts,
    ):
        # .env as `make db-up` leaves it, plus DB_* lines naming another database: the URL counts.
        write_env_file(project, DATABASE_URL=server.url(by_url), **parts_env(server, by_parts))
        line, reached = connected_database(project, clean_env())
        assert reached == by_url, line
        # The same two in the environment.
        env = clean_env(DATABASE_URL=server.url(by_url), **parts_env(server, by_parts))
        line, reached = connected_database(project, env)
        assert reached == by_url, line


def test_the_database_line_never_shows_the_password(project: Path, server: Server) -> None:
    secret = "n0t-Shown-%40"
    with server.new_database() as database:
        write_env_file(project, DATABASE_URL=url_as(server, database, server.user, secret))
        # The server may ignore the password (trust): the line is printed before connecting.
        result = make(project, "psql", "args=-tAc 'SELECT 1'", env=clean_env())
    assert f"Database '{database}'" in result.stdout
    assert secret not in result.stdout and "n0t-Shown-@" not in result.stdout


# 2. .env is read at the project root, whatever the current directory


def test_env_file_is_found_from_a_subfolder(project: Path, server: Server) -> None:
    with server.new_database("tmpl_subdir") as database:
        write_env_file(project, DATABASE_URL=server.url(database))
        must(make(project, "migrate", env=clean_env()))
        package = project / "src" / "my_service"
        result = run(package, "../../.venv/bin/alembic", "-c", "../../alembic.ini", "current")
        assert "(head)" in must(result)


# Each setting that does not name the database: a value for `.env`, and one for the environment.
OTHER_SETTINGS = {
    "ENVIRONMENT": ("staging", "production"),
    "DB_CONNECT_TIMEOUT": ("3.5", "7.5"),
    "MIGRATION_LOCK_WAIT": ("30.5", "90.5"),
    "MIGRATION_LOCK_TIMEOUT": ("5s", "2s"),
    "MIGRATION_STATEMENT_TIMEOUT": ("1min", "10min"),
    "BACKUP_LOCK_WAIT": ("10s", "45s"),
    "MIGRATION_LOCK_RETRIES": ("3", "5"),
    "MIGRATION_LOCK_RETRY_TOTAL": ("60.5", "120.5"),
}
# The render's settings as its own code reads them: the names of the settings that do not name
# the database, and the values of those given as arguments.
READ_SETTINGS = """
import json, sys
from my_service.settings import DATABASE_VARIABLES, Settings
chosen = Settings()
others = {name.upper() for name in Settings.model_fields} - set(DATABASE_VARIABLES)
values = {name: str(getattr(chosen, name.lower())) for name in sys.argv[1:]}
print(json.dumps({"others": sorted(others), "values": values}))
"""


def test_the_environment_wins_over_env_file_for_every_other_setting(project: Path) -> None:
    # `ENVIRONMENT=production make rollback` has to refuse whatever `.env` says, and so for each
    # setting: only the database ones follow rule 1 instead (the tests above).
    write_env_file(project, **{name: in_file for name, (in_file, _) in OTHER_SETTINGS.items()})
    python = [str(project / ".venv" / "bin" / "python"), "-c", READ_SETTINGS, *OTHER_SETTINGS]
    in_environment = {name: value for name, (_, value) in OTHER_SETTINGS.items()}
    try:
        from_file = json.loads(must(run(project, *python, env=clean_env())))
        chosen = json.loads(must(run(project, *python, env=clean_env(**in_environment))))
    finally:
        (project / ".env").unlink()
    assert from_file["others"] == sorted(OTHER_SETTINGS), "give the new setting a pair of values"
    # Read from `.env` when the environment is silent, and from the environment when it is not.
    assert from_file["values"] == {name: value for name, (value, _) in OTHER_SETTINGS.items()}
    assert chosen["values"] == in_environment


# 3. make install checks the interpreter against requires-python first


def test_install_with_a_too_old_python_stops_at_once(tmp_path: Path) -> None:
    project = bake(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(
        re.sub(r'requires-python = ">=[\d.]+"', 'requires-python = ">=3.99"', text),
        encoding="utf-8",
    )
    started = time.monotonic()
    result = make(project, "install", f"PYTHON={sys.executable}")
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    version = ".".join(map(str, sys.version_info[:3]))
    assert "needs Python >= 3.99" in result.stdout and version in result.stdout, result.stdout
    assert "make install PYTHON=python3.99" in result.stdout, result.stdout
    assert not (project / ".venv").exists(), f"install went on ({elapsed:.1f} s)"
    # Naming one that does not run gets the way to install it, not the same command again.
    missing = make(project, "install", "PYTHON=python3.99")
    assert missing.returncode != 0
    assert "python3.99 does not run here" in missing.stdout, missing.stdout
    assert "uv python install 3.99" in missing.stdout
    assert "make install PYTHON=python3.99" not in missing.stdout, missing.stdout
    assert not (project / ".venv").exists()


# 5. make test hides the test server's password and names the server


def test_make_test_never_prints_the_test_server_password(project: Path, server: Server) -> None:
    wrong = "Wr0ng-pa55@x"
    # The embedded server checks the passwords of roles other than postgres; a server named by
    # TEST_DATABASE_URL may trust everyone, so a throwaway embedded one stands in then.
    with nullcontext(server) if server.socket else embedded_server() as target:
        url = url_as(target, "postgres", "tmpl_nobody", wrong)
        result = make(project, "test", env=clean_env(TEST_DATABASE_URL=url, CI="true"))
    assert result.returncode != 0
    assert 'password authentication failed for user "tmpl_nobody"' in result.stdout
    assert wrong not in result.stdout and quote(wrong, safe="") not in result.stdout


def test_make_test_names_the_server_it_used(project: Path, server: Server) -> None:
    with server.new_database("tmpl_admin") as admin:
        env = clean_env(TEST_DATABASE_URL=server.url(admin), CI="true")
        output = must(make(project, "test", "args=-q tests/test_settings.py", env=env))
        # test_settings needs no server: none was started, none is named.
        assert "PostgreSQL used" not in output
        output = must(make(project, "test", "args=-q tests/test_migrations.py", env=env))
    match = re.search(
        r"^PostgreSQL used: PostgreSQL (\d+)[^\n]* at (\S+) \(TEST_DATABASE_URL\)$", output, re.M
    )
    assert match, output
    assert match[2].startswith(server.host)


# 6. Before make install


@pytest.mark.parametrize("target", ["migrate", "test", "backup", "psql", "db-up"])
def test_targets_before_install_say_run_make_install(tmp_path: Path, target: str) -> None:
    project = bake(tmp_path)
    result = make(project, target)
    assert result.returncode != 0
    assert "run make install first" in result.stdout, result.stdout
    assert "No such file or directory" not in result.stdout


# 8. Noise


def test_check_and_migration_print_no_info_chatter(project: Path, server: Server) -> None:
    models = project / "src" / "my_service" / "models"
    # A plain integer primary key: PostgreSQL makes it SERIAL, which Alembic reports at INFO.
    (models / "gadget.py").write_text(GADGET, encoding="utf-8")
    try:
        with server.new_database("tmpl_quiet") as database:
            env = clean_env(DATABASE_URL=server.url(database))
            migrated = must(make(project, "migrate", env=env))
            output = must(make(project, "migration", "msg=add gadget", env=env))
            must(make(project, "migrate", env=env))
            output += must(make(project, "check", env=env))
            output += must(make(project, "migration", "msg=nothing changed", env=env))
    finally:
        (models / "gadget.py").unlink()
        for revision in (models.parent / "migrations" / "versions").glob("*_add_gadget.py"):
            revision.unlink()
    # One run, one set of Alembic's context lines (env.py configures a second context).
    assert migrated.count("Context impl PostgresqlImpl.") == 1, migrated
    assert migrated.count("Will assume transactional DDL.") == 1, migrated
    assert "No new upgrade operations detected" in output
    assert "setting up autogenerate plugin" not in output
    assert "assuming SERIAL" not in output


def test_help_has_no_colour_codes_when_piped(project: Path) -> None:
    output = must(make(project, "help"))
    for target in ("migrate", "db-reset", "backup", "restore", "psql"):
        assert f"  {target} " in output, output
    assert ESC not in output


def test_lint_migrations_has_no_colour_codes_when_piped(project: Path) -> None:
    must(make(project, "migration-empty", "msg=name index"))
    revision = next(
        (project / "src" / "my_service" / "migrations" / "versions").glob("*_name_index.py")
    )
    text = revision.read_text(encoding="utf-8")
    body = '    op.create_index("ix_item_name", "item", ["name"])\n'
    revision.write_text(text.replace("    pass\n", body, 1), encoding="utf-8")
    try:
        result = make(project, "lint-migrations")
    finally:
        revision.unlink()
    assert result.returncode != 0
    assert "require-concurrent-index-creation" in result.stdout, result.stdout
    assert ESC not in result.stdout


def test_readme_says_to_activate_the_venv_for_plain_alembic(project: Path) -> None:
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in readme and ".venv/bin/alembic" in readme
