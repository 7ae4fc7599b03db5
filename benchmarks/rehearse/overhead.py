"""What `make rehearse` costs over the plain way to try migrations on a copy of the data.

    .venv/bin/python benchmarks/rehearse/overhead.py [--rows 1000000] [--rounds 3]

One project rendered from the working tree and installed; one embedded PostgreSQL. The source
database holds `--rows` items and is dumped once with `make backup`; one pending revision adds a
column with a default and builds an index on it (the usual shape of a schema change on a big
table). Each round times, side by side, in alternating order:

- plain: CREATE DATABASE + pg_restore of the dump into it (the same pg_restore and options as
  rehearse's) + `make migrate` there;
- rehearse: `make rehearse file=<dump>` (scratch database, restore, the revision with its locks
  and rows watched, then down and up again with a schema comparison, drop).

Prints the median of each and their ratio (goal: rehearse at most 1.3x plain), and writes them to
benchmarks/rehearse/RESULTS.md.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import TEMPLATE, TOOLS_BIN, clean_env, embedded_server, timed

PENDING = '''"""Add a note to every item, indexed."""

import sqlalchemy as sa
from alembic import op

revision: str = "0000benchnote"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("note", sa.String(), nullable=False, server_default="none"))
    op.create_index("ix_item_note", "item", ["note"])


def downgrade() -> None:
    op.drop_index("ix_item_note", table_name="item")
    op.drop_column("item", "note")
'''


def must(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        sys.exit(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rehearse-"))
    with embedded_server() as server:
        print("rendering and installing a project", file=sys.stderr)
        must([str(TOOLS_BIN / "cookiecutter"), "--no-input", str(TEMPLATE)], work, clean_env())
        project = work / "my-service"
        must(["make", "--no-print-directory", "install"], project, clean_env())
        server.create_database("bench_source")
        source = clean_env(DATABASE_URL=server.url("bench_source"))
        must(["make", "--no-print-directory", "migrate"], project, source)
        print(f"writing {options.rows} items and dumping them", file=sys.stderr)
        insert = (
            "INSERT INTO item (name, description) SELECT 'item ' || g, 'about ' || g "
            f"FROM generate_series(1, {options.rows}) g"
        )
        must(["make", "--no-print-directory", "psql", f'args=-c "{insert}"'], project, source)
        must(["make", "--no-print-directory", "backup"], project, source)
        (dump,) = (project / "backups").glob("*.dump")
        versions = project / "src" / "my_service" / "migrations" / "versions"
        (first,) = versions.glob("*.py")
        down = first.name.split("_")[2]
        (versions / "20990101_0000_0000benchnote_note.py").write_text(
            PENDING.replace("@down@", down), encoding="utf-8"
        )
        # The pg_restore make restore and make rehearse pick (the lowest at least the server's).
        pg_restore = must(
            [
                str(project / ".venv" / "bin" / "python"),
                "-c",
                "from alembic_steady.dialects.postgresql_clients import matching_program; "
                f"print(matching_program('pg_restore', {server.version.split('.')[0]})[1])",
            ],
            project,
            clean_env(),
        ).strip()
        plain: list[float] = []
        rehearse: list[float] = []
        for round_ in range(options.rounds):
            order = ["plain", "rehearse"] if round_ % 2 == 0 else ["rehearse", "plain"]
            for which in order:
                if which == "plain":
                    name = f"bench_plain_{round_}"
                    env = clean_env(DATABASE_URL=server.url(name))
                    start = time.perf_counter()
                    server.create_database(name)
                    restore = timed(
                        [
                            pg_restore,
                            "--no-owner",
                            "--no-acl",
                            "--exit-on-error",
                            f"--dbname={name}",
                            str(dump),
                        ],
                        project,
                        clean_env(PGHOST=server.socket_dir, PGUSER="postgres"),
                    )
                    migrate = timed(["make", "migrate"], project, env)
                    plain.append(time.perf_counter() - start)
                    server.drop_database(name)
                    if not (restore.ok and migrate.ok):
                        sys.exit(f"plain run failed:\n{restore.tail()}\n{migrate.tail()}")
                else:
                    run = timed(["make", "rehearse", f"file={dump}"], project, source)
                    if not run.ok:
                        sys.exit(f"rehearse failed:\n{run.tail()}")
                    rehearse.append(run.seconds)
                print(f"round {round_ + 1}: {which} done", file=sys.stderr)
    ratio = statistics.median(rehearse) / statistics.median(plain)
    table = (
        f"Rehearse overhead, {options.rows} rows, PostgreSQL {server.version} (embedded), "
        f"{options.rounds} rounds, median wall time\n\n"
        "| | seconds | rounds |\n|---|---:|---|\n"
        f"| plain: createdb + pg_restore + make migrate | {statistics.median(plain):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in plain)} |\n"
        f"| make rehearse file=... | {statistics.median(rehearse):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in rehearse)} |\n"
        f"| ratio | {ratio:.2f}x | goal <= 1.3x |\n"
    )
    print(table)
    (Path(__file__).parent / "RESULTS.md").write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
