"""Prune what the answers turned off, lock the dependencies (uv.lock, with uv when present) and
print the next commands. Only the lock uses the network: the package index."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

# The toolkit arrives as its source (vendor/alembic-steady is a link to packages/alembic-steady,
# copied whole): a project needs its code, not its tests or a developer's caches.
TOOLKIT = Path("vendor/alembic-steady")
for leftover in ("tests", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
    shutil.rmtree(TOOLKIT / leftover, ignore_errors=True)
for cache in sorted(TOOLKIT.rglob("__pycache__")):
    shutil.rmtree(cache)

if "{{ cookiecutter.github_actions }}" != "yes":
    shutil.rmtree(Path(".github"))

# Files of the MySQL option are written `<name>_mysql.<ext>` next to the PostgreSQL file they
# replace: the chosen database keeps its own, under the common name.
MYSQL = "{{ cookiecutter.database }}" == "mysql"
for variant in sorted(p for p in Path(".").rglob("*_mysql.*") if TOOLKIT not in p.parents):
    if MYSQL:
        variant.replace(variant.with_name(variant.name.replace("_mysql.", ".", 1)))
    else:
        variant.unlink()
if MYSQL:
    # squawk's rule set: `make lint-migrations` lints PostgreSQL's SQL only (it says so on MySQL).
    Path(".squawk.toml").unlink()
    # The safe operations (CONCURRENTLY, NOT VALID) are PostgreSQL's: their guide renders empty.
    Path("docs/zero-downtime.md").unlink()
    # The queued backfills (op.queue_backfill and their runner) are PostgreSQL's.
    Path("deploy/backfill-cronjob.yaml").unlink()

if "{{ cookiecutter.web_framework }}" == "none":
    shutil.rmtree(Path("src/{{ cookiecutter.package_name }}/app"))
    Path("tests/test_app.py").unlink()
    Path("deploy/deployment.yaml").unlink()

# The lock: `make lock` writes uv.lock and requirements-dev.txt, the pins every install reads (make
# install, its pip fallback, the Dockerfile, CI). Made here so the first commit holds them; a
# failure (no network, an index that refuses) leaves the project rendered and says what to run.
REQUIRES_PYTHON = "{{ cookiecutter.python_version }}"
LOWEST = tuple(map(int, REQUIRES_PYTHON.split(".")))
if shutil.which("uv") and shutil.which("make"):
    locking = subprocess.run(
        ["make", "--no-print-directory", "lock"],
        # uv locks with an interpreter of requires-python: cookiecutter's own when it is one,
        # else the one uv finds.
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        | ({"UV_PYTHON": sys.executable} if sys.version_info >= LOWEST else {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    locked = locking.returncode == 0
    if not locked:
        print(locking.stdout)
else:
    locked = False
lock_step = (
    ""
    if locked
    else "\nNo uv.lock yet (uv was not found, or locking failed above): `make install` makes it\n"
    "where uv is installed, or run `make lock`; without uv, pip installs the newest versions.\n"
)

# Cookiecutter runs this hook inside the new project; the `cd` has to be said from the folder the
# user is in (the shell's PWD), e.g. `cd build/demo/my-service` after `cookiecutter -o build/demo`.
project = Path.cwd()
caller = Path(os.environ.get("PWD") or project.parent)
where = project.relative_to(caller) if project.is_relative_to(caller) else project

database = (
    "a development MySQL in Docker, or how to point the project at a server"
    if MYSQL
    else "a development PostgreSQL (Docker if it answers, else embedded)"
)
print(
    f"""
Created {project.name}. Next:

    cd {where}
    make install    # .venv with the service and its dev tools
    make db-up      # {database}
    make migrate    # apply the migrations

`make help` lists every target.{lock_step}"""
)
