"""What a revision accepts for the migration tests, written in its own file (so it is reviewed
in the same pull request as the revision), one comment line each:

    # migration-tests: one-way: enum values cannot be removed
    # migration-tests: accept stairway: the type stays for the old release's readers
    # migration-tests: no rows for invoice: its status only ever holds 'open' or 'paid'
    # migration-tests: rows for invoice: INSERT INTO invoice (status) VALUES ('open'), ('paid')
    # migration-tests: accept rewrite of invoice: the type change is wanted, run at night
    # migration-tests: breaks the old release: the service is stopped for this deploy

- `one-way`: the stairway does not take this revision down and up again (its downgrade cannot
  restore what the upgrade changed); the walk upgrades it once and goes on.
- `accept stairway`: a stairway finding of this revision (what its downgrade leaves or misses, or
  its failure) is listed, not failed; the walk resumes after it as after any finding.
- `no rows for TABLE`: the walk gives TABLE no generated rows.
- `rows for TABLE`: the walk puts these rows in TABLE (one INSERT statement) instead of
  generated ones.
- `accept rewrite of TABLE`, `accept long lock on TABLE`: `make plan --fail-on risky` lists, and
  does not fail on, this revision rewriting TABLE or reading it whole under a lock that stops
  its writers, however many rows it has.
- `breaks the old release`: the old release's statements this revision breaks
  (testing/old_release.py) are listed, not failed.

Every form but `rows for` needs a reason; each accepted item is listed at the end of the test
run, never silent. A line the tests do not understand fails them, naming its file and line.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from alembic.util import CommandError

from ..dialects.measured import Risk

MARKER = re.compile(r"^[ \t]*#[ \t]*migration-tests:(.*)$", re.M)
_FORMS = re.compile(
    r"(?P<kind>one-way|accept stairway|no rows for (?P<table>\S+)|rows for (?P<rows_of>\S+)"
    r"|accept rewrite of (?P<rewritten>\S+)|accept long lock on (?P<locked>\S+)"
    r"|breaks the old release)"
    r"[ \t]*:[ \t]*(?P<value>\S.*?)[ \t]*$"
)
USAGE = (
    "the forms are `# migration-tests: one-way: <reason>`, `... accept stairway: <reason>`, "
    "`... no rows for <table>: <reason>`, `... rows for <table>: INSERT INTO <table> ...`, "
    "`... accept rewrite of <table>: <reason>`, `... accept long lock on <table>: <reason>` "
    "and `... breaks the old release: <reason>`"
)


@dataclass
class Accepted:
    """The markers of one revision file."""

    one_way: str | None = None  # the reason
    stairway: str | None = None  # the reason
    no_rows: dict[str, str] = field(default_factory=dict)  # table -> reason
    rows: dict[str, str] = field(default_factory=dict)  # table -> INSERT statement
    rewrite: dict[str, str] = field(default_factory=dict)  # table -> reason
    long_lock: dict[str, str] = field(default_factory=dict)  # table -> reason
    breaks_old_release: str | None = None  # the reason

    def accepting_risk(self, risk: Risk) -> str | None:
        """The reason this revision gives for `risk` (a rewrite or a long lock of its table),
        None when it gives none."""
        return (self.rewrite if risk.mode is None else self.long_lock).get(risk.table)

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
        elif kind == "breaks the old release":
            accepted.breaks_old_release = value
        elif form.group("table"):
            accepted.no_rows[form.group("table")] = value
        elif form.group("rewritten"):
            accepted.rewrite[form.group("rewritten")] = value
        elif form.group("locked"):
            accepted.long_lock[form.group("locked")] = value
        else:
            accepted.rows[form.group("rows_of")] = value
    return accepted
