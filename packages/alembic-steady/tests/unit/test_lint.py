"""tools/lint.py: what a revision's own lines accept, reviewed with the revision."""

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from support import make_project

from alembic_steady.tools.lint import (
    POST_PHASE_ALLOWS,
    accepted_not_offline,
    accepted_rules,
    project_excluded_rules,
    squawk_lines,
)

REVISION = '''"""Counts items."""

# squawk-ignore: ban-drop-column, require-concurrent-index-creation
#   lint-migrations: not offline: reads the item count to size its batches
'''


def test_a_revision_accepts_rules_and_not_rendering_offline_with_a_reason(tmp_path: Path) -> None:
    revision = tmp_path / "0001_count.py"
    revision.write_text(REVISION, encoding="utf-8")
    assert accepted_rules(revision) == ["ban-drop-column", "require-concurrent-index-creation"]
    assert accepted_not_offline(revision) == "reads the item count to size its batches"


def test_no_reason_accepts_nothing(tmp_path: Path) -> None:
    revision = tmp_path / "0001_count.py"
    revision.write_text("# lint-migrations: not offline:\n# lint-migrations: later\n", "utf-8")
    assert accepted_not_offline(revision) is None


def test_the_projects_excluded_rules_come_from_its_squawk_toml(tmp_path: Path) -> None:
    assert project_excluded_rules(tmp_path) == []
    (tmp_path / ".squawk.toml").write_text(
        'excluded_rules = ["prefer-big-int", "prefer-text-field"]\n', encoding="utf-8"
    )
    assert project_excluded_rules(tmp_path) == ["prefer-big-int", "prefer-text-field"]
    (tmp_path / ".squawk.toml").write_text('pg_version = "15"\n', encoding="utf-8")
    assert project_excluded_rules(tmp_path) == []


def test_a_squawk_toml_folder_is_no_config(tmp_path: Path) -> None:
    (tmp_path / ".squawk.toml").mkdir()
    assert project_excluded_rules(tmp_path) == []


# squawk as the plan runs it: each file it is given gets a finding naming the rules left out
# for it, and each run is logged with its arguments.
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
excluded = args[args.index("--exclude") + 1] if "--exclude" in args else "none"
if "no-such-rule" in excluded:
    print("error: invalid value 'no-such-rule' for '--exclude <rule>'", file=sys.stderr)
    sys.exit(2)
with open(os.environ["SQUAWK_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
for name in args:
    if name.endswith(".sql"):
        print(f"{name}:1:1: warning: read {os.path.basename(name)} without {excluded}")
print("Found 3 issues in 3 files")
sys.exit(1)
"""


def revision(folder: Path, name: str, text: str = "") -> Any:
    path = folder / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return SimpleNamespace(revision=name, path=str(path))


def test_revisions_leaving_out_the_same_rules_share_one_run_of_squawk(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """make plan's squawk: one run per set of rules left out, each finding under its own
    revision (a run of squawk costs more to start than to read a revision)."""
    squawk, log = tmp_path / "squawk", tmp_path / "runs.log"
    squawk.write_text(STAND_IN, encoding="utf-8")
    squawk.chmod(0o755)
    monkeypatch.setenv("SQUAWK_LOG", str(log))
    versions, sql = tmp_path / "versions", tmp_path / "sql"
    versions.mkdir()
    sql.mkdir()
    plain_1, plain_2 = revision(versions, "a1"), revision(versions, "a2")
    accepting = revision(versions, "a3", "# squawk-ignore: ban-drop-column\n")
    post = revision(versions, "a4")
    rendered = [(plain_1, "SELECT 1;", False), (accepting, "SELECT 3;", False)]
    rendered += [(plain_2, "SELECT 2;", False), (post, "SELECT 4;", True)]
    found = squawk_lines(str(squawk), make_project(tmp_path), rendered, str(sql))
    assert found == {
        "a1": ["warning: read a1.sql without none"],
        "a3": ["warning: read a3.sql without ban-drop-column"],
        "a2": ["warning: read a2.sql without none"],
        "a4": [f"warning: read a4.sql without {','.join(POST_PHASE_ALLOWS)}"],
    }
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(sum(name.endswith(".sql") for name in run) for run in runs) == [1, 1, 2]


def test_a_run_of_squawk_that_fails_says_so_under_each_of_its_revisions(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A mistyped rule in a revision's `# squawk-ignore:` line (or in .squawk.toml) stops squawk
    before it reads anything: its revisions must not read as having no findings."""
    squawk = tmp_path / "squawk"
    squawk.write_text(STAND_IN, encoding="utf-8")
    squawk.chmod(0o755)
    monkeypatch.setenv("SQUAWK_LOG", str(tmp_path / "runs.log"))
    versions, sql = tmp_path / "versions", tmp_path / "sql"
    versions.mkdir()
    sql.mkdir()
    mistyped = revision(versions, "a1", "# squawk-ignore: no-such-rule\n")
    rendered = [(mistyped, "SELECT 1;", False), (revision(versions, "a2"), "SELECT 2;", False)]
    found = squawk_lines(str(squawk), make_project(tmp_path), rendered, str(sql))
    assert found == {
        "a1": [
            "not linted: squawk failed: error: invalid value 'no-such-rule' for '--exclude <rule>'"
        ],
        "a2": ["warning: read a2.sql without none"],
    }
