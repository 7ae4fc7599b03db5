"""How failures are worded whatever the database: Alembic's own answers in the Make targets'
words, the revision file that raised, the target named without its password. errors.py (one per
database) turns each failure into one line with these."""

import re
import traceback
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy.engine import URL

from .progress import Progress

VERSIONS_DIR = Path(__file__).parent / "versions"

HINT_VERBOSE = "Run with VERBOSE=1 (alembic --raiseerr) for the full traceback."


def describe_target(url: URL) -> str:
    where = f"{url.host or 'local socket'}" + (f":{url.port}" if url.port else "")
    return f"database {url.database or '(default)'} on {where} as {url.username or '(default)'}"


def failed_revision(exc: BaseException) -> str | None:
    """The revision file (and line) whose code raised, found in the traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.parent == VERSIONS_DIR:
            return f"{path.name}, line {frame.lineno}"
    return None


def cap(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def failing_revision(progress: Progress, exc: BaseException) -> str:
    where = failed_revision(exc)
    if progress.revision and where:
        return f"{progress.revision}, {where}"
    return progress.revision or where or "(none yet)"


_RELATIVE = re.compile(r"Relative revision ([+-]?)(\d+) didn't produce")


def explain_alembic(exc: CommandError, command: str | None) -> str | None:
    """A clearer line for Alembic's own answers that users of the Make targets meet."""
    text = str(exc)
    if text.startswith("Multiple head revisions are present"):
        return (
            "There is more than one head (make heads lists them): run `make merge` to join them "
            "into one, then make migrate."
        )
    relative = _RELATIVE.match(text)
    if relative is not None:
        steps = relative.group(2)
        if command == "downgrade":
            return (
                f"Cannot roll back {steps} revisions: fewer are applied (make current, make "
                "history). `make rollback rev=base` rolls back all of them."
            )
        return (
            f"Cannot go {steps} revisions up: fewer are left to apply (make current, make "
            "history). `make migrate` goes to head."
        )
    return None
