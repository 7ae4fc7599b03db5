"""SIGTERM (docker stop, Kubernetes) and SIGINT (Ctrl-C) during a command-line run: stop the
statement on the server, let the connection go (and the lock with it), say where things stand.

Without this the process dies while the server goes on running its statement, holding the
migration lock's session until the statement ends (and on MySQL then committing it). Only
command-line runs on the main thread install handlers; programmatic callers keep their own
signal handling.
"""

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class Interrupted(Exception):
    def __init__(self, signum: int, stopped: str) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        # What became of the statement on the server, as a sentence (the dialect's words).
        self.stopped = stopped


@dataclass
class Signals:
    """The signals a run received, and how it stops its statement on the server."""

    received: list[int] = field(default_factory=list)
    # Started beside the task's cancellation on the first signal, where cancelling the task does
    # not reach the server (MySQL): ends the session's statement, returns what it did in words.
    stop_on_server: Callable[[], Coroutine[Any, Any, str]] | None = None
    stopping: "asyncio.Task[str] | None" = None

    async def interrupted(self, cancelled: str) -> Interrupted:
        """The Interrupted to raise; `cancelled` is the words when cancelling the task was all
        it took (asyncpg sends the server a cancel request itself)."""
        stopped = cancelled if self.stopping is None else await self.stopping
        return Interrupted(self.received[0], stopped)


@contextmanager
def cancel_on_signals(enabled: bool) -> Iterator[Signals]:
    """Turn SIGTERM/SIGINT into a cancellation of the running task (and a call of
    `stop_on_server`, once set); yields the Signals seen."""
    signals = Signals()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield signals
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def handle(signum: int) -> None:
        if not signals.received:
            if signals.stop_on_server is not None:
                signals.stopping = loop.create_task(signals.stop_on_server())
            task.cancel()
        signals.received.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield signals
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
