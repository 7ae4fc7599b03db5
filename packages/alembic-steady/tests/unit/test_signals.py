"""runner/signals.py: what a run interrupted by SIGTERM/SIGINT reports. The handlers themselves
are proven by sending the signals to live runs (tests/postgresql/test_pg_live.py,
tests/mysql/test_mysql_live.py)."""

import asyncio
import signal

from alembic_steady.runner.signals import Interrupted, Signals

CANCELLED = "Its statement was cancelled on the server."


def test_an_interruption_is_named_by_its_signal_and_says_what_became_of_the_statement() -> None:
    stop = Interrupted(signal.SIGTERM, CANCELLED)
    assert str(stop) == "SIGTERM"
    assert (stop.signum, stop.stopped) == (signal.SIGTERM, CANCELLED)
    assert str(Interrupted(signal.SIGINT, CANCELLED)) == "SIGINT"


def test_the_first_signal_received_is_the_one_reported() -> None:
    signals = Signals(received=[signal.SIGINT, signal.SIGTERM])
    stop = asyncio.run(signals.interrupted(CANCELLED))
    assert (str(stop), stop.signum, stop.stopped) == ("SIGINT", signal.SIGINT, CANCELLED)


def test_where_the_server_is_told_to_stop_its_answer_is_reported() -> None:
    async def interrupted() -> Interrupted:
        async def kill_query() -> str:
            return "Its statement was killed on the server (KILL QUERY 42)."

        signals = Signals(received=[signal.SIGTERM])
        signals.stopping = asyncio.get_running_loop().create_task(kill_query())
        return await signals.interrupted(CANCELLED)

    stop = asyncio.run(interrupted())
    assert stop.stopped == "Its statement was killed on the server (KILL QUERY 42)."
    assert stop.signum == signal.SIGTERM
