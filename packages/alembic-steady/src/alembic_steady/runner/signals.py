"""SIGTERM (docker stop, Kubernetes) and SIGINT (Ctrl-C) during a command-line run: cancel the
statement on the server, let the connection go (and the lock with it), say where things stand.

Without this the process dies while the server goes on running its statement, holding the
migration lock's session until the statement ends. Only command-line runs on the main thread
install handlers; programmatic callers keep their own signal handling.
"""

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def cancel_on_signals(enabled: bool) -> Iterator[list[int]]:
    """Turn SIGTERM/SIGINT into a cancellation of the running task; yields the signals seen.

    Cancelling the task that awaits asyncpg makes asyncpg send PostgreSQL a cancel request for
    the running statement; SQLAlchemy then discards the connection.
    """
    received: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def handle(signum: int) -> None:
        if not received:
            task.cancel()
        received.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield received
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
