"""testing/markers.py: the `# migration-tests:` lines of a revision file, read without a
database (the walk's use of them: tests/postgresql/test_pg_markers.py)."""

import re
from pathlib import Path

import pytest
from alembic.util import CommandError

from alembic_steady.testing.markers import Accepted, read

REVISION = '''"""add status"""
# migration-tests: one-way: enum values cannot be removed
#migration-tests:accept stairway:  the old release reads it
from alembic import op


def upgrade() -> None:
    # migration-tests: no rows for sales.invoice: only ever open or paid
    # migration-tests: rows for bill: INSERT INTO bill (status) VALUES ('open'), ('paid: yes')
    op.execute("SELECT 1")
'''


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "a1_add_status.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_form_is_read_with_its_reason_or_statement(tmp_path: Path) -> None:
    assert read(written(tmp_path, REVISION)) == Accepted(
        one_way="enum values cannot be removed",
        stairway="the old release reads it",
        no_rows={"sales.invoice": "only ever open or paid"},
        rows={"bill": "INSERT INTO bill (status) VALUES ('open'), ('paid: yes')"},
    )


def test_a_revision_without_lines_accepts_nothing(tmp_path: Path) -> None:
    assert read(written(tmp_path, '"""plain"""\n# an ordinary comment\n')) == Accepted()


@pytest.mark.parametrize(
    "line",
    [
        "# migration-tests: one way: typo in the form",
        "# migration-tests: one-way:",  # no reason
        "# migration-tests: no rows for invoice",  # no reason, no colon
        "# migration-tests: skip the stairway please",
    ],
)
def test_a_line_the_tests_do_not_know_names_its_file_line_and_the_forms(
    tmp_path: Path, line: str
) -> None:
    path = written(tmp_path, f'"""x"""\n\n{line}\n')
    with pytest.raises(CommandError) as raised:
        read(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:3: `{line}` is not a marker the migration tests know")
    assert "`# migration-tests: one-way: <reason>`" in message


def test_a_finding_is_listed_with_the_reason_its_line_gives_else_not_accepted() -> None:
    assert Accepted(stairway="kept on purpose").accepting("downgrade leaves x") == (
        "downgrade leaves x (accepted: kept on purpose)"
    )
    assert Accepted(one_way="gone").accepting("downgrade leaves x") is None


def test_the_line_number_counts_a_leading_empty_line(tmp_path: Path) -> None:
    path = written(tmp_path, "\n\n# migration-tests: nonsense\n")
    with pytest.raises(CommandError, match=rf"^{re.escape(str(path))}:3: "):
        read(path)
