"""testing/data_checks.py: the decorator that registers a revision's data check."""

import pytest
from sqlalchemy import Connection

from alembic_steady.testing import data_checks
from alembic_steady.testing.data_checks import DataCheck, data_check


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, DataCheck]:
    """An empty registry for the test (the real one is the project's, filled on import)."""
    fresh: dict[str, DataCheck] = {}
    monkeypatch.setattr(data_checks, "DATA_CHECKS", fresh)
    return fresh


def test_the_decorator_registers_before_and_after_for_the_revision(
    registry: dict[str, DataCheck],
) -> None:
    ran: list[str] = []

    @data_check("0b1c2d3e4f50")
    class ItemsSurvive:
        @staticmethod
        def before(connection: Connection) -> None:
            ran.append("before")

        @staticmethod
        def after(connection: Connection) -> None:
            ran.append("after")

    assert registry == {"0b1c2d3e4f50": DataCheck(ItemsSurvive.before, ItemsSurvive.after)}
    check = registry["0b1c2d3e4f50"]
    check.before(None)
    check.after(None)
    assert ran == ["before", "after"]


def test_the_decorator_returns_the_class_unchanged(registry: dict[str, DataCheck]) -> None:
    class Check:
        @staticmethod
        def before(connection: Connection) -> None: ...

        @staticmethod
        def after(connection: Connection) -> None: ...

    assert data_check("abc")(Check) is Check


def test_each_revision_has_its_own_check(registry: dict[str, DataCheck]) -> None:
    def noop(connection: Connection) -> None: ...

    for revision in ("a1", "b2"):
        data_check(revision)(type("Check", (), {"before": noop, "after": noop}))
    assert sorted(registry) == ["a1", "b2"]


def test_a_class_without_before_and_after_is_refused(registry: dict[str, DataCheck]) -> None:
    with pytest.raises(AttributeError):

        @data_check("a1")
        class OnlyBefore:
            @staticmethod
            def before(connection: Connection) -> None: ...

    assert registry == {}
