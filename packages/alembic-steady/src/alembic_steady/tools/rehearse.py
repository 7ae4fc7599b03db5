"""`make rehearse`: run the pending migrations on a copy of real data, and say what they did
(PostgreSQL).

    make rehearse file=backups/<name>-<timestamp>.dump
    make rehearse from=postgresql://reader@prod-replica/app

The copy (a `make backup` dump, or what pg_dump reads from `from=` in a read-only session,
streamed straight into pg_restore: the source is never written to, and no dump of it lands on
disk) is restored into a scratch database on the configured development/test server, a server on
this machine unless CONFIRM=yes. A password for `from=` goes in REHEARSE_FROM (the environment)
or ~/.pgpass, never on the command line, where `ps` shows it. Each pending revision then runs
there, as `make migrate` runs it, and prints its wall time, the locks it took (relation, mode)
and how long it held them (a lock taken in a transaction is held until it commits; a statement
outside one is also run once more in a rolled-back transaction to read its locks, that time left
out), and the rows it changed. Then each pending revision goes down and up again, and the schema
must come back the same. The scratch database is dropped at the end, whatever happened, SIGTERM
and Ctrl-C included.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from alembic import command
from alembic.script import Script
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..dialects.base import for_url
from ..dialects.clients import ClientError
from ..dialects.measured import Watch, Watched
from ..dialects.postgresql_clients import (
    PostgreSQLClients,
    engine_for,
    libpq_environment,
    matching_program,
    readable_by,
    server_major_version,
)
from ..project import MigrationSettings, Project
from ..runner.api import Migrations
from ..runner.environment import migration_engine
from ..testing import markers
from .devdb import on_this_machine
from .restore import usage

USAGE = "make rehearse file=backups/<name>-<timestamp>.dump, or from=postgresql://user@host/db"
# The source's URL with its password: the environment, which other users cannot read.
FROM_VARIABLE = "REHEARSE_FROM"
# What a down-and-up round trip must restore: columns, constraints, indexes, sequences.
SCHEMA = r"""
WITH rel AS (
  SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
)
SELECT format('%s.%s %s%s', rel.oid::regclass, a.attname, format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' not null' ELSE '' END)
  FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
 WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT k.conrelid::regclass || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN rel ON rel.oid = k.conrelid
UNION ALL
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rel ON rel.oid = i.indrelid
UNION ALL
SELECT s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL)
  FROM pg_sequence s JOIN rel ON rel.oid = s.seqrelid
"""


class RehearsalError(Exception):
    """A short message for the user: what is wrong and what to do."""


@dataclass
class StepReport:
    revision: str
    seconds: float = 0.0
    watched: Watched = field(default_factory=Watched)

    def lines(self, mode_name: Callable[[str], str]) -> list[str]:
        watched = self.watched
        lines = [f"{self.revision}: {self.seconds:.2f} s, {watched.rows} row(s) changed"]
        for (relation, mode), seconds in sorted(watched.held.items(), key=lambda item: -item[1]):
            lines.append(f"    {mode_name(mode)} on {relation}, held {seconds:.2f} s")
        return lines


def parse(argv: list[str]) -> tuple[Path | None, URL | None]:
    given = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    file, source = given.get("file") or None, given.get("from") or None
    from_environment = source is None and bool(os.environ.get(FROM_VARIABLE))
    if from_environment:
        source = os.environ[FROM_VARIABLE]
    if bool(file) == bool(source):
        raise RehearsalError(f"give one of file=... or from=... ({FROM_VARIABLE}): {USAGE}")
    if source:
        try:
            url = make_url(source.replace("+asyncpg", ""))
        except ArgumentError:
            raise RehearsalError(f"from=... is not a database URL: {USAGE}") from None
        if url.password is not None and not from_environment:
            raise RehearsalError(
                "from=... holds a password, which the process list (ps) shows to every user of "
                f"this machine: give the URL in the environment instead ({FROM_VARIABLE}="
                "postgresql://user:password@host/db make rehearse), or keep the password in "
                "~/.pgpass"
            )
        return None, url
    return Path(str(file)), None


def source_server(source: URL, settings: MigrationSettings) -> int:
    """The source's major version, or why it cannot be read."""
    try:
        return server_major_version(source.set(drivername="postgresql+asyncpg"), settings)
    except ClientError:
        where = f"{source.host or 'local socket'}/{source.database or ''}"
        raise RehearsalError(
            f"cannot reach the source database {where} as {source.username or '(default)'}: "
            "check from=... (host, port, user, password) and that it accepts connections"
        ) from None


def copy_source(source: URL, server: int, scratch: URL, settings: MigrationSettings) -> None:
    """pg_dump of `source` in a read-only session, piped into pg_restore on `scratch`."""
    env = libpq_environment(source, settings)
    # Every transaction of the session is read-only: pg_dump cannot write to the source.
    env["PGOPTIONS"] = "-c default_transaction_read_only=on"
    _, pg_dump = matching_program("pg_dump", server)
    dump = subprocess.Popen(
        [str(pg_dump), "--format=custom"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert dump.stdout is not None
    try:
        restore(dump.stdout, scratch, settings)
    except RehearsalError:
        if dump.wait() != 0:
            raise RehearsalError(f"pg_dump could not read the source: {_stderr(dump)}") from None
        raise
    finally:
        dump.stdout.close()
        if dump.poll() is None:
            dump.kill()
    if dump.wait() != 0:
        raise RehearsalError(f"pg_dump could not read the source: {_stderr(dump)}")


def _stderr(process: "subprocess.Popen[bytes]") -> str:
    assert process.stderr is not None
    return process.stderr.read().decode(errors="replace").strip()


async def _admin(url: URL, settings: MigrationSettings, statement: str) -> None:
    engine = engine_for(url, settings)
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def scratch_database(url: URL, settings: MigrationSettings) -> Iterator[URL]:
    name = f"{url.database or 'db'}_rehearse_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(url, settings, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name)
    finally:
        asyncio.run(_admin(url, settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def restore(dump: Path | IO[bytes], scratch: URL, settings: MigrationSettings) -> None:
    """pg_restore a dump file, or a stream of one (pg_dump's output), into `scratch`."""
    env = libpq_environment(scratch, settings)
    server = server_major_version(scratch, settings)
    if isinstance(dump, Path):
        file = dump
        _, pg_restore = matching_program(
            "pg_restore", server, lambda path: readable_by(path, file, env)
        )
        args, stdin = [str(dump)], None
    else:
        _, pg_restore = matching_program("pg_restore", server)
        args, stdin = [], dump
    command_line = [
        str(pg_restore),
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        f"--dbname={scratch.database}",
        *args,
    ]
    result = subprocess.run(
        command_line, env=env, stdin=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        reason = result.stderr.strip()
        raise RehearsalError(f"pg_restore failed on the scratch copy: {reason}")


def pending(connection: Connection, migrations: Migrations) -> list[Script]:
    return migrations.pending(migrations.current_heads(connection))


def run(engine: AsyncEngine, migrations: Migrations, step: str, target: str) -> None:
    """`make migrate` (or `make rollback`) on the copy: the runner applies each revision in
    transactions of its own, under the migration lock, through its statement hook, so an
    autocommit_block() commits there as it does in production."""
    config = migrations.alembic_config()
    config.attributes["connection"] = engine
    config.attributes["command"] = step
    getattr(command, step)(config, target)


def upgrade_one(
    engine: AsyncEngine, watch: Watch, revision: Script, migrations: Migrations
) -> StepReport:
    """Run `revision` as `make migrate` would, noting its time, statements, locks and rows."""
    report = StepReport(f"{revision.revision} ({revision.doc})")
    started = time.perf_counter()
    with watch.revision() as watched:
        run(engine, migrations, "upgrade", revision.revision)
    # Without the time its statements outside a transaction ran once more to read their locks.
    report.seconds = time.perf_counter() - started - watched.probing
    report.watched = watched
    return report


async def _read(engine: AsyncEngine, read: Callable[..., Any], *args: Any) -> Any:
    async with engine.connect() as connection:
        return await connection.run_sync(read, *args)


def schema(connection: Connection) -> set[str]:
    return {row for (row,) in connection.execute(text(SCHEMA))}


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.splitlines()[0].split(" Fix the cause")[0] if message else type(exc).__name__


def round_trip(
    engine: AsyncEngine, revisions: list[Script], migrations: Migrations
) -> tuple[str | None, list[str]]:
    """Each revision, from the last, down one and up again: the schema must come back. Returns
    the problem (None when there is none) and what the revisions' `# migration-tests:` lines
    accepted: a one-way revision is not taken down, and the round trips stop there (the
    revisions below it cannot be reached); an accepted difference is listed, and they stop
    after it too (the copy no longer stands where its revision left it)."""
    accepted: list[str] = []
    for revision in reversed(revisions):
        marked = markers.read(revision.path)
        below = revisions.index(revision)
        stopped = f"; the {below} revision(s) below it were not taken down" if below else ""
        if marked.one_way:
            accepted.append(f"revision {revision.revision} is one-way ({marked.one_way}){stopped}")
            return None, accepted
        before: set[str] = asyncio.run(_read(engine, schema))
        problem = None
        for step, target in (("downgrade", "-1"), ("upgrade", revision.revision)):
            try:
                run(engine, migrations, step, target)
            except Exception as exc:
                problem = f"the {step} of revision {revision.revision} failed: {_first_line(exc)}"
                break
        if problem is None:
            after: set[str] = asyncio.run(_read(engine, schema))
            if after != before:
                problem = (
                    f"revision {revision.revision} does not go down and up again on this data: "
                    f"the schema gains [{'; '.join(sorted(after - before))}], loses "
                    f"[{'; '.join(sorted(before - after))}]"
                )
        if problem is not None:
            listed = marked.accepting(problem)
            if listed is None:
                return problem, accepted
            accepted.append(f"{listed}{stopped}")
            return None, accepted
        if revision is not revisions[0]:
            # Down to the revision before it, for the next one's round trip.
            run(engine, migrations, "downgrade", "-1")
    return None, accepted


def rehearse(scratch: URL, settings: MigrationSettings, migrations: Migrations) -> int:
    # Synchronous: the runner runs its own event loop for each revision, as `make migrate` does.
    # The runner is handed the engine it would make for itself, so that the rehearsal can watch
    # its statements.
    engine = migration_engine(scratch, settings, migrations.project)
    try:
        revisions: list[Script] = asyncio.run(_read(engine, pending, migrations))
        if not revisions:
            print("No pending revisions: the copy is at head already.")
            return 0
        print(f"{len(revisions)} pending revision(s), run on the copy:")
        started = time.perf_counter()
        dialect = for_url(scratch)
        # A statement outside a transaction holds its locks for as long as it runs: a sampler
        # can miss a brief one, so each is run once more in a transaction to read them (the
        # copy is a scratch database), its time left out of the figures.
        probing = 0.0
        with dialect.watch(engine, scratch, settings, probe=True) as watch:
            for revision in revisions:
                try:
                    report = upgrade_one(engine, watch, revision, migrations)
                except Exception as exc:
                    print(
                        f"Revision {revision.revision} ({revision.doc}) FAILED on this data: "
                        f"{_first_line(exc)} Fix it before make migrate in "
                        "production (e.g. a server_default or a backfill for a new NOT NULL "
                        "column).",
                        file=sys.stderr,
                    )
                    return 1
                print("\n".join(report.lines(dialect.mode_name)))
                probing += report.watched.probing
        print(f"Pending revisions applied in {time.perf_counter() - started - probing:.2f} s.")
        started = time.perf_counter()
        print("Each pending revision down and up again:")
        problem, accepted = round_trip(engine, revisions, migrations)
        print(f"Round trips done in {time.perf_counter() - started:.2f} s.")
        for line in accepted:
            print(f"Accepted by its `# migration-tests:` line: {line}.")
        if problem:
            print(f"Stairway FAILED: {problem}.", file=sys.stderr)
            return 1
        if accepted:
            print("OK: the pending revisions above it went down and up again with the same schema.")
        else:
            print("OK: every pending revision went down and up again with the same schema.")
        return 0
    finally:
        asyncio.run(engine.dispose())


class Stopped(BaseException):
    """SIGTERM (a CI job cancelled): unwinds like Ctrl-C, so the scratch database is dropped
    (a BaseException, as KeyboardInterrupt is: no revision's failure handling takes it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


def interrupted(exc: BaseException, otherwise: str) -> int:
    """Say which signal stopped a chore that worked on a scratch database, and what else stands
    (`otherwise`); its exit status."""
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    print(
        f"Interrupted by {signal.Signals(signum).name}: no scratch database is left; {otherwise}.",
        file=sys.stderr,
    )
    return 128 + signum


def stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def main(project: Project, argv: list[str]) -> int:
    settings = project.settings()
    if settings.environment == "production":
        print(
            "make rehearse restores a copy into a scratch database: run it against a "
            "development or test server, not production (ENVIRONMENT=production).",
            file=sys.stderr,
        )
        return 1
    url = settings.sqlalchemy_url
    if not on_this_machine(url) and os.environ.get("CONFIRM") != "yes":
        print(
            f"make rehearse creates its scratch database on the configured server, {url.host}, "
            "which is not on this machine (make db-up's are: localhost or a socket) and may "
            "serve others. Point DATABASE_URL at a development server, or run again with "
            "CONFIRM=yes if that server is there for it.",
            file=sys.stderr,
        )
        return 1
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        file, source = parse(argv)
        if file is not None and (problem := PostgreSQLClients().check_dump(file, usage(".dump"))):
            raise RehearsalError(problem.replace("make restore", "make rehearse"))
        server = source_server(source, settings) if source is not None else 0
        with scratch_database(url, settings) as scratch:
            started = time.perf_counter()
            if source is not None:
                copy_source(source, server, scratch, settings)
            else:
                assert file is not None
                restore(file, scratch, settings)
            print(
                f"Copy restored into scratch database {scratch.database} in "
                f"{time.perf_counter() - started:.2f} s."
            )
            return rehearse(scratch, settings, Migrations(project))
    except (RehearsalError, ClientError) as exc:
        print(f"Nothing rehearsed: {exc}.", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as exc:
        return interrupted(exc, "nothing else was changed")
    finally:
        signal.signal(signal.SIGTERM, previous)
