"""Worker processes: each migrates one target at a time with the runner (its lock, retries,
timeouts, and signal handling), so targets run side by side without sharing Alembic's
module-level state, and an interpreter's start is paid once per worker, not once per target.

The parent writes one job per line (JSON) to a worker's stdin and reads one result per line
from its stdout; the worker's other output goes to stderr. A worker that exits (a signal, a
crash) answers nothing: its target is reported as interrupted.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import IO, Any

from alembic.util import CommandError
from sqlalchemy.engine import make_url

from ..dialects.base import for_url
from ..runner.api import Migrations
from .status import Found, read_all
from .targets import Target


class Worker:
    """One worker process of the project's module CLI (`fleet worker`)."""

    def __init__(self, package: str) -> None:
        # The worker imports the project as this process does.
        paths = [path for path in sys.path if path]
        if given := os.environ.get("PYTHONPATH"):
            paths.append(given)
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"{package}.migrations", "fleet", "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            # Ctrl-C reaches the parent alone, which stops each worker once.
            start_new_session=True,
        )

    def run(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The worker's result for `job`, or None when the worker exited instead."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            return None
        return json.loads(line) if line else None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)

    def close(self) -> int:
        """Let the worker finish and exit; its exit status."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        return self.process.wait()


def job_for(target: Target, command: str) -> dict[str, Any]:
    """`command`: "upgrade" (to the heads) or "check" (the models against the target)."""
    # The URL holds the password: it goes through the pipe, never argv or a file.
    return {
        "url": target.url.render_as_string(hide_password=False),
        "schema": target.schema,
        "label": target.label,
        "command": command,
    }


def serve(migrations: Migrations, jobs: IO[str], results: IO[str]) -> int:
    """The worker's loop: a result line for each job line, until its input ends."""
    project = migrations.project
    module = f"python -m {project.package}.migrations"
    # The runner's advice names the fleet's command, which reruns what is not at head.
    words = replace(project.module_commands, migrate=f"{module} fleet upgrade")
    for line in jobs:
        job = json.loads(line)
        url = make_url(job["url"])
        target = Target(url, job["schema"], job["label"])
        started = time.monotonic()
        error = None
        try:
            if job["command"] == "check":
                # Alembic prints "No new upgrade operations detected." for each target at peace.
                with contextlib.redirect_stdout(io.StringIO()):
                    migrations.check(url=url, schema=job["schema"], commands=words)
            else:
                migrations.upgrade(
                    "heads", url=url, schema=job["schema"], commands=words, cancel_on_signals=True
                )
        except CommandError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: reported for this target, the others go on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        seconds = time.monotonic() - started
        # Where a failed upgrade stopped (the revisions before the failing one are committed);
        # the parent knows the rest: a check changes nothing, an upgrade that ran is at heads.
        after = Found(None)
        if job["command"] == "upgrade" and error is not None:
            after = read_all([target], project, project.settings(), for_url(url))[target]
        results.write(
            json.dumps(
                {
                    "error": error,
                    "seconds": seconds,
                    "after": list(after.heads) if after.heads is not None else None,
                }
            )
            + "\n"
        )
        results.flush()
    return 0
