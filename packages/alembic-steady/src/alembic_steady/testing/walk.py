"""The walk: the revisions loaded once, every walk one run of the project's env.py, and the
stairway's snapshots through the dialect.

A walk is one run of the project's env.py through the runner, as `make migrate` runs it (the
same lock, timeouts, one revision per transaction, autocommit_block() committing, the statement
hook, the retries and error messages), whose steps are produced one at a time (a `Stepwise`):
the checks run between steps on env.py's own connection, without a new connection or script
load per step.
"""

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from ..dialects.base import SchemaTracker, by_name, described
from ..dialects.measured import Measured, Watch, risks
from ..project import Project
from ..runner.alembic_internals import Inspected, Stepwise
from ..runner.api import Migrations
from ..runner.guards import folded
from ..runner.phases import Phases
from ..runner.settings import load_settings
from . import markers
from .data_checks import DATA_CHECKS
from .markers import Accepted

StepsFn = Callable[[tuple[str, ...], MigrationContext], Iterable[RevisionStep]]


@dataclass
class Walk:
    """The outcome of a walk from base to head, one revision at a time."""

    url: URL  # the database the walk left at head (when it got there)
    upgrade_failure: str | None = None  # the revision whose upgrade failed, and why
    # Every revision that does not go down and up again: what differs, and the fix.
    stairway_failures: list[str] = field(default_factory=list)
    data_failures: dict[str, str] = field(default_factory=dict)  # revision -> what broke
    # What revisions' markers accepted (testing/markers.py), one line each, listed by the plugin.
    accepted: list[str] = field(default_factory=list)
    # Revisions that rewrite an existing table, or read one whole while its writers wait.
    long_locks: list[str] = field(default_factory=list)
    locks_checked: set[str] = field(default_factory=set)  # the revisions measured so far

    @property
    def stairway_failure(self) -> str | None:
        """The stairway's findings, one a line; None when every revision went round."""
        return "\n".join(self.stairway_failures) if self.stairway_failures else None


class Harness:
    """One project's revisions and env.py, for its tests: `Harness.of(project)` is the one the
    plugin's fixtures use, so a test module's own calls load the revisions no second time."""

    @classmethod
    @cache
    def of(cls, project: Project) -> "Harness":
        return cls(project)

    def __init__(self, project: Project) -> None:
        self.project = project
        self.migrations = Migrations(project)
        self.dialect = by_name(project.dialect)

    @cached_property
    def script(self) -> ScriptDirectory:
        """Loaded once per test run: every revision module is imported a single time."""
        return ScriptDirectory.from_config(self.migrations.alembic_config())

    def revisions_base_to_head(self, script: ScriptDirectory | None = None) -> list[Script]:
        """In the order `make migrate` applies them: with deploy phases, every pre revision
        first."""
        script = script or self.script
        in_order = list(reversed(list(script.walk_revisions("base", "heads"))))
        return Phases(script).in_deploy_order(in_order)

    @cached_property
    def marked(self) -> dict[str, Accepted]:
        """Each revision's markers, read once (a line the tests do not know raises)."""
        return {
            revision.revision: markers.read(revision.path)
            for revision in self.revisions_base_to_head()
        }

    @cached_property
    def given_rows(self) -> dict[str, str | None]:
        """What the markers say of tables: the INSERT to run instead of generated rows, or None
        for no rows."""
        given: dict[str, str | None] = {}
        for marked in self.marked.values():
            given.update(dict.fromkeys(marked.no_rows))
            given.update(marked.rows)
        return given

    def up(self, revision: Script) -> RevisionStep:
        return RevisionStep(self.script.revision_map, revision, True)

    def down(self, revision: Script) -> RevisionStep:
        return RevisionStep(self.script.revision_map, revision, False)

    def run_env(
        self,
        url: URL,
        steps: StepsFn | Stepwise,
        *,
        command: str = "upgrade",
        script: ScriptDirectory | None = None,
    ) -> None:
        """Run the project's env.py on `url` as `alembic <command>` would, with `steps(heads,
        context)` in place of the command's own list of revisions.

        env.py configures the migration context itself (its lock, timeouts, transaction per
        revision and error messages). A `Stepwise` is applied as `make migrate` applies
        Alembic's steps (one revision per transaction, retried, its statements hooked), and may
        run checks on `context.connection` between them; a plain function runs as given. The
        script directory is the cached one, so nothing is loaded again.
        """
        config = self.migrations.alembic_config(url=url)
        config.attributes["command"] = command
        script = script or self.script
        with EnvironmentContext(config, script, fn=steps, destination_rev="heads"):
            script.run_env()

    def walk_base_to_head(self, url: URL, outcome: Walk, *, stairway: bool) -> None:
        """Upgrade base -> head one revision at a time, every table holding a few generated rows
        where the dialect makes them; with `stairway`, also downgrade each revision and check
        that it restores exactly the schema before it, then upgrade it again.

        Every step runs through the runner as `make migrate` runs it (one revision per
        transaction, autocommit_block() committing, the statement hook, the retries), and each
        step of the stairway in a migration context of its own, as separate `make migrate` and
        `make rollback` runs would. Each revision's data check writes its rows once the revision
        is applied, and checks them at head. The first upgrade of each revision is watched
        through the dialect (the statements' locks, rewrites and whole-table reads): a rewrite
        or a long lock of a table that existed before it is recorded in `long_locks`.

        Where a second upgrade would start exactly where the first did (PostgreSQL, the
        downgrade in one transaction, no row of an earlier table changed by either step, no
        object the snapshot does not read touched: see _tried), the downgrade runs as `make
        rollback` runs it, is compared inside its transaction, and is rolled back instead of
        committed: the revision stays as its one upgrade left it, and the second upgrade, which
        would prove nothing more, is not run. A large first revision (a squashed baseline) then
        costs one upgrade and one downgrade, not two upgrades and a downgrade.

        The outcome records every stairway finding, the first upgrade failure and the data
        failures instead of raising, so one walk answers the upgrade, stairway, data and model
        tests. After a finding in a rolled-back downgrade the walk simply goes on. After any
        other finding it goes on too: the database is emptied, walked again to that
        revision without the stairway, and the stairway resumes after it. Not by upgrading the
        revision again where it stands: a downgrade that leaves an object makes the second
        upgrade fail on it, one that drops too much leaves a head the models test would blame,
        and where DDL commits on its own (MySQL) a failed downgrade leaves its revision half
        undone. A fresh database at that revision is the one state that holds on both servers
        and for every kind of finding; it costs a plain walk to that revision per finding, and
        nothing while every revision goes round.
        """
        revisions = self.revisions_base_to_head()
        for revision in revisions:
            where, marked = _where(revision), self.marked[revision.revision]
            outcome.accepted += [
                f"{where}: no generated rows for {table} ({reason})"
                for table, reason in marked.no_rows.items()
            ] + [f"{where}: its own rows for {table}" for table in marked.rows]
        resume = 0
        while True:
            outcome.data_failures.clear()  # every pass runs the data checks from base
            failed_at = self._walk_once(url, outcome, revisions, stairway, resume)
            if failed_at is None:
                return
            self.dialect.clients().empty(url)
            resume = failed_at + 1

    def _walk_once(
        self, url: URL, outcome: Walk, revisions: list[Script], stairway: bool, resume: int
    ) -> int | None:
        """One env.py run from base: the stairway for the revisions from `resume` on. Returns
        the index of the revision with a stairway finding (the run stops there), else None."""
        # The watch of the run's connection ends with the run, also where a step failed and the
        # runner left the steps unfinished.
        with ExitStack() as watching:
            return self._walk_steps(url, outcome, revisions, stairway, resume, watching)

    def _walk_steps(
        self,
        url: URL,
        outcome: Walk,
        revisions: list[Script],
        stairway: bool,
        resume: int,
        watching: ExitStack,
    ) -> int | None:
        phase = ["upgrade", "base"]
        at = [0]  # the index of the revision being walked
        found: list[int] = []  # the revision whose downgrade differs
        filled: list[str] = []  # the tables holding generated rows when a step failed

        def steps(
            heads: tuple[str, ...], context: MigrationContext
        ) -> Iterator[RevisionStep | Inspected]:
            connection = context.connection
            assert connection is not None
            settings = load_settings(self.project.settings)
            watch = watching.enter_context(self.dialect.watch(connection, url, settings))
            yield from walked(connection, watch)

        def walked(connection: Connection, watch: Watch) -> Iterator[RevisionStep | Inspected]:
            schema = self.dialect.schema_tracker(connection) if stairway else None
            filler = self.dialect.table_filler(connection, self.given_rows)
            written: list[str] = []
            for index, revision in enumerate(revisions):
                where = _where(revision)
                phase[:], at[0] = ["upgrade", where], index
                # Every table holds rows, as in production: the tables new since the last fill
                # are among those the last refresh saw created, where there was one.
                filler.fill_new_tables(schema.created if schema else None)
                filled[:] = filler.filled
                one_way = self.marked[revision.revision].one_way
                # The rows of the tables there before the revision, counted: a round trip that
                # changes none of them may be rolled back instead of upgraded again (_tried).
                counted = (
                    schema.row_changes() if schema and index >= resume and not one_way else None
                )
                up = self.up(revision)
                if revision.revision in outcome.locks_checked:
                    yield up
                else:
                    existing = set(self.dialect.table_sizes(connection))
                    with watch.revision() as watched:
                        yield up
                    outcome.locks_checked.add(revision.revision)
                    self._long_locks(outcome, revision, watched.statements, existing)
                if schema and index < resume:
                    schema.refresh()  # walked again after a failed step: the new baseline
                elif schema and one_way:
                    schema.refresh()
                    outcome.accepted.append(f"{where}: one-way, not taken down ({one_way})")
                elif schema:
                    # Read once after the round trip: whatever the upgrade or the downgrade
                    # touched must be back as it was.
                    phase[0] = "downgrade"
                    # Each step of the round trip in a session as fresh as a separate make
                    # rollback or make migrate has: no temporary table of the step before.
                    self.dialect.forget_temporary_tables(connection)
                    compared: list[tuple[set[tuple[str, str]], set[tuple[str, str]]]] = []
                    step = self.down(revision)
                    down: RevisionStep | Inspected = step
                    if counted is not None:
                        restore = schema.checkpoint()
                        down = Inspected(step, partial(_tried, compared, counted, schema=schema))
                    yield down
                    tried = isinstance(down, Inspected) and down.rolled_back
                    if tried:
                        # Back at the revision as its one upgrade left it: the tracker too.
                        restore()
                        schema.refresh()
                    wanted, got = compared[0] if compared else schema.refresh()
                    if got != wanted:
                        differs = (
                            f"downgrade leaves {described(got - wanted)}, misses "
                            f"{described(wanted - got)}"
                        )
                        self._finding(
                            outcome,
                            revision,
                            f"{where}: {differs}. Make that revision's downgrade() drop what it "
                            "leaves and restore what it misses, then try it on a development "
                            f"database with {self.project.commands.rollback}",
                            f"{where}: {differs}",
                        )
                        if not tried:
                            found.append(index)
                            return  # the runner commits what ran: the walk resumes after it
                    if not tried:
                        phase[0] = "second upgrade"
                        self.dialect.forget_temporary_tables(connection)
                        filler.fill_new_tables(schema.created)  # what the downgrade made again
                        filled[:] = filler.filled
                        yield self.up(revision)
                        schema.refresh()
                for checked in checked_at(revision):
                    if _guarded(connection, outcome, checked, DATA_CHECKS[checked].before):
                        written.append(checked)
            # At head, every revision committed: the rows written on the way must have come
            # through.
            for revision_id in written:
                _guarded(connection, outcome, revision_id, DATA_CHECKS[revision_id].after)
            if unseen := filler.never_seen():
                outcome.upgrade_failure = (
                    f"no revision creates {', '.join(unseen)}, which a `# migration-tests: "
                    "rows for` or `no rows for` line names: name the table as PostgreSQL prints "
                    "it (schema-qualified outside the search path)"
                )

        try:
            self.run_env(url, Stepwise(steps, fresh_contexts=stairway))
        except Exception as exc:
            what, where = phase
            # Empty tables would not have failed the way a populated database does: say so.
            held = (
                f" (the tables {some_of(filled)} held generated rows, as a populated database does"
                if filled
                else ""
            )
            rows = (
                f"{held}: a new NOT NULL column needs a server_default or a backfill first, a "
                "narrower type or a new unique constraint needs the data checked first)"
                if filled
                else ""
            )
            if what == "upgrade":
                outcome.upgrade_failure = f"upgrade to {where} failed: {exc}{rows}"
                return None
            if what == "downgrade":
                # The runner's message gives the upgrade's advice (the walk is an upgrade run):
                # the cause alone, then the downgrade's own advice.
                cause = self.dialect.first_line(exc.__cause__ or exc)
                failed = f"{where}: downgrade failed: {cause}{held}{')' if held else ''}"
                self._finding(
                    outcome,
                    revisions[at[0]],
                    f"{failed}. Fix that revision's downgrade() (data the upgrade changed may "
                    "not fit the old schema: move it back first), then try it on a development "
                    f"database with {self.project.commands.rollback}",
                    failed,
                )
            else:
                failed = f"{where}: {what} failed: {exc}{rows}"
                self._finding(outcome, revisions[at[0]], failed, failed)
            return at[0]
        return found[0] if found else None

    def _long_locks(
        self, outcome: Walk, revision: Script, statements: list[Measured], existing: set[str]
    ) -> None:
        """A rewrite of a table that existed before the revision, or a whole-table read of one
        under a lock that stops its writers, unless the revision accepts it: on a production
        table, its writers would wait for as long as that takes. (A table the revision creates
        is empty in production too.)"""
        where, marked = _where(revision), self.marked[revision.revision]
        for risk in risks(statements, self.dialect.blocks_writes):
            if risk.table not in existing:
                continue
            said = risk.said(self.dialect.mode_name)
            sql = " ".join(statements[risk.index].sql.split())[:100]
            reason = marked.accepting_risk(risk)
            if reason is not None:
                outcome.accepted.append(f"{where}: {said} ({reason})")
                continue
            marker = "rewrite of" if risk.mode is None else "long lock on"
            outcome.long_locks.append(
                f"{where}: {said} (`{sql}`): on a production table its writers wait for as "
                "long as that takes. Make the change without it "
                "(docs/zero-downtime.md), or accept it after review in the revision's file: "
                f"`# migration-tests: accept {marker} {risk.table}: <why>`"
            )

    def _finding(self, outcome: Walk, revision: Script, failure: str, finding: str) -> None:
        """A stairway finding: failed (`failure`, with its fix), or `finding` listed where the
        revision's marker accepts it."""
        listed = self.marked[revision.revision].accepting(finding)
        if listed is None:
            outcome.stairway_failures.append(failure)
        else:
            outcome.accepted.append(listed)


def _tried(
    compared: list[Any],
    counted: dict[int, tuple[int, int]],
    whole: bool,
    *,
    schema: SchemaTracker,
) -> bool:
    """Inside a revision's downgrade, once applied: compare the schema with the one before the
    upgrade, and have the downgrade rolled back rather than committed where a second upgrade
    would start exactly where the first did.

    That holds where the downgrade ran in one transaction (a rollback undoes it all), neither
    the upgrade nor the downgrade changed, emptied or rewrote a table there before the revision
    (`counted` before the upgrade: a row the upgrade added and the downgrade kept would meet the
    second upgrade), and neither touched an object the snapshot does not read (which a second
    upgrade might meet again). The database then stays at the revision as its one upgrade left
    it, as `make migrate` leaves it, and the walk goes on from there, a finding or not.
    Elsewhere (an autocommit_block(), a commit of its own, MySQL's DDL) the downgrade commits,
    and the revision is upgraded again."""
    now = schema.row_changes() or {}
    undisturbed = whole and all(now.get(table) == seen for table, seen in counted.items())
    compared.append(schema.refresh())
    return undisturbed and not schema.unread


def checked_at(revision: Script) -> list[str]:
    """The revisions whose data checks run once `revision` is applied: its own, and where it is
    a baseline of `make squash`, those of the revisions it folded in (their rows are written at
    the baseline)."""
    ids = [revision.revision, *(id_ for id_ in folded(revision) if id_ != revision.revision)]
    return [id_ for id_ in ids if id_ in DATA_CHECKS]


def some_of(names: list[str], shown: int = 5) -> str:
    """The first `shown` names, and how many more: a history's walk fills dozens of tables."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _where(revision: Script) -> str:
    return f"revision {revision.revision} ({revision.path})"


def _guarded(
    connection: Connection, outcome: Walk, revision: str, check: Callable[[Connection], None]
) -> bool:
    """Run a data check in a savepoint, so a failing one leaves the walk going."""
    savepoint = connection.begin_nested()
    try:
        check(connection)
    except Exception as exc:
        savepoint.rollback()
        outcome.data_failures[revision] = f"{type(exc).__name__}: {exc}"
        return False
    savepoint.commit()
    return True


def on_connection(url: URL, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on one connection to `url`, commit, and return what it returns."""

    async def run() -> Any:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())
