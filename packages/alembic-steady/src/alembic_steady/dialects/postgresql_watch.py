"""Watching revisions run on PostgreSQL, for `make plan` and `make rehearse`: for each statement,
the relation locks it takes, the tables it rewrites (a new relfilenode) or reads whole (a
sequential scan in its transaction's statistics); for each revision, the rows it changes and how
long each lock is held.

A statement in a transaction is read by its own session, before and after it: a lock it takes is
held until the transaction ends. A statement outside one (an autocommit_block()) has committed,
and released its locks, by the time it returns, so a second session samples its locks while it
runs."""

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from ..project import MigrationSettings
from ..runner.progress import PROGRESS, Progress
from .measured import (
    Listed,
    Measured,
    Watched,
    bookkeeping,
    listening,
    revision_statement,
    running_revision,
    watched_revision,
)
from .postgresql import in_autocommit
from .postgresql_clients import engine_for

# The tables, views and sequences a revision can lock, leaving out the catalog and Alembic's
# version table (its bookkeeping, not the revision's doing).
_RELATIONS = """
SELECT oid FROM pg_class
 WHERE relkind IN ('r', 'p', 'm', 'S') AND relname NOT LIKE 'alembic_version%'
   AND relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
"""
# The relation locks a backend holds, with the mode.
LOCKS = f"""
SELECT relation::regclass::text, mode FROM pg_locks
 WHERE pid = :pid AND locktype = 'relation' AND granted AND relation IN ({_RELATIONS})
"""
# The probe's reading after its statement: its relation locks (those it dropped too, known by
# :oids, the tables there before it), and a row without a relation when it holds an advisory
# lock, which its rollback does not release if the statement took it for the session
# (pg_advisory_lock): held on, it would stop the real run of the statement.
PROBE_LOCKS = f"""
SELECT relation::regclass::text, mode FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted
   AND (relation IN ({_RELATIONS}) OR relation = ANY(CAST(:oids AS oid[])))
UNION ALL
SELECT NULL, 'advisory' FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'
"""
# Each table's file on disk and the sequential scans of it so far in this session's transaction
# (statistics not yet sent: a delta over one statement is that statement's), and its oid.
TABLES_HERE = f"""
SELECT c.oid::regclass::text, c.relfilenode, coalesce(pg_stat_get_xact_numscans(c.oid), 0),
       c.oid::bigint
  FROM pg_class c
 WHERE c.relkind IN ('r', 'p', 'm') AND c.oid IN ({_RELATIONS})
"""
# Whether the sampler's session is what `:pid` waits for.
WAITS_ON_ME = "SELECT pg_backend_pid() = ANY(pg_blocking_pids(:pid))"
# A statement that waits, at its end, for the transactions with older snapshots.
_WAITS_FOR_SNAPSHOTS = re.compile(
    r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX|REINDEX)\s.*\bCONCURRENTLY\b", re.I | re.S
)
# The lock a concurrent index build holds on its table.
_BUILDS_UNDER = "ShareUpdateExclusiveLock"
# Statements PostgreSQL refuses inside a transaction block.
_NEVER_IN_TRANSACTION = re.compile(
    r"\bCONCURRENTLY\b|^\s*(VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CLUSTER|REINDEX\s+(SYSTEM|DATABASE))\b",
    re.I,
)
# Both at once, after a statement, only what is new since the one before, of the tables there
# when its transaction began (:oids, with their :files and :scans then; a table the transaction
# made is empty, and no other session sees it): ('l', relation, mode, oid, 0) for the locks on
# them the transaction did not hold yet (:held_oids with :held_modes), and ('t', table, '', file,
# scans) for those whose file or scans changed. A 300-table baseline in one transaction holds a
# lock on each table it made: reading every lock and table after each statement was O(n^2), and
# the walk took most of the generated suite's time on such a history. The arrays are oid[] and
# text[], types asyncpg knows: it looks a bigint[] up in the catalog at its first use after each DDL
# statement (SQLAlchemy clears the driver's caches then), 3 ms a read, most of a plan's reading.
STATE_HERE = """
SELECT 'l', relation::regclass::text, mode, relation::bigint, 0::bigint FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted
   AND relation = ANY(CAST(:oids AS oid[]))
   AND (relation, mode) NOT IN (
       SELECT * FROM unnest(CAST(:held_oids AS oid[]), CAST(:held_modes AS text[])))
UNION ALL
SELECT 't', c.oid::regclass::text, '', c.relfilenode::bigint, now.scans
  FROM unnest(CAST(:oids AS oid[]), CAST(:files AS oid[]), CAST(:scans AS text[]))
       AS known(oid, file, scans)
  JOIN pg_class c ON c.oid = known.oid
 CROSS JOIN LATERAL (SELECT coalesce(pg_stat_get_xact_numscans(c.oid), 0) AS scans) now
 WHERE c.relfilenode <> known.file OR now.scans <> known.scans::bigint
"""
# A statement making a new object, and naming no table there before, locks, rewrites and reads
# none of them (CREATE ... AS <query> runs a query, which could): the watch need not read around
# it. The 300 tables of a squashed baseline, or each new table of a chain, are made so.
_MAKES = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|SEQUENCE|TYPE)\b", re.I)
_RUNS_A_QUERY = re.compile(r"\bAS\s*\(?\s*(SELECT|TABLE|VALUES|EXECUTE|WITH)\b", re.I)
_WORD = re.compile(r"[^\W\d][\w$]*")
# The runner's own statements around a revision's (its settings, Alembic's version table, the
# checksums): they lock no table of the project, and are not read around.
_RUNNERS_OWN = re.compile(r"^\s*(SET|RESET|SHOW)\b|alembic_version", re.I)
# A revision's own statement ending its transaction (op.execute("COMMIT"), the way to ALTER TYPE
# ... ADD VALUE before autocommit_block()), or beginning one again: SQLAlchemy does not know, and
# the statements between run each on its own, their locks let go as each ends.
_ENDS_TRANSACTION = re.compile(r"^\s*(COMMIT|END|ABORT|ROLLBACK(?!\s+TO\b))\b(?!\s+PREPARED)", re.I)
_BEGINS_TRANSACTION = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.I)
# The sampler's first pause between two reads of a statement's locks, and its longest.
_FIRST_SAMPLE, _LAST_SAMPLE = 0.001, 0.1
# Modes that stop a table's writers; ACCESS EXCLUSIVE stops its readers too.
_WRITE_BLOCKING = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}


class Sampler(threading.Thread):
    """A second session that reads the relation locks of the runner's session while one of its
    statements runs outside a transaction."""

    def __init__(self, url: URL, settings: MigrationSettings) -> None:
        super().__init__(daemon=True)
        self._url, self._settings = url, settings
        self._guard = threading.Lock()
        self._pid: int | None = None
        self._seen: set[tuple[str, str]] = set()
        self._hold = self._released = False
        self._held = threading.Event()
        self._wake, self._ready, self._done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def __enter__(self) -> "Sampler":
        # Its session connects while the run starts: the first statement it watches waits.
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._wake.set()
        self.join(5)

    def watch(self, pid: int, *, hold: bool = False) -> None:
        """Sample `pid`'s locks until `seen()`; with `hold`, keep a snapshot open until its
        statement waits for it (or ends)."""
        self._ready.wait(self._settings.db_connect_timeout + 5)
        with self._guard:
            self._pid, self._seen = pid, set()
            self._hold, self._released = hold, False
            self._held.clear()
        self._wake.set()
        if hold:
            # The snapshot must be older than the statement's: it is taken before it starts.
            self._held.wait(self._settings.db_connect_timeout + 5)

    def seen(self) -> set[tuple[str, str]]:
        with self._guard:
            self._pid, seen = None, self._seen
        self._wake.clear()
        return seen

    def run(self) -> None:
        try:
            asyncio.run(self._poll())
        finally:
            self._ready.set()

    async def _poll(self) -> None:
        engine = engine_for(self._url, self._settings)
        try:
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                self._ready.set()
                pause = _FIRST_SAMPLE
                holding: int | None = None  # the pid whose statement may wait on our snapshot
                while not self._done.is_set():
                    pid = self._pid
                    if holding is not None and holding != pid:
                        await connection.execute(text("COMMIT"))
                        holding = None
                    if pid is None:
                        pause = _FIRST_SAMPLE
                        await asyncio.to_thread(self._wake.wait, 0.5)
                        continue
                    if self._hold and holding is None and not self._released:
                        # A snapshot older than the statement: a concurrent index build waits
                        # for it at its end, holding its lock, long enough to be seen.
                        await connection.execute(text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
                        await connection.execute(text("SELECT 1"))
                        holding = pid
                        self._held.set()
                    found = list(await connection.execute(text(LOCKS), {"pid": pid}))
                    with self._guard:
                        if self._pid == pid:
                            self._seen.update((relation, mode) for relation, mode in found)
                    if holding is not None:
                        waits = await connection.execute(text(WAITS_ON_ME), {"pid": pid})
                        if waits.scalar():
                            # Held while it waits: read once more, then let it finish.
                            found = list(await connection.execute(text(LOCKS), {"pid": pid}))
                            with self._guard:
                                if self._pid == pid:
                                    self._seen.update(tuple(row) for row in found)
                            await connection.execute(text("COMMIT"))
                            holding, self._released = None, True
                    # Every millisecond at first (a short statement), then less often.
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _LAST_SAMPLE)
        finally:
            await engine.dispose()


Probed = tuple[set[tuple[str, str]], list[str], list[str]]


class Prober(threading.Thread):
    """Runs a statement once more in a transaction of a session of its own on a scratch copy,
    and rolls it back: its locks, rewrites and whole-table reads. A statement the runner runs
    outside a transaction is over too soon on an empty table for a sampler to see its locks.
    One session for every probe of a run, on a thread and event loop of its own."""

    def __init__(self, url: URL, settings: MigrationSettings) -> None:
        super().__init__(daemon=True)
        self._url, self._settings = url, settings
        self._asked: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._answers: queue.Queue[Probed | None] = queue.Queue()

    def probe(self, statement: str, parameters: Any) -> Probed | None:
        """None when the statement fails there (the real run then says why)."""
        self._asked.put((statement, parameters))
        return self._answers.get()

    def close(self) -> None:
        if self.is_alive():
            self._asked.put(None)
            self.join(5)

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        engine = engine_for(self._url, self._settings)
        try:
            async with engine.connect() as connection:
                while (asked := await asyncio.to_thread(self._asked.get)) is not None:
                    try:
                        self._answers.put(await _probe(connection, *asked))
                    except Exception:
                        await connection.rollback()
                        self._answers.put(None)
        except Exception:
            while self._asked.get() is not None:  # no session: every probe answers None
                self._answers.put(None)
        finally:
            await engine.dispose()


async def _probe(connection: Any, statement: str, parameters: Any) -> Probed:
    read = await _all(connection, TABLES_HERE)
    tables = {name: (node, scans) for name, node, scans, _ in read}
    oids = {name: oid for name, _, _, oid in read}
    await connection.exec_driver_sql(statement, parameters)
    found = await _all(connection, PROBE_LOCKS, {"oids": list(oids.values())})
    locks = {(_named(shown, oids), mode) for shown, mode in found if shown is not None}
    rewrites, scans = _changes(tables, await _all(connection, TABLES_HERE))
    await connection.rollback()
    if len(locks) < len(found):
        await connection.execute(text("SELECT pg_advisory_unlock_all()"))
        await connection.rollback()
    return locks, rewrites, scans


async def _all(connection: Any, query: str, parameters: dict[str, Any] | None = None) -> list[Any]:
    return list(await connection.execute(text(query), parameters))


def unmeasured(statement: str, context: Any) -> bool:
    """The runner's own statements (_RUNNERS_OWN) and the toolkit's bookkeeping."""
    return bool(_RUNNERS_OWN.search(statement)) or bookkeeping(context)


def _touches_none(statement: str, tables: Iterable[str]) -> bool:
    """Whether `statement` makes a new object without naming any of `tables` (regclass names)."""
    if not _MAKES.match(statement) or _RUNS_A_QUERY.search(statement):
        return False
    words = {word.lower() for word in _WORD.findall(statement)}
    return not any(name.rpartition(".")[2].strip('"').lower() in words for name in tables)


def _named(shown: str, oids: dict[str, int]) -> str:
    """A relation as `regclass` shows it, or, once the statement dropped it (`regclass` then
    shows its oid), by the name it had before (`oids`: name -> oid, read before it)."""
    if not shown.isdigit():
        return shown
    return next((name for name, oid in oids.items() if oid == int(shown)), shown)


def _changes(before: dict[str, tuple[int, int]], after: list[Any]) -> tuple[list[str], list[str]]:
    """The tables rewritten (a new file) and read whole (a sequential scan) between two reads
    of TABLES_HERE in one transaction."""
    rewrites, scans = [], []
    for name, node, count, *_ in after:
        if name in before:
            node_before, count_before = before[name]
            if node != node_before:
                rewrites.append(name)
            elif count > count_before:
                scans.append(name)
    return sorted(rewrites), sorted(scans)


class PostgreSQLWatch:
    """The watch of one engine; `revision()` once per revision run on it. With `probe` (the
    database is a scratch copy), a statement run outside a transaction is run once more inside
    one and rolled back, to read its locks exactly."""

    def __init__(
        self, engine: AsyncEngine | Connection, sampler: Sampler, prober: Prober | None
    ) -> None:
        self._engine, self._sampler, self._prober = engine, sampler, prober

    @contextmanager
    def revision(self, only: Collection[str] | None = None) -> Iterator[Watched]:
        watched = Watched()
        sampler = self._sampler
        reading = [False]
        started = [time.perf_counter()]
        transaction = [0]
        runs: dict[int, Progress] = {}  # by id: a Progress is not hashable
        listed = Listed()  # the revision's statements (the runner's record) seen so far
        # (relation, mode) -> when the statement that took it started, in the open transaction
        holding: dict[tuple[str, str], float] = {}
        held: list[tuple[int, str]] = []  # the same locks, by the relation's oid
        tables: dict[str, tuple[int, int]] = {}  # before the statement: file, scans
        oids: dict[str, int] = {}

        def read(
            conn: Connection, query: str, parameters: dict[str, Any] | None = None
        ) -> list[Any]:
            reading[0] = True
            try:
                return list(conn.execute(text(query), parameters))
            finally:
                reading[0] = False

        def read_state(conn: Connection) -> list[Any]:
            known = {
                "held_oids": [oid for oid, _ in held],
                "held_modes": [mode for _, mode in held],
                "oids": [oids[name] for name in tables],
                "files": [node for node, _ in tables.values()],
                "scans": [str(n) for _, n in tables.values()],
            }
            return read(conn, STATE_HERE, known)

        probed: list[Probed | None] = [None]
        # Whether a statement of the revision ended its transaction behind SQLAlchemy's back.
        committed = [False]

        def alone_now(conn: Connection) -> bool:
            return in_autocommit(conn) or committed[0]

        # Whether `tables` holds what the session sees now: read after each statement of a
        # transaction, stale once it ends (its scan counts go with it).
        fresh = [False]

        def before(
            conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, *_: Any
        ) -> None:
            if reading[0] or unmeasured(statement, context) or not watched_revision(conn, only):
                return
            # The run's record, whose batch-committing steps count their own rows.
            if (run := conn.info.get(PROGRESS)) is not None:
                runs[id(run)] = run
            if _BEGINS_TRANSACTION.match(statement):
                committed[0] = False  # what follows is in a transaction again, this included
            alone, prober = alone_now(conn), self._prober
            probed[0] = None
            if alone and prober is not None and not _NEVER_IN_TRANSACTION.search(statement):
                probing = time.perf_counter()
                probed[0] = prober.probe(statement, parameters)
                watched.probing += time.perf_counter() - probing
            # A probed statement's locks, rewrites and reads are the probe's: nothing is read
            # around it, and the sampler does not watch it.
            if not fresh[0] and probed[0] is None:
                tables.clear()
                oids.clear()
                for name, node, n, oid in read(conn, TABLES_HERE):
                    tables[name], oids[name] = (node, n), oid
            if alone and probed[0] is None:
                driver: Any = conn.connection.driver_connection  # asyncpg's
                waits = prober is not None and bool(_WAITS_FOR_SNAPSHOTS.match(statement))
                sampler.watch(driver.get_server_pid(), hold=waits)
            started[0] = time.perf_counter()

        def after(
            conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, *_: Any
        ) -> None:
            if reading[0] or unmeasured(statement, context):
                return
            if not watched_revision(conn, only):
                fresh[0] = False  # it may have changed the tables
                return
            done = time.perf_counter()
            verb = statement.lstrip()[:6].upper()
            if verb in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount > 0:
                watched.rows += cursor.rowcount
            alone, exact = alone_now(conn), probed[0]
            # One round trip: the session's relation locks and what changed of its tables (those
            # there before the transaction: a table it makes is empty).
            quiet = exact is not None or _touches_none(statement, tables)
            state = [] if quiet else read_state(conn)
            now = [(name, node, n) for kind, name, _, node, n in state if kind == "t"]
            rewrites, scans = _changes(tables, now)
            tables.update((name, (node, n)) for name, node, n in now)
            fresh[0] = not alone
            if alone:
                # Its transaction's statistics are gone with it: reads are the probe's.
                took, scans = (sampler.seen(), []) if exact is None else (exact[0], exact[2])
                rewrites = sorted({*rewrites, *(exact[1] if exact else [])})
                for key in took:  # held while it ran
                    watched.hold(key, done - started[0])
                if _WAITS_FOR_SNAPSHOTS.match(statement):
                    # A concurrent build reads its table whole (twice), under a lock that lets
                    # writers through.
                    scans = sorted(relation for relation, mode in took if mode == _BUILDS_UNDER)
            else:
                took = set()
                for kind, shown, mode, oid, _ in state:
                    relation = _named(shown, oids)
                    if kind == "l" and (relation, mode) not in holding:
                        holding[(relation, mode)] = started[0]
                        held.append((oid, mode))
                        took.add((relation, mode))
            hooked = revision_statement(conn, statement, listed)
            # A revision's statement is listed, and anything run beside it that locks a table.
            if hooked or took or rewrites:
                watched.statements.append(
                    Measured(
                        sql=statement.strip(),
                        in_transaction=not alone,
                        transaction=transaction[0],
                        revision=running_revision(conn),
                        locks=sorted(took),
                        rewrites=sorted(rewrites),
                        scans=sorted(scans),
                    )
                )
            if alone:
                transaction[0] += 1
            if _ENDS_TRANSACTION.match(statement):
                ended(conn)  # its locks are let go
                committed[0] = True

        def ended(conn: Connection | None) -> None:
            committed[0] = False
            fresh[0] = False
            done = time.perf_counter()
            for key, first in holding.items():
                watched.hold(key, done - first)
            holding.clear()
            held.clear()
            if watched.statements and watched.statements[-1].transaction == transaction[0]:
                transaction[0] += 1

        listeners: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
            ("commit", ended),
            ("rollback", ended),
        ]
        try:
            with listening(self._engine, listeners):
                yield watched
        finally:
            ended(None)
            watched.rows += sum(run.batched_rows for run in runs.values())


@contextmanager
def watch(
    engine: AsyncEngine | Connection, url: URL, settings: MigrationSettings, probe: bool
) -> Iterator[PostgreSQLWatch]:
    prober = Prober(url, settings) if probe else None
    if prober is not None:
        prober.start()  # its session connects while the run starts
    try:
        with Sampler(url, settings) as sampler:
            yield PostgreSQLWatch(engine, sampler, prober)
    finally:
        if prober is not None:
            prober.close()


def blocks_writes(mode: str) -> bool:
    return mode in _WRITE_BLOCKING


def mode_name(mode: str) -> str:
    """pg_locks' `AccessExclusiveLock` as the documentation says it: `ACCESS EXCLUSIVE`."""
    words, word = [], ""
    for char in mode.removesuffix("Lock"):
        if char.isupper() and word:
            words.append(word)
            word = ""
        word += char
    return " ".join([*words, word]).upper()
