"""Other sessions on the test database, as production has them: a replica holding the migration
lock, an app idle in a transaction. Each runs on its own thread and event loop until released."""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine


@contextmanager
def session_holding(url: URL, statement: str, *, application_name: str = "") -> Iterator[None]:
    """A session that ran `statement` (committed when it takes a session lock, else left open in
    its transaction) and waits, holding what it took, until the block ends."""
    ready, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        async def run() -> None:
            engine = create_async_engine(
                url,
                poolclass=pool.NullPool,
                connect_args={"server_settings": {"application_name": application_name}},
            )
            try:
                async with engine.connect() as connection:
                    await connection.execute(text(statement))
                    if "advisory_lock" in statement:
                        await connection.commit()
                    ready.set()
                    await asyncio.to_thread(release.wait)
                    await connection.rollback()
            finally:
                await engine.dispose()

        try:
            asyncio.run(run())
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    try:
        assert not failures, failures
        yield
    finally:
        release.set()
        thread.join()
