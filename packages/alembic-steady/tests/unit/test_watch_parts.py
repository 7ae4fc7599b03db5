"""The watches of `make plan`, `make rehearse` and the walk's lock check, the parts that need no
server: lock modes, table sizes, what a PostgreSQL watch records around each statement (on a
session that answers its catalog queries), the MySQL statement parser and the probe's ladder of
algorithms and locks (on a server that answers as told)."""

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import URL
from support import FakeConnection, PyMySQLError, Settings

from alembic_steady.dialects import measured, mysql_watch, postgresql_watch
from alembic_steady.dialects.measured import BOOKKEEPING, Measured, TableSize, Watched
from alembic_steady.dialects.mysql import MySQL
from alembic_steady.dialects.mysql_watch import TWIN, Change, Found, Refusal, parse
from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.runner.progress import PROGRESS, Progress

PG, MY = PostgreSQL(), MySQL()
SCRATCH = URL.create("postgresql+asyncpg", username="app", host="db", database="shop_plan_1")


# -- lock modes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "said", "stops_writers"),
    [
        ("AccessShareLock", "ACCESS SHARE", False),
        ("RowShareLock", "ROW SHARE", False),
        ("RowExclusiveLock", "ROW EXCLUSIVE", False),
        ("ShareUpdateExclusiveLock", "SHARE UPDATE EXCLUSIVE", False),
        ("ShareLock", "SHARE", True),
        ("ShareRowExclusiveLock", "SHARE ROW EXCLUSIVE", True),
        ("ExclusiveLock", "EXCLUSIVE", True),
        ("AccessExclusiveLock", "ACCESS EXCLUSIVE", True),
    ],
)
def test_postgresql_names_each_lock_mode_as_its_documentation_does(
    mode: str, said: str, stops_writers: bool
) -> None:
    assert PG.mode_name(mode) == said
    assert PG.blocks_writes(mode) is stops_writers
    assert PG.blocks_reads(mode) is (mode == "AccessExclusiveLock")


def test_mysql_names_a_lock_by_the_clause_that_asks_for_it() -> None:
    assert [MY.mode_name(mode) for mode in ("NONE", "SHARED")] == ["LOCK=NONE", "LOCK=SHARED"]
    assert [MY.blocks_writes(mode) for mode in ("NONE", "SHARED", "EXCLUSIVE")] == [
        False,
        True,
        True,
    ]
    assert [MY.blocks_reads(mode) for mode in ("NONE", "SHARED", "EXCLUSIVE")] == [
        False,
        False,
        True,
    ]


# -- table sizes and read-only sessions --------------------------------------------------


def test_postgresql_table_sizes_are_whole_numbers_from_its_statistics() -> None:
    # Whatever number types the driver hands back, a plan prints whole rows and bytes.
    connection = FakeConnection([[("public.item", 1500.0, Decimal(16384)), ("app.t", 0, 0)]])
    sizes = PG.table_sizes(connection)
    assert sizes == {"public.item": TableSize(1500, 16384), "app.t": TableSize(0, 0)}
    assert [type(value) for value in vars(sizes["public.item"]).values()] == [int, int]
    ((sql, _),) = connection.sql
    assert "reltuples" in sql and "block_size" in sql and "pg_relation_size" not in sql


def test_mysql_table_sizes_count_unknown_statistics_as_empty() -> None:
    connection = FakeConnection([[("item", 1500, Decimal(16384)), ("fresh", None, None)]])
    sizes = MY.table_sizes(connection)
    assert sizes == {"item": TableSize(1500, 16384), "fresh": TableSize(0, 0)}
    assert [type(value) for value in vars(sizes["item"]).values()] == [int, int]
    assert connection.sql == [
        (
            "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH "
            "FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
            None,
        )
    ]


@pytest.mark.parametrize("dialect", [PG, MY], ids=["postgresql", "mysql"])
def test_a_read_only_transaction_is_asked_for_before_it_begins(dialect: Any) -> None:
    connection = FakeConnection()
    dialect.begin_read_only(connection)
    assert connection.sql == [("SET TRANSACTION READ ONLY", None)]


# -- PostgreSQL: what a watch records around each statement ------------------------------

TABLES_HERE, STATE_HERE = postgresql_watch.TABLES_HERE, postgresql_watch.STATE_HERE
ITEM = "public.item"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


class Events:
    """sqlalchemy.event as the watch uses it: listeners by (target, event name)."""

    def __init__(self) -> None:
        self.listening: dict[tuple[Any, str], list[Callable[..., None]]] = {}

    def listen(self, target: Any, name: str, fn: Callable[..., None]) -> None:
        self.listening.setdefault((target, name), []).append(fn)

    def contains(self, target: Any, name: str, fn: Callable[..., None]) -> bool:
        return fn in self.listening.get((target, name), [])

    def remove(self, target: Any, name: str, fn: Callable[..., None]) -> None:
        self.listening[(target, name)].remove(fn)

    def fire(self, target: Any, name: str, *args: Any) -> None:
        for fn in list(self.listening.get((target, name), [])):
            fn(*args)


class Session:
    """The runner's PostgreSQL session as the watch's listeners get it: its tables (file on
    disk, sequential scans in the transaction) and relation locks, as its catalog queries
    answer them; the runner's record of the revision in its info."""

    def __init__(self, run: Progress | None, *, autocommit: bool = False) -> None:
        self.info: dict[str, Any] = {} if run is None else {PROGRESS: run}
        self.autocommit = autocommit
        self.tables = {ITEM: (1000, 0), "public.orders": (2000, 0)}
        self.locks: set[tuple[str, str]] = set()
        self.oids: dict[str, int] = {}
        self.asked: list[str] = []
        self.connection = SimpleNamespace(
            driver_connection=SimpleNamespace(get_server_pid=lambda: 4242)
        )

    def get_execution_options(self) -> dict[str, Any]:
        return {"isolation_level": "AUTOCOMMIT"} if self.autocommit else {}

    def execute(
        self, query: Any, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        sql = str(query)
        self.asked.append(sql)
        if sql == TABLES_HERE:
            return [
                (name, node, scans, self.oid(name)) for name, (node, scans) in self.tables.items()
            ]
        assert sql == STATE_HERE and parameters is not None, sql
        # The tables it is told of, where their file or scans differ from what it is told.
        known = zip(parameters["oids"], parameters["files"], parameters["scans"], strict=True)
        names = {number: name for name, number in self.oids.items()}
        # A table dropped since is in no catalog row: neither changed nor named (regclass shows
        # its oid).
        changed = [
            ("t", names[number], "", *self.tables[names[number]])
            for number, node, scans in known
            if names[number] in self.tables
            and self.tables[names[number]] != (node, int(scans))  # text[], cast to bigint
        ]
        # The locks on those tables it did not hold already, as it is told.
        held = set(zip(parameters["held_oids"], parameters["held_modes"], strict=True))
        locks = [
            (
                "l",
                relation if relation in self.tables else str(self.oid(relation)),
                mode,
                self.oid(relation),
                0,
            )
            for relation, mode in sorted(self.locks)
            if self.oid(relation) in parameters["oids"] and (self.oid(relation), mode) not in held
        ]
        return locks + changed

    def oid(self, relation: str) -> int:
        """Each relation's oid, the same from its first mention on."""
        return self.oids.setdefault(relation, 16384 + len(self.oids))


class Sampler:
    """The second session: what it saw of the statement it was told to watch."""

    def __init__(self, sees: set[tuple[str, str]] | None = None) -> None:
        self.sees = sees or set()
        self.watched: list[tuple[int, bool]] = []

    def watch(self, pid: int, *, hold: bool = False) -> None:
        self.watched.append((pid, hold))

    def seen(self) -> set[tuple[str, str]]:
        return set(self.sees)


class Prober:
    """Runs a statement once more on the scratch copy: what it finds, in `seconds` on `clock`."""

    def __init__(self, finds: Any = None, clock: Clock | None = None, seconds: float = 0.0) -> None:
        self.finds, self.clock, self.seconds = finds, clock, seconds
        self.asked: list[tuple[str, Any]] = []

    def probe(self, statement: str, parameters: Any) -> Any:
        self.asked.append((statement, parameters))
        if self.clock is not None:
            self.clock.now += self.seconds
        return self.finds


ENGINE = "the engine"


class Watching:
    """A PostgreSQL watch over one revision, on a Session, with the clock in hand."""

    def __init__(self, events: Events, clock: Clock, session: Session) -> None:
        self.events, self.clock, self.session = events, clock, session

    def run(
        self,
        statement: str,
        change: Callable[[Session], None] = lambda session: None,
        *,
        seconds: float = 0.0,
        rowcount: int = -1,
        parameters: Any = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """The runner running `statement` (the watch hears it before and after), with the
        execution `options` SQLAlchemy's context holds."""
        context = SimpleNamespace(execution_options=options or {})
        heard = (statement, parameters, context, False)
        self.events.fire(ENGINE, "before_cursor_execute", self.session, None, *heard)
        change(self.session)
        self.clock.now += seconds
        cursor = SimpleNamespace(rowcount=rowcount)
        self.events.fire(ENGINE, "after_cursor_execute", self.session, cursor, *heard)

    def ends(self, how: str = "commit") -> None:
        """Its transaction commits (or rolls back): its locks go."""
        self.session.locks.clear()
        self.events.fire(ENGINE, how, self.session)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    events = Events()
    monkeypatch.setattr(measured, "event", events)
    return events


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(postgresql_watch, "time", clock)
    monkeypatch.setattr(mysql_watch, "time", clock)
    return clock


def revision(*statements: str, revision: str = "a1 (add x)") -> Progress:
    run = Progress()
    run.revision, run.statements = revision, list(statements)
    return run


@contextmanager
def pg_watching(
    events: Events,
    clock: Clock,
    session: Session,
    sampler: Sampler | None = None,
    prober: Prober | None = None,
    only: set[str] | None = None,
) -> Iterator[tuple[Watching, Watched]]:
    watch = postgresql_watch.PostgreSQLWatch(
        SimpleNamespace(engine=ENGINE), sampler or Sampler(), prober
    )  # type: ignore[arg-type]
    with watch.revision(only) as watched:
        yield Watching(events, clock, session), watched


def takes(*locks: tuple[str, str]) -> Callable[[Session], None]:
    return lambda session: session.locks.update(locks)


def test_only_the_named_revisions_are_measured_the_others_run_unwatched(
    events: Events, clock: Clock
) -> None:
    """The plan's one run builds what the target has, then the pending revisions: the building
    is neither read nor probed (a long history would pay a round trip per statement)."""
    run = revision("UPDATE item SET x = 1", revision="a1 (built)")
    session = Session(run, autocommit=True)
    sampler, prober = Sampler({(ITEM, "RowExclusiveLock")}), Prober(None)
    with pg_watching(events, clock, session, sampler, prober, only={"b2"}) as (watching, watched):
        watching.run("UPDATE item SET x = 1")
        assert (session.asked, sampler.watched, prober.asked) == ([], [], [])
        run.revision, run.statements = "b2 (pending)", ["UPDATE item SET y = 1"]
        watching.run("UPDATE item SET y = 1")
    assert [(m.revision, m.sql) for m in watched.statements] == [("b2", "UPDATE item SET y = 1")]
    assert prober.asked == [("UPDATE item SET y = 1", None)] and sampler.watched == [(4242, False)]


def test_what_makes_a_new_object_naming_no_table_there_before_is_not_read_around(
    events: Events, clock: Clock
) -> None:
    """A squashed baseline's 300 CREATE TABLEs each read every lock the transaction held: the
    walk spent most of the generated suite's time there. What cannot touch a table that was
    there is not read around; what names one, or runs a query, is."""
    run = revision()
    session = Session(run)
    # As regclass names them: on the search path unqualified, quoted where the case is kept.
    session.tables = {"item": (1000, 0), 'app."Xmas"': (2000, 0)}
    made = [
        "CREATE TABLE audit (id SERIAL NOT NULL, at TIMESTAMP, PRIMARY KEY (id))",
        "CREATE UNIQUE INDEX ix_audit_at ON audit (at)",
        'CREATE TABLE "Tag" (id INTEGER GENERATED BY DEFAULT AS IDENTITY, name TEXT)',
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
    ]
    named = [
        "CREATE TABLE line (id int, item_id int REFERENCES item (id))",
        "CREATE INDEX ix_item_x ON public.item (x)",
        'CREATE INDEX ix_xmas ON app."Xmas" (day)',
        "create table gift (id int, xmas_id int references app.xmas (id))",
        "CREATE TABLE snapshot AS SELECT 1",
        "CREATE TABLE t2 AS (WITH w AS (SELECT 1) SELECT * FROM w)",
        "ALTER TABLE audit ADD note text",
    ]
    with pg_watching(events, clock, session) as (watching, _):
        for statement in made + named:
            run.statements.append(statement)
            session.asked.clear()
            watching.run(statement)
            read_around = STATE_HERE in session.asked
            assert read_around is (statement in named), statement


def test_in_a_transaction_each_statement_gets_the_locks_it_took_first(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        run.statements.append("ALTER TABLE item ADD x int")
        watching.run(" ALTER TABLE item ADD x int ", takes((ITEM, "AccessExclusiveLock")))
        run.statements.append("ALTER TABLE item ALTER x SET NOT NULL")

        def reads_item_whole(session: Session) -> None:
            session.tables[ITEM] = (1000, 1)

        watching.run("ALTER TABLE item ALTER x SET NOT NULL", reads_item_whole, seconds=1.5)
        run.statements.append("ALTER TABLE orders ALTER id TYPE bigint")

        def rewrites_orders(session: Session) -> None:
            session.tables["public.orders"] = (2001, 0)
            session.locks.add(("public.orders", "AccessExclusiveLock"))

        clock.now += 0.5
        watching.run("ALTER TABLE orders ALTER id TYPE bigint", rewrites_orders, seconds=2.0)
        clock.now += 1.0
        watching.ends()
    assert watched.statements == [
        Measured(
            "ALTER TABLE item ADD x int",
            in_transaction=True,
            transaction=0,
            locks=[(ITEM, "AccessExclusiveLock")],
            revision="a1",
        ),
        Measured("ALTER TABLE item ALTER x SET NOT NULL", True, 0, scans=[ITEM], revision="a1"),
        Measured(
            "ALTER TABLE orders ALTER id TYPE bigint",
            True,
            0,
            locks=[("public.orders", "AccessExclusiveLock")],
            rewrites=["public.orders"],
            revision="a1",
        ),
    ]
    # Each lock held from the start of the statement that took it until the commit.
    assert watched.held == {
        (ITEM, "AccessExclusiveLock"): 5.0,
        ("public.orders", "AccessExclusiveLock"): 3.0,
    }
    # The tables are read once before the transaction's first statement, then after each.
    assert session.asked == [TABLES_HERE, STATE_HERE, STATE_HERE, STATE_HERE]


def test_the_next_transaction_is_counted_apart_and_reads_the_tables_afresh(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        for n, how in enumerate(("commit", "rollback")):
            run.statements.append(f"UPDATE item SET x = {n}")
            watching.run(f"UPDATE item SET x = {n}", takes((ITEM, "RowExclusiveLock")))
            watching.ends(how)
        run.statements.append("UPDATE item SET x = 2")
        watching.run("UPDATE item SET x = 2", takes((ITEM, "RowExclusiveLock")))
    assert [(s.transaction, s.locks) for s in watched.statements] == [
        (0, [(ITEM, "RowExclusiveLock")]),
        (1, [(ITEM, "RowExclusiveLock")]),
        (2, [(ITEM, "RowExclusiveLock")]),
    ]
    assert session.asked == [TABLES_HERE, STATE_HERE] * 3
    # The last one's lock: held until the revision's end.
    assert watched.held == {(ITEM, "RowExclusiveLock"): 0.0}


def test_a_transaction_that_ran_nothing_watched_keeps_its_number(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        watching.ends()  # the runner's own transaction (the version table), say
        run.statements.append("CREATE TABLE t (x int)")
        watching.run("CREATE TABLE t (x int)")
    assert [s.transaction for s in watched.statements] == [0]


def test_the_runners_own_statements_are_neither_read_around_nor_listed(
    events: Events, clock: Clock
) -> None:
    run = revision("UPDATE alembic_version SET version_num='b2'")
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        for own in (
            "SET lock_timeout = '1s'",
            "  reset statement_timeout",
            "SHOW server_version",
            "UPDATE alembic_version SET version_num='b2'",
            "INSERT INTO alembic_version_checksums VALUES ('b2', 'x')",
        ):
            watching.run(own, takes((ITEM, "RowExclusiveLock")), rowcount=1)
    assert watched == Watched()
    assert session.asked == []


@pytest.mark.parametrize("autocommit", [False, True], ids=["in a transaction", "alone"])
def test_the_toolkits_bookkeeping_is_neither_read_around_probed_nor_listed(
    events: Events, clock: Clock, autocommit: bool
) -> None:
    """ops.py's reads of the catalog and its lock_timeout settings, marked BOOKKEEPING: outside
    a transaction each would cost a probe and several reads (most of a plan's time)."""
    run = revision("SELECT set_config('lock_timeout', '50ms', false)")
    session = Session(run, autocommit=autocommit)
    prober = Prober(finds=({(ITEM, "AccessShareLock")}, [], []))
    with pg_watching(events, clock, session, prober=prober) as (watching, watched):
        for sql in run.statements:
            watching.run(sql, takes((ITEM, "AccessShareLock")), options={BOOKKEEPING: True})
    assert watched == Watched()
    assert session.asked == [] and prober.asked == []
    # Unmarked, the same statement is measured: read around, or probed when alone.
    with pg_watching(events, clock, session, prober=prober) as (watching, watched):
        watching.run(run.statements[0], takes((ITEM, "AccessShareLock")))
    assert (prober.asked if autocommit else session.asked) and len(watched.statements) == 1


def test_a_table_the_statement_drops_is_named_as_it_was_not_by_its_oid(
    events: Events, clock: Clock
) -> None:
    """Read after the statement, a dropped table's lock names its oid (regclass finds no name):
    the plan's lines would change from run to run, and its rows would count for nothing."""
    run = revision("DROP TABLE orders")
    session = Session(run)

    def drops(session: Session) -> None:
        del session.tables["public.orders"]
        session.locks.add(("public.orders", "AccessExclusiveLock"))

    with pg_watching(events, clock, session) as (watching, watched):
        watching.run("DROP TABLE orders", drops)
    assert watched.statements[0].locks == [("public.orders", "AccessExclusiveLock")]


def test_a_statement_beside_the_revisions_is_listed_only_if_it_locks_a_table(
    events: Events, clock: Clock
) -> None:
    run = revision()  # the runner's record: nothing yet
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        watching.run("SELECT indexrelid FROM pg_index WHERE NOT indisvalid")
        watching.run("SELECT count(*) FROM item", takes((ITEM, "AccessShareLock")))
    assert watched.statements == [
        Measured("SELECT count(*) FROM item", True, 0, [(ITEM, "AccessShareLock")], revision="a1")
    ]


def test_rows_are_what_writes_changed_and_what_batches_counted(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        for statement, rowcount in (
            ("INSERT INTO item VALUES (1), (2)", 2),
            ("  update item SET x = 1", 3),
            ("DELETE FROM item WHERE x = 9", 0),
            ("UPDATE item SET x = 2 WHERE false", -1),
            ("SELECT x FROM item", 7),
            ("MERGE INTO item USING t ON true WHEN MATCHED THEN DELETE", 4),
        ):
            run.statements.append(statement)
            watching.run(statement, rowcount=rowcount)
        run.batched_rows = 10
    assert watched.rows == 15
    assert len(watched.statements) == 6


def test_no_run_no_listing_and_no_batch(events: Events, clock: Clock) -> None:
    session = Session(None)
    with pg_watching(events, clock, session) as (watching, watched):
        watching.run("UPDATE item SET x = 1", rowcount=2)
    assert watched == Watched(rows=2)
    assert session.asked == [TABLES_HERE, STATE_HERE]


def test_outside_a_transaction_the_probe_says_what_it_took_and_nothing_else_reads(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run, autocommit=True)
    sampler = Sampler(sees={(ITEM, "RowExclusiveLock")})
    locks = {(ITEM, "RowExclusiveLock"), ("public.orders", "AccessShareLock")}
    prober = Prober(finds=(locks, ["public.orders"], [ITEM]), clock=clock, seconds=3.0)
    with pg_watching(events, clock, session, sampler, prober) as (watching, watched):
        run.statements.append("UPDATE item SET x = upper(x)")
        watching.run("UPDATE item SET x = upper(x)", seconds=0.25, parameters=(1,), rowcount=5)
        run.statements.append("UPDATE item SET x = lower(x)")
        watching.run("UPDATE item SET x = lower(x)", seconds=0.5)
    assert prober.asked == [
        ("UPDATE item SET x = upper(x)", (1,)),
        ("UPDATE item SET x = lower(x)", None),
    ]
    # The probe's reading is exact: the sampler does not watch, nothing is read around it.
    assert sampler.watched == [] and session.asked == []
    assert watched.statements[0] == Measured(
        "UPDATE item SET x = upper(x)",
        in_transaction=False,
        transaction=0,
        locks=[(ITEM, "RowExclusiveLock"), ("public.orders", "AccessShareLock")],
        rewrites=["public.orders"],
        scans=[ITEM],
        revision="a1",
    )
    # Each committed on its own: a transaction of its own.
    assert watched.statements[1].transaction == 1
    # Held while it ran (the probe's time left out): what the probe found, the longest run of
    # the two; the time spent probing is told apart.
    assert watched.probing == 6.0
    assert watched.held == {
        (ITEM, "RowExclusiveLock"): 0.5,
        ("public.orders", "AccessShareLock"): 0.5,
    }
    assert watched.rows == 5


def test_a_statement_the_probe_cannot_run_is_sampled_and_read_around(
    events: Events, clock: Clock
) -> None:
    """It fails on the copy (the real run then says why): the sampler and the session's own
    reads say what it did."""
    run = revision("UPDATE item SET x = upper(x)")
    session = Session(run, autocommit=True)
    sampler = Sampler(sees={(ITEM, "RowExclusiveLock")})
    with pg_watching(events, clock, session, sampler, Prober(finds=None)) as (watching, watched):
        watching.run(run.statements[0])
    assert sampler.watched == [(4242, False)]
    # Its transaction's statistics are gone with it: the tables are read before it.
    assert session.asked == [TABLES_HERE, STATE_HERE]
    assert watched.statements[0].locks == [(ITEM, "RowExclusiveLock")]


def test_outside_a_transaction_without_a_probe_only_the_sampler_tells(
    events: Events, clock: Clock
) -> None:
    run = revision()
    session = Session(run, autocommit=True)
    sampler = Sampler(sees={(ITEM, "ShareUpdateExclusiveLock")})
    with pg_watching(events, clock, session, sampler) as (watching, watched):
        run.statements.append("VACUUM item")

        def scans_and_rewrites(session: Session) -> None:
            session.tables[ITEM] = (1001, 3)

        watching.run("VACUUM item", scans_and_rewrites)
    assert sampler.watched == [(4242, False)]
    # The file it changed is seen; its scans went with its transaction.
    assert watched.statements == [
        Measured(
            "VACUUM item",
            False,
            0,
            [(ITEM, "ShareUpdateExclusiveLock")],
            rewrites=[ITEM],
            revision="a1",
        )
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX CONCURRENTLY ix ON item (x)",
        "create unique index concurrently ix ON item (x)",
        "  CREATE  UNIQUE\n INDEX CONCURRENTLY IF NOT EXISTS ix ON item (x)",
        "REINDEX INDEX CONCURRENTLY ix",
    ],
)
def test_a_concurrent_build_is_held_for_by_the_sampler_and_read_whole_under_its_lock(
    events: Events, clock: Clock, statement: str
) -> None:
    run = revision(statement)
    session = Session(run, autocommit=True)
    sampler = Sampler(sees={(ITEM, "ShareUpdateExclusiveLock"), ("public.ix", "ShareLock")})
    prober = Prober(finds=(set(), [], ["public.orders"]))
    with pg_watching(events, clock, session, sampler, prober) as (watching, watched):
        watching.run(statement, seconds=2.0)
    # PostgreSQL refuses it in a transaction: never probed; held for, to be seen waiting.
    assert prober.asked == []
    assert sampler.watched == [(4242, True)]
    (measured,) = watched.statements
    assert measured.scans == [ITEM]
    assert measured.locks == [(ITEM, "ShareUpdateExclusiveLock"), ("public.ix", "ShareLock")]
    assert watched.held[(ITEM, "ShareUpdateExclusiveLock")] == 2.0


@pytest.mark.parametrize(
    "statement",
    [
        "DROP INDEX CONCURRENTLY ix",
        "vacuum (analyze) item",
        "  CREATE DATABASE scratch",
        "DROP DATABASE scratch",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "CLUSTER item USING ix",
        "REINDEX DATABASE shop",
        "REINDEX SYSTEM shop",
    ],
)
def test_what_postgresql_refuses_in_a_transaction_is_never_probed(
    events: Events, clock: Clock, statement: str
) -> None:
    run = revision(statement)
    session = Session(run, autocommit=True)
    sampler, prober = Sampler(), Prober(finds=(set(), [], []))
    with pg_watching(events, clock, session, sampler, prober) as (watching, watched):
        watching.run(statement)
    assert prober.asked == []
    # Only a concurrent build (of an index) waits for older snapshots: the rest is not held for.
    assert sampler.watched == [(4242, False)]
    assert [s.sql for s in watched.statements] == [statement.strip()]


@pytest.mark.parametrize(
    "statement",
    [
        "REINDEX TABLE item",
        "CREATE INDEX ix_concurrently_made ON item (x)",
        "ALTER TABLE vacuum_log ADD x int",
        "SELECT 'VACUUM' FROM item",
    ],
)
def test_a_statement_that_only_names_such_words_is_probed(
    events: Events, clock: Clock, statement: str
) -> None:
    run = revision(statement)
    session = Session(run, autocommit=True)
    sampler, prober = Sampler(), Prober(finds=({(ITEM, "ShareLock")}, [], [ITEM]))
    with pg_watching(events, clock, session, sampler, prober) as (watching, watched):
        watching.run(statement)
    assert prober.asked == [(statement, None)]
    assert sampler.watched == []
    assert watched.statements[0].scans == [ITEM]


def test_a_watch_stops_listening_when_its_revision_ends(events: Events, clock: Clock) -> None:
    run = revision("UPDATE item SET x = 1", "UPDATE item SET x = 2")
    session = Session(run)
    with pg_watching(events, clock, session) as (watching, watched):
        assert sorted(name for _, name in events.listening) == [
            "after_cursor_execute",
            "before_cursor_execute",
            "commit",
            "rollback",
        ]
    assert all(not fns for fns in events.listening.values())
    watching.run("UPDATE item SET x = 2", rowcount=1)
    assert watched == Watched() and session.asked == []
    # Gone already (the engine went with a failed run): nothing to remove, no error.
    with pg_watching(events, clock, session):
        events.listening.clear()


def test_postgresql_watches_with_a_sampler_and_probes_only_a_scratch_copy(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []

    class MadeSampler(Sampler):
        def __init__(self, url: URL, settings: Any) -> None:
            super().__init__()
            made.append(("sampler", url, settings))

        def __enter__(self) -> "MadeSampler":
            made.append("sampler started")
            return self

        def __exit__(self, *exc: object) -> None:
            made.append("sampler stopped")

    class MadeProber(Prober):
        def __init__(self, url: URL, settings: Any) -> None:
            super().__init__(finds=(set(), [], []))
            made.append(("prober", url, settings))

        def start(self) -> None:
            made.append("prober started")

        def close(self) -> None:
            made.append("prober closed")

    monkeypatch.setattr(postgresql_watch, "Sampler", MadeSampler)
    monkeypatch.setattr(postgresql_watch, "Prober", MadeProber)
    settings = Settings()
    run = revision("ALTER TABLE item ADD x int")
    session = Session(run, autocommit=True)
    target = SimpleNamespace(engine=ENGINE)
    with PG.watch(target, SCRATCH, settings) as watch, watch.revision() as watched:  # type: ignore[arg-type]
        Watching(events, clock, session).run("ALTER TABLE item ADD x int")
    assert made == [("sampler", SCRATCH, settings), "sampler started", "sampler stopped"]
    assert watched.statements[0].sql == "ALTER TABLE item ADD x int"
    made.clear()
    with PG.watch(target, SCRATCH, settings, probe=True) as watch, watch.revision():  # type: ignore[arg-type]
        Watching(events, clock, session).run("ALTER TABLE item ADD x int")
    assert made == [
        ("prober", SCRATCH, settings),
        "prober started",
        ("sampler", SCRATCH, settings),
        "sampler started",
        "sampler stopped",
        "prober closed",
    ]


# -- PostgreSQL: the probe's reading of a statement run once more -------------------------


class ProbeSession:
    """The probe's own session on the scratch copy (asyncpg, through SQLAlchemy)."""

    def __init__(self, change: Callable[["ProbeSession"], None]) -> None:
        self.tables = {ITEM: (1000, 2), "public.orders": (2000, 0)}
        self.locks: set[tuple[str, str]] = set()
        self.change = change
        self.log: list[Any] = []

    async def execute(self, query: Any, parameters: Any = None) -> list[tuple[Any, ...]]:
        sql = str(query)
        self.log.append(sql)
        if sql == postgresql_watch.PROBE_LOCKS:
            assert parameters == {"oids": [1, 2]}  # the tables there before the statement
        if sql == TABLES_HERE:
            oids = {ITEM: 1, "public.orders": 2}
            return [(name, node, scans, oids[name]) for name, (node, scans) in self.tables.items()]
        if sql == "SELECT pg_advisory_unlock_all()":
            self.locks -= {(None, "advisory")}
            return [(True,)]
        assert sql == postgresql_watch.PROBE_LOCKS, sql
        return sorted(self.locks, key=str)

    async def exec_driver_sql(self, statement: str, parameters: Any) -> None:
        self.log.append(("run", statement, parameters))
        self.change(self)

    async def rollback(self) -> None:
        self.log.append("rollback")


def test_the_probe_reads_a_statements_locks_rewrites_and_reads_then_rolls_it_back() -> None:
    def change(session: ProbeSession) -> None:
        session.tables[ITEM] = (1000, 3)
        session.tables["public.orders"] = (2002, 0)
        session.locks |= {(ITEM, "ShareLock"), ("public.orders", "AccessExclusiveLock")}

    session = ProbeSession(change)
    probed = asyncio.run(postgresql_watch._probe(session, "UPDATE ...", {"x": 1}))
    assert probed == (
        {(ITEM, "ShareLock"), ("public.orders", "AccessExclusiveLock")},
        ["public.orders"],
        [ITEM],
    )
    assert session.log == [
        TABLES_HERE,
        ("run", "UPDATE ...", {"x": 1}),
        postgresql_watch.PROBE_LOCKS,
        TABLES_HERE,
        "rollback",
    ]
    # The locks it asks for: the session's own.
    assert "pg_backend_pid()" in postgresql_watch.PROBE_LOCKS and ":pid" not in (
        postgresql_watch.PROBE_LOCKS
    )


def test_an_advisory_lock_the_probed_statement_took_is_released_after_its_rollback() -> None:
    """Taken for the session (pg_advisory_lock), a rollback keeps it: the real run of the
    statement would wait for the probe's session for ever. A table it dropped is named."""

    def change(session: ProbeSession) -> None:
        del session.tables["public.orders"]
        session.locks |= {(None, "advisory"), ("2", "AccessExclusiveLock")}  # type: ignore[arg-type]

    session = ProbeSession(change)
    probed = asyncio.run(postgresql_watch._probe(session, "SELECT pg_advisory_lock(1)", None))
    assert probed == ({("public.orders", "AccessExclusiveLock")}, [], [])
    assert session.log[-3:] == ["rollback", "SELECT pg_advisory_unlock_all()", "rollback"]
    assert (None, "advisory") not in session.locks


def test_a_table_is_rewritten_or_read_whole_between_two_readings() -> None:
    before = {"a": (1, 5), "b": (2, 5), "c": (3, 5), "d": (4, 5)}
    after = [("d", 4, 5), ("c", 30, 5), ("b", 2, 6), ("a", 10, 9), ("new", 7, 1), ("e", 5, 4)]
    assert postgresql_watch._changes(before, after) == (["a", "c"], ["b"])
    assert postgresql_watch._changes({"b": (2, 6)}, [("b", 2, 5)]) == ([], [])
    assert postgresql_watch._changes({}, after) == ([], [])


# -- MySQL: the statement the probe runs on an empty twin ---------------------------------


def probed(sql: str) -> tuple[str, str | None, str | None, str, str | None] | None:
    change = parse(sql)
    if change is None:
        return None
    on_twin = " ".join(change.sql.replace(TWIN, "T").split())
    return on_twin, change.algorithm, change.lock, change.table, change.schema


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "ALTER TABLE `app`.`wid``get` ADD COLUMN x INT",
            ("ALTER TABLE T ADD COLUMN x INT", None, None, "wid`get", "app"),
        ),
        (
            "alter online ignore table app . widget add x int",
            ("ALTER TABLE T add x int", None, None, "widget", "app"),
        ),
        (
            "ALTER TABLE w ADD x INT, ALGORITHM=INPLACE, LOCK = NONE;",
            ("ALTER TABLE T ADD x INT", "INPLACE", "NONE", "w", None),
        ),
        (
            "ALTER TABLE w ALGORITHM COPY, ADD lock_until INT",
            ("ALTER TABLE T ADD lock_until INT", "COPY", None, "w", None),
        ),
        (
            "ALTER TABLE w ADD x INT, algorithm=nocopy, lock=default",
            ("ALTER TABLE T ADD x INT", "INPLACE", None, "w", None),
        ),
        (
            "ALTER TABLE w LOCK=EXCLUSIVE, ALGORITHM=DEFAULT, ADD x INT ;",
            ("ALTER TABLE T ADD x INT", None, "EXCLUSIVE", "w", None),
        ),
        (
            "ALTER TABLE w ALGORITHM=INSTANT, DROP COLUMN y",
            ("ALTER TABLE T DROP COLUMN y", "INSTANT", None, "w", None),
        ),
        (
            "ALTER TABLE w RENAME COLUMN a TO b, RENAME INDEX i TO j, RENAME KEY k TO l",
            (
                "ALTER TABLE T RENAME COLUMN a TO b, RENAME INDEX i TO j, RENAME KEY k TO l",
                None,
                None,
                "w",
                None,
            ),
        ),
        (
            "CREATE UNIQUE INDEX ix ON w (a, b) LOCK=SHARED",
            ("ALTER TABLE T ADD UNIQUE INDEX ix (a, b)", None, "SHARED", "w", None),
        ),
        (
            "create fulltext index if not exists `ix` using btree on app.w (a) algorithm=inplace",
            (
                "ALTER TABLE T ADD fulltext INDEX if not exists `ix` using btree (a)",
                "INPLACE",
                None,
                "w",
                "app",
            ),
        ),
        (
            "CREATE INDEX ix ON `w`(a)",
            ("ALTER TABLE T ADD INDEX ix (a)", None, None, "w", None),
        ),
        (
            "DROP INDEX `ix` ON w",
            ("ALTER TABLE T DROP INDEX `ix`", None, None, "w", None),
        ),
        (
            "ALTER TABLE w DROP INDEX IX;",
            ("ALTER TABLE T DROP INDEX IX", None, None, "w", None),
        ),
        (
            "drop index if exists ix on `app`.`w` algorithm=inplace lock=none",
            ("ALTER TABLE T DROP INDEX if exists ix", "INPLACE", "NONE", "w", "app"),
        ),
    ],
)
def test_what_the_probe_runs_in_place_of_each_statement(sql: str, expected: Any) -> None:
    assert probed(sql) == expected


def test_the_twin_takes_the_change_as_written_around_its_name() -> None:
    change = parse("ALTER TABLE w\n  ADD x INT")
    assert change == Change("w", None, f"ALTER TABLE {TWIN}\n  ADD x INT")
    index = parse("CREATE INDEX ix ON w (a)")
    assert index is not None and index.sql == f"ALTER TABLE {TWIN} ADD INDEX ix  (a)"
    assert parse("DROP INDEX ix ON w;") == Change("w", None, f"ALTER TABLE {TWIN} DROP INDEX ix")


@pytest.mark.parametrize(
    "untold",
    [
        "ALTER TABLE w RENAME TO v",
        "ALTER TABLE w RENAME v",
        "ALTER TABLE w ADD x INT, RENAME AS v",
        "ALTER TABLE w EXCHANGE PARTITION p0 WITH TABLE v",
        "RENAME TABLE w TO v, v2 TO w",
        "ALTER TABLE w ALGORITHM=INPLACE",
        "ALTER TABLE w ALGORITHM=INPLACE, LOCK=NONE;",
        "DROP TABLE w",
        "UPDATE w SET x = 1",
        "CREATE TABLE w (x INT)",
    ],
)
def test_a_change_the_twin_cannot_show_is_not_probed(untold: str) -> None:
    assert parse(untold) is None


# -- MySQL: the server's refusals --------------------------------------------------------

NOT_INSTANT = Refusal(1846, "ALGORITHM=INSTANT is not supported. Reason: x. Try ALGORITHM=COPY.")
NOT_INPLACE = Refusal(1845, "ALGORITHM=INPLACE is not supported for this operation. Try COPY.")


def lock_refused(lock: str) -> Refusal:
    return Refusal(1846, f"LOCK={lock} is not supported. Reason: COPY algorithm. Try LOCK=...")


def test_a_refusal_says_whether_a_stronger_lock_or_the_next_algorithm_may_do() -> None:
    assert lock_refused("NONE").of_lock() and not lock_refused("NONE").of_algorithm("INPLACE")
    assert Refusal(1845, "lock=none is not supported").of_lock()
    assert NOT_INSTANT.of_algorithm("INSTANT") and not NOT_INSTANT.of_lock()
    assert NOT_INPLACE.of_algorithm("INPLACE")
    # An error of the statement's own: neither.
    duplicate = Refusal(1060, "LOCK=... Duplicate column name 'x'")
    assert not duplicate.of_lock() and not duplicate.of_algorithm("INSTANT")
    # A server that does not know ALGORITHM=INSTANT does not parse it: the next may do.
    unknown = Refusal(1064, "You have an error in your SQL syntax near 'algorithm=INSTANT'")
    assert unknown.of_algorithm("INSTANT") and not unknown.of_algorithm("INPLACE")
    assert not Refusal(1064, "You have an error in your SQL syntax near 'x INT'").of_algorithm(
        "INSTANT"
    )


def test_a_prober_tries_the_algorithm_a_statement_names_and_mariadb_better_ones() -> None:
    prober = mysql_watch.Prober()

    def candidates(algorithm: str | None) -> tuple[str, ...]:
        return prober.candidates(Change("w", None, "...", algorithm))

    assert candidates(None) == ("INSTANT", "INPLACE", "COPY")
    assert [candidates(a) for a in ("INSTANT", "INPLACE", "COPY")] == [
        ("INSTANT",),
        ("INPLACE",),
        ("COPY",),
    ]
    assert candidates("NOCOPY") == ()
    prober._learn(Twin(version="10.11.6-MariaDB-log"))  # type: ignore[arg-type]
    assert [candidates(a) for a in ("INSTANT", "INPLACE", "COPY")] == [
        ("INSTANT",),
        ("INSTANT", "INPLACE"),
        ("INSTANT", "INPLACE", "COPY"),
    ]
    assert candidates(None) == ("INSTANT", "INPLACE", "COPY")


# -- MySQL: the probe's session ----------------------------------------------------------


class Cursor:
    def __init__(self, fails: BaseException | None = None) -> None:
        self.fails = fails
        self.ran: list[tuple[Any, ...]] = []
        self.closed = False

    def execute(self, *args: Any) -> None:
        self.ran.append(args)
        if self.fails is not None:
            raise self.fails

    def fetchall(self) -> list[list[Any]]:
        return [["widget", 1], ["gadget", 2]]

    def close(self) -> None:
        self.closed = True


def server_on(cursor: Cursor, parameters: Any) -> mysql_watch.Server:
    conn = SimpleNamespace(
        connection=SimpleNamespace(dbapi_connection=SimpleNamespace(cursor=lambda: cursor)),
        dialect=SimpleNamespace(loaded_dbapi=SimpleNamespace(Error=PyMySQLError)),
    )
    return mysql_watch.Server(conn, parameters)  # type: ignore[arg-type]


def test_the_probes_session_runs_the_statement_with_its_own_parameters_only() -> None:
    cursor = Cursor()
    server = server_on(cursor, {"x": 1})
    assert server.rows("SELECT 1") == [("widget", 1), ("gadget", 2)]
    assert server.run("CREATE TABLE t LIKE w") is None
    assert server.run("ALTER TABLE t ADD x INT DEFAULT %(x)s", as_given=True) is None
    assert cursor.ran == [
        ("SELECT 1",),
        ("CREATE TABLE t LIKE w",),
        ("ALTER TABLE t ADD x INT DEFAULT %(x)s", {"x": 1}),
    ]
    assert server.error is PyMySQLError
    server.close()
    assert cursor.closed
    # No parameters given: the statement as it is (the driver formats nothing).
    cursor = Cursor()
    assert server_on(cursor, None).run("ALTER TABLE t ADD y INT", as_given=True) is None
    assert cursor.ran == [("ALTER TABLE t ADD y INT",)]


def test_the_probes_session_returns_the_servers_refusal() -> None:
    refused = PyMySQLError(1846, "LOCK=NONE is not supported.")
    assert server_on(Cursor(refused), None).run("ALTER ...") == Refusal(
        1846, "LOCK=NONE is not supported."
    )
    assert server_on(Cursor(PyMySQLError("gone")), None).run("ALTER ...") == Refusal(-1, "")
    assert server_on(Cursor(PyMySQLError()), None).run("ALTER ...") == Refusal(-1, "")
    with pytest.raises(ValueError):
        server_on(Cursor(ValueError("not the server's")), None).run("ALTER ...")


# -- MySQL: the probe's ladder of algorithms and locks, on a server that answers as told ---

PROBE = r"`(_plan_probe_[0-9a-f]{16})`"
LEARN = (
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema' "
    "AND TABLE_NAME IN ('INNODB_TABLES', 'INNODB_SYS_TABLES')"
)
NAMED = (
    r"SELECT TABLE_NAME FROM information_schema\.TABLES WHERE TABLE_SCHEMA = DATABASE\(\) "
    r"AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME = '((?:[^'\\]|''|\\.)*)'"
)
TABLE_ID = (
    r"SELECT TABLE_ID FROM information_schema\.(\w+) "
    r"WHERE NAME = CONCAT\(DATABASE\(\), '/(_plan_probe_[0-9a-f]{16})'\)"
)

# What a change does on the twin, given its ALGORITHM= and LOCK= (None: no LOCK= clause):
# None (done in place), "rebuilt" (done, the twin rebuilt) or the server's refusal.
Outcome = Refusal | str | None


def instant(change: str, algorithm: str, lock: str | None) -> Outcome:
    return None


def rebuilt(change: str, algorithm: str, lock: str | None) -> Outcome:
    """A change MySQL makes in place, rebuilding the table (a column dropped, say)."""
    return NOT_INSTANT if algorithm == "INSTANT" else "rebuilt"


class Twin:
    """mysql_watch.Server as a MySQL server would answer it: the probe's queries, exactly; the
    twins it makes, their InnoDB table ids; a change on one as `takes` says."""

    error = PyMySQLError

    def __init__(
        self,
        takes: Callable[[str, str, str | None], Outcome] = instant,
        *,
        version: str = "8.0.36",
        innodb: tuple[str, ...] = ("INNODB_TABLES",),
        ids_readable: bool = True,
        database: str = "app",
        tables: tuple[str, ...] = ("widget",),
    ) -> None:
        self.takes, self.version, self.innodb = takes, version, innodb
        self.ids_readable, self.database, self.tables = ids_readable, database, tables
        self.twins: dict[str, int] = {}
        self.next_id = 100
        self.asked: list[str] = []
        self.tried: list[str] = []  # the changes run on a twin, its name as T
        self.closed = False

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        self.asked.append(sql)
        if sql == "SELECT VERSION()":
            return [(self.version,)]
        if sql == LEARN:
            return [(name,) for name in self.innodb]
        if sql == "SELECT DATABASE()":
            return [(self.database,)]
        if named := re.fullmatch(NAMED, sql):
            # A string literal as MySQL reads it: '' is ', a backslash escapes what follows.
            name = re.sub(r"''|\\(.)", lambda quoted: quoted[1] or "'", named[1])
            return [(name,)] if name in self.tables else []
        if table_id := re.fullmatch(TABLE_ID, sql):
            assert table_id[1] in self.innodb, sql
            if not self.ids_readable:
                raise PyMySQLError(1227, "Access denied; you need the PROCESS privilege")
            # InnoDB names a database whose name holds a '-' otherwise (@002d): none is found.
            twin = table_id[2]
            found = twin in self.twins and "-" not in self.database
            return [(self.twins[twin],)] if found else []
        raise AssertionError(f"not a query of the probe's: {sql}")

    def run(self, sql: str, *, as_given: bool = False) -> Refusal | None:
        self.asked.append(sql)
        if made := re.fullmatch(rf"CREATE TABLE {PROBE} LIKE `((?:[^`]|``)+)`", sql):
            assert not as_given
            if made[2].replace("``", "`") not in self.tables:
                return Refusal(1146, "Table 'app.gone' doesn't exist")
            self.twins[made[1]], self.next_id = self.next_id, self.next_id + 1
            return None
        if dropped := re.fullmatch(rf"DROP TABLE IF EXISTS {PROBE}", sql):
            assert not as_given
            self.twins.pop(dropped[1], None)
            return None
        change = re.fullmatch(
            rf"ALTER TABLE {PROBE}(.*), ALGORITHM=(\w+)(?:, LOCK=(\w+))?", sql, re.S
        )
        assert change is not None and change[1] in self.twins and as_given, sql
        tried = f"T {' '.join(change[2].split())}, ALGORITHM={change[3]}"
        self.tried.append(tried + (f", LOCK={change[4]}" if change[4] else ""))
        outcome = self.takes(change[2], change[3], change[4])
        if outcome == "rebuilt":
            self.twins[change[1]], self.next_id = self.next_id, self.next_id + 1
            return None
        assert not isinstance(outcome, str)
        return outcome

    def close(self) -> None:
        self.closed = True


def probe(
    twin: Twin,
    statement: str,
    monkeypatch: pytest.MonkeyPatch,
    prober: mysql_watch.Prober | None = None,
    parameters: Any = None,
) -> Found | None:
    """The probe of `statement` on `twin`, whose twins are all dropped after."""
    given: list[Any] = []

    def server(conn: Any, parameters: Any) -> Twin:
        given.append((conn, parameters))
        return twin

    monkeypatch.setattr(mysql_watch, "Server", server)
    found = (prober or mysql_watch.Prober()).probe("conn", statement, parameters)  # type: ignore[arg-type]
    assert given in ([], [("conn", parameters)])
    assert twin.twins == {}, "a twin left behind"
    assert twin.closed or not given
    return found


def test_an_instant_change_is_found_instant_without_a_lock_clause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twin = Twin()
    found = probe(twin, "ALTER TABLE widget ADD COLUMN x INT", monkeypatch)
    assert found == Found("widget", "INSTANT", "NONE", rebuilds=False)
    assert twin.tried == ["T ADD COLUMN x INT, ALGORITHM=INSTANT"]
    made, changed, dropped = (re.sub(PROBE, "`T`", sql) for sql in twin.asked[4:9:2])
    assert (made, changed, dropped) == (
        "CREATE TABLE `T` LIKE `widget`",
        "ALTER TABLE `T` ADD COLUMN x INT, ALGORITHM=INSTANT",
        "DROP TABLE IF EXISTS `T`",
    )


def test_the_next_algorithm_then_the_next_lock_is_tried_until_the_server_takes_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def index(change: str, algorithm: str, lock: str | None) -> Outcome:
        if algorithm == "INSTANT":
            return NOT_INSTANT
        return lock_refused("NONE") if lock == "NONE" else None

    twin = Twin(index)
    found = probe(twin, "CREATE FULLTEXT INDEX ft ON widget (note)", monkeypatch, parameters={})
    assert found == Found("widget", "INPLACE", "SHARED", rebuilds=False)
    assert twin.tried == [
        "T ADD FULLTEXT INDEX ft (note), ALGORITHM=INSTANT",
        "T ADD FULLTEXT INDEX ft (note), ALGORITHM=INPLACE, LOCK=NONE",
        "T ADD FULLTEXT INDEX ft (note), ALGORITHM=INPLACE, LOCK=SHARED",
    ]


def test_a_change_in_place_that_gives_the_table_a_new_id_rebuilds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = probe(Twin(rebuilt), "ALTER TABLE widget DROP COLUMN note", monkeypatch)
    assert found == Found("widget", "INPLACE", "NONE", rebuilds=True)
    # MariaDB names its table of InnoDB ids otherwise.
    twin = Twin(rebuilt, version="10.6.16-MariaDB", innodb=("INNODB_SYS_TABLES",))
    found = probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch)
    assert found == Found("widget", "INPLACE", "NONE", rebuilds=True)


def test_a_copy_rewrites_the_table_and_never_lets_writes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def copied(change: str, algorithm: str, lock: str | None) -> Outcome:
        return None if algorithm == "COPY" else NOT_INPLACE

    twin = Twin(copied, innodb=())
    found = probe(twin, "ALTER TABLE widget MODIFY price BIGINT", monkeypatch)
    assert found == Found("widget", "COPY", "SHARED", rebuilds=True)
    assert twin.tried[1:] == [
        "T MODIFY price BIGINT, ALGORITHM=INPLACE, LOCK=NONE",
        "T MODIFY price BIGINT, ALGORITHM=COPY, LOCK=SHARED",
    ]


def test_the_strongest_lock_is_tried_last(monkeypatch: pytest.MonkeyPatch) -> None:
    def exclusive(change: str, algorithm: str, lock: str | None) -> Outcome:
        return None if lock == "EXCLUSIVE" else lock_refused(lock or "NONE")

    twin = Twin(exclusive)
    found = probe(twin, "ALTER TABLE widget ADD SPATIAL INDEX (g)", monkeypatch)
    assert found == Found("widget", "INPLACE", "EXCLUSIVE", rebuilds=False)
    assert [tried.rpartition(", ")[2] for tried in twin.tried] == [
        "ALGORITHM=INSTANT",
        "LOCK=NONE",
        "LOCK=SHARED",
        "LOCK=EXCLUSIVE",
    ]


def test_nothing_is_found_where_no_algorithm_and_lock_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(change: str, algorithm: str, lock: str | None) -> Outcome:
        return NOT_INPLACE if lock is None else lock_refused(lock)

    twin = Twin(never)
    assert probe(twin, "ALTER TABLE widget ADD x INT", monkeypatch) is None
    assert len(twin.tried) == 6  # INSTANT; INPLACE under 3 locks; COPY under 2


def test_an_error_of_the_statements_own_ends_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def duplicate(change: str, algorithm: str, lock: str | None) -> Outcome:
        return Refusal(1060, "Duplicate column name 'x'")

    twin = Twin(duplicate)
    assert probe(twin, "ALTER TABLE widget ADD x INT", monkeypatch) is None
    assert len(twin.tried) == 1


def test_a_server_that_cannot_parse_instant_is_asked_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def old(change: str, algorithm: str, lock: str | None) -> Outcome:
        if algorithm == "INSTANT":
            return Refusal(1064, "You have an error in your SQL syntax near 'ALGORITHM=INSTANT'")
        return None

    found = probe(Twin(old, version="5.7.44"), "ALTER TABLE widget ADD x INT", monkeypatch)
    assert found == Found("widget", "INPLACE", "NONE", rebuilds=False)


def test_the_statements_own_algorithm_and_lock_are_the_ones_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twin = Twin(lambda change, algorithm, lock: lock_refused("NONE"))
    statement = "ALTER TABLE widget ADD x INT, ALGORITHM=INPLACE, LOCK=NONE"
    assert probe(twin, statement, monkeypatch) is None
    assert twin.tried == ["T ADD x INT, ALGORITHM=INPLACE, LOCK=NONE"]
    # MariaDB does better than the algorithm named where it can: INSTANT, under LOCK=NONE.
    twin = Twin(version="10.11.6-MariaDB")
    found = probe(twin, statement, monkeypatch)
    assert found == Found("widget", "INSTANT", "NONE", rebuilds=False)
    assert twin.tried == ["T ADD x INT, ALGORITHM=INSTANT, LOCK=NONE"]


def test_without_a_readable_table_id_a_rebuild_in_place_is_not_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prober = mysql_watch.Prober()
    twin = Twin(rebuilt, ids_readable=False)
    for _ in range(2):
        found = probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch, prober)
        assert found == Found("widget", "INPLACE", "NONE", rebuilds=False)
    # Asked once: the first refusal is the user's privileges, not the statement.
    assert sum(sql.startswith("SELECT TABLE_ID") for sql in twin.asked) == 1
    # What the server is, learned once per watch.
    assert twin.asked.count("SELECT VERSION()") == 1 and twin.asked.count(LEARN) == 1
    # No table of ids on this server: none asked.
    twin = Twin(rebuilt, innodb=())
    assert probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch) == Found(
        "widget", "INPLACE", "NONE", rebuilds=False
    )
    assert not any(sql.startswith("SELECT TABLE_ID") for sql in twin.asked)


def test_mysql_8_reads_its_own_table_of_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    twin = Twin(rebuilt, innodb=("INNODB_TABLES", "INNODB_SYS_TABLES"))
    assert probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch) == Found(
        "widget", "INPLACE", "NONE", rebuilds=True
    )
    twin = Twin(rebuilt, innodb=("INNODB_SYS_TABLES", "OTHER"))
    assert probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch) == Found(
        "widget", "INPLACE", "NONE", rebuilds=True
    )


def test_a_twin_without_a_table_id_found_is_not_told_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twin = Twin(rebuilt, database="shop-plan")
    assert probe(twin, "ALTER TABLE widget DROP COLUMN note", monkeypatch) == Found(
        "widget", "INPLACE", "NONE", rebuilds=False
    )


def test_only_a_base_table_of_the_scratch_database_is_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twin = Twin()
    assert probe(twin, "ALTER TABLE other.widget ADD x INT", monkeypatch) is None
    assert probe(twin, "ALTER TABLE `app`.widget ADD x INT", monkeypatch) is not None
    assert probe(twin, "ALTER TABLE view_of_widget ADD x INT", monkeypatch) is None
    assert twin.tried == ["T ADD x INT, ALGORITHM=INSTANT"]
    # Not a change the twin can take: no session at all.
    assert probe(Twin(), "RENAME TABLE widget TO w2", monkeypatch) is None


def test_a_table_whose_name_needs_quoting_is_found_and_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("it's", "back\\slash", "wid`get"):
        twin = Twin(tables=(name,))
        quoted = "`" + name.replace("`", "``") + "`"
        found = probe(twin, f"ALTER TABLE {quoted} ADD x INT", monkeypatch)
        assert found == Found(name, "INSTANT", "NONE", rebuilds=False), name
        assert any(sql.endswith(f" LIKE {quoted}") for sql in twin.asked)


def test_a_twin_that_cannot_be_made_tells_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    twin = Twin()
    original = twin.run

    def no_twin(sql: str, *, as_given: bool = False) -> Refusal | None:
        if sql.startswith("CREATE TABLE"):  # a user without the CREATE privilege
            return Refusal(1142, "CREATE command denied")
        return original(sql, as_given=as_given)

    twin.run = no_twin  # type: ignore[method-assign]
    assert probe(twin, "ALTER TABLE widget ADD x INT", monkeypatch) is None
    assert twin.tried == []


def test_an_error_reading_the_server_tells_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    twin = Twin()

    def refused(sql: str) -> list[tuple[Any, ...]]:
        raise PyMySQLError(1045, "Access denied")

    twin.rows = refused  # type: ignore[method-assign]
    assert probe(twin, "ALTER TABLE widget ADD x INT", monkeypatch) is None
    assert twin.closed


# -- MySQL: what a watch records ---------------------------------------------------------


class MyProber:
    def __init__(self, finds: Found | None = None) -> None:
        self.finds = finds
        self.asked: list[tuple[Any, str, Any]] = []

    def probe(self, conn: Any, statement: str, parameters: Any) -> Found | None:
        self.asked.append((conn, statement, parameters))
        return self.finds


@contextmanager
def my_watching(
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
    finds: Found | None = None,
    only: set[str] | None = None,
) -> Iterator[tuple[MyProber, Watched]]:
    prober = MyProber(finds)
    monkeypatch.setattr(mysql_watch, "Prober", lambda: prober)
    with (
        MY.watch(SimpleNamespace(engine=ENGINE), SCRATCH, Settings(), probe=True) as watch,  # type: ignore[arg-type]
        watch.revision(only) as watched,
    ):
        yield prober, watched


def my_run(
    events: Events,
    conn: Any,
    statement: str,
    *,
    parameters: Any = None,
    many: bool = False,
    rowcount: int = -1,
    ran: str | None = None,
    seconds: float = 0.0,
) -> None:
    """The runner running `statement` on `conn` (`ran`: what the watch hears after it)."""
    events.fire(ENGINE, "before_cursor_execute", conn, None, statement, parameters, None, many)
    clock = mysql_watch.time
    clock.now += seconds  # type: ignore[attr-defined]
    cursor = SimpleNamespace(rowcount=rowcount)
    events.fire(ENGINE, "after_cursor_execute", conn, cursor, ran or statement, parameters)


def test_mysql_only_the_named_revisions_are_tried_on_twins(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = revision("ALTER TABLE widget ADD x int", revision="a1 (built)")
    conn = SimpleNamespace(info={PROGRESS: run})
    found = Found("widget", "INSTANT", "NONE", False)
    with my_watching(events, monkeypatch, found, only={"b2"}) as (prober, watched):
        my_run(events, conn, "ALTER TABLE widget ADD x int")
        run.revision, run.statements = "b2 (pending)", ["ALTER TABLE widget ADD y int"]
        my_run(events, conn, "ALTER TABLE widget ADD y int")
    assert [statement for _, statement, _ in prober.asked] == ["ALTER TABLE widget ADD y int"]
    assert [(m.revision, m.sql) for m in watched.statements] == [
        ("b2", "ALTER TABLE widget ADD y int")
    ]


def test_mysql_each_statement_is_measured_as_the_probe_found_it(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = revision()
    conn = SimpleNamespace(info={PROGRESS: run})
    with my_watching(events, monkeypatch, Found("widget", "INPLACE", "NONE", True)) as (
        prober,
        watched,
    ):
        run.statements.append("ALTER TABLE widget MODIFY note TEXT")
        my_run(
            events, conn, " ALTER TABLE widget MODIFY note TEXT ", parameters={"a": 1}, seconds=2.5
        )
        prober.finds = Found("widget", "INSTANT", "NONE", False)
        run.statements.append("ALTER TABLE widget ADD x INT")
        my_run(events, conn, "ALTER TABLE widget ADD x INT")
    assert prober.asked == [
        (conn, " ALTER TABLE widget MODIFY note TEXT ", {"a": 1}),
        (conn, "ALTER TABLE widget ADD x INT", None),
    ]
    assert watched.statements == [
        Measured(
            "ALTER TABLE widget MODIFY note TEXT",
            in_transaction=False,
            transaction=0,
            locks=[("widget", "NONE")],
            rewrites=["widget"],
            algorithm="INPLACE",
            revision="a1",
        ),
        Measured(
            "ALTER TABLE widget ADD x INT",
            in_transaction=False,
            transaction=1,
            locks=[("widget", "NONE")],
            algorithm="INSTANT",
            revision="a1",
        ),
    ]
    assert watched.held == {("widget", "NONE"): 2.5}


@pytest.mark.parametrize(
    ("found", "reads_whole"),
    [
        (Found("widget", "INPLACE", "SHARED", False), True),
        (Found("widget", "INPLACE", "EXCLUSIVE", False), True),
        (Found("widget", "INPLACE", "NONE", False), False),
        (Found("widget", "INPLACE", "SHARED", True), False),
        (Found("widget", "COPY", "SHARED", True), False),
        (Found("widget", "INSTANT", "SHARED", False), False),
    ],
)
def test_mysql_a_change_in_place_under_a_lock_reads_the_table_whole(
    events: Events,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    found: Found,
    reads_whole: bool,
) -> None:
    run = revision("CREATE INDEX ix ON widget (a)")
    conn = SimpleNamespace(info={PROGRESS: run})
    with my_watching(events, monkeypatch, found) as (_, watched):
        my_run(events, conn, "CREATE INDEX ix ON widget (a)")
    (measured,) = watched.statements
    assert measured.scans == (["widget"] if reads_whole else [])
    assert measured.rewrites == (["widget"] if found.rebuilds else [])
    assert measured.locks == [("widget", found.lock)]


def test_mysql_the_runners_bookkeeping_and_what_runs_around_a_revision_are_not_listed(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = revision()
    conn = SimpleNamespace(info={PROGRESS: run})
    with my_watching(events, monkeypatch) as (prober, watched):
        for own, revisions in (
            ("UPDATE alembic_version SET version_num='b2'", "UPDATE widget SET x = 1"),
            (
                "INSERT INTO alembic_version_checksums VALUES ('b2')",
                "INSERT INTO widget VALUES (1)",
            ),
            ("INSERT INTO alembic_steady_progress VALUES (1)", "INSERT INTO widget VALUES (2)"),
        ):
            run.statements.append(revisions)
            # The runner's bookkeeping, between its record of a statement and the statement.
            my_run(events, conn, own, rowcount=1)
            my_run(events, conn, revisions, rowcount=1)
        run.statements.append("CREATE TABLE t (x INT)")
        my_run(events, conn, "SELECT 1")  # a check of the runner's: not the revision's
        my_run(events, SimpleNamespace(info={}), "CREATE TABLE t (x INT)")  # another session's
        # Heard after the revision's statement: another one, not it.
        my_run(events, conn, "CREATE TABLE t (x INT)", ran="SELECT 2")
    assert [statement for _, statement, _ in prober.asked] == [*run.statements]
    assert [s.sql for s in watched.statements] == run.statements[:3]
    assert watched.rows == 3


def test_mysql_rows_and_percent_signs_as_the_revision_wrote_them(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = revision()
    conn = SimpleNamespace(info={PROGRESS: run})
    with my_watching(events, monkeypatch) as (prober, watched):
        for statement, parameters, rowcount in (
            ("UPDATE widget SET note = '100%%' WHERE id = 1", (), 3),
            ("update widget SET note = '5%%' WHERE id = %s", (7,), -1),
            ("DELETE FROM widget WHERE note LIKE 'x%%'", None, 2),
            ("INSERT INTO widget (note) VALUES ('%%')", {}, 4),
            ("SELECT 1 FROM widget WHERE note = '%%'", (), 9),
        ):
            run.statements.append(statement)
            my_run(events, conn, statement, parameters=parameters, rowcount=rowcount)
        run.statements.append("INSERT INTO widget (note) VALUES (%s)")
        many = [(1,), (2,)]
        my_run(
            events,
            conn,
            "INSERT INTO widget (note) VALUES (%s)",
            parameters=many,
            many=True,
            rowcount=2,
        )
    assert [s.sql for s in watched.statements] == [
        "UPDATE widget SET note = '100%' WHERE id = 1",
        "update widget SET note = '5%%' WHERE id = %s",
        "DELETE FROM widget WHERE note LIKE 'x%%'",
        "INSERT INTO widget (note) VALUES ('%')",
        "SELECT 1 FROM widget WHERE note = '%'",
        "INSERT INTO widget (note) VALUES (%s)",
    ]
    assert watched.rows == 3 + 2 + 4 + 2
    assert [s.transaction for s in watched.statements] == [0, 1, 2, 3, 4, 5]
    # Each row of an executemany() is no change to probe.
    assert len(prober.asked) == 5
    assert all(s.locks == [] and s.algorithm is None for s in watched.statements)


def test_mysql_a_watch_stops_listening_when_its_revision_ends(
    events: Events, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with my_watching(events, monkeypatch):
        assert sorted(name for _, name in events.listening) == [
            "after_cursor_execute",
            "before_cursor_execute",
        ]
    assert all(not fns for fns in events.listening.values())
    with my_watching(events, monkeypatch):
        events.listening.clear()


def test_a_relation_is_named_by_regclass_or_else_by_its_name_before_the_statement() -> None:
    known = {"public.item": 16384, "app.order": 16390}
    assert postgresql_watch._named("public.item", known) == "public.item"
    assert postgresql_watch._named("16390", known) == "app.order"  # dropped by the statement
    assert postgresql_watch._named("16999", known) == "16999"  # never known: its oid, as shown
