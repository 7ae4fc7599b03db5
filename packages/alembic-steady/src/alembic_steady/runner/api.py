"""Run the migrations from code: at start-up, in a job, in tests, or from the module CLI.

    api = Migrations(PROJECT)
    api.upgrade()                                   # sync code, or inside a running event loop
    await api.upgrade_async()                       # async code
    await conn.run_sync(lambda c: api.upgrade(connection=c))   # on your own connection

`is_at_head()` tells whether the database is current without taking the migration lock, e.g. for
a readiness probe of a service that leaves migrating to a separate job; `wait_for_head()` polls
it until the database is at head (for init containers and start scripts).
"""

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from functools import partial

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, pool
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from ..dialects.base import for_url
from ..project import Commands, Project
from .alembic_internals import upgrade_steps
from .checksums import Ledger, accept_edit
from .phases import PRE, Phases, placement


class Migrations:
    def __init__(self, project: Project) -> None:
        self.project = project

    def alembic_config(
        self,
        url: URL | None = None,
        connection: Connection | None = None,
        commands: Commands | None = None,
        schema: str | None = None,
    ) -> Config:
        """An Alembic config built in code: no alembic.ini needed, so it works from a wheel."""
        config = Config()
        location = str(self.project.migrations).replace("%", "%%")
        config.set_main_option("script_location", location)
        config.set_main_option("path_separator", "os")
        config.attributes["configure_logger"] = False
        if url is not None:
            config.attributes["url"] = url
        if connection is not None:
            config.attributes["connection"] = connection
        if commands is not None:
            config.attributes["commands"] = commands
        if schema is not None:
            config.attributes["schema"] = schema
        return config

    def upgrade(
        self,
        revision: str = "head",
        *,
        url: URL | None = None,
        connection: Connection | None = None,
        commands: Commands | None = None,
        cancel_on_signals: bool = False,
        schema: str | None = None,
        phase: str | None = None,
    ) -> None:
        """Upgrade the database to `revision`, under the migration lock.

        On an injected connection it runs inside that connection's transaction (commit it
        after). Without one, env.py runs its own event loop; inside a running loop that happens
        in a worker thread, since `asyncio.run()` cannot be nested. With `cancel_on_signals`
        (a process that only migrates), SIGTERM/SIGINT cancel the running statement on the
        server, release the lock and exit 143/130, as `alembic upgrade` does. With `schema`
        (PostgreSQL), the tenant schema of that name is migrated: made when missing, holding its
        own version table, under a lock of its own (a new tenant's sign-up migrates it alone).
        With `phase`, one deploy phase: "pre" (before the rollout) or "post" (after it).
        """
        config = self.alembic_config(url, connection, commands, schema)
        config.attributes["command"] = "upgrade"
        if phase is not None:
            config.attributes["phase"] = phase
        config.attributes["cancel_on_signals"] = cancel_on_signals
        if connection is not None:
            command.upgrade(config, revision)
        else:
            outside_running_loop(command.upgrade, config, revision)

    async def upgrade_async(self, revision: str = "head", *, url: URL | None = None) -> None:
        """Upgrade from async code without blocking the event loop."""
        await asyncio.to_thread(self.upgrade, revision, url=url)

    def check(
        self,
        *,
        url: URL | None = None,
        schema: str | None = None,
        commands: Commands | None = None,
    ) -> None:
        """`alembic check` on the database at `url` (or a tenant `schema` of it): CommandError
        naming what the models have that its schema lacks, or what it lacks to be at head."""
        config = self.alembic_config(url, None, commands, schema)
        config.attributes["command"] = "check"
        outside_running_loop(command.check, config)

    def current(self, *, commands: Commands | None = None) -> None:
        """Print the revision the database is at, as `alembic current --verbose` does."""
        config = self.alembic_config(commands=commands)
        config.attributes["command"] = "current"
        command.current(config, verbose=True)

    def new_revision(self, message: str, *, phase: str = PRE) -> None:
        """Write an empty revision of `phase` where it belongs (phases.placement), named by
        the project's alembic.ini (its file_template and post-write hooks) where it has one."""
        ini = self.project.folder / "alembic.ini"
        config = Config(str(ini)) if ini.is_file() else self.alembic_config()
        script = ScriptDirectory.from_config(config)
        command.revision(config, message, **placement(Phases(script), phase))

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.alembic_config())

    def script_heads(self) -> set[str]:
        """The head revisions of the migration scripts."""
        return set(self.script().get_heads())

    def phases(self, script: ScriptDirectory | None = None) -> Phases:
        """Which revision belongs to which deploy phase (pre, post)."""
        return Phases(script or self.script())

    def pending(self, at: set[str], script: ScriptDirectory | None = None) -> list[Script]:
        """The revisions `make migrate` applies to a database at `at`, in its order (with deploy
        phases every pre revision first); CommandError naming the revisions no file here has."""
        script = script or self.script()
        known = {revision.revision for revision in script.walk_revisions()}
        if unknown := sorted(revision for revision in at if revision not in known):
            raise CommandError(
                f"the database is at {', '.join(unknown)}, which no revision file here has: "
                "check out the branch it was migrated from, or point DATABASE_URL at the right "
                "database"
            )
        # Alembic's own steps of `upgrade heads`: a post line that starts from base is pending
        # too, which a walk down from `at` would not reach.
        steps = upgrade_steps(script, tuple(at))
        return self.phases(script).in_deploy_order([step.revision for step in steps])

    @staticmethod
    def current_heads(connection: Connection) -> set[str]:
        """The revisions the database is at (empty at base)."""
        return set(MigrationContext.configure(connection).get_current_heads())

    def is_at_head(self, connection: Connection) -> bool:
        """True when the database has every revision this code needs: every `pre` one (its
        `post` revisions run after the rollout, once the old release is gone). Takes no lock."""
        return self.phases().ready(self.current_heads(connection))

    def wait_for_head(
        self,
        timeout: float,
        *,
        interval: float = 1.0,
        url: URL | None = None,
        commands: Commands | None = None,
    ) -> None:
        """Return once the database is at head; raise `TimeoutError` saying why after `timeout`.

        Polls `is_at_head` (every pre revision applied) without the migration lock, so it never
        delays the job that migrates, and keeps trying while the server is not up yet (a
        database starting next to the app). At head, a revision edited after this database
        applied it is refused (CommandError): the code about to start may expect what the
        edited file says.
        """
        words = commands or self.project.module_commands
        outside_running_loop(
            lambda: asyncio.run(self._wait_for_head(timeout, interval, url, words))
        )

    async def _wait_for_head(
        self, timeout: float, interval: float, url: URL | None, commands: Commands
    ) -> None:
        settings = self.project.settings()
        target = url or settings.sqlalchemy_url
        engine = create_async_engine(
            target,
            poolclass=pool.NullPool,
            connect_args=for_url(target).connect_args(settings, self.project.package),
        )
        deadline = time.monotonic() + timeout
        script = self.script()
        phases = self.phases(script)
        heads = phases.heads(PRE)
        try:
            while True:
                try:
                    async with engine.connect() as connection:
                        current = await connection.run_sync(self.current_heads)
                        if phases.ready(current):
                            verify = partial(
                                Ledger(script).verify, heads=current, commands=commands
                            )
                            await connection.run_sync(verify)
                            return
                    at = ", ".join(sorted(current)) or "base (empty)"
                    migrate = commands.migrate_in(PRE) if phases.used else commands.migrate
                    why = (
                        f"the database is at {at}, head is {', '.join(heads)}: run the "
                        f"migrations ({migrate})"
                    )
                except (SQLAlchemyError, OSError) as exc:
                    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                    why = f"cannot connect ({type(exc).__name__}: {lines[0] if lines else ''})"
                if time.monotonic() + interval > deadline:
                    raise TimeoutError(f"Not at head after {timeout:g}s: {why}.")
                await asyncio.sleep(interval)
        finally:
            await engine.dispose()

    def accept_edit(self, revision: str, *, url: URL | None = None) -> str:
        """Record the file of `revision`, applied to this database, as it is now: an edit made
        on purpose, which `upgrade`, `check` and `wait_for_head` then accept. Its path."""
        accepted: list[str] = []
        outside_running_loop(
            lambda: accepted.append(accept_edit(self.project, self.script(), revision, url))
        )
        return accepted[0]


def outside_running_loop(fn: Callable[..., None], *args: object) -> None:
    """Call `fn` here, or in a worker thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(fn, *args).result()
