"""Break each promise of the READMEs once and check that a test notices: `make mutate`.

    .venv/bin/python mutation/run.py [--only TEXT] [--keep] [--lanes N] [--unmutated]

For every mutation in mutation/mutations.toml (one exact text replacement in a template file):
apply it, run the tests named in its `caught_by`, restore the file, and report which of them
failed on an assertion of behaviour: read from pytest's JUnit report, a test that errors in its
setup, times out, or fails on a linter's verdict (ruff, mypy) does not count. The run fails when
a mutation's `old` text is not found exactly once (the list must move with the code), when the
unmutated generated suite is not green, or when no test catches a mutation. The mutations run in
lanes (`--lanes`, default 2), each with a copy of the template, so the machine's cores share the
work.

The working tree is never touched: the template is copied to a temporary folder, and, when a
mutation of the lane is judged by "generated", one project is rendered from the copy and
installed once. A mutation of a `{{cookiecutter.project_slug}}/` or
`packages/alembic-steady/` file is applied to both, so the rendered project's `make test`
("generated") and the template's own tests (node ids, run in the copy, which render from it)
both see it.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

TEMPLATE = Path(__file__).resolve().parent.parent
MUTATIONS = Path(__file__).resolve().parent / "mutations.toml"
TOOLS_BIN = TEMPLATE / ".venv" / "bin"
TOOLKIT_BIN = TEMPLATE / ".venv-toolkit" / "bin"
JUDGE = Path(__file__).resolve().parent / "judge.py"
SLUG_DIR = "{{cookiecutter.project_slug}}"
PACKAGE_DIR = "{{cookiecutter.package_name}}"
# The toolkit, and where a render carries it (installed editable, so a mutation there counts).
TOOLKIT_DIR, VENDORED_DIR = "packages/alembic-steady", "vendor/alembic-steady"
PACKAGE = "my_service"  # the package of a project rendered with the default answers
# Not copied: tools, caches, earlier renders.
IGNORED = shutil.ignore_patterns(
    ".venv*", ".git", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)
# Variables of the caller's shell that would point a project or its tests at another database.
LEAKY = ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME", "VIRTUAL_ENV")
GENERATED = "generated"
# `toolkit:tests/...::test_x`: a test of the toolkit's own tiers, run in the copy's toolkit.
TOOLKIT_TESTS = "toolkit:"


@dataclass
class Mutation:
    name: str
    file: str
    old: str
    new: str
    caught_by: list[str]
    # "mysql": its tests need the MySQL server TEST_MYSQL_URL names; without one it is not run,
    # and the report says so (a skipped test would count as a survivor).
    needs: str = ""
    failed: list[str] = field(default_factory=list)
    not_run: bool = False
    seconds: float = 0.0
    index: int = 0


class ListOutOfDate(Exception):
    """A mutation's `old` text does not occur exactly once: the list no longer fits the code."""


def log(message: str) -> None:
    print(f"[mutate] {message}", file=sys.stderr, flush=True)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY and k != "TEST_DATABASE_URL"}
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=900,
        check=False,
    )


# Failures that say nothing of the promise: a wait cut short, a linter's exit status (conftest's
# `must` names the command it ran: "['.venv/bin/ruff', 'check', ...] exited 1").
# A test that expects a TimeoutError and gets none ("DID NOT RAISE") failed on behaviour.
NOT_BEHAVIOUR = re.compile(
    r"TimeoutExpired|timed out after|Failed: Timeout|'[^']*\b(?:ruff|mypy)'.*\] exited"
)


def caught(report: Path) -> list[str]:
    """The tests of a pytest JUnit report that failed on an assertion of behaviour. An `<error>`
    (a fixture's setup or teardown failed) is not one, nor a failure NOT_BEHAVIOUR matches."""
    if not report.is_file():  # pytest never got to write it: killed, or no test collected
        return []
    found = []
    for case in ElementTree.parse(report).iter("testcase"):
        failure = case.find("failure")
        if failure is not None and not NOT_BEHAVIOUR.search(failure.get("message", "")):
            found.append(f"{case.get('classname')}::{case.get('name')}")
    return found


def rendered(mutation: Mutation, project: Path) -> tuple[Path, str, str] | None:
    """The rendered project's counterpart of a template file and the mutation's texts."""
    if mutation.file.startswith(TOOLKIT_DIR + "/"):
        relative = VENDORED_DIR + mutation.file.removeprefix(TOOLKIT_DIR)
        return project / relative, mutation.old, mutation.new
    if not mutation.file.startswith(SLUG_DIR + "/"):
        return None
    relative = mutation.file.removeprefix(SLUG_DIR + "/").replace(PACKAGE_DIR, PACKAGE)
    return project / relative, _render(mutation.old), _render(mutation.new)


def _render(text: str) -> str:
    return text.replace("{{ cookiecutter.package_name }}", PACKAGE)


def anchored(path: Path, old: str, name: str) -> str:
    """The text of `path`, in which `old` must occur exactly once."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    count = text.count(old)
    if count != 1:
        raise ListOutOfDate(
            f"mutation {name!r}: {old!r} occurs {count} times in {path}, not once. Update "
            "mutation/mutations.toml to the code as it is now."
        )
    return text


def apply(path: Path, old: str, new: str, name: str) -> str:
    """Replace `old` by `new` in `path`; return the original text."""
    text = anchored(path, old, name)
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text


class Judge:
    """The lane's judge of toolkit tests (mutation/judge.py): a Python with the libraries
    imported that forks a pytest per mutation. Started on first use, ended with the lane."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None

    def judged(self, args: list[str], cwd: Path, env: dict[str, str], report: Path) -> None:
        """pytest `args` in `cwd`, as judged() runs a command: a run cut short by the timeout
        leaves no report."""
        report.unlink(missing_ok=True)
        if self._process is None:
            self._process = subprocess.Popen(
                [str(TOOLKIT_BIN / "python"), str(JUDGE)],
                cwd=cwd,
                env=environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self._process.stdin is not None and self._process.stdout is not None
        # The copy's toolkit first on the path, as PYTHONPATH puts it for a fresh pytest.
        path = [env["PYTHONPATH"]]
        request = {"args": args, "cwd": str(cwd), "env": env, "path": path, "timeout": 900}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError("mutation/judge.py stopped: run with --lanes 1 to see why")
        if json.loads(answer)["code"] == -9:
            report.unlink(missing_ok=True)

    def close(self) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(30)


def judged(args: list[str], cwd: Path, env: dict[str, str], report: Path) -> None:
    """Run a test command that writes its JUnit report to `report`; a run cut short by run()'s
    timeout leaves no report, so nothing it did counts as caught."""
    report.unlink(missing_ok=True)
    try:
        run(args, cwd, env)
    except subprocess.TimeoutExpired:
        report.unlink(missing_ok=True)


def check(
    mutation: Mutation,
    copy: Path,
    project: Path,
    generated_env: dict[str, str],
    judge: Judge,
    unmutated: bool = False,
) -> None:
    """Apply `mutation` (not when `unmutated`), run the tests meant to catch it, restore; record
    what failed."""
    new_text = mutation.old if unmutated else mutation.new
    targets = [(copy / mutation.file, mutation.old, new_text)]
    if project.is_dir() and (in_project := rendered(mutation, project)) is not None:
        path, old, new = in_project
        targets.append((path, old, old if unmutated else new))
    originals: list[tuple[Path, str]] = []
    started = time.perf_counter()
    try:
        for path, old, new in targets:
            originals.append((path, apply(path, old, new, mutation.name)))
        toolkit_tests = [
            t.removeprefix(TOOLKIT_TESTS) for t in mutation.caught_by if t.startswith(TOOLKIT_TESTS)
        ]
        template_tests = [
            test
            for test in mutation.caught_by
            if test != GENERATED and not test.startswith(TOOLKIT_TESTS)
        ]
        report = copy.parent / "report.xml"
        if GENERATED in mutation.caught_by:
            args = f"args=-q -p no:cacheprovider --junitxml={report}"
            judged(["make", "--no-print-directory", "test", args], project, generated_env, report)
            mutation.failed += [f"generated {test}" for test in caught(report)]
        if toolkit_tests:
            # The copy's toolkit comes first on the path, ahead of the editable install's.
            toolkit = copy / TOOLKIT_DIR
            env = {**generated_env, "PYTHONPATH": str(toolkit / "src")}
            if os.environ.get("TEST_MYSQL_URL"):
                env["TEST_MYSQL_URL"] = os.environ["TEST_MYSQL_URL"]
            options = ["-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
            judge.judged([*options, *toolkit_tests], toolkit, env, report)
            mutation.failed += [f"toolkit {test}" for test in caught(report)]
        if template_tests:
            pytest = [str(TOOLS_BIN / "pytest"), "-q", "-p", "no:cacheprovider"]
            options = [f"--basetemp={copy.parent / 'pytest-tmp'}", f"--junitxml={report}"]
            # On the lane's server, where each test makes its own databases: a template test need
            # not start a server of its own for every mutation.
            judged([*pytest, *options, *template_tests], copy, generated_env, report)
            mutation.failed += caught(report)
    finally:
        for path, text in originals:
            path.write_text(text, encoding="utf-8")
    mutation.seconds = time.perf_counter() - started


def lane(
    number: int,
    mutations: list[Mutation],
    work: Path,
    server_url: str,
    total: int,
    unmutated: bool = False,
) -> bool:
    """Copy, render and install in `work`, check the unmutated suite, then run `mutations`;
    False when the unmutated suite is not green."""
    copy = work / "template"
    # symlinks=True: the copy's vendor/ link points at the copy's toolkit, which is mutated.
    shutil.copytree(TEMPLATE, copy, ignore=IGNORED, symlinks=True)
    project = work / "my-service"
    generated_env = environment(TEST_DATABASE_URL=server_url)
    # A project is rendered, installed and its suite checked green only when a mutation of the
    # lane is judged by it: `--only` on toolkit mutations starts in seconds.
    if any(GENERATED in mutation.caught_by for mutation in mutations):
        cookiecutter = [str(TOOLS_BIN / "cookiecutter"), "--no-input", "--output-dir", str(work)]
        render = run([*cookiecutter, str(copy)], work, environment())
        assert render.returncode == 0, render.stdout
        for mutation in mutations:
            if (in_project := rendered(mutation, project)) is not None:
                anchored(in_project[0], in_project[1], mutation.name)
        install = run(["make", "--no-print-directory", "install"], project, environment())
        assert install.returncode == 0, install.stdout
        baseline = run(["make", "--no-print-directory", "test"], project, generated_env)
        if baseline.returncode != 0:
            print(baseline.stdout)
            log(f"lane {number}: the unmutated generated suite is not green: nothing is judged")
            return False
    judge = Judge()
    try:
        judge_all(number, mutations, copy, project, generated_env, judge, total, unmutated)
    finally:
        judge.close()
    return True


def judge_all(
    number: int,
    mutations: list[Mutation],
    copy: Path,
    project: Path,
    generated_env: dict[str, str],
    judge: Judge,
    total: int,
    unmutated: bool,
) -> None:
    for mutation in mutations:
        if mutation.needs == "mysql" and not os.environ.get("TEST_MYSQL_URL"):
            mutation.not_run = True
            log(
                f"lane {number}, {mutation.index}/{total} NOT RUN (needs TEST_MYSQL_URL): "
                f"{mutation.name}"
            )
            continue
        check(mutation, copy, project, generated_env, judge, unmutated)
        if unmutated:
            verdict = "FAILS UNMUTATED" if mutation.failed else "passes unmutated"
        else:
            verdict = "caught" if mutation.failed else "NOT CAUGHT"
        seconds = f"{mutation.seconds:.0f}s"
        log(f"lane {number}, {mutation.index}/{total} {verdict} in {seconds}: {mutation.name}")


# What a mutation costs a lane, roughly (seconds on the 2-core machine): the generated suite, a
# template test (a render and an install of its own), a toolkit test; and a lane's render,
# install and unmutated generated suite, paid once by the lane that judges by "generated".
# (Means of CI's run at stop 35: 2.6 s, 8.4 s, 1.8 s; at stop 37: 4.7 s, 11.0 s, 2.1 s. The setup
# took nearer 80 s at stop 35, but with these weights the two lanes of the next run ended within
# seconds of each other, at 313 s.)
COST = {GENERATED: 5, "template": 11, "toolkit": 2}
GENERATED_SETUP = 30


def cost(mutation: Mutation) -> int:
    if GENERATED in mutation.caught_by:
        return COST[GENERATED]
    template = any(not t.startswith(TOOLKIT_TESTS) for t in mutation.caught_by)
    return COST["template" if template else "toolkit"]


def dealt(mutations: list[Mutation], lanes: int) -> list[list[Mutation]]:
    """The mutations shared among `lanes` so they end together: those judged by "generated" in
    the first lane (one render for them all), then the costliest first to the least loaded."""
    shares: list[list[Mutation]] = [[] for _ in range(lanes)]
    loads = [0] * lanes
    generated = [m for m in mutations if GENERATED in m.caught_by]
    if generated:
        shares[0] += generated
        loads[0] = GENERATED_SETUP + sum(cost(m) for m in generated)
    for mutation in sorted((m for m in mutations if m not in generated), key=cost, reverse=True):
        lane = loads.index(min(loads))
        shares[lane].append(mutation)
        loads[lane] += cost(mutation)
    return [share for share in shares if share]


def load(only: str | None) -> list[Mutation]:
    with MUTATIONS.open("rb") as handle:
        entries = tomllib.load(handle)["mutation"]
    mutations = [Mutation(**entry, index=number) for number, entry in enumerate(entries, 1)]
    return [m for m in mutations if only is None or only.lower() in m.name.lower()]


def table(mutations: list[Mutation]) -> str:
    lines = ["| mutation | caught by | s |", "|---|---|---:|"]
    for mutation in mutations:
        caught = "<br>".join(mutation.failed) or (
            "not run: needs TEST_MYSQL_URL" if mutation.not_run else "**NOT CAUGHT**"
        )
        lines.append(f"| {mutation.name} | {caught} | {mutation.seconds:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only the mutations whose name contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--lanes", type=int, default=2, help="mutations run side by side")
    parser.add_argument(
        "--unmutated",
        action="store_true",
        help="run each mutation's tests as judged, but on the unmutated code: every one must "
        "pass (one that fails alone, on an order its module assumes, would catch anything)",
    )
    args = parser.parse_args()
    mutations = load(args.only)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mutate-"))
    sys.path.insert(0, str(TEMPLATE))
    from tests.conftest import embedded_server  # the template tests' own throwaway server

    try:
        # Every anchor is checked before anything runs, so a stale list fails in seconds.
        for mutation in mutations:
            anchored(TEMPLATE / mutation.file, mutation.old, mutation.name)
        lanes = max(1, min(args.lanes, len(mutations)))
        log(f"{len(mutations)} mutations in {lanes} lane(s), each rendering a project in {work}")
        with embedded_server() as server, concurrent.futures.ThreadPoolExecutor(lanes) as pool:
            # Dealt round-robin: neighbours in the list often cost alike.
            shares = dealt(mutations, lanes)
            total = len(load(None))
            futures = [
                pool.submit(
                    lane,
                    number + 1,
                    share,
                    work / f"lane{number + 1}",
                    server.url("postgres"),
                    total,
                    args.unmutated,
                )
                for number, share in enumerate(shares)
            ]
            if not all(future.result() for future in futures):
                return 1
    except ListOutOfDate as exc:
        log(str(exc))
        return 1
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    ran = [mutation for mutation in mutations if not mutation.not_run]
    if args.unmutated:
        failing = [mutation for mutation in ran if mutation.failed]
        for mutation in failing:
            print(f"FAILS UNMUTATED: {', '.join(mutation.failed)} (for: {mutation.name})")
        print(f"{len(ran) - len(failing)}/{len(ran)} mutations' tests pass unmutated.")
        return 1 if failing else 0
    print(table(mutations))
    missed = [mutation.name for mutation in ran if not mutation.failed]
    print(f"\n{len(ran) - len(missed)}/{len(ran)} mutations caught", end="")
    print(f" in {time.perf_counter() - started:.0f}s.")
    if not_run := len(mutations) - len(ran):
        print(f"{not_run} NOT RUN: they need a MySQL server (TEST_MYSQL_URL).")
    for name in missed:
        print(f"NOT CAUGHT: {name}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
