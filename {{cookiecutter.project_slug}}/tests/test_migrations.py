"""The migrations, run for real against PostgreSQL. Each failure names the revision at fault.

Fast by design: the revisions are loaded once, each walk is one Alembic run on one connection,
one walk from base to head serves the upgrade, data and model tests, and the stairway re-reads
only the schema objects each step touched, so the cost per revision stays flat as the chain grows.
"""

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.migrations import is_at_head
from {{ cookiecutter.package_name }}.migrations.autogen import configure_options
from {{ cookiecutter.package_name }}.models import metadata

from .conftest import new_database
from .data_checks import DATA_CHECKS
from .migration_helpers import Walk, on_connection, script_directory, walk_base_to_head


@pytest.fixture(scope="module")
def walk(server_url: URL) -> Iterator[Walk]:
    """One walk from base to head, every revision up, down and up again, data checks written on
    the way; the tests below each read their part of the outcome."""
    with new_database(server_url) as url:
        outcome = Walk(url)
        on_connection(url, lambda connection: walk_base_to_head(connection, outcome, stairway=True))
        if outcome.stairway_failure is None:
            yield outcome
            return
    # The stairway stopped at a bad revision: a plain walk on a fresh database serves the others.
    with new_database(server_url) as url:
        plain = Walk(url, stairway_failure=outcome.stairway_failure)
        on_connection(url, lambda connection: walk_base_to_head(connection, plain, stairway=False))
        yield plain


def test_single_head() -> None:
    heads = script_directory().get_heads()
    assert len(heads) == 1, f"more than one head: {heads}; run `make merge`"


def test_upgrade_base_to_head_one_revision_at_a_time(walk: Walk) -> None:
    assert walk.upgrade_failure is None, walk.upgrade_failure
    assert on_connection(walk.url, is_at_head)


def test_stairway(walk: Walk) -> None:
    """Every revision upgrades, downgrades to exactly the schema before it, and upgrades again."""
    if walk.upgrade_failure:
        pytest.fail(f"the stairway stopped: {walk.upgrade_failure}")
    assert walk.stairway_failure is None, walk.stairway_failure


def test_models_match_head_schema(walk: Walk) -> None:
    if walk.upgrade_failure:
        pytest.fail(f"cannot compare the models: {walk.upgrade_failure}")

    def differences(connection: Connection) -> list[object]:
        options = configure_options(writing_revision=False)
        options = {key: value for key, value in options.items() if key.startswith("compare_")}
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, metadata))

    found = on_connection(walk.url, differences)
    assert not found, f"models differ from the migrations (make migration): {found}"


@pytest.mark.parametrize("revision", sorted(DATA_CHECKS))
def test_data_survives_later_upgrades(walk: Walk, revision: str) -> None:
    if walk.upgrade_failure:
        pytest.fail(f"cannot check the data: {walk.upgrade_failure}")
    assert revision not in walk.data_failures, (
        f"data written at {revision} did not survive the upgrade to head: "
        f"{walk.data_failures[revision]}"
    )
