"""The toolkit's mutation score, module by module, from a mutation tool: `make mutation-score`.

    .venv/bin/python mutation/score.py [--all] [--children N] [--keep] [--raise]

mutmut (configured in packages/alembic-steady/pyproject.toml) makes thousands of small changes to
the toolkit's functions (an operator, a constant, a condition, an argument dropped) and runs, for
each, the unit tests that call the function it changed. A mutant is killed when a test fails,
survives when they all pass, and has no test when no unit test calls its function (that code is
proven by the live tiers and by `make mutate`'s mutations instead: too slow to run per mutant).

A module's score is the share of its mutants the unit tests kill. The run fails when:
- a module named in mutation/ratchet.toml scores below its floor there (raise the floors as
  tests improve; never lower one to make a run pass);
- a mutant that survives, or has no test, is not justified in mutation/survivors/ (a file per
  package of the toolkit: runner.toml, dialects.toml, ...);
- an entry there justifies nothing any more (its mutants were killed: remove the entry).

By default (CI's run) mutmut changes the ratcheted packages only, runner/, dialects/ and
authoring/, and only their survivors' files are checked; `--all` scores every module of the
toolkit (cli, tools/, testing/ too) and checks every file of mutation/survivors/: a quarter more
mutants, which CI's time budget leaves to a run by hand.

The working tree is never touched: the toolkit is copied to a temporary folder, where mutmut
writes its `mutants/`.
"""

import argparse
import fnmatch
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
TOOLKIT = TEMPLATE / "packages" / "alembic-steady"
MUTMUT = TEMPLATE / ".venv-toolkit" / "bin" / "mutmut"
RATCHET = Path(__file__).resolve().parent / "ratchet.toml"
SURVIVORS = Path(__file__).resolve().parent / "survivors"
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
# mutmut's verdicts (`mutmut results --all true`) that leave a mutant alive.
ALIVE = ("survived", "no tests")

# The packages whose modules the ratchet holds (issue #21): what `make migrate` runs, the dialect
# seam and the authoring tools. `--raise` adds their new modules.
RATCHETED = ("runner/", "dialects/", "authoring/")


def log(message: str) -> None:
    print(f"[mutation-score] {message}", file=sys.stderr, flush=True)


def module_of(mutant: str) -> str:
    """`alembic_steady.runner.retries.x_backoff__mutmut_3` -> `runner/retries`."""
    return mutant.rsplit(".", 1)[0].removeprefix("alembic_steady.").replace(".", "/")


def run_mutmut(children: int, work: Path, every_module: bool) -> dict[str, str]:
    """Every mutant's verdict: killed, survived, no tests, timeout, ..."""
    copy = work / "alembic-steady"
    shutil.copytree(TOOLKIT, copy, ignore=IGNORED)
    if not every_module:
        # mutmut's only_mutate, in the copy's [tool.mutmut] (its last table line stays last).
        pyproject = copy / "pyproject.toml"
        patterns = [f"src/alembic_steady/{package}*" for package in RATCHETED]
        text = pyproject.read_text(encoding="utf-8").replace(
            "[tool.mutmut]\n", f"[tool.mutmut]\nonly_mutate = {patterns!r}\n", 1
        )
        pyproject.write_text(text, encoding="utf-8")
    # Unit tests only, and none of them may reach a server the caller's shell names.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_") and k != "DATABASE_URL"}
    started = time.perf_counter()
    ran = subprocess.run(
        [str(MUTMUT), "run", "--max-children", str(children)],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    if ran.returncode != 0:
        print(ran.stdout[-5000:])
        raise SystemExit(f"mutmut run failed (exit {ran.returncode}): its output is above")
    log(f"mutmut ran in {time.perf_counter() - started:.0f}s")
    listed = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    verdicts = {}
    for line in listed.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            verdicts[name] = status
    return verdicts


def scores(verdicts: dict[str, str]) -> dict[str, Counter[str]]:
    by_module: dict[str, Counter[str]] = {}
    for name, status in verdicts.items():
        by_module.setdefault(module_of(name), Counter())[status] += 1
    return dict(sorted(by_module.items()))


def score(counts: Counter[str]) -> float:
    return counts["killed"] / sum(counts.values())


def table(by_module: dict[str, Counter[str]], floors: dict[str, float]) -> str:
    lines = [
        "| module | mutants | killed | survived | no unit test | score | floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module, counts in by_module.items():
        floor = f"{floors[module]:.2f}" if module in floors else ""
        lines.append(
            f"| {module} | {sum(counts.values())} | {counts['killed']} | {counts['survived']} "
            f"| {counts['no tests']} | {score(counts):.2f} | {floor} |"
        )
    total: Counter[str] = sum(by_module.values(), Counter())
    lines.append(
        f"| **all** | {sum(total.values())} | {total['killed']} | {total['survived']} "
        f"| {total['no tests']} | {score(total):.2f} | |"
    )
    return "\n".join(lines)


def justified(
    verdicts: dict[str, str], entries: list[dict[str, str]]
) -> tuple[Counter[str], list[str]]:
    """How many live mutants each entry of survivors/ justifies, and the live mutants none does."""
    per_entry: Counter[str] = Counter({entry["mutants"]: 0 for entry in entries})
    bare = []
    for name in sorted(verdicts):
        if verdicts[name] not in ALIVE:
            continue
        matches = [e["mutants"] for e in entries if fnmatch.fnmatchcase(name, e["mutants"])]
        per_entry.update(matches)
        if not matches:
            bare.append(f"{name}: {verdicts[name]}")
    return per_entry, bare


def raised(floors: dict[str, float], by_module: dict[str, Counter[str]]) -> str:
    """ratchet.toml with each ratcheted module's floor at its score now, where that is higher."""
    header = RATCHET.read_text(encoding="utf-8").partition("[floor]")[0]
    lines = [header.rstrip("\n"), "[floor]"] if header.strip() else ["[floor]"]
    for module, counts in by_module.items():
        if module.startswith(RATCHETED):
            now = math.floor(score(counts) * 100) / 100
            lines.append(f'"{module}" = {max(now, floors.get(module, 0.0)):.2f}')
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (mutmut show)")
    parser.add_argument(
        "--all",
        dest="every_module",
        action="store_true",
        help="every module of the toolkit, not only the ratcheted packages",
    )
    parser.add_argument(
        "--raise", dest="raise_floors", action="store_true", help="raise ratchet.toml's floors"
    )
    args = parser.parse_args()
    floors = tomllib.loads(RATCHET.read_text(encoding="utf-8"))["floor"]
    # survivors/<package>.toml: runner.toml, ..., cli.toml for the modules at the top.
    files = [
        path
        for path in sorted(SURVIVORS.glob("*.toml"))
        if args.every_module or f"{path.stem}/" in RATCHETED
    ]
    entries = [
        entry
        for path in files
        for entry in tomllib.loads(path.read_text(encoding="utf-8")).get("justified", [])
    ]
    work = Path(tempfile.mkdtemp(prefix="mutation-score-"))
    try:
        verdicts = run_mutmut(args.children, work, args.every_module)
    finally:
        if args.keep:
            log(f"work folder kept: {work / 'alembic-steady'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    by_module = scores(verdicts)
    print(table(by_module, floors))
    per_entry, bare = justified(verdicts, entries)
    print("\nLive mutants, justified (mutation/survivors/):")
    for entry in entries:
        print(f"  {per_entry[entry['mutants']]:4} {entry['mutants']}: {entry['why']}")
    if args.raise_floors:
        RATCHET.write_text(raised(floors, by_module), encoding="utf-8")
        log(f"floors raised to the scores of this run: {RATCHET}")
        floors = tomllib.loads(RATCHET.read_text(encoding="utf-8"))["floor"]
    failures = []
    for module, floor in floors.items():
        if module not in by_module:
            failures.append(f"{module}: in ratchet.toml, but mutmut made no mutant of it")
        elif (got := score(by_module[module])) < floor:
            failures.append(f"{module}: score {got:.2f}, below its floor {floor:.2f}")
    failures += [f"not justified in mutation/survivors/: {name}" for name in bare]
    stale = [glob for glob, count in per_entry.items() if count == 0]
    failures += [f"justifies no live mutant any more (remove it): {glob}" for glob in stale]
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
