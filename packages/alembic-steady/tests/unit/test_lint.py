"""tools/lint.py: what a revision's own lines accept, reviewed with the revision."""

from pathlib import Path

from alembic_steady.tools.lint import (
    accepted_not_offline,
    accepted_rules,
    project_excluded_rules,
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
