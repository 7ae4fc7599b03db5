"""The migrations, run for real against PostgreSQL. Each failure names the revision at fault.

Fast by design: the revisions are loaded once, every step runs on one connection in one test
database, and the cost per revision is constant, so the suite grows linearly with the chain.
"""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.migrations import current_heads, is_at_head
from {{ cookiecutter.package_name }}.migrations.autogen import configure_options
from {{ cookiecutter.package_name }}.models import metadata

from .data_checks import DATA_CHECKS
from .migration_helpers import (
    downgrade,
    on_connection,
    revisions_base_to_head,
    schema_snapshot,
    script_directory,
    upgrade,
)


def test_single_head() -> None:
    heads = script_directory().get_heads()
    assert len(heads) == 1, f"more than one head: {heads}; run `make merge`"


def test_upgrade_base_to_head_one_revision_at_a_time(database_url: URL) -> None:
    def walk(connection: Connection) -> None:
        for revision in revisions_base_to_head():
            try:
                upgrade(connection, revision.revision)
            except Exception as exc:
                pytest.fail(f"upgrade to {revision.revision} ({revision.path}) failed: {exc}")
        assert is_at_head(connection)

    on_connection(database_url, walk)


def test_stairway(database_url: URL) -> None:
    """Every revision upgrades, downgrades to exactly the schema before it, and upgrades again."""

    def walk(connection: Connection) -> None:
        for revision in revisions_base_to_head():
            before = schema_snapshot(connection)
            upgrade(connection, revision.revision)
            down = "base" if revision.down_revision is None else f"{revision.revision}-1"
            downgrade(connection, down)
            after = schema_snapshot(connection)
            assert after == before, (
                f"revision {revision.revision} ({revision.path}): downgrade leaves "
                f"{sorted(set(after) - set(before))}, misses {sorted(set(before) - set(after))}"
            )
            upgrade(connection, revision.revision)
        assert current_heads(connection) == set(script_directory().get_heads())

    on_connection(database_url, walk)


def test_models_match_head_schema(database_url: URL) -> None:
    def no_differences(connection: Connection) -> None:
        upgrade(connection, "heads")
        options = configure_options(writing_revision=False)
        options = {key: value for key, value in options.items() if key.startswith("compare_")}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, metadata)
        assert not differences, f"models differ from the migrations (make migration): {differences}"

    on_connection(database_url, no_differences)


@pytest.mark.parametrize("revision", sorted(DATA_CHECKS))
def test_data_survives_later_upgrades(database_url: URL, revision: str) -> None:
    check = DATA_CHECKS[revision]

    def write_then_upgrade(connection: Connection) -> None:
        upgrade(connection, revision)
        check.before(connection)
        upgrade(connection, "heads")
        check.after(connection)

    on_connection(database_url, write_then_upgrade)
