"""mutation/run.py's verdict (no render, no database): a mutation counts as caught only when a
test fails on an assertion of behaviour, read from a real pytest run's JUnit report."""

import subprocess
import sys
from pathlib import Path

from .conftest import TEMPLATE

sys.path.insert(0, str(TEMPLATE / "mutation"))
import run  # mutation/ is a folder of scripts, not a package

# One test per kind of failure: only the first one is a behaviour the promise is about.
PLANTED = """
import subprocess
import pytest

def test_behaviour():
    assert 200 == 503, "ready before head"

@pytest.fixture
def broken():
    raise RuntimeError("the fixture's server did not start")

def test_setup_error(broken):
    pass

def test_linter():
    assert False, "['.venv/bin/ruff', 'check', '.'] exited 1:\\nE501 Line too long"

def test_timeout():
    raise subprocess.TimeoutExpired(["make", "test"], 900)

def test_passes():
    pass
"""


def test_only_a_failed_assertion_of_behaviour_counts(tmp_path: Path) -> None:
    (tmp_path / "test_planted.py").write_text(PLANTED, encoding="utf-8")
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert run.caught(report) == ["test_planted::test_behaviour"]


def test_no_report_catches_nothing(tmp_path: Path) -> None:
    # What a run cut short by its timeout leaves: pytest never wrote the report.
    assert run.caught(tmp_path / "report.xml") == []
