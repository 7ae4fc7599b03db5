"""Settings for a migration run, or a one-line answer naming the variable that is wrong."""

import re
from collections.abc import Callable

from alembic.util import CommandError

from ..project import MigrationSettings

# PostgreSQL's units for lock_timeout and statement_timeout; a bare number is milliseconds.
_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")


def load_settings(read: Callable[[], MigrationSettings]) -> MigrationSettings:
    """The settings, checked; errors name the variable, never its value."""
    try:
        settings = read()
    except Exception as exc:
        problems = invalid_settings(exc)
        if problems is None:
            raise
        raise CommandError(
            f"Invalid database settings ({problems}). Fix them in the environment or in .env."
        ) from None
    for name in ("migration_lock_timeout", "migration_statement_timeout"):
        duration_ms(name, getattr(settings, name))
    return settings


def invalid_settings(exc: BaseException) -> str | None:
    """The problems of a pydantic ValidationError (duck-typed: its `errors()` list), e.g.
    "DB_PORT: Input should be a valid integer", without the values given; None for any other
    exception."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return None
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in errors()
    )


def duration_ms(name: str, value: str) -> float:
    """A PostgreSQL duration setting ("500ms", "1s", "2min", "0") in milliseconds."""
    match = _DURATION.match(value)
    if match is None:
        raise CommandError(
            f"Invalid database settings ({name.upper()}: {value!r} is not a duration). Use a "
            "PostgreSQL duration such as 500ms, 1s or 2min (0 for no limit)."
        )
    return float(match.group(1)) * _UNITS_MS[match.group(2) or "ms"]
