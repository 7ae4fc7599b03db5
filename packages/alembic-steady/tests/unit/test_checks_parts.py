"""testing/checks.py, what its tests say before (or instead of) touching a database: one head,
the stairway's findings listed, data checks naming revisions that exist. The walks themselves
run in tests/postgresql and tests/mysql."""

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from support import make_project, write_revisions

from alembic_steady.testing import checks
from alembic_steady.testing.data_checks import DataCheck
from alembic_steady.testing.walk import Harness, Walk

URL = make_url("postgresql+asyncpg://app@db/shop")


def harness(tmp_path: Path, chain: tuple[tuple[str, str | None], ...]) -> Harness:
    project = make_project(tmp_path, package="shop")
    write_revisions(project.migrations / "versions", chain)
    return Harness(project)


def failure(check: Any, *args: Any) -> str:
    with pytest.raises((pytest.fail.Exception, AssertionError)) as raised:
        check(*args)
    return str(raised.value)


def test_the_stairways_failure_is_shown_without_a_traceback() -> None:
    # The findings say all there is: pytest's traceback through the plugin would bury them.
    with pytest.raises(pytest.fail.Exception) as raised:
        checks.test_stairway(Walk(URL, upgrade_failure="x"))
    assert raised.value.pytrace is False


def test_one_head_passes(tmp_path: Path) -> None:
    checks.test_single_head(harness(tmp_path, (("a", None), ("b", "a"))))


def test_two_heads_name_the_merge_command(tmp_path: Path) -> None:
    two = harness(tmp_path, (("a", None), ("b", "a"), ("c", "a")))
    assert re.match(
        r"more than one head: \[('b', 'c'|'c', 'b')\]; run `make merge`$",
        failure(checks.test_single_head, two),
    )


def test_a_clean_stairway_passes() -> None:
    checks.test_stairway(Walk(URL))


def test_the_stairways_findings_are_listed_then_the_upgrade_that_stopped_it() -> None:
    walk = Walk(URL, upgrade_failure="revision c failed: boom")
    walk.stairway_failures = ["revision a leaves index ix", "revision b leaves type mood"]
    assert failure(checks.test_stairway, walk) == (
        "3 finding(s) of the stairway:\n"
        "- revision a leaves index ix\n"
        "- revision b leaves type mood\n"
        "- the stairway stopped: revision c failed: boom"
    )
    assert failure(checks.test_stairway, Walk(URL, upgrade_failure="x")) == (
        "1 finding(s) of the stairway:\n- the stairway stopped: x"
    )


def test_a_failed_upgrade_is_the_upgrade_tests_failure(tmp_path: Path) -> None:
    walk = Walk(URL, upgrade_failure="revision b failed: boom")
    message = failure(checks.test_upgrade_base_to_head_one_revision_at_a_time, None, walk)
    assert message.startswith("revision b failed: boom")


def test_models_cannot_be_compared_when_the_upgrade_failed() -> None:
    walk = Walk(URL, upgrade_failure="revision b failed: boom")
    assert failure(checks.test_models_match_head_schema, None, walk) == (
        "cannot compare the models: revision b failed: boom"
    )


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, DataCheck]:
    fresh: dict[str, DataCheck] = {}
    monkeypatch.setattr(checks, "DATA_CHECKS", fresh)
    return fresh


def nothing(connection: Any) -> None:
    return None


def test_data_checks_must_name_revisions_of_the_chain(
    tmp_path: Path, registry: dict[str, DataCheck]
) -> None:
    registry.update({"b": DataCheck(nothing, nothing), "zz": DataCheck(nothing, nothing)})
    registry["aa"] = DataCheck(nothing, nothing)
    message = failure(
        checks.test_data_survives_later_upgrades,
        harness(tmp_path, (("a", None), ("b", "a"))),
        Walk(URL),
    )
    assert message.startswith(
        "data checks name revisions no file defines: ['aa', 'zz']; use the full id of an "
        "existing revision (make history)"
    )


def test_data_that_did_not_survive_is_named_by_revision(
    tmp_path: Path, registry: dict[str, DataCheck]
) -> None:
    registry["b"] = DataCheck(nothing, nothing)
    chain = harness(tmp_path, (("a", None), ("b", "a")))
    walk = Walk(URL)
    walk.data_failures = {"b": "AssertionError: item 3 lost its price"}
    assert failure(checks.test_data_survives_later_upgrades, chain, walk).startswith(
        "data did not survive the upgrades to head (revision: failure): "
        "{'b': 'AssertionError: item 3 lost its price'}"
    )
    assert failure(
        checks.test_data_survives_later_upgrades, chain, Walk(URL, upgrade_failure="boom")
    ) == ("cannot check the data: boom")
    checks.test_data_survives_later_upgrades(chain, Walk(URL))  # all came through


def test_the_planted_chain_lives_in_a_folder_of_its_own() -> None:
    folders = checks.planted_folder.__wrapped__()
    folder = next(folders)
    assert folder.is_dir() and folder.name.startswith("planted-")
    with pytest.raises(StopIteration):
        next(folders)
    assert not folder.exists()


def test_a_data_check_of_a_revision_a_squash_folded_in_names_a_revision_of_the_chain(
    tmp_path: Path, registry: dict[str, DataCheck]
) -> None:
    """After `make squash`, a check of a folded revision runs at the baseline (walk.checked_at):
    it names a revision of the chain, so the project's tests pass without an edit."""
    registry.update({"a": DataCheck(nothing, nothing), "zz": DataCheck(nothing, nothing)})
    chain = harness(tmp_path, (("b", None), ("c", "b")))
    baseline = next((tmp_path / "migrations" / "versions").glob("b_*.py"))
    baseline.write_text(
        baseline.read_text().replace(
            "depends_on = None\n", 'depends_on = None\nsquashed_revisions = ("a", "b")\n'
        )
    )
    message = failure(checks.test_data_survives_later_upgrades, chain, Walk(URL))
    assert "data checks name revisions no file defines: ['zz']" in message
