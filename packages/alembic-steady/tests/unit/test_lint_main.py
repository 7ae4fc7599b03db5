"""tools/lint.py's `main`: each revision rendered offline on its own and handed to squawk, the
findings summed up. A plain Alembic project renders the SQL (offline: no database); a stand-in
squawk flags a LOCK TABLE and records what it was given. squawk's own findings are checked on
rendered projects (the template's tests/test_zero_downtime.py)."""

from pathlib import Path

import pytest
from support import make_project

from alembic_steady import Project
from alembic_steady.tools import lint

ENV = """
from alembic import context

context.configure(url="postgresql://", literal_binds=True, dialect_opts={"paramstyle": "named"})
with context.begin_transaction():
    context.run_migrations()
"""
REVISION = '''"""{doc}"""
from alembic import op
{lines}
revision = "{rev}"
down_revision = {down}


def upgrade():
    {body}


def downgrade():
    pass
'''


def revision(project: Project, rev: str, down: str | None, body: str, *lines: str) -> None:
    text = REVISION.format(
        doc=f"step {rev}", rev=rev, down=repr(down), body=body, lines="\n".join(lines)
    )
    (project.migrations / "versions" / f"{rev}_step.py").write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, package="shop")
    (project.migrations / "versions").mkdir(parents=True)
    (project.migrations / "env.py").write_text(ENV, encoding="utf-8")
    (tmp_path / "alembic.ini").write_text(
        f"[alembic]\nscript_location = {project.migrations}\n", encoding="utf-8"
    )
    # squawk: records its arguments and the SQL, flags a LOCK TABLE.
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    squawk = bin_folder / "squawk"
    squawk.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/squawk-args\n'
        f'cat "$1" >> {tmp_path}/squawk-sql\n'
        # squawk's answer to a rule it does not know: exit code 2, nothing linted.
        'case "$*" in *no-such-rule*) echo "error: invalid value '
        "'no-such-rule' for '--exclude <rule>'\" >&2; exit 2;; esac\n"
        'grep -q "LOCK TABLE" "$1" && exit 1\n'
        "exit 0\n",
        encoding="utf-8",
    )
    squawk.chmod(0o755)
    monkeypatch.setattr(lint.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", f"{bin_folder}:/usr/bin:/bin")
    return project


def test_no_findings(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    revision(project, "a1", None, 'op.execute("CREATE TABLE item (id int)")')
    assert lint.main(project, []) == 0
    assert capsys.readouterr().out == "squawk: no findings.\n"
    sql = (project.folder / "squawk-sql").read_text(encoding="utf-8")
    assert "CREATE TABLE item (id int)" in sql
    # Alembic's own table is no finding of the revision: nothing is left where it was.
    assert "CREATE TABLE alembic_version" not in sql
    assert sql.startswith("BEGIN;\n\n\n-- Running upgrade  -> a1\n\nCREATE TABLE item (id int);")


def test_each_revision_is_linted_on_its_own_and_findings_name_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    revision(project, "a1", None, 'op.execute("CREATE TABLE item (id int, x int)")')
    revision(project, "b2", "a1", 'op.execute("LOCK TABLE item")')
    revision(project, "c3", "b2", 'op.execute("LOCK TABLE item IN SHARE MODE")')
    assert lint.main(project, []) == 1
    assert capsys.readouterr().out == (
        "squawk: 2 revision(s) with findings:\n"
        "  b2_step.py\n"
        "  c3_step.py\n"
        "Make the change in a non-blocking way (see README, zero-downtime changes), or accept a "
        "reviewed finding with a `# squawk-ignore: <rule>` line in that revision's file.\n"
    )
    args = (project.folder / "squawk-args").read_text(encoding="utf-8").splitlines()
    # One file per revision, oldest first; plain report lines where stdout is no terminal.
    assert [line.split()[0].rsplit("/", 1)[-1] for line in args] == [
        "a1_step.sql",
        "b2_step.sql",
        "c3_step.sql",
    ]
    assert all(line.split()[1:3] == ["--reporter", "gcc"] for line in args)


def test_the_projects_and_the_revisions_excluded_rules_go_to_squawk(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.folder / ".squawk.toml").write_text(
        'excluded_rules = ["prefer-big-int"]\n', encoding="utf-8"
    )
    revision(
        project,
        "a1",
        None,
        'op.execute("CREATE TABLE item (id int)")',
        "# squawk-ignore: require-timeout-settings, ban-drop-column",
    )
    assert lint.main(project, []) == 0
    args = (project.folder / "squawk-args").read_text(encoding="utf-8").split()
    assert args[-2:] == ["--exclude", "prefer-big-int,require-timeout-settings,ban-drop-column"]


def test_a_merge_point_runs_no_sql_of_its_own(project: Project) -> None:
    revision(project, "a1", None, "pass")
    revision(project, "b1", "a1", "pass")
    revision(project, "b2", "a1", "pass")
    revision(project, "m3", ("b1", "b2"), "pass")
    revision(project, "d4", "m3", "pass")
    assert lint.main(project, []) == 0
    args = (project.folder / "squawk-args").read_text(encoding="utf-8")
    assert "m3_step.sql" not in args and "d4_step.sql" in args and args.count("\n") == 4


def test_a_revision_that_cannot_be_rendered_offline_fails_the_lint_unless_accepted(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # An error of its own is named with its type; env.py's CommandError speaks for itself.
    revision(project, "a1", None, 'raise RuntimeError("needs the database\\nmore")')
    revision(
        project,
        "b2",
        "a1",
        'raise CommandError("reads rows offline")',
        "from alembic.util import CommandError",
    )
    revision(project, "c3", "b2", 'op.execute("CREATE TABLE t (id int)")')
    assert lint.main(project, []) == 1
    assert capsys.readouterr().out == (
        "a1_step.py: not linted: RuntimeError: needs the database\n"
        "b2_step.py: not linted: reads rows offline\n"
        "squawk: no findings.\n"
        "2 revision(s) could not be rendered offline and were not linted. If a revision must "
        "read the database, accept it in its file: `# lint-migrations: not offline: <why>`.\n"
    )
    assert "c3_step.sql" in (project.folder / "squawk-args").read_text(encoding="utf-8")

    revision(
        project,
        "a1",
        None,
        'raise RuntimeError("needs the database")',
        "# lint-migrations: not offline: reads the item count",
    )
    revision(project, "b2", "a1", "pass")
    (project.folder / "squawk-args").unlink()
    assert lint.main(project, []) == 0
    assert capsys.readouterr().out == (
        "a1_step.py: not linted (accepted in the file: reads the item count)\n"
        "squawk: no findings.\n"
    )
    # The revisions after it are still linted.
    args = (project.folder / "squawk-args").read_text(encoding="utf-8")
    assert "b2_step.sql" in args and "c3_step.sql" in args


def test_an_error_without_a_message_is_named_by_its_type(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    revision(project, "a1", None, "raise RuntimeError()")
    assert lint.main(project, []) == 1
    assert capsys.readouterr().out.startswith("a1_step.py: not linted: RuntimeError: \n")


def test_without_squawk_it_says_how_to_get_it(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nowhere")
    assert lint.main(project, []) == 1
    assert capsys.readouterr().out == (
        "squawk is not installed: run `make install` (it comes with squawk-cli).\n"
    )


def test_the_squawk_beside_the_interpreter_comes_first(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "squawk").write_text(
        f"#!/bin/sh\necho venv >> {tmp_path}/squawk-args\nexit 0\n", encoding="utf-8"
    )
    (venv / "squawk").chmod(0o755)
    monkeypatch.setattr(lint.sys, "executable", str(venv / "python"))
    revision(project, "a1", None, "pass")
    assert lint.main(project, []) == 0
    assert (tmp_path / "squawk-args").read_text(encoding="utf-8") == "venv\n"


def test_on_a_terminal_squawk_reports_in_its_own_format(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lint.sys.stdout, "isatty", lambda: True)
    revision(project, "a1", None, "pass")
    assert lint.main(project, []) == 0
    args = (project.folder / "squawk-args").read_text(encoding="utf-8").split()
    assert len(args) == 1 and args[0].endswith("a1_step.sql")


def test_a_revision_squawk_fails_on_is_named_and_fails_the_lint(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """squawk exits 2 on a rule name it does not know and lints nothing: the revision that
    names it is said, with squawk's error, and is not counted as a revision with findings."""
    revision(project, "a1", None, 'op.execute("LOCK TABLE item")')
    revision(project, "b2", "a1", "pass", "# squawk-ignore: no-such-rule")
    assert lint.main(project, []) == 1
    assert capsys.readouterr().out == (
        "b2_step.py: not linted: squawk failed: error: invalid value 'no-such-rule' for "
        "'--exclude <rule>'\n"
        "squawk: 1 revision(s) with findings:\n"
        "  a1_step.py\n"
        f"{lint.ACCEPT_HINT}\n"
        "squawk failed on 1 revision(s), which were not linted: fix what it says (a rule named "
        "in `# squawk-ignore:` or .squawk.toml), then run again.\n"
    )

    revision(project, "a1", None, "pass")
    assert lint.main(project, []) == 1
    out = capsys.readouterr().out
    assert "b2_step.py: not linted: squawk failed" in out
    assert "no findings" not in out
