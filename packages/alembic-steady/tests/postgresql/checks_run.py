"""A project's own pytest run over the built-in migration tests (`alembic_steady.testing.checks`),
as its `make test` runs them: a subprocess in a folder holding a conftest and a test module, on
planted projects, whose output the tests then read."""

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import demo_project
from sqlalchemy.engine import URL

from alembic_steady import Project

BIN = Path(sys.executable).parent


# The project's test folder: the plugin, and a `migration_project` per planted project.
CONFTEST = """
import importlib
import os

import pytest

pytest_plugins = ["alembic_steady.testing.plugin"]
PROJECTS = dict(pair.split("=") for pair in os.environ["PLANTED_PROJECTS"].split())


@pytest.fixture(scope="session", params=sorted(PROJECTS))
def migration_project(request):
    return importlib.import_module(f"{PROJECTS[request.param]}.migrations").PROJECT
"""


@dataclass
class Run:
    """The output of a project's pytest run over the built-in tests."""

    output: str

    def outcome(self, test: str, project: str) -> str:
        found = re.search(rf"::{test}\[{project}\] (PASSED|FAILED|ERROR)", self.output)
        assert found, f"{test}[{project}] did not run:\n{self.output}"
        return found.group(1)

    def not_passed(self) -> set[str]:
        """The tests that failed or erred, as `test[project]`."""
        return set(re.findall(r"::(\S+) (?:FAILED|ERROR)", self.output))

    def failure(self, test: str, project: str) -> str:
        """What the run prints for a failed test: its traceback and message."""
        header = re.search(rf"^_+ {test}\[{project}\] _+$", self.output, re.M)
        assert header, f"no failure printed for {test}[{project}]:\n{self.output}"
        end = re.compile(r"^(_+ \S+ _+|=+ .* =+)$", re.M).search(self.output, header.end())
        return self.output[header.end() : end.start() if end else None]


def run_checks(projects: dict[str, Project], server: URL) -> Run:
    """`pytest -v` in a folder holding the conftest and a module importing the built-in tests,
    as a project's tests/ does, on the server `server` (TEST_DATABASE_URL)."""
    roots = [str(project.migrations.parent.parent) for project in projects.values()]
    toolkit_src = demo_project.pythonpath(next(iter(projects.values()))).split(os.pathsep)[-1]
    with tempfile.TemporaryDirectory(prefix="stairway-run-") as folder:
        (Path(folder) / "conftest.py").write_text(CONFTEST, encoding="utf-8")
        (Path(folder) / "test_migrations.py").write_text(
            "from alembic_steady.testing.checks import *  # noqa: F403\n", encoding="utf-8"
        )
        result = subprocess.run(
            [BIN / "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist", folder],
            cwd=folder,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([*roots, toolkit_src]),
                "TEST_DATABASE_URL": server.render_as_string(hide_password=False),
                "PLANTED_PROJECTS": " ".join(
                    f"{key}={project.package}" for key, project in projects.items()
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
    assert result.returncode in (0, 1), result.stdout  # 1: tests failed, as planted
    return Run(result.stdout)
