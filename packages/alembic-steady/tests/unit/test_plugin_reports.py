"""The plugin's reports: the password of TEST_DATABASE_URL never shows in a failure, and a skip
is still reported as one (its reason in `-rs`), not an internal error."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from alembic_steady.testing import plugin
from alembic_steady.testing.plugin import _test_database_password

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


def test_the_password_to_hide_is_test_database_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", f"postgresql://app:{SECRET}@db.internal/postgres")
    assert _test_database_password() == SECRET
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://app@db.internal/postgres")
    assert _test_database_password() is None
    monkeypatch.setenv("TEST_DATABASE_URL", "not a url")
    assert _test_database_password() is None
    monkeypatch.delenv("TEST_DATABASE_URL")
    assert _test_database_password() is None


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("mysql+aiomysql://root@db/x", 3306),
        ("mariadb://root@db/x", 3306),
        ("postgresql+asyncpg://app@db/x", 5432),
    ],
)
def test_the_default_port_named_in_the_summary(url: str, port: int) -> None:
    assert plugin._default_port(make_url(url)) == port


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def test_the_summary_says_the_server_used_then_what_markers_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plugin, "SERVER_USED", ["PostgreSQL used: PostgreSQL 16.4 at h:5432"])
    monkeypatch.setattr(plugin, "ACCEPTED", ["a1 stairway (accepted: one-off)", "b2 one-way"])
    reporter = Reporter()
    plugin.pytest_terminal_summary(reporter)
    assert reporter.lines == [
        "PostgreSQL used: PostgreSQL 16.4 at h:5432",
        "Accepted by `# migration-tests:` lines (2):",
        "- a1 stairway (accepted: one-off)",
        "- b2 one-way",
    ]
    monkeypatch.setattr(plugin, "ACCEPTED", [])
    reporter = Reporter()
    plugin.pytest_terminal_summary(reporter)
    assert reporter.lines == ["PostgreSQL used: PostgreSQL 16.4 at h:5432"]


def test_xdist_workers_hand_their_lines_to_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "SERVER_USED", ["used: w1"])
    monkeypatch.setattr(plugin, "ACCEPTED", ["a1 one-way"])
    worker = SimpleNamespace(config=SimpleNamespace(workeroutput={}))
    plugin.pytest_sessionfinish(worker)
    assert worker.config.workeroutput == {
        "alembic_steady_server_used": [["used: w1"], ["a1 one-way"]]
    }
    plugin.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace()))

    # The controller: each line once, whichever workers said it.
    monkeypatch.setattr(plugin, "SERVER_USED", [])
    monkeypatch.setattr(plugin, "ACCEPTED", [])
    for output in (worker.config.workeroutput, worker.config.workeroutput, {}):
        plugin.pytest_testnodedown(SimpleNamespace(workeroutput=output), None)
    plugin.pytest_testnodedown(SimpleNamespace(), None)
    assert plugin.SERVER_USED == ["used: w1"] and plugin.ACCEPTED == ["a1 one-way"]


def test_no_docker_engine_answering_sends_the_plugin_to_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    assert plugin._docker_answers() is False
