"""How failures are worded whatever the database: Alembic's own answers in the project's command
words, the revision file that raised, the target named without its password. errors.py turns
each failure into one line with these."""

import re
import traceback
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy.engine import URL

from ..project import Commands
from .progress import Progress

HINT_VERBOSE = "Run with VERBOSE=1 (alembic --raiseerr) for the full traceback."


def describe_target(url: URL) -> str:
    where = f"{url.host or 'local socket'}" + (f":{url.port}" if url.port else "")
    return f"database {url.database or '(default)'} on {where} as {url.username or '(default)'}"


def failed_revision(exc: BaseException, versions: Path) -> str | None:
    """The revision file (and line) whose code raised, found in the traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.parent == versions:
            return f"{path.name}, line {frame.lineno}"
    return None


def cap(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def failing_revision(progress: Progress, exc: BaseException, versions: Path) -> str:
    where = failed_revision(exc, versions)
    if progress.revision and where:
        return f"{progress.revision}, {where}"
    return progress.revision or where or "(none yet)"


_RELATIVE = re.compile(r"Relative revision ([+-]?)(\d+) didn't produce")


def explain_alembic(
    exc: CommandError,
    command: str | None,
    commands: Commands,
    found: tuple[str, ...] | None = None,
) -> str | None:
    """A clearer line for Alembic's own answers that users of the project's commands meet;
    `found` is where the database was when the run began, where known (() = base)."""
    text = str(exc)
    at = ", ".join(found) if found else "base"
    if text == "Ambiguous walk":
        return (
            f"A step count is ambiguous here: the database is at {at}, where the history "
            f"branches. Name the revision instead (`{commands.migrate_to('<revision>')}`; "
            f"`{commands.heads}` lists the heads), or join the branches (`{commands.merge}`)."
        )
    if text.startswith("Multiple head revisions are present"):
        return (
            f"There is more than one head ({commands.heads} lists them): run `{commands.merge}` "
            f"to join them into one, then {commands.migrate}."
        )
    relative = _RELATIVE.match(text)
    if relative is not None:
        sign, steps = relative.groups()
        revisions = f"{steps} revision{'' if steps == '1' else 's'}"
        if command == "downgrade" and sign == "+":
            return (
                f"A rollback goes down, and +{steps} would go up: `{commands.migrate}` goes up, "
                f"`{commands.rollback_to('steps=' + steps)}` goes down."
            )
        if (command == "downgrade" or sign == "-") and found == ():
            return (
                "Nothing to roll back: the database is at base, no revision is applied "
                f"({commands.history} lists them)."
            )
        if command == "downgrade" or sign == "-":
            return (
                f"Cannot roll back {revisions}: fewer are applied ({commands.current}, "
                f"{commands.history}). `{commands.rollback_to('rev=base')}` rolls back all of "
                "them."
            )
        return (
            f"Cannot go {revisions} up: fewer are left to apply ({commands.current}, "
            f"{commands.history}). `{commands.migrate}` goes to head."
        )
    return None
