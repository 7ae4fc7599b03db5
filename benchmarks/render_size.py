"""Lines of Python in a rendered project, by concern, and what of it the project owns.

    .venv/bin/python benchmarks/render_size.py path/to/my-service [...]

A project owns everything outside vendor/ (the toolkit's copy, which `cruft update` replaces).
Concerns are told by file: the runner (what `make migrate` runs), the authoring tools, the
database chores, the test harness, the API and CLI, the app, the tests and the revisions.
"""

import sys
from pathlib import Path

CONCERNS = {
    "runner": (
        "env.py",
        "guards.py",
        "retries.py",
        "lock.py",
        "errors.py",
        "messages.py",
        "progress.py",
        "signals.py",
        "logs.py",
        "settings_loading.py",
        "nontransactional.py",
        "implicit_commits.py",
        "environment.py",
        "alembic_internals.py",
        "settings.py@runner",
        "postgresql.py@dialects",
        "mysql.py@dialects",
        "base.py@dialects",
    ),
    "authoring": ("ops.py", "autogen.py", "compare.py", "literals.py"),
    "database chores": (
        "backup.py",
        "restore.py",
        "pgclient.py",
        "dbclient.py",
        "devdb.py",
        "rehearse.py",
        "lint.py",
        "shell.py",
        "clients.py",
        "postgresql_clients.py",
        "mysql_clients.py",
    ),
    "test harness": (
        "conftest.py",
        "migration_helpers.py",
        "populated_tables.py",
        "data_checks.py",
        "models_registration.py",
        "plugin.py",
        "walk.py",
        "checks.py",
        "postgresql_schema.py",
        "mysql_schema.py",
        "postgresql_rows.py",
    ),
    "API and CLI": ("__main__.py@migrations", "__init__.py@migrations", "api.py", "cli.py"),
}


def concern(path: Path) -> str:
    if "versions" in path.parts:
        return "revisions"
    for name, files in CONCERNS.items():
        for entry in files:
            file, _, folder = entry.partition("@")
            if path.name == file and (not folder or path.parent.name == folder):
                return name
    if path.name.startswith("test_"):
        return "tests"
    return "app (settings, db, models, app)"


def measure(root: Path) -> None:
    totals: dict[tuple[str, str], int] = {}
    for path in sorted(root.rglob("*.py")):
        if ".venv" in path.parts:
            continue
        owner = "vendor" if "vendor" in path.relative_to(root).parts else "own"
        lines = len(path.read_text(encoding="utf-8").splitlines())
        key = (owner, concern(path))
        totals[key] = totals.get(key, 0) + lines
    print(f"{root}:")
    for owner in ("own", "vendor"):
        rows = {name: n for (o, name), n in totals.items() if o == owner}
        if rows:
            print(f"  {owner}: {sum(rows.values())} lines")
            for name, n in sorted(rows.items(), key=lambda item: -item[1]):
                print(f"    {name:32} {n:6}")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        measure(Path(argument))
