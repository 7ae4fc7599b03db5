"""mutation/run.py's verdict (no render, no database): a mutation counts as caught only when a
test fails on an assertion of behaviour, read from a real pytest run's JUnit report."""

import os
import shutil
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

def test_expected_timeout():
    with pytest.raises(TimeoutError):
        pass  # the wait returned: a behaviour, though the words name a timeout

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
    assert run.caught(report) == [
        "test_planted::test_behaviour",
        "test_planted::test_expected_timeout",
    ]


def test_no_report_catches_nothing(tmp_path: Path) -> None:
    # What a run cut short by its timeout leaves: pytest never wrote the report.
    assert run.caught(tmp_path / "report.xml") == []


# A template of three files for run.py to judge: one mutation a test catches, one no test looks
# at, one that needs a MySQL server. tests/conftest.py stands in for the template's, whose
# embedded_server() run.py starts for generated suites; none is judged here.
PLANTED_TEMPLATE = {
    "tests/conftest.py": """
from contextlib import contextmanager


class Unused:
    def url(self, database):
        return f"postgresql://nobody@127.0.0.1:1/{database}"


@contextmanager
def embedded_server():
    yield Unused()
""",
    "tests/price.py": 'PRICE = 100\nNAME = "planted"\n',
    "tests/test_planted.py": """
from price import NAME, PRICE


def test_price():
    assert PRICE == 100


def test_looks_elsewhere():
    assert 1 + 1 == 2


def test_name():
    assert NAME == "planted"
""",
    "mutation/mutations.toml": """
[[mutation]]
name = "caught: the price changes"
file = "tests/price.py"
old = "PRICE = 100"
new = "PRICE = 101"
caught_by = ["tests/test_planted.py::test_price"]

[[mutation]]
name = "missed: no test looks at the price"
file = "tests/price.py"
old = "PRICE = 100"
new = "PRICE = 102"
caught_by = ["tests/test_planted.py::test_looks_elsewhere"]

[[mutation]]
name = "mysql: its test would fail, but no server is named"
file = "tests/price.py"
old = 'NAME = "planted"'
new = 'NAME = "changed"'
caught_by = ["tests/test_planted.py::test_name"]
needs = "mysql"
""",
}


def test_a_missed_mutation_fails_the_run_and_one_not_run_is_not_counted(tmp_path: Path) -> None:
    for name, text in PLANTED_TEMPLATE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    # run.py (this template's, mutated or not) judges the planted template it sits in, with the
    # tools of the environment running this test.
    shutil.copy(TEMPLATE / "mutation" / "run.py", tmp_path / "mutation" / "run.py")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "mutation" / "run.py"), "--lanes", "1"],
        env={k: v for k, v in os.environ.items() if k != "TEST_MYSQL_URL"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 1, output + result.stderr
    assert "\n1/2 mutations caught" in output, output
    assert "1 NOT RUN: they need a MySQL server" in output, output
    assert "NOT CAUGHT: missed: no test looks at the price" in output, output
    assert "NOT CAUGHT: caught" not in output and "NOT CAUGHT: mysql" not in output, output
