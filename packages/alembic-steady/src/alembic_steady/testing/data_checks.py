"""Data that must survive migrations: per-revision checks the walk runs.

Register a check for a revision to prove that rows written at that revision come through every
later revision intact: `before` runs once the revision is applied, `after` at head. In between,
each later revision is upgraded, downgraded and upgraded again (the stairway), so the rows must
survive that round trip too.

    @data_check("0b1c2d3e4f50")
    class ItemsSurvive:
        @staticmethod
        def before(connection: Connection) -> None: ...
        @staticmethod
        def after(connection: Connection) -> None: ...
"""

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection


@dataclass(frozen=True)
class DataCheck:
    before: Callable[[Connection], None]
    after: Callable[[Connection], None]


# Revision id -> its check, filled by the project's data_check decorations when imported.
DATA_CHECKS: dict[str, DataCheck] = {}


def data_check(revision: str) -> Callable[[type], type]:
    """Class decorator: a class with `before` and `after` static methods checks `revision`."""

    def register(cls: type) -> type:
        check = DataCheck(before=cls.before, after=cls.after)  # type: ignore[attr-defined]
        DATA_CHECKS[revision] = check
        return cls

    return register
