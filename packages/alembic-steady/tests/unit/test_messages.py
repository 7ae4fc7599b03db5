"""runner/messages.py: Alembic's answers in the project's words, the revision file that raised,
and the target named without its password."""

from pathlib import Path

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import URL
from support import make_project

from alembic_steady import MAKE
from alembic_steady.runner.messages import (
    describe_target,
    explain_alembic,
    failed_revision,
    failing_revision,
)
from alembic_steady.runner.progress import Progress

MODULE = make_project(package="shop").module_commands

# -- explain_alembic -----------------------------------------------------------------------

MULTIPLE_HEADS = (
    "Multiple head revisions are present for given argument 'head'; please specify a specific "
    "target revision, '<branchname>@head' to narrow to a specific head, or 'heads' for all heads"
)


def test_multiple_heads_names_the_merge_and_the_migration() -> None:
    assert explain_alembic(CommandError(MULTIPLE_HEADS), "upgrade", MAKE) == (
        "There is more than one head (make heads lists them): run `make merge` to join them "
        "into one, then make migrate."
    )


def test_multiple_heads_in_the_module_clis_words() -> None:
    explained = explain_alembic(CommandError(MULTIPLE_HEADS), "upgrade", MODULE)
    assert explained is not None
    assert "then python -m shop.migrations upgrade." in explained


def test_a_rollback_too_far_says_how_many_and_how_to_roll_back_all() -> None:
    error = CommandError("Relative revision -3 didn't produce 3 migrations")
    assert explain_alembic(error, "downgrade", MAKE) == (
        "Cannot roll back 3 revisions: fewer are applied (make current, make history). "
        "`make rollback rev=base` rolls back all of them."
    )


@pytest.mark.parametrize("command", ["upgrade", None])
def test_an_upgrade_too_far_says_the_migration_goes_to_head(command: str | None) -> None:
    error = CommandError("Relative revision +2 didn't produce 2 migrations")
    assert explain_alembic(error, command, MODULE) == (
        "Cannot go 2 revisions up: fewer are left to apply (python -m shop.migrations current, "
        "make history). `python -m shop.migrations upgrade` goes to head."
    )


def test_a_downgrade_upwards_is_not_explained_as_too_few_revisions_applied() -> None:
    error = CommandError("Relative revision +1 didn't produce 1 migrations")
    explained = explain_alembic(error, "downgrade", MAKE)
    assert explained is None or "fewer are applied" not in explained


@pytest.mark.parametrize(
    "text",
    [
        "Can't locate revision identified by 'abc'",
        "Range revision not allowed",
        "Target database is not up to date.",
        "Relative revision",
    ],
)
def test_other_alembic_answers_are_left_as_they_are(text: str) -> None:
    assert explain_alembic(CommandError(text), "upgrade", MAKE) is None


# -- failed_revision -----------------------------------------------------------------------


def run_as(path: Path, source: str, scope: dict[str, object] | None = None) -> dict[str, object]:
    """Write `source` to `path` and run it compiled under that file name (as an import would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    namespace = {} if scope is None else scope
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


def raise_from(path: Path, source: str, scope: dict[str, object] | None = None) -> Exception:
    """What running `source` as the file at `path` raised."""
    with pytest.raises(Exception) as raised:
        run_as(path, source, scope)
    return raised.value


REVISION_BODY = "x = 1\n\nraise ValueError('boom')\n"


def test_the_revision_file_and_line_are_found_in_the_traceback(tmp_path: Path) -> None:
    versions = tmp_path / "migrations" / "versions"
    exc = raise_from(versions / "0b1c_add_price.py", REVISION_BODY)
    assert failed_revision(exc, versions) == "0b1c_add_price.py, line 3"


def test_a_file_outside_the_versions_folder_is_not_a_revision(tmp_path: Path) -> None:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    exc = raise_from(tmp_path / "migrations" / "env.py", REVISION_BODY)
    assert failed_revision(exc, versions) is None
    elsewhere = raise_from(tmp_path / "other" / "versions" / "0b1c_add_price.py", REVISION_BODY)
    assert failed_revision(elsewhere, versions) is None


def test_the_revision_frame_is_found_below_library_frames(tmp_path: Path) -> None:
    # The revision calls a helper outside the versions folder, which raises: the revision's line
    # that called it is the one named.
    versions = tmp_path / "versions"
    helper = run_as(tmp_path / "helper.py", "def explode():\n    raise KeyError('k')\n")
    exc = raise_from(
        versions / "c0ffee_step.py", "pass\nexplode()\n", {"explode": helper["explode"]}
    )
    assert isinstance(exc, KeyError)
    assert failed_revision(exc, versions) == "c0ffee_step.py, line 2"


def test_the_line_that_raised_is_named_when_the_revision_calls_its_own_helper(
    tmp_path: Path,
) -> None:
    source = "def backfill():\n    raise ValueError('bad row')\n\n\nbackfill()\n"
    exc = raise_from(tmp_path / "versions" / "c0ffee_step.py", source)
    assert failed_revision(exc, tmp_path / "versions") == "c0ffee_step.py, line 2"


def test_an_exception_without_traceback_has_no_revision(tmp_path: Path) -> None:
    assert failed_revision(ValueError("never raised"), tmp_path) is None


# -- failing_revision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revision", "in_file", "expected"),
    [
        ("0b1c (add price)", True, "0b1c (add price), 0b1c_add_price.py, line 3"),
        ("0b1c (add price)", False, "0b1c (add price)"),
        (None, True, "0b1c_add_price.py, line 3"),
        (None, False, "(none yet)"),
    ],
)
def test_failing_revision_combines_what_is_known(
    tmp_path: Path, revision: str | None, in_file: bool, expected: str
) -> None:
    versions = tmp_path / "versions"
    folder = versions if in_file else tmp_path / "lib"
    exc = raise_from(folder / "0b1c_add_price.py", REVISION_BODY)
    assert failing_revision(Progress(revision=revision), exc, versions) == expected


# -- describe_target -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            URL.create("postgresql+asyncpg", "app", "s3cret-pw", "db.internal", 5433, "shop"),
            "database shop on db.internal:5433 as app",
        ),
        (
            URL.create("postgresql+asyncpg", "app", "s3cret-pw", None, None, "shop"),
            "database shop on local socket as app",
        ),
        (
            URL.create("mysql+aiomysql", None, "s3cret-pw", "db", None, None),
            "database (default) on db as (default)",
        ),
    ],
)
def test_describe_target_never_holds_the_password(url: URL, expected: str) -> None:
    assert describe_target(url) == expected
    assert "s3cret-pw" not in describe_target(url)


def test_a_step_count_at_a_branch_point_names_the_revision_form_and_merge() -> None:
    explained = explain_alembic(CommandError("Ambiguous walk"), "upgrade", MAKE, ("b2",))
    assert explained == (
        "A step count is ambiguous here: the database is at b2, where the history branches. "
        "Name the revision instead (`make migrate rev=<revision>`; `make heads` lists the "
        "heads), or join the branches (`make merge`)."
    )
    module = explain_alembic(CommandError("Ambiguous walk"), "upgrade", MODULE, ("b2",))
    assert module is not None and "`python -m shop.migrations upgrade <revision>`" in module


@pytest.mark.parametrize("command", ["downgrade", "upgrade"])
def test_rolling_back_at_base_says_nothing_is_applied(command: str) -> None:
    error = CommandError("Relative revision -1 didn't produce 1 migrations")
    assert explain_alembic(error, command, MAKE, ()) == (
        "Nothing to roll back: the database is at base, no revision is applied "
        "(make history lists them)."
    )
    # Above base, the count was too high: the way to roll back everything is named.
    assert "rev=base" in str(explain_alembic(error, command, MAKE, ("a1",)))


def test_a_step_count_at_two_heads_names_both_and_at_base_says_base() -> None:
    explained = explain_alembic(CommandError("Ambiguous walk"), "upgrade", MAKE, ("a1", "b2"))
    assert str(explained).startswith("A step count is ambiguous here: the database is at a1, b2,")
    unknown = explain_alembic(CommandError("Ambiguous walk"), "upgrade", MAKE)
    assert str(unknown).startswith("A step count is ambiguous here: the database is at base,")


def test_one_revision_too_many_is_said_in_the_singular() -> None:
    error = CommandError("Relative revision -1 didn't produce 1 migrations")
    assert str(explain_alembic(error, "downgrade", MAKE, ("a1",))).startswith(
        "Cannot roll back 1 revision: fewer are applied"
    )
    upwards = CommandError("Relative revision +1 didn't produce 1 migrations")
    assert str(explain_alembic(upwards, "upgrade", MAKE, ("a1",))).startswith(
        "Cannot go 1 revision up: "
    )


def test_a_downgrade_upwards_names_both_directions_with_the_count() -> None:
    error = CommandError("Relative revision +2 didn't produce 2 migrations")
    assert explain_alembic(error, "downgrade", MAKE, ("a1",)) == (
        "A rollback goes down, and +2 would go up: `make migrate` goes up, "
        "`make rollback steps=2` goes down."
    )


def test_an_upgrade_too_far_from_base_is_not_a_rollback() -> None:
    error = CommandError("Relative revision +2 didn't produce 2 migrations")
    assert str(explain_alembic(error, "upgrade", MAKE, ())).startswith(
        "Cannot go 2 revisions up: fewer are left to apply"
    )


def test_an_unsigned_count_in_a_downgrade_goes_down() -> None:
    # The command says the direction when the count carries no sign.
    error = CommandError("Relative revision 2 didn't produce 2 migrations")
    assert str(explain_alembic(error, "downgrade", MAKE, ())).startswith("Nothing to roll back")
    assert str(explain_alembic(error, "downgrade", MAKE, ("a1",))).startswith(
        "Cannot roll back 2 revisions: fewer are applied"
    )
