"""The migrations, run for real against PostgreSQL. Each failure names the revision at fault."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.migrations import (
    alembic_config,
    current_heads,
    is_at_head,
    upgrade,
)
from {{ cookiecutter.package_name }}.migrations.autogen import configure_options
from {{ cookiecutter.package_name }}.models import metadata

from .migration_helpers import on_connection, schema_snapshot


def revisions_base_to_head(script: ScriptDirectory) -> list[Script]:
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"more than one head: {heads}; run `make merge`"


def test_upgrade_base_to_head(database_url: URL) -> None:
    upgrade(url=database_url)

    def check(connection: Connection) -> None:
        assert is_at_head(connection)

    on_connection(database_url, check)


def test_models_match_head_schema(database_url: URL) -> None:
    upgrade(url=database_url)

    def no_differences(connection: Connection) -> None:
        options = configure_options(writing_revision=False)
        options = {key: value for key, value in options.items() if key.startswith("compare_")}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, metadata)
        assert not differences, f"models differ from the migrations (make migration): {differences}"

    on_connection(database_url, no_differences)


def test_stairway(database_url: URL) -> None:
    """Every revision upgrades, downgrades to exactly the schema before it, and upgrades again."""

    def walk(connection: Connection) -> None:
        config = alembic_config(connection=connection)
        script = ScriptDirectory.from_config(config)
        for revision in revisions_base_to_head(script):
            before = schema_snapshot(connection)
            command.upgrade(config, revision.revision)
            down = revision.down_revision
            command.downgrade(config, "base" if down is None else f"{revision.revision}-1")
            after = schema_snapshot(connection)
            assert after == before, (
                f"revision {revision.revision} ({revision.doc}): downgrade leaves "
                f"{sorted(set(after) - set(before))}, misses {sorted(set(before) - set(after))}"
            )
            command.upgrade(config, revision.revision)
        assert current_heads(connection) == set(script.get_heads())

    on_connection(database_url, walk)
