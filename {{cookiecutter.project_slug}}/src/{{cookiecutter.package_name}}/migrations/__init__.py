"""Run the migrations from code: at start-up, in a job, or in tests.

    from {{ cookiecutter.package_name }}.migrations import upgrade, is_at_head
    upgrade()                                   # sync code, or inside a running event loop
    await upgrade_async()                       # async code
    await conn.run_sync(lambda c: upgrade(connection=c))   # on your own connection

`is_at_head()` tells whether the database is current without taking the migration lock, e.g. for a
readiness probe of a service that leaves migrating to a separate job.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL

MIGRATIONS_DIR = Path(__file__).parent


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


def _outside_running_loop(fn: Callable[..., None], *args: object) -> None:
    """Call `fn` here, or in a worker thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn, *args).result()
