"""The dialect seam: everything a migration run does differently on PostgreSQL and on MySQL.

The runner (runner/) is written once against this interface; dialects/postgresql.py and
dialects/mysql.py are its only two implementations, and the only modules that name a server's
catalog, error codes or lock functions.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from alembic.util import CommandError
from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..project import Commands, MigrationSettings, Project
from ..runner import backfill_jobs, checksums
from ..runner.progress import Progress
from ..runner.retries import RetryPolicy
from .clients import Clients
from .measured import TableSize, Watch


class SchemaTracker(Protocol):
    """The schema a revision can change, kept current after each step of a walk."""

    @property
    def created(self) -> Collection[int] | None:
        """The relations the last refresh found that were not there before it (the tables a
        step created among them); None until a refresh, or where the tracker cannot tell."""
        ...

    def refresh(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The rows of what changed since the last refresh: as they were, as they are."""
        ...

    # Whether the tracker tells all a step touched: the rows it changed (row_changes) and the
    # objects it read none of (unread). Without that, the walk cannot vouch that a round trip
    # left nothing behind that the snapshot misses.
    complete: bool
    # Whether the steps before the last refresh touched an object the snapshot does not read (an
    # operator, a collation, a default privilege, ...); True where the tracker cannot tell.
    unread: bool

    def row_changes(self) -> dict[int, tuple[int, int]] | None:
        """For each table, how many rows this session has inserted, updated or deleted in it so
        far (a count that only grows), and its file on disk (new after a TRUNCATE or a
        rewrite); None where the tracker cannot tell."""
        ...

    def checkpoint(self) -> Callable[[], None]:
        """Remember what the tracker knows now; the function returned puts it back, once the
        database is rolled back to this point."""
        ...


def described(rows: Iterable[tuple[str, str]]) -> str:
    """Snapshot rows as a message lists them, one object part each, sorted:
    `[column public.item.name text not null; type public.status open,closed]`."""
    return "[" + "; ".join(f"{what} {description}" for what, description in sorted(rows)) + "]"


@dataclass(frozen=True)
class SquashObjects:
    """What a squashed baseline makes beyond the tables autogenerate writes, as statements:
    `before` the tables (schemas, extensions, types, functions), `after` them and their seed
    rows (views, triggers, sequence positions); its downgrade runs `drop_first` before the
    tables go and `drop_last` after."""

    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    drop_first: list[str] = field(default_factory=list)
    drop_last: list[str] = field(default_factory=list)


class TableFiller:
    """Puts generated rows in each table that appears during a walk; this one puts none.

    `given` holds what revisions' markers (testing/markers.py) say of a table: the INSERT
    statement to run instead of generated rows, or None for no rows at all."""

    def __init__(self, given: Mapping[str, str | None]) -> None:
        self.filled: list[str] = []  # the tables holding generated rows
        self.given = given

    def fill_new_tables(self, among: Collection[int] | None = None) -> None:
        """Give the tables new since the last call a few rows. `among`: the relations that can
        be new (what the stairway's last refresh saw created), or None to look at them all."""

    def never_seen(self) -> list[str]:
        """The tables `given` names that never appeared during the walk (a misspelt name)."""
        return []


_T = TypeVar("_T")

# When no session is seen in the way any more (it ended between the timeout and the look).
NO_BLOCKER_SEEN = "a lock held by another session (none seen holding it any more)"


class LockLost(Exception):
    """The session no longer holds the migration lock (its connection was replaced or reset)."""


class Dialect(ABC):
    name: str  # SQLAlchemy's dialect name: "postgresql", "mysql"
    server: str  # in messages: "PostgreSQL", "MySQL"
    # The URL schemes users paste (hosting providers', sync drivers'), all run on `async_driver`.
    accepted_schemes: tuple[str, ...]
    async_driver: str
    expected_url: str
    schemes_hint: str
    # What commits part of a revision before it ends, in a message's words.
    committed_steps: str
    # The session setting that bounds a lock wait, and how to end a blocking session.
    lock_timeout_setting: str
    end_session: str
    # Why a lock can be lost, the connection to migrate through instead, why a connection drops.
    lock_lost_cause: str
    direct_connection: str
    lost_connection_causes: str
    # True where what a revision committed stays when it fails (DDL on MySQL), so a plain rerun
    # is not the fix; False where a rerun of a rerun-safe revision is.
    committed_is_final: bool
    # True where one session reads every database of its server (MySQL's databases are schemas);
    # False where a session sees its own database only (PostgreSQL).
    databases_share_a_session: bool
    # What cancelling the migrating task did on the server, where that is all it takes.
    cancelled_on_signal = (
        "Its statement was cancelled on the server and the migration lock released."
    )

    # -- connecting --------------------------------------------------------------------------
    @abstractmethod
    def connect_args(self, settings: MigrationSettings, session_name: str) -> dict[str, Any]:
        """The driver's arguments: the connect timeout, and the session's name on the server."""

    @abstractmethod
    def connect_failure(
        self, exc: BaseException, url: URL, settings: MigrationSettings, commands: Commands
    ) -> CommandError:
        """Which server refused the connection, and what to check."""

    @abstractmethod
    def require_writable(self, connection: Connection) -> None:
        """Refuse a standby or a read-only target before the first write fails as something else."""

    # -- the migration lock ------------------------------------------------------------------
    @abstractmethod
    async def acquire_lock(
        self, connection: AsyncConnection, project: Project, settings: MigrationSettings
    ) -> None:
        """Wait for the migration lock, holding no snapshot, at most MIGRATION_LOCK_WAIT."""

    @abstractmethod
    async def release_lock(self, connection: AsyncConnection, project: Project) -> None:
        """Release it before the connection closes (a pooler would keep the session)."""

    @abstractmethod
    def verify_lock(self, connection: Connection, project: Project) -> None:
        """Raise LockLost unless this very session holds the lock."""

    @abstractmethod
    def acquire_caller_lock(
        self, connection: Connection, project: Project, settings: MigrationSettings
    ) -> None:
        """The same lock on a caller's connection, inside the caller's transaction."""

    def release_caller_lock(  # noqa: B027  (a hook: one dialect needs nothing here)
        self, connection: Connection, project: Project
    ) -> None:
        """Release what acquire_caller_lock took, where the transaction's end does not."""

    # -- tenant schemas ----------------------------------------------------------------------
    def enter_schema(self, connection: Connection, schema: str) -> None:
        """Make `schema` the run's own (under the lock): made when missing, and where the
        revisions' unqualified names point."""
        raise CommandError(
            f"Tenant schemas are PostgreSQL's; on {self.server} a schema is a database: name "
            "each tenant's database as a target (database=NAME or a URL)."
        )

    # -- timeouts and retries ----------------------------------------------------------------
    @abstractmethod
    def set_lock_timeout(self, connection: Connection, policy: RetryPolicy, attempt: int) -> str:
        """Bound lock waits for this attempt (0: the policy's whole limit); returns the bound in
        words for a log line ("250ms", "1s")."""

    @abstractmethod
    def set_statement_timeout(self, connection: Connection, settings: MigrationSettings) -> None:
        """MIGRATION_STATEMENT_TIMEOUT for every statement of the migration session."""

    @abstractmethod
    def set_caller_timeouts(
        self, connection: Connection, settings: MigrationSettings, policy: RetryPolicy
    ) -> None:
        """Timeouts on a caller's connection, for its transaction only where the server can."""

    @abstractmethod
    def offline_preamble(self, settings: MigrationSettings, policy: RetryPolicy) -> list[str]:
        """The timeouts an online run sets, as statements heading `make sql`'s script."""

    @abstractmethod
    def is_lock_timeout(self, exc: BaseException) -> bool:
        """The statement gave up waiting for a lock (and may be tried again)."""

    def may_retry(self, progress: Progress) -> bool:
        """Whether the current revision can be rolled back and tried again."""
        return True

    @abstractmethod
    def describe_blockers(self, connection: Connection, statement: str) -> str:
        """Who was in the way of `statement`, in a line."""

    # -- statements --------------------------------------------------------------------------
    @abstractmethod
    def on_statement(
        self,
        connection: Connection | None,
        sql: str,
        run: Callable[[], Any],
        progress: Progress,
        retry: "Retry",
    ) -> Any:
        """Run one statement of a revision (`run`), already recorded in `progress.statements`,
        and note in `progress.committed` what it commits."""

    async def server_stopper(
        self, connection: AsyncConnection, engine: AsyncEngine, progress: Progress
    ) -> Callable[[], Coroutine[Any, Any, str]] | None:
        """What ends the run's statement on the server when a signal comes, where cancelling the
        task does not (it returns what it did, in words); None where cancelling does."""
        return None

    # -- revisions a run died inside ---------------------------------------------------------
    # Where a revision commits part way (MySQL's DDL), a record of how far it got lets the next
    # run stop instead of repeating what was committed. Where it cannot, these do nothing.
    def refuse_unfinished(  # noqa: B027  (a hook: one dialect needs nothing here)
        self, connection: Connection, progress: Progress, commands: Commands
    ) -> None:
        """Stop (CommandError) before running anything when an earlier run stopped inside a
        revision after committing part of it."""

    def revision_done(  # noqa: B027
        self, connection: Connection, progress: Progress
    ) -> None:
        """The current revision is applied: called in its transaction, before the commit."""

    def revision_failed(  # noqa: B027
        self, connection: Connection, progress: Progress
    ) -> None:
        """The current revision failed: leave a record of exactly what of it stays committed."""

    def forget_unfinished(  # noqa: B027
        self, connection: Connection
    ) -> None:
        """`stamp` (the repair): the version row says where the database is from now on."""

    # -- failures ----------------------------------------------------------------------------
    @abstractmethod
    def first_line(self, exc: BaseException) -> str:
        """The driver's error in one line, with its class (and number)."""

    @abstractmethod
    def lost_connection(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def read_only(self, exc: BaseException) -> bool: ...

    def through_pooler(self, exc: BaseException) -> str | None:
        """The fix when `exc` is what a transaction-mode pooler does to the session."""
        return None

    def unavailable_extension(self, exc: BaseException, commands: Commands) -> str | None:
        """The cause and the ways round when `exc` is an extension the server does not ship."""
        return None

    @abstractmethod
    def where(self, progress: Progress, commands: Commands) -> str:
        """Where the database stands after the current revision stopped part way, as sentences."""

    # -- chores ------------------------------------------------------------------------------
    @abstractmethod
    def clients(self) -> Clients:
        """The client programs and admin statements behind backup, restore, shell, db-up/reset."""

    # -- the tests' walk (alembic_steady.testing) ---------------------------------------------
    @abstractmethod
    def schema_tracker(self, connection: Connection) -> SchemaTracker:
        """The stairway's snapshot of everything a revision can create."""

    def forget_temporary_tables(self, connection: Connection) -> None:  # noqa: B027
        """Drop the temporary tables revisions made on `connection`, which a new session would
        not see: a step of the stairway runs as a separate `make rollback` or `make migrate`
        would. Where they cannot be listed (MySQL), they stay."""

    def table_filler(self, connection: Connection, given: Mapping[str, str | None]) -> TableFiller:
        """Generated rows for the walk's tables, where the dialect can make them."""
        if given:
            raise CommandError(
                f"The walk puts no generated rows on {self.server}, so the `rows for` and "
                f"`no rows for` markers of {', '.join(sorted(given))} have nothing to act on: "
                "remove those lines."
            )
        return TableFiller(given)

    # -- authoring ---------------------------------------------------------------------------
    def autogenerate_options(  # noqa: B027  (a hook: one dialect needs nothing here)
        self, options: dict[str, Any], writing_revision: bool
    ) -> None:
        """Add the dialect's own hooks to autogenerate's options."""

    @abstractmethod
    def type_change(self, kind: str, *, in_place: bool) -> str:
        """What the server does to a live table when a column's type `kind` ("widens",
        "narrows", "converts") changes, and to its data, for autogenerate's review notes."""

    # -- squashing (tools/squash.py) ---------------------------------------------------------
    # Said between an INSERT's columns and its VALUES when the table has an identity column and
    # the seed rows give its values.
    insert_identity = ""

    @property
    def runners_tables(self) -> tuple[str, ...]:
        """The runner's own tables beside the version table: nobody's model, never squashed."""
        return (checksums.TABLE, backfill_jobs.TABLE)

    def project_schemas(self, connection: Connection) -> list[str | None]:
        """The schemas holding the project's tables: None for the connection's default."""
        return [None]

    @abstractmethod
    def schema_snapshot(self, connection: Connection) -> set[tuple[str, str]]:
        """Everything the stairway compares, read whole: rows as a SchemaTracker's."""

    @abstractmethod
    def squash_objects(self, connection: Connection, metadata: MetaData) -> SquashObjects:
        """What a baseline must make beyond autogenerate's tables (`metadata`), read from the
        catalog of a database the chain built."""

    # -- measuring (tools/plan.py, tools/rehearse.py, the walk) ------------------------------
    @abstractmethod
    def watch(
        self,
        engine: AsyncEngine | Connection,
        url: URL,
        settings: MigrationSettings,
        *,
        probe: bool = False,
    ) -> AbstractContextManager[Watch]:
        """A watch over the revisions run on `engine` (whose database is at `url`). With `probe`,
        that database is a scratch copy the watch may run statements on once more to measure
        them (PostgreSQL's, outside a transaction); MySQL's tries each ALTER on an empty twin of
        its table whatever `probe` says."""

    @abstractmethod
    def table_sizes(self, connection: Connection) -> dict[str, TableSize]:
        """Every table's size from statistics, named as the watch names relations."""

    @abstractmethod
    def blocks_reads(self, mode: str) -> bool:
        """Whether a lock of `mode` on a table stops its readers (ACCESS EXCLUSIVE)."""

    @abstractmethod
    def blocks_writes(self, mode: str) -> bool:
        """Whether a lock of `mode` on a table stops its writers."""

    def mode_name(self, mode: str) -> str:
        """A lock mode as a reviewer reads it."""
        return mode

    @abstractmethod
    def begin_read_only(self, connection: Connection) -> None:
        """Make `connection`'s transaction, not yet begun, read-only."""

    def offline_dialect(  # noqa: B027  (a hook: one dialect needs nothing here)
        self, dialect: Any
    ) -> None:
        """Let `make sql` render what the dialect's revisions hold as literals."""


def first_in_chain(exc: BaseException, pick: Callable[[BaseException], _T | None]) -> _T | None:
    """The first value `pick` finds in `exc` or the exceptions it was raised from (SQLAlchemy
    wraps the driver's error; the runner's messages wrap SQLAlchemy's)."""
    seen: BaseException | None = exc
    while seen is not None:
        found = pick(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


# Runs one attempt of a statement under the policy's retries (see runner/retries.py).
Retry = Callable[[Callable[[], Any], str], Any]


def for_url(url: URL) -> Dialect:
    """The dialect of a database URL."""
    return by_name(url.get_backend_name())


def by_name(backend: str) -> Dialect:
    """The dialect of a backend name ("postgresql", "mysql", "mariadb")."""
    if backend == "postgresql":
        from .postgresql import PostgreSQL

        return PostgreSQL()
    if backend in ("mysql", "mariadb"):
        from .mysql import MySQL

        return MySQL()
    raise CommandError(
        f"{backend} databases are not supported: use a postgresql:// or mysql:// URL."
    )


def parse_url(raw: str, backend: str) -> URL:
    """Parse a database URL of `backend` and switch it to the async driver, keeping its query
    parameters. Errors name the variable and never echo the value, which holds the password."""
    dialect = by_name(backend)
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ValueError(
            f"DATABASE_URL is not a valid URL; expected {dialect.expected_url} "
            "(percent-encode special characters)"
        ) from None
    if url.drivername not in dialect.accepted_schemes:
        raise ValueError(
            f"DATABASE_URL uses the unsupported scheme {url.drivername!r}; {dialect.schemes_hint}"
        )
    return url.set(drivername=dialect.async_driver)
