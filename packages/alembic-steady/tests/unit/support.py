"""Fakes and small builders shared by the unit tests: no database, no network, no sleeping."""

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from alembic_steady import Project, StaticSettings
from alembic_steady.dialects.base import Dialect
from alembic_steady.runner.progress import Progress

# -- settings and projects -------------------------------------------------------------------


DEFAULT_URL = URL.create(
    "postgresql+asyncpg",
    username="app",
    password="s3cret-pw",
    host="db.internal",
    port=5432,
    database="shop",
)


def Settings(url: URL | None = DEFAULT_URL, **values: Any) -> StaticSettings:
    """Everything `MigrationSettings` asks for, with the template's defaults: the toolkit's
    own StaticSettings, on a URL with a password."""
    return StaticSettings(url, **values)


def make_project(root: Path | None = None, package: str = "shop", **kwargs: Any) -> Project:
    """A Project whose settings are never read unless a test says so."""
    migrations = (root or Path("/nowhere")) / "migrations"
    kwargs.setdefault("settings", lambda: None)
    return Project(package=package, migrations=migrations, root=root, **kwargs)


# -- a revision chain on disk ----------------------------------------------------------------

REVISION = '''"""{doc}"""

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def write_revisions(versions: Path, chain: Iterable[tuple[str, str | None]]) -> None:
    """Revision files for (revision, down_revision) pairs, each documented "step <rev>"."""
    versions.mkdir(parents=True, exist_ok=True)
    for rev, down in chain:
        text = REVISION.format(doc=f"step {rev}", rev=rev, down=repr(down))
        (versions / f"{rev}_step.py").write_text(text, encoding="utf-8")


def script_directory(folder: Path, chain: Iterable[tuple[str, str | None]]) -> ScriptDirectory:
    """A ScriptDirectory over revision files only (no env.py needed to load revisions)."""
    versions = folder / "versions"
    write_revisions(versions, chain)
    return ScriptDirectory(str(folder), version_locations=[str(versions)])


LINEAR = (("a", None), ("b", "a"), ("c", "b"))


# -- driver errors ---------------------------------------------------------------------------


class PgError(Exception):
    """An asyncpg-style error: its SQLSTATE in `sqlstate`."""

    def __init__(self, message: str = "", sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PyMySQLError(Exception):
    """A PyMySQL-style error: args are (errno, message)."""


def wrapped(orig: BaseException, *, invalidated: bool = False) -> OperationalError:
    """The driver's error as SQLAlchemy raises it."""
    return OperationalError(
        "ALTER TABLE item ADD COLUMN x int", {}, orig, connection_invalidated=invalidated
    )


def pg_error(sqlstate: str, message: str = "error") -> OperationalError:
    return wrapped(PgError(message, sqlstate))


def mysql_error(number: int, message: str = "error") -> OperationalError:
    return wrapped(PyMySQLError(number, message))


def lock_timeout_pg() -> OperationalError:
    return pg_error("55P03", "canceling statement due to lock timeout")


# -- a connection that records -------------------------------------------------------------


class FakeResult:
    def __init__(self, rows: list[tuple[Any, ...]] | None = None) -> None:
        self.rows = rows or []

    def all(self) -> list[tuple[Any, ...]]:
        return list(self.rows)

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def one(self) -> tuple[Any, ...]:
        assert len(self.rows) == 1, self.rows
        return self.rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class FakeConnection:
    """Records what is run on it (`log` holds "execute", "commit", "rollback" in order; `sql` the
    statements with their parameters) and answers each execute() with the next of `results`."""

    def __init__(
        self,
        results: Iterable[list[tuple[Any, ...]]] = (),
        isolation_level: str | None = None,
        log: list[str] | None = None,
    ) -> None:
        self.results = list(results)
        self.log: list[str] = [] if log is None else log
        self.sql: list[tuple[str, dict[str, Any] | None]] = []
        self.options = {"isolation_level": isolation_level} if isolation_level else {}
        self.info: dict[str, Any] = {}  # SQLAlchemy's per-connection dict

    def execute(self, statement: Any, params: dict[str, Any] | None = None) -> FakeResult:
        self.log.append("execute")
        self.sql.append((str(statement), params))
        return FakeResult(self.results.pop(0) if self.results else [])

    def exec_driver_sql(self, statement: str) -> FakeResult:
        return self.execute(statement)

    def commit(self) -> None:
        self.log.append("commit")

    def rollback(self) -> None:
        self.log.append("rollback")

    def get_execution_options(self) -> dict[str, Any]:
        return dict(self.options)


# -- a dialect for the retry loop ------------------------------------------------------------


class LockTimeout(Exception):
    """What the fake dialect calls a lock timeout."""


class FakeDialect:
    """The part of a Dialect `with_retries` uses; every call lands in `events` (shared with the
    connection's log when given one, so their order can be asserted)."""

    def __init__(self, events: list[str] | None = None, may_retry: bool = True) -> None:
        self.events = [] if events is None else events
        self.attempts: list[int] = []
        self.described: list[str] = []
        self.retry_allowed = may_retry

    def set_lock_timeout(self, connection: Any, policy: Any, attempt: int) -> str:
        self.attempts.append(attempt)
        self.events.append(f"lock_timeout {attempt}")
        return f"{int(policy.timeout_ms(attempt))}ms"

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, LockTimeout)

    def may_retry(self, progress: Progress) -> bool:
        self.events.append("may_retry")
        return self.retry_allowed

    def describe_blockers(self, connection: Any, statement: str) -> str:
        self.described.append(statement)
        self.events.append("describe_blockers")
        return "pid 42 (application_name 'api', idle in transaction)"


def failing(times: int, error: Callable[[], BaseException], events: list[str]) -> Callable[[], str]:
    """An attempt that raises `error()` the first `times` calls, then returns "done"."""
    calls = {"n": 0}

    def attempt() -> str:
        calls["n"] += 1
        events.append("attempt")
        if calls["n"] <= times:
            raise error()
        return "done"

    return attempt


def run_statement(
    dialect: Dialect,
    connection: Any,
    sql: str,
    run: Callable[[], Any],
    progress: Progress,
    retry: Any,
) -> Any:
    """One statement through a dialect as the runner passes it: recorded, then run."""
    progress.statements.append(sql)
    return dialect.on_statement(connection, sql, run, progress, retry)


class FakeAsyncConnection:
    """The AsyncConnection the runner's lock calls await, over a FakeConnection (`sync`), which
    records and answers; `run_sync(fn, ...)` calls fn with it."""

    def __init__(self, sync: FakeConnection) -> None:
        self.sync = sync

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> FakeResult:
        return self.sync.execute(statement, params)

    async def commit(self) -> None:
        self.sync.commit()

    async def rollback(self) -> None:
        self.sync.rollback()

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.sync, *args)


# -- an async engine without a server --------------------------------------------------------


class StandInEngine:
    """What create_async_engine returns, to code that only connects and runs sync functions on
    the connection: `run_sync(fn)` calls fn(self.connection). Records the URL and arguments it
    was made with, every connection (`begin` or `connect`) and whether it was disposed;
    `refuse` makes connecting raise it."""

    def __init__(self, url: Any, **kwargs: Any) -> None:
        self.url, self.kwargs = url, kwargs
        self.connection: Any = object()
        self.opened: list[str] = []
        self.disposed = False
        self.refuse: BaseException | None = None

    def connect(self) -> "StandInEngine._Opened":
        return StandInEngine._Opened(self, "connect")

    def begin(self) -> "StandInEngine._Opened":
        return StandInEngine._Opened(self, "begin")

    async def dispose(self) -> None:
        self.disposed = True

    async def run_sync(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.connection)

    class _Opened:
        def __init__(self, engine: "StandInEngine", how: str) -> None:
            self.engine, self.how = engine, how

        async def __aenter__(self) -> "StandInEngine":
            if self.engine.refuse is not None:
                raise self.engine.refuse
            self.engine.opened.append(self.how)
            return self.engine

        async def __aexit__(self, *exc: object) -> None:
            return None
