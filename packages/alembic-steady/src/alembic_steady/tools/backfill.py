"""`backfill run|status|pause NAME|resume NAME`: the queued backfills (authoring/backfill_queue.py)
on the configured database, outside the deploy (`make backfill`, deploy/backfill-cronjob.yaml).

`run` takes the queued and running jobs, oldest first, each to its end (or `--name NAME` alone);
a paused job is passed by. SIGTERM or Ctrl-C ends it after the batch it is in: the next `run`
goes on from there, as it does after a SIGKILL (each batch commits with the job's position).
Exit 0 when every job it took is done, 1 on an error or when it was stopped.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TypeVar

from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ..authoring import backfill_queue as queue
from ..dialects.base import for_url
from ..project import Project
from ..runner import backfill_jobs as jobs
from ..runner.environment import migration_engine
from ..runner.errors import connect
from ..runner.settings import load_settings

T = TypeVar("T")


def on_database(project: Project, work: Callable[[Connection], T]) -> T:
    settings = load_settings(project.settings)
    url = settings.migration_url
    dialect = for_url(url)
    if dialect.name != "postgresql":
        raise CommandError("backfill run|status|pause|resume are PostgreSQL's")

    async def run() -> T:
        engine = migration_engine(url, settings, project)
        try:
            async with connect(engine, dialect, settings, project) as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def status_lines(connection: Connection) -> list[str]:
    found = jobs.jobs(connection)
    if not found:
        return ["No backfill is queued."]
    return [
        f"{job.name}: {job.state}, {job.rows_done:,} rows done"
        + (f", up to key {job.last_key}" if job.last_key is not None else "")
        + f" (queued by {job.queued_by})"
        for job in found
    ]


def run_all(connection: Connection, name: str | None, stop: queue.Stop) -> int:
    taken = [job for job in jobs.jobs(connection, name) if job.state in (jobs.QUEUED, jobs.RUNNING)]
    connection.commit()
    if name is not None and not taken:
        print(f"backfill {name}: nothing to run ({_state_of(connection, name)})", file=sys.stderr)
        return 1 if not jobs.jobs(connection, name) else 0
    for job in taken:
        state = queue.run_job(connection, job, stop)
        if stop.signal is not None:
            print(
                f"backfill {job.name}: stopped after its last batch ({state}); `backfill run` "
                "goes on from there",
                file=sys.stderr,
            )
            return 1
        print(f"backfill {job.name}: {state}")
    if not taken:
        print("No backfill to run.")
    return 0


def _state_of(connection: Connection, name: str) -> str:
    found = jobs.jobs(connection, name)
    return found[0].state if found else "no such backfill: `backfill status` lists them"


def move(connection: Connection, name: str, to: str, from_: tuple[str, ...]) -> int:
    job = jobs.set_state(connection, name, to, from_)
    if job is None:
        print(f"No backfill named {name}: `backfill status` lists them.", file=sys.stderr)
        return 1
    print(f"backfill {name}: {job.state}")
    return 0 if job.state == to else 1


def main(project: Project, argv: list[str]) -> int:
    """backfill run [--name NAME] | status | pause NAME | resume NAME"""
    parser = argparse.ArgumentParser(prog="backfill")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the queued backfills in batches")
    run.add_argument("--name", help="this backfill only")
    commands.add_parser("status", help="each backfill's state and rows done")
    for command in ("pause", "resume"):
        commands.add_parser(command).add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            print("\n".join(on_database(project, status_lines)))
            return 0
        if args.command == "pause":
            paused = (jobs.QUEUED, jobs.RUNNING)
            return on_database(project, lambda c: move(c, args.name, jobs.PAUSED, paused))
        if args.command == "resume":
            resumed = (jobs.PAUSED,)
            return on_database(project, lambda c: move(c, args.name, jobs.QUEUED, resumed))
        with queue.Stop().installed() as stop:
            return on_database(project, lambda c: run_all(c, args.name, stop))
    except (CommandError, DBAPIError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"backfill {args.command}: {first}", file=sys.stderr)
        return 1
