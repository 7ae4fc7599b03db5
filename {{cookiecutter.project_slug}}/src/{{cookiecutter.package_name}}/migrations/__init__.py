"""Run the migrations from code: at start-up, in a job, or in tests.

    from {{ cookiecutter.package_name }}.migrations import upgrade, is_at_head
    upgrade()                                   # sync code, or inside a running event loop
    await upgrade_async()                       # async code
    await conn.run_sync(lambda c: upgrade(connection=c))   # on your own connection

`is_at_head()` tells whether the database is current without taking the migration lock, e.g. for a
readiness probe of a service that leaves migrating to a separate job; `wait_for_head()` polls it
until the database is at head (for init containers and start scripts). `python -m
{{ cookiecutter.package_name }}.migrations` runs all of this from an installed wheel (see __main__.py).
"""

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ..db import create_engine

MIGRATIONS_DIR = Path(__file__).parent
MIGRATE = "run the migrations (python -m {{ cookiecutter.package_name }}.migrations upgrade)"


def alembic_config(url: URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config built in code: no alembic.ini needed, so it works from a wheel."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logger"] = False
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    revision: str = "head", *, url: URL | None = None, connection: Connection | None = None
) -> None:
    """Upgrade the database to `revision`, under the migration lock.

    On an injected connection it runs inside that connection's transaction (commit it after).
    Without one, env.py runs its own event loop; inside a running loop that happens in a worker
    thread, since `asyncio.run()` cannot be nested.
    """
    config = alembic_config(url, connection)
    config.attributes["command"] = "upgrade"
    if connection is not None:
        command.upgrade(config, revision)
    else:
        _outside_running_loop(command.upgrade, config, revision)


async def upgrade_async(revision: str = "head", *, url: URL | None = None) -> None:
    """Upgrade from async code without blocking the event loop."""
    await asyncio.to_thread(upgrade, revision, url=url)


def script_heads() -> set[str]:
    """The head revisions of the migration scripts."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_heads(connection: Connection) -> set[str]:
    """The revisions the database is at (empty at base)."""
    return set(MigrationContext.configure(connection).get_current_heads())


def is_at_head(connection: Connection) -> bool:
    """True when the database has every migration applied. Takes no lock."""
    return current_heads(connection) == script_heads()


def wait_for_head(timeout: float, *, interval: float = 1.0, url: URL | None = None) -> None:
    """Return once the database is at head; raise `TimeoutError` saying why after `timeout` s.

    Polls `is_at_head` without the migration lock, so it never delays the job that migrates, and
    keeps trying while the server is not up yet (a database starting next to the app).
    """
    _outside_running_loop(lambda: asyncio.run(_wait_for_head(timeout, interval, url)))


async def _wait_for_head(timeout: float, interval: float, url: URL | None) -> None:
    engine = create_engine(url=url)
    deadline = time.monotonic() + timeout
    heads = script_heads()
    try:
        while True:
            try:
                async with engine.connect() as connection:
                    current = await connection.run_sync(current_heads)
                if current == heads:
                    return
                at = ", ".join(sorted(current)) or "base (empty)"
                why = f"the database is at {at}, head is {', '.join(sorted(heads))}: {MIGRATE}"
            except (SQLAlchemyError, OSError) as exc:
                lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                why = f"cannot connect ({type(exc).__name__}: {lines[0] if lines else ''})"
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"Not at head after {timeout:g}s: {why}.")
            await asyncio.sleep(interval)
    finally:
        await engine.dispose()


def _outside_running_loop(fn: Callable[..., None], *args: object) -> None:
    """Call `fn` here, or in a worker thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn, *args).result()
