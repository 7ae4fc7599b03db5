"""The plugin's reports: the password of TEST_DATABASE_URL never shows in a failure, and a skip
is still reported as one (its reason in `-rs`), not an internal error."""

import os
import subprocess
import sys
from pathlib import Path

SECRET = "s3cret-pw"
TESTS = f'''
import pytest


def test_skipped() -> None:
    pytest.skip("no server for this one")


def test_failing() -> None:
    connect_args = {{"password": "{SECRET}"}}
    assert connect_args == {{}}
'''


def test_a_failure_hides_the_password_and_a_skip_stays_a_skip(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["alembic_steady.testing.plugin"]\n', encoding="utf-8"
    )
    (tmp_path / "test_reports.py").write_text(TESTS, encoding="utf-8")
    url = f"postgresql://app:{SECRET}@127.0.0.1:9/postgres"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "TEST_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # one failed test: not 3, pytest's internal error
    assert "SKIPPED [1]" in output and "no server for this one" in output, output
    assert "***" in output and SECRET not in output, output
