"""testing/walk.py, the parts that need no server: the revisions in order, what the markers of
revision files give the walk, a stairway finding failed or accepted, and data checks guarded."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from support import LINEAR, FakeConnection, make_project, write_revisions

from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.testing.walk import Harness, Walk, _guarded


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    project = make_project(tmp_path, package="shop")
    write_revisions(project.migrations / "versions", LINEAR)
    (project.migrations / "versions" / "b_step.py").write_text(
        '"""step b"""\n\n# migration-tests: accept stairway: the index is rebuilt by hand\n'
        "# migration-tests: no rows for audit: filled by a trigger\n"
        "# migration-tests: rows for item: INSERT INTO item (id) VALUES (1)\n\n"
        'revision = "b"\ndown_revision = "a"\n\n\ndef upgrade():\n    pass\n\n\n'
        "def downgrade():\n    pass\n",
        encoding="utf-8",
    )
    return Harness(project)


def test_the_harness_is_the_projects(harness: Harness) -> None:
    assert harness.migrations.project is harness.project
    assert isinstance(harness.dialect, PostgreSQL)


def test_revisions_come_base_to_head(harness: Harness) -> None:
    assert [script.revision for script in harness.revisions_base_to_head()] == ["a", "b", "c"]


def test_the_markers_of_every_revision_are_read_once(harness: Harness) -> None:
    assert set(harness.marked) == {"a", "b", "c"}
    assert harness.marked["b"].stairway == "the index is rebuilt by hand"
    assert harness.given_rows == {"audit": None, "item": "INSERT INTO item (id) VALUES (1)"}


def test_a_finding_fails_unless_the_revisions_marker_accepts_it(harness: Harness) -> None:
    outcome = Walk(make_url("postgresql+asyncpg://app@db/shop"))
    by_id = {script.revision: script for script in harness.revisions_base_to_head()}
    harness._finding(outcome, by_id["a"], "a: index ix left behind; fix it", "a: index ix")
    harness._finding(outcome, by_id["b"], "b: index ix left behind; fix it", "b: index ix")
    assert outcome.stairway_failures == ["a: index ix left behind; fix it"]
    assert outcome.accepted == ["b: index ix (accepted: the index is rebuilt by hand)"]
    assert outcome.stairway_failure == "a: index ix left behind; fix it"


class Savepoints(FakeConnection):
    """A connection whose savepoints say in `log` how they ended."""

    def begin_nested(self) -> Any:
        log = self.log
        log.append("savepoint")

        class Savepoint:
            def commit(self) -> None:
                log.append("release")

            def rollback(self) -> None:
                log.append("rollback to savepoint")

        return Savepoint()


def test_a_data_check_runs_in_a_savepoint_and_a_failing_one_is_noted() -> None:
    outcome = Walk(make_url("postgresql+asyncpg://app@db/shop"))
    connection = Savepoints()
    assert _guarded(connection, outcome, "b", lambda c: c.execute("SELECT 1"))
    assert connection.log == ["savepoint", "execute", "release"]

    def failing(c: Any) -> None:
        raise AssertionError("item 3 lost its price")

    connection.log.clear()
    assert not _guarded(connection, outcome, "c", failing)
    assert connection.log == ["savepoint", "rollback to savepoint"]
    assert outcome.data_failures == {"c": "AssertionError: item 3 lost its price"}
