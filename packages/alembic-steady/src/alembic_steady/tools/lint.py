"""Lint each revision's own SQL with squawk (PostgreSQL), and every pre revision for steps the
running release would break (both databases: phase_lint.py): `make lint-migrations`.

Each revision is rendered offline on its own (`alembic upgrade <down>:<rev> --sql`), so a finding
points at the revision that causes it rather than at the whole chain. The rule set is the project's
`.squawk.toml` (style preferences left out, blocking operations kept). A reviewed finding is
accepted for one revision with comment lines in its file (every such line counts):

    # squawk-ignore: require-concurrent-index-creation
    # squawk-ignore: ban-drop-column

A revision that cannot be rendered offline (it reads rows through `op.get_bind()`) fails the
lint until its file accepts that, with the reason, reviewed like any other line of it:

    # lint-migrations: not offline: reads the item count to size its batches
"""

import io
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from ..project import Project
from ..runner.phases import Phases
from . import phase_lint

IGNORE_LINE = re.compile(r"^\s*#\s*squawk-ignore:\s*(.+)$", re.M)
NOT_OFFLINE_LINE = re.compile(
    r"^[ \t]*#[ \t]*lint-migrations:[ \t]*not offline:[ \t]*(\S.*)$", re.M
)
ACCEPT_HINT = (
    "Make the change in a non-blocking way (see README, zero-downtime changes), or accept a "
    "reviewed finding with a `# squawk-ignore: <rule>` line in that revision's file."
)
# squawk's rules against removing what running clients use: a post revision runs once the release
# that used it is gone (runner/phases.py), which is what they ask for. (A rename's post revision
# drops the function of the trigger that kept both names in step: authoring/renames.py.)
POST_PHASE_ALLOWS = [
    "ban-drop-column",
    "ban-drop-table",
    "ban-drop-function",
    "renaming-column",
    "renaming-table",
]
# Alembic's own bookkeeping table is not the revision's doing: leave it out of the findings.
VERSION_TABLE = re.compile(r"^CREATE TABLE alembic_version \(.*?\);\n", re.M | re.S)


def revision_sql(config: Config, script: ScriptDirectory, revision: Script) -> str:
    """`revision`'s own SQL, as `alembic upgrade <down>:<revision> --sql` renders it, on
    `script`, the caller's script directory (of `config`: Alembic's command would read every
    revision file of the history again for each revision rendered). Its step alone: from its
    down revision Alembic's command also renders what it depends on and is not below it (a
    post revision's pre one, with every revision before that), whose findings would be blamed
    on it."""
    down = revision.down_revision
    start = "base" if down is None else str(down)
    buffer = io.StringIO()
    config.output_buffer = buffer

    def upgrade(rev: Any, context: Any) -> Any:
        steps = script._upgrade_revs(revision.revision, rev)
        return [step for step in steps if step.revision.revision == revision.revision]

    with EnvironmentContext(
        config,
        script,
        fn=upgrade,
        as_sql=True,
        starting_rev=start,
        destination_rev=revision.revision,
    ):
        script.run_env()
    return VERSION_TABLE.sub("", buffer.getvalue())


def project_excluded_rules(folder: Path) -> list[str]:
    """The rules `.squawk.toml` leaves out. squawk drops its config's exclusions when `--exclude`
    is given on the command line, so they are passed along with each revision's own."""
    config = folder / ".squawk.toml"
    if not config.is_file():
        return []
    with config.open("rb") as file:
        return [str(rule) for rule in tomllib.load(file).get("excluded_rules", [])]


def accepted_rules(revision_file: Path) -> list[str]:
    """Every rule named on the `# squawk-ignore:` lines of a revision."""
    text = revision_file.read_text(encoding="utf-8")
    return [
        rule.strip()
        for line in IGNORE_LINE.findall(text)
        for rule in line.split(",")
        if rule.strip()
    ]


def accepted_not_offline(revision_file: Path) -> str | None:
    """The reason a revision gives for not rendering offline, if it gives one."""
    found = NOT_OFFLINE_LINE.search(revision_file.read_text(encoding="utf-8"))
    return found.group(1).strip() if found else None


def squawk_program() -> str | None:
    """squawk beside this Python (the project's venv), else on PATH."""
    return shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")


def excluded_rules(project_rules: list[str], revision: Script, post: bool) -> list[str]:
    """The rules squawk leaves out for one revision: the project's (`project_rules`), the
    revision's accepted ones and, for a post revision, those against removing what the old
    release used."""
    excluded = project_rules + accepted_rules(Path(revision.path))
    return excluded + POST_PHASE_ALLOWS if post else excluded


def sql_file(revision: Script, sql: str, tmp: str) -> Path:
    """The revision's SQL in `tmp`, named for its file, for squawk to read."""
    path = Path(tmp) / f"{Path(revision.path).stem}.sql"
    path.write_text(sql, encoding="utf-8")
    return path


def squawk_args(squawk: str, files: list[Path], excluded: list[str], gcc: bool) -> list[str]:
    """squawk's command line for `files`, with `excluded` rules left out; with `gcc`, one
    finding per plain line, each starting with its file's path."""
    args = [squawk, *map(str, files), *(["--reporter", "gcc"] if gcc else [])]
    return [*args, "--exclude", ",".join(excluded)] if excluded else args


def squawk_failure(result: "subprocess.CompletedProcess[str]") -> str:
    """What a run of squawk that linted nothing said (its exit code 2: e.g. a rule name it does
    not know, in `# squawk-ignore:` or .squawk.toml)."""
    said = next((line for line in result.stderr.splitlines() if line.strip()), "")
    return f"not linted: squawk failed: {said or f'exit code {result.returncode}'}"


def squawk_lines(
    squawk: str, project: Project, rendered: list[tuple[Script, str, bool]], tmp: str
) -> dict[str, list[str]]:
    """squawk's findings for each revision's SQL in `rendered` (revision, SQL, post), a line
    each, by revision (`make plan`). Revisions that leave out the same rules share one run of
    squawk: a run costs milliseconds to start, more than it takes to read a revision."""
    project_rules = project_excluded_rules(project.folder)
    groups: dict[tuple[str, ...], dict[Path, str]] = {}  # rules left out -> file -> revision
    for revision, sql, post in rendered:
        files = groups.setdefault(tuple(excluded_rules(project_rules, revision, post)), {})
        files[sql_file(revision, sql, tmp)] = revision.revision
    found: dict[str, list[str]] = {revision.revision: [] for revision, _, _ in rendered}
    for excluded, files in groups.items():
        args = squawk_args(squawk, list(files), list(excluded), gcc=True)
        result = subprocess.run(args, check=False, capture_output=True, text=True)
        if result.returncode not in (0, 1):  # 1: findings; else squawk did not lint them
            for name in files.values():
                found[name].append(squawk_failure(result))
            continue
        by_path = {str(path): revision for path, revision in files.items()}
        for line in result.stdout.splitlines():
            path = line.partition(":")[0]
            if path in by_path and ": " in line:
                found[by_path[path]].append(line.split(": ", 1)[-1].strip())
    return found


def phase_rule(project: Project, phases: Phases) -> bool:
    """Print the pre revisions' steps that remove or tighten (phase_lint.py); True when any."""
    try:
        findings, accepting = phase_lint.check(project, phases)
    except ValueError as exc:
        print(f"phases: {exc}.")
        return True
    for line in accepting:
        print(line)
    if findings:
        print(f"phases: {len(findings)} step(s) the running release would break:")
        for finding in findings:
            print(f"  {finding}")
        print(phase_lint.ADVICE)
    return bool(findings)


def main(project: Project, argv: list[str]) -> int:
    config = Config(str(project.folder / "alembic.ini"))
    config.attributes["configure_logger"] = False  # findings only, no Alembic INFO lines
    # Rendered as `make sql` renders it: env.py then skips importing the models.
    config.attributes["command"] = "upgrade"
    script = ScriptDirectory.from_config(config)
    phases = Phases(script)
    broken = phase_rule(project, phases)
    if project.dialect != "postgresql":
        print(
            "squawk lints PostgreSQL SQL only: review each revision's SQL (make sql) instead, "
            "one DDL statement per revision, as MySQL commits each on its own."
        )
        return 1 if broken else 0
    squawk = squawk_program()
    if squawk is None:
        print("squawk is not installed: run `make install` (it comes with squawk-cli).")
        return 1
    project_rules = project_excluded_rules(project.folder)
    flagged: list[str] = []
    unrendered = unlinted = 0
    with tempfile.TemporaryDirectory() as tmp:
        for revision in reversed(list(script.walk_revisions())):
            if isinstance(revision.down_revision, tuple):
                continue  # a merge point runs no SQL of its own
            try:
                sql = revision_sql(config, script, revision)
            except Exception as exc:
                # Named, and the other revisions still linted (e.g. one that reads data through
                # op.get_bind(), which an offline run has not got).
                name = Path(revision.path).name
                if (accepted := accepted_not_offline(Path(revision.path))) is not None:
                    print(f"{name}: not linted (accepted in the file: {accepted})")
                    continue
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                if not isinstance(exc, CommandError):  # env.py's answer names the cause itself
                    reason = f"{type(exc).__name__}: {reason}"
                print(f"{name}: not linted: {reason}")
                unrendered += 1
                continue
            # squawk colours its report regardless (and ignores NO_COLOR): plain lines in logs
            # and CI instead, one finding per line.
            gcc = not sys.stdout.isatty()
            excluded = excluded_rules(project_rules, revision, revision.revision in phases.post)
            args = squawk_args(squawk, [sql_file(revision, sql, tmp)], excluded, gcc=gcc)
            # Its findings reach the terminal as it writes them; an error of its own is said
            # under the revision's name, which squawk's message does not give.
            result = subprocess.run(args, check=False, stderr=subprocess.PIPE, text=True)
            if result.returncode == 1:
                flagged.append(Path(revision.path).name)
            elif result.returncode != 0:
                print(f"{Path(revision.path).name}: {squawk_failure(result)}")
                unlinted += 1
    if flagged:
        print(f"squawk: {len(flagged)} revision(s) with findings:")
        for name in flagged:
            print(f"  {name}")
        print(ACCEPT_HINT)
    elif not unlinted:
        print("squawk: no findings.")
    if unrendered:
        print(
            f"{unrendered} revision(s) could not be rendered offline and were not linted. If a "
            "revision must read the database, accept it in its file: "
            "`# lint-migrations: not offline: <why>`."
        )
    if unlinted:
        print(
            f"squawk failed on {unlinted} revision(s), which were not linted: fix what it "
            "says (a rule named in `# squawk-ignore:` or .squawk.toml), then run again."
        )
    return 1 if flagged or unrendered or unlinted or broken else 0
