"""What a watch measures of the statements revisions run (`make plan`, `make rehearse`, the
walk's lock check), the same on every server, and which of them hold a table's writers up."""

from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from ..runner.progress import PROGRESS

# The execution option marking a statement the toolkit runs around a revision's own only to read
# the catalog or a setting, or to set one (ops.py's checks, the runner's index lookups): it locks,
# rewrites and reads no table of the project's, so a watch does not measure it. Measuring one
# outside a transaction takes several round trips (on a scratch copy, a probe too): most of
# `make plan`'s time on revisions made of the safe operations.
BOOKKEEPING = "alembic_steady_bookkeeping"


def bookkeeping(context: Any) -> bool:
    """Whether the statement of `context` (an execution context, or None) is marked BOOKKEEPING."""
    return context is not None and bool(context.execution_options.get(BOOKKEEPING))


@dataclass
class Measured:
    """One statement of a revision as a watch saw it run (`make plan`, `make rehearse`)."""

    sql: str
    # Inside the revision's transaction (held locks last until it commits), or committed on
    # its own (an autocommit_block(), a MySQL DDL statement).
    in_transaction: bool
    # Which of the revision's transactions it ran in (each statement outside one is its own).
    transaction: int
    # (relation, mode) the statement took that its transaction did not hold before it.
    locks: list[tuple[str, str]] = field(default_factory=list)
    # Tables it wrote anew (a new file on disk), and tables it read whole.
    rewrites: list[str] = field(default_factory=list)
    scans: list[str] = field(default_factory=list)
    # MySQL: INSTANT, INPLACE or COPY, for an ALTER TABLE.
    algorithm: str | None = None
    # The id of the revision that ran it.
    revision: str | None = None


@dataclass
class Watched:
    """What a watch saw while one revision ran."""

    statements: list[Measured] = field(default_factory=list)
    rows: int = 0  # rows its statements changed
    # (relation, mode) -> the longest it was held at a stretch, in seconds
    held: dict[tuple[str, str], float] = field(default_factory=dict)
    # Seconds spent running statements once more to measure them (a probe), not the revision's.
    probing: float = 0.0

    def hold(self, key: tuple[str, str], seconds: float) -> None:
        self.held[key] = max(self.held.get(key, 0.0), seconds)


class Watch(Protocol):
    """Watches the statements revisions run on one engine, a revision at a time."""

    def revision(self, only: Collection[str] | None = None) -> AbstractContextManager[Watched]:
        """Watch while the body runs one revision (`make migrate` on the engine), or a run of
        them; with `only`, the statements of those revisions alone (the others run unwatched,
        as they would without a watch)."""
        ...


def events_of(watched: AsyncEngine | Connection) -> Engine:
    """Where a watch listens: the engine of the connections the revisions run on (`make plan`
    and `make rehearse` give theirs; the walk gives its connection, whose engine it is)."""
    return watched.sync_engine if isinstance(watched, AsyncEngine) else watched.engine


@contextmanager
def listening(
    watched: AsyncEngine | Connection, listeners: list[tuple[str, Callable[..., None]]]
) -> Iterator[None]:
    """`listeners` (event name, function) on the engine of `watched` while the block runs."""
    engine = events_of(watched)
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners:
            # Gone already where the run failed and its engine went with it.
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)


def running_revision(conn: Connection) -> str | None:
    """The id of the revision the runner is applying on `conn`, if any."""
    run = conn.info.get(PROGRESS)
    return run.revision.split(" ", 1)[0] if run is not None and run.revision else None


def watched_revision(conn: Connection, only: Collection[str] | None) -> bool:
    """Whether the revision running on `conn` is one a watch measures (`only`; None: all)."""
    return only is None or running_revision(conn) in only


class Listed:
    """How many of the runner's record of a revision's statements a watch has seen."""

    def __init__(self) -> None:
        self.revision: str | None = None
        self.count = 0


def revision_statement(conn: Connection, statement: str, listed: Listed) -> bool:
    """Whether `statement` is the next of those the revision runs through `op` (the runner's
    record of them, begun anew for each revision), not one the runner runs around it (a check
    of a leftover index, say)."""
    run = conn.info.get(PROGRESS)
    if run is None:
        return False
    if run.revision != listed.revision:
        listed.revision, listed.count = run.revision, 0
    if len(run.statements) <= listed.count:
        return False
    first_word = statement.split(None, 1)[:1]
    if first_word != run.statements[-1].split(None, 1)[:1]:
        return False
    listed.count = len(run.statements)
    return True


@dataclass(frozen=True)
class TableSize:
    """A table's size from the server's statistics (no lock taken, no row read)."""

    rows: int
    bytes: int


@dataclass(frozen=True)
class Risk:
    """A statement (its index) that holds a table's writers up for as long as the table takes
    to read or write whole: it rewrites `table`, or reads it whole under `mode`, a lock on it
    that stops writers."""

    index: int
    table: str
    mode: str | None  # None for a rewrite

    def said(self, mode_name: Callable[[str], str]) -> str:
        if self.mode is None:
            return f"statement {self.index + 1} rewrites {self.table}"
        return f"statement {self.index + 1} reads {self.table} whole under {mode_name(self.mode)}"


def held_during(statements: list[Measured], index: int) -> dict[str, str]:
    """The locks held while statement `index` runs (relation -> mode): its own, and in a
    transaction those its earlier statements took, held until it commits."""
    statement = statements[index]
    span = [statement]
    if statement.in_transaction:
        span = [s for s in statements[: index + 1] if s.transaction == statement.transaction]
    return {relation: mode for step in span for relation, mode in step.locks}


def risks(statements: list[Measured], blocks_writes: Callable[[str], bool]) -> list[Risk]:
    """The rewrites, and the whole-table reads under a lock that stops writers (SET NOT NULL, a
    validated constraint, CREATE INDEX without CONCURRENTLY), of one revision's statements. A
    brief lock (a nullable column, a NOT VALID constraint) is no risk: the runner's lock timeout
    and retries cover it."""
    found = []
    for index, statement in enumerate(statements):
        held = held_during(statements, index)
        found += [Risk(index, table, None) for table in statement.rewrites]
        found += [
            Risk(index, table, held[table])
            for table in statement.scans
            if table in held and blocks_writes(held[table])
        ]
    return found
