"""Where a migration run stands, so every way it can stop says what was applied and what not."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Where the runner leaves its Progress in the migration connection's `info`, for the steps that
# commit batches themselves (authoring/ops.py's backfill) to say how far they got.
PROGRESS = "alembic_steady.progress"
# And the project's Commands, for what such a step tells a user to run.
COMMANDS = "alembic_steady.commands"


def named(revisions: Iterable[str] | None) -> str:
    """Revisions as messages name them: "a1, b2", or "base" for none."""
    return ", ".join(revisions or ()) or "base"


@dataclass
class Progress:
    # The revisions the database was at when the current revision started (() = base); None
    # until this run starts its first revision.
    at: tuple[str, ...] | None = None
    # The revision being applied, e.g. "0b1c2d3e4f50 (create item)"; None between revisions.
    revision: str | None = None
    # Where the current revision takes the database once applied (its id, or its down
    # revisions when it is undone).
    to: tuple[str, ...] = ()
    # SQL the current revision ran; the first `committed` of them were committed outside the
    # revision's transaction (the dialect says when: an autocommit_block(), a MySQL DDL statement).
    statements: list[str] = field(default_factory=list)
    committed: int = 0
    # An INVALID index a failed CREATE INDEX CONCURRENTLY of this revision left behind.
    leftover: str | None = None
    # The last revision this run applied.
    last: str | None = None
    # The revisions the database was at when the run began (() = base); None until read.
    found: tuple[str, ...] | None = None
    # Rows the run's batch-committing steps (op.backfill) changed: their statements' own row
    # counts say only how many batches ran (`make rehearse` reports rows changed).
    batched_rows: int = 0
    # The deploy phase the run applies (runner/phases.py): None for both.
    phase: str | None = None

    def start(self, at: tuple[str, ...], revision: str, to: tuple[str, ...] = ()) -> None:
        self.at, self.revision, self.statements, self.committed = at, revision, [], 0
        self.to = to
        self.leftover = None

    def applied(self, heads: tuple[str, ...]) -> None:
        """The current revision committed; the database is now at `heads`."""
        self.last = self.revision
        self.at = tuple(sorted(heads))
        self.revision, self.statements, self.committed, self.leftover = None, [], 0, None

    def committed_batches(self, what: str) -> Callable[[int], None]:
        """For a step committing batches itself (op.backfill): one statement in the record, and
        a callback that marks it committed, with the rows done so far, after each batch."""
        index = len(self.statements)
        self.statements.append(f"{what} (no batch yet)")
        done = [0]

        def committed(rows: int) -> None:
            self.statements[index] = f"{what} (at least {rows} rows)"
            self.committed = index + 1
            self.batched_rows += rows - done[0]
            done[0] = rows

        return committed

    def where(self) -> str:
        """'the database stays at <rev>' in words."""
        if self.at is None:
            return "this run changed nothing"
        return f"the database's version stays at {named(self.at)}"

    def interrupted(self, committed_steps: str, stopped: str) -> str:
        """Where an interrupted run leaves the database, as sentences. `committed_steps` is the
        dialect's word for what commits part of a revision, `stopped` what became of the
        revision's statement on the server."""
        if self.revision is None:  # e.g. while waiting for the lock
            return f"no revision was running; {self.where()}."
        committed = self.committed_part()
        outcome = (
            f"stopped part way: {committed_steps} were committed ({committed}), the rest rolled "
            "back"
            if committed
            else "rolled back"
        )
        return f"revision {self.revision} was {outcome}; {self.where()}. {stopped}"

    def committed_part(self) -> str:
        """The statements of the current revision already committed, for a message."""
        return "; ".join(_short(sql) for sql in self.statements[: self.committed])


def _short(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= 120 else flat[:117] + "..."
