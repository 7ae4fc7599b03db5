"""The migration tests, run for real through the project's env.py, as `make migrate` and
`make check` run them. Each failure names the revision at fault. A project imports them into a
test module of its own:

    from alembic_steady.testing.checks import *  # noqa: F403

Fast by design: the revisions are loaded once, each walk is one env.py run on one connection,
one walk from base to head (the plugin's `walk`) serves the upgrade, data and model tests, and
the stairway re-reads only the schema objects each step touched where the server can say which,
so the cost per revision stays flat as the chain grows.
"""

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import produce_migrations
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL

from ..authoring.drift import drift_message
from ..fleet.status import read_all
from ..fleet.targets import parse_all
from ..runner.guards import folded
from ..runner.phases import PHASES, Phases
from . import old_release
from .data_checks import DATA_CHECKS
from .plugin import ACCEPTED, SERVER_USED, add_new
from .walk import Harness, Walk, on_connection

__all__ = [
    "planted_folder",
    "test_a_failure_part_way_keeps_the_good_revisions",
    "test_a_fleet_reaches_head",
    "test_data_survives_later_upgrades",
    "test_models_match_head_schema",
    "test_no_long_lock_on_an_existing_table",
    "test_single_head",
    "test_stairway",
    "test_the_old_release_works_on_the_new_schema",
    "test_upgrade_base_to_head_one_revision_at_a_time",
]


def test_single_head(migration_harness: Harness) -> None:
    """One head, or with deploy phases one per phase (the pre line's and the post line's)."""
    history = Phases(migration_harness.script)
    commands = migration_harness.project.commands
    assert not history.problems(), history.problems()[0]
    for phase in PHASES:
        heads = history.heads(phase)
        which = f"{phase} head" if history.used else "head"
        assert len(heads) <= 1, f"more than one {which}: {heads}; run `{commands.merge}`"


def test_upgrade_base_to_head_one_revision_at_a_time(
    migration_harness: Harness, walk: Walk
) -> None:
    assert walk.upgrade_failure is None, walk.upgrade_failure
    assert on_connection(walk.url, migration_harness.migrations.is_at_head)


def test_stairway(walk: Walk) -> None:
    """Every revision upgrades, downgrades to exactly the schema before it, and upgrades again.
    Every finding is named, each with its revision, what differs and the fix; an upgrade that
    fails stops the stairway, and is named after the findings before it."""
    found = list(walk.stairway_failures)
    if walk.upgrade_failure:
        found.append(f"the stairway stopped: {walk.upgrade_failure}")
    if found:
        pytest.fail(
            f"{len(found)} finding(s) of the stairway:\n" + "\n".join(f"- {f}" for f in found),
            pytrace=False,
        )


def test_no_long_lock_on_an_existing_table(walk: Walk) -> None:
    """No revision rewrites a table that existed before it, or reads one whole under a lock that
    stops its writers (SET NOT NULL without a valid CHECK, a validated constraint, CREATE INDEX
    without CONCURRENTLY, MySQL's ALGORITHM=COPY), as the walk measures each revision, unless
    it accepts that in its file. A brief lock (a nullable column, a NOT VALID constraint) is not
    one."""
    if walk.long_locks:
        pytest.fail(
            f"{len(walk.long_locks)} long lock(s) on existing tables:\n"
            + "\n".join(f"- {found}" for found in walk.long_locks),
            pytrace=False,
        )


def test_models_match_head_schema(migration_harness: Harness, walk: Walk) -> None:
    """The comparison `make check` makes: env.py configures it (its options, and the dialect's
    own comparisons), this test only asks for the differences, and shows them as the revision
    autogenerate would write for them."""
    if walk.upgrade_failure:
        pytest.fail(f"cannot compare the models: {walk.upgrade_failure}")
    found: list[str] = []
    commands = migration_harness.project.commands

    def compare(heads: tuple[str, ...], context: MigrationContext) -> list[RevisionStep]:
        upgrade_ops = produce_migrations(context, context.opts["target_metadata"]).upgrade_ops
        if upgrade_ops is not None and not upgrade_ops.is_empty():
            found.append(drift_message(upgrade_ops, context, commands))
        return []

    migration_harness.run_env(walk.url, compare, command="check")
    if found:
        pytest.fail(found[0], pytrace=False)


def test_data_survives_later_upgrades(migration_harness: Harness, walk: Walk) -> None:
    """Every data check names a revision of the chain (or one a squashed baseline folded in: it
    runs at the baseline), and its rows came through to head. A project without data checks
    passes: there is nothing to check."""
    known = {
        checked
        for revision in migration_harness.revisions_base_to_head()
        for checked in (revision.revision, *folded(revision))
    }
    unknown = sorted(set(DATA_CHECKS) - known)
    assert not unknown, (
        f"data checks name revisions no file defines: {unknown}; use the full id of an existing "
        "revision (make history)"
    )
    if walk.upgrade_failure:
        pytest.fail(f"cannot check the data: {walk.upgrade_failure}")
    assert not walk.data_failures, (
        f"data did not survive the upgrades to head (revision: failure): {walk.data_failures}"
    )


def test_the_old_release_works_on_the_new_schema(
    migration_harness: Harness, database_url: URL
) -> None:
    """The release before this one serves while the pre revisions run: its models' INSERT,
    SELECT and UPDATE of every table go on working after each pre revision since (the old
    release from git: OLD_RELEASE, `old-release` in pyproject.toml, or the newest tag). Each
    failure names the revision and the statement; a revision's `# migration-tests: breaks the
    old release: <why>` line lists its failures instead."""
    outcome = old_release.check(migration_harness, database_url)
    add_new(SERVER_USED, [outcome.said])
    add_new(ACCEPTED, outcome.accepted)
    if outcome.failures:
        pytest.fail(
            f"{len(outcome.failures)} statement(s) of the old release fail on the new schema:\n"
            + "\n".join(f"- {failure}" for failure in outcome.failures)
            + f"\n{old_release.ADVICE}",
            pytrace=False,
        )


# A chain of its own: a good revision on base, then one whose upgrade fails half-way, after a
# statement that succeeded. The project's env.py runs it, so the test costs the same however long
# the project's chain is, and however large its first revision (a squashed baseline).
GOOD_REVISION = """
from alembic import op

revision = "f0000000good"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE planted_good (id int)")


def downgrade() -> None:
    op.execute("DROP TABLE planted_good")
"""
FAILING_REVISION = """
from alembic import op

revision = "f00000000bad"
down_revision = "f0000000good"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE planted_before_failure (id int)")
    op.execute("SELECT * FROM no_such_table_before_failure")


def downgrade() -> None:
    pass
"""


@pytest.fixture
def planted_folder() -> Iterator[Path]:
    # Not pytest's tmp_path: creating its base folder makes pytest reset /tmp/pytest-of-<user> to
    # mode 0700, which locks out an embedded server whose binaries live below it (a project
    # rendered and tested under pytest, as the template's own tests do).
    with tempfile.TemporaryDirectory(prefix="planted-") as folder:
        yield Path(folder)


def test_a_failure_part_way_keeps_the_good_revisions(
    migration_harness: Harness, database_url: URL, planted_folder: Path
) -> None:
    """From base, every good revision commits on its own: when a later one fails, the database
    stays at the last good revision, as the error message of `make migrate` says. Where DDL
    commits on its own (MySQL), the failing revision's CREATE TABLE stays, while its version row
    is not written; elsewhere it is rolled back with its revision."""
    first = "f0000000good"
    (planted_folder / "f0000000good_good.py").write_text(GOOD_REVISION, encoding="utf-8")
    (planted_folder / "f00000000bad_fails.py").write_text(FAILING_REVISION, encoding="utf-8")
    planted = ScriptDirectory(migration_harness.script.dir, version_locations=[str(planted_folder)])
    # base -> the good revision -> the failing one, run by env.py as `make migrate` runs them.
    plan = [
        RevisionStep(planted.revision_map, planted.get_revision(revision), True)
        for revision in (first, "f00000000bad")
    ]

    def steps(heads: tuple[str, ...], context: MigrationContext) -> Iterable[RevisionStep]:
        return plan

    with pytest.raises(CommandError, match="no_such_table_before_failure"):
        migration_harness.run_env(database_url, steps, script=planted)

    def state(connection: Connection) -> tuple[set[str], bool]:
        planted_table = inspect(connection).has_table("planted_before_failure")
        return migration_harness.migrations.current_heads(connection), planted_table

    committed_ddl = migration_harness.dialect.committed_is_final
    assert on_connection(database_url, state) == ({first}, committed_ddl), (
        "expected the good revisions applied, the version row at the last good one, and the "
        "failing revision's CREATE TABLE "
        + ("committed (DDL commits on its own)" if committed_ddl else "rolled back with it")
    )


def test_a_fleet_reaches_head(migration_harness: Harness, walk: Walk, database_url: URL) -> None:
    """The revisions migrate a fleet as `make fleet-migrate` runs each target, and the fleet's
    status then reads every target at head. On PostgreSQL with `tenant-schemas = true` under
    [tool.alembic-steady]: two tenant schemas of one database, each holding its own tables and
    version table, none landing in the database's own schema (a revision naming `public.` breaks
    its tenants). Otherwise a fleet of databases: the walk's, which the walk brought to head
    through the env.py run every target gets, upgraded again by the fleet's path as a target
    already at head is. A second database would only repeat the walk, at the cost of a pass
    through the whole history (a squashed baseline's hundreds of tables)."""
    harness, project = migration_harness, migration_harness.project
    tenants = harness.dialect.name == "postgresql" and project.setting("tenant-schemas", False)
    if walk.upgrade_failure and not tenants:
        pytest.fail(f"cannot migrate the fleet: {walk.upgrade_failure}")
    if tenants:
        url, lines = database_url, ["schema=tenant_a", "schema=tenant_b"]
    else:
        url, lines = walk.url, [f"database={walk.url.database}"]
    targets = parse_all(lines, url, harness.dialect.name, "the fleet test")
    before = on_connection(url, _tables_by_schema)["public"] if tenants else set()
    for target in targets:
        try:
            harness.migrations.upgrade("heads", url=target.url, schema=target.schema)
        except CommandError as exc:
            where = "tenant schema" if tenants else "database"
            raise AssertionError(
                f"{target.label}: the revisions fail in a {where} of their own: {exc}"
                + (TENANT_ADVICE if tenants else "")
            ) from None
    found = read_all(targets, project, project.settings(), harness.dialect)
    heads = Phases(harness.script).head_rows()
    assert {line: found[target].heads for line, target in zip(lines, targets, strict=True)} == (
        dict.fromkeys(lines, heads)
    )
    if tenants:
        tables = on_connection(url, _tables_by_schema)
        assert tables["tenant_a"] == tables["tenant_b"]
        assert "alembic_version" in tables["tenant_a"]
        assert tables["public"] == before, (
            f"a tenant's revisions made {sorted(tables['public'] - before)} in the database's "
            f"own schema.{TENANT_ADVICE}"
        )


# What a revision must do to run in any tenant's schema.
TENANT_ADVICE = (
    " A tenant's search path is its own schema alone: name no schema in a revision (not "
    "`public.`, nor alembic-postgresql-enum's `enum_schema='public'`), so its tables and types "
    "land in the tenant's."
)


def _tables_by_schema(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        schema: set(inspector.get_table_names(schema=schema))
        for schema in ("tenant_a", "tenant_b", "public")
    }
