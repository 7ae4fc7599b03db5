"""What a revision accepts for the migration tests, written in its own file (so it is reviewed
in the same pull request as the revision), one comment line each:

    # migration-tests: one-way: enum values cannot be removed
    # migration-tests: accept stairway: the type stays for the old release's readers
    # migration-tests: no rows for invoice: its status only ever holds 'open' or 'paid'
    # migration-tests: rows for invoice: INSERT INTO invoice (status) VALUES ('open'), ('paid')

- `one-way`: the stairway does not take this revision down and up again (its downgrade cannot
  restore what the upgrade changed); the walk upgrades it once and goes on.
- `accept stairway`: a stairway finding of this revision (what its downgrade leaves or misses, or
  its failure) is listed, not failed; the walk resumes after it as after any finding.
- `no rows for TABLE`: the walk gives TABLE no generated rows.
- `rows for TABLE`: the walk puts these rows in TABLE (one INSERT statement) instead of
  generated ones.

Every form but `rows for` needs a reason; each accepted item is listed at the end of the test
run, never silent. A line the tests do not understand fails them, naming its file and line.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from alembic.util import CommandError

MARKER = re.compile(r"^[ \t]*#[ \t]*migration-tests:(.*)$", re.M)
_FORMS = re.compile(
    r"(?P<kind>one-way|accept stairway|no rows for (?P<table>\S+)|rows for (?P<rows_of>\S+))"
    r"[ \t]*:[ \t]*(?P<value>\S.*?)[ \t]*$"
)
USAGE = (
    "the forms are `# migration-tests: one-way: <reason>`, `... accept stairway: <reason>`, "
    "`... no rows for <table>: <reason>` and `... rows for <table>: INSERT INTO <table> ...`"
)


@dataclass
class Accepted:
    """The markers of one revision file."""

    one_way: str | None = None  # the reason
    stairway: str | None = None  # the reason
    no_rows: dict[str, str] = field(default_factory=dict)  # table -> reason
    rows: dict[str, str] = field(default_factory=dict)  # table -> INSERT statement

    def accepting(self, finding: str) -> str | None:
        """`finding` as listed when the revision's `accept stairway` line accepts it; None when
        it has no such line (the finding fails)."""
        return f"{finding} (accepted: {self.stairway})" if self.stairway else None


def read(path: str | Path) -> Accepted:
    """The markers of the revision file at `path` (none when it has no such line)."""
    text = Path(path).read_text(encoding="utf-8")
    accepted = Accepted()
    for found in MARKER.finditer(text):
        line = text.count("\n", 0, found.start()) + 1
        form = _FORMS.match(found.group(1).strip())
        if form is None:
            raise CommandError(
                f"{path}:{line}: `{found.group(0).strip()}` is not a marker the migration "
                f"tests know: {USAGE}."
            )
        kind, value = form.group("kind"), form.group("value")
        if kind == "one-way":
            accepted.one_way = value
        elif kind == "accept stairway":
            accepted.stairway = value
        elif form.group("table"):
            accepted.no_rows[form.group("table")] = value
        else:
            accepted.rows[form.group("rows_of")] = value
    return accepted
