"""The built-in migration tests (`alembic_steady.testing.checks`) as a project sees them: its own
pytest run over them, on projects with a defect planted, each failing test named with what
broke. The stairway names every kind of object a downgrade leaves behind (on the event triggers'
fast path, on what only a full read sees, and without a superuser); the enum types autogenerate
writes go round; enum value drift, model drift and a second head fail their tests; a project
without data checks passes. And a failure part-way from base keeps the good revisions and says
where the database stands.

One pytest run (a subprocess, as a project's `make test` is) tests the planted projects at
once: its `migration_project` fixture is parametrized by them, so the cost is one interpreter
start and a walk per project. A session running some of this module's tests (a mutation's, a
developer's -k) builds and walks only the projects they read (`@planted`).
"""

import re
import sys
import uuid
from collections.abc import Callable, Iterator

import demo_project
import pytest
from alembic import command
from checks_run import Run, run_checks
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients
from alembic_steady.runner.api import Migrations
from alembic_steady.testing.plugin import new_database
from alembic_steady.testing.walk import Harness, Walk, on_connection


def indent(body: str) -> str:
    return "\n".join(f"    {line}" for line in body.strip().splitlines())


# Objects the event triggers attribute to one relation or function (the stairway's fast path):
# a function, a procedure, a trigger on the chain's existing table (calling a built-in function,
# so that only the trigger's own event can send the stairway back to that table), a view, a
# sequence, a policy with row security, a comment.
FAST_PATH = "f1f1f1f1f1f1"
FAST_PATH_UP = """
op.execute("CREATE TABLE gadget (id bigint PRIMARY KEY, name text)")
op.execute("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
op.execute("CREATE PROCEDURE purge_gadgets() LANGUAGE sql AS 'DELETE FROM gadget'")
op.execute(
    "CREATE TRIGGER widget_touch BEFORE UPDATE ON widget FOR EACH ROW "
    "EXECUTE FUNCTION suppress_redundant_updates_trigger()"
)
op.execute("CREATE VIEW gadget_names AS SELECT name FROM gadget")
op.execute("CREATE SEQUENCE gadget_serial START 7")
op.execute("ALTER TABLE gadget ENABLE ROW LEVEL SECURITY")
op.execute("CREATE POLICY gadget_all ON gadget USING (true)")
op.execute("COMMENT ON TABLE gadget IS 'gadgets'")
"""
FAST_PATH_DOWN = """
op.execute("DROP VIEW gadget_names")
op.execute("DROP TRIGGER widget_touch ON widget")
op.execute("DROP TABLE gadget")
op.execute("DROP SEQUENCE gadget_serial")
op.execute("DROP PROCEDURE purge_gadgets()")
op.execute("DROP FUNCTION touch()")
"""
FAST_PATH_LEFT = (
    "function f public.touch() ",
    "function p public.purge_gadgets() ",
    "trigger CREATE TRIGGER widget_touch ",
    "view public.gadget_names AS ",
    "sequence public.gadget_serial bigint start 7 ",
    "policy public.gadget gadget_all ",
    "comment gadgets",
)
# Objects that make the next snapshot read everything: a schema, a table in it, an extension,
# grants on the chain's table.
FULL_READ = "d4d4d4d4d4d4"
FULL_READ_UP = """
op.execute("CREATE SCHEMA reporting")
op.execute("CREATE TABLE reporting.daily (day date PRIMARY KEY)")
op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
op.execute("GRANT SELECT ON widget TO PUBLIC")
"""
FULL_READ_DOWN = """
op.execute("REVOKE SELECT ON widget FROM PUBLIC")
op.execute("DROP EXTENSION pg_trgm")
op.execute("DROP SCHEMA reporting CASCADE")
"""
FULL_READ_LEFT = (
    "schema reporting",
    "relation r reporting.daily",
    "extension pg_trgm ",
    "relation r public.widget grants ",
)
# The chain's models: the demo's widget and the gadget table (the other objects are not models).
OBJECTS_MODELS = (
    demo_project.MODELS
    + """
gadget = sa.Table(
    "gadget", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text),
    comment="gadgets",
)
"""
)

# A model with a PostgreSQL enum; autogenerate writes its revisions, as `make migration` does.
ENUM_MODELS = """
import sqlalchemy as sa

metadata = sa.MetaData()
ticket = sa.Table(
    "ticket", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("status", sa.Enum(@values@, name="status"), nullable=False),
)
"""
OPEN_CLOSED = '"open", "closed"'
PENDING = '"open", "closed", "pending"'
ARCHIVED = '"open", "closed", "pending", "archived"'
ENUM_CREATED, ENUM_EXTENDED = "e1e1e1e1e1e1", "e2e2e2e2e2e2"
# The classic bug: the downgrade drops the table but forgets the enum type.
ENUM_TYPE_DROP = re.compile(
    r"\n\s*sa\.Enum\(['\"]open['\"], ['\"]closed['\"], name=['\"]status['\"]\)"
    r"\.drop\(op\.get_bind\(\)\)"
)
ENUM_LEFT = "type public.status open,closed"


def enum_models(values: str) -> str:
    return ENUM_MODELS.replace("@values@", values)


def autogenerate(project: Project, url: URL, revision: str, message: str, values: str) -> None:
    """Write the models with `values`, autogenerate a revision as `make migration` does, and
    upgrade to it (autogenerate compares with a database at head)."""
    (project.migrations.parent / "models.py").write_text(enum_models(values), encoding="utf-8")
    sys.modules.pop(f"{project.package}.models", None)  # env.py imports the new models
    migrations = Migrations(project)
    config = migrations.alembic_config(url=url)
    config.attributes["command"] = "revision"
    command.revision(config, message=message, autogenerate=True, rev_id=revision)
    migrations.upgrade(url=url)


@pytest.fixture(scope="module")
def enum_revisions(server_clients: Clients, server_url: URL) -> dict[str, str]:
    """The two revisions autogenerate writes for an enum column, then a new value of it (file
    name -> text)."""
    project = demo_project.write("postgresql", name="stairway_autogen", chain=[])
    with new_database(server_clients, server_url) as url:
        autogenerate(project, url, ENUM_CREATED, "add ticket", OPEN_CLOSED)
        autogenerate(project, url, ENUM_EXTENDED, "add pending status", PENDING)
    files = sorted((project.migrations / "versions").glob("*.py"))
    return {path.name: path.read_text(encoding="utf-8") for path in files}


def objects_project(name: str, *, fast_down: str, full_down: str) -> Project:
    """The demo chain (widget), then the fast-path objects and the full-read objects."""
    chain = [
        *demo_project.CHAIN["postgresql"],
        (FAST_PATH, indent(FAST_PATH_UP), indent(fast_down)),
        (FULL_READ, indent(FULL_READ_UP), indent(full_down)),
    ]
    return demo_project.write(
        "postgresql", name=f"stairway_{name}", chain=chain, models=OBJECTS_MODELS
    )


def enum_project(name: str, revisions: dict[str, str], values: str, *, left: bool) -> Project:
    """The autogenerated enum chain under models with `values`; with `left`, the first
    revision's downgrade forgets the enum type."""
    project = demo_project.write(
        "postgresql", name=f"stairway_{name}", chain=[], models=enum_models(values)
    )
    for file, source in revisions.items():
        if left and file.startswith(ENUM_CREATED):
            # No assertion here that it was found: the enum_left tests say so if it was not,
            # and the others keep their own verdicts.
            source = ENUM_TYPE_DROP.sub("", source)
        (project.migrations / "versions" / file).write_text(source, encoding="utf-8")
    return project


# A column in the models that no revision adds, and a model (a table of 12 columns) no
# revision creates.
MODEL_DRIFT = demo_project.MODELS.replace(
    '    sa.Column("price", sa.Integer, nullable=True),\n',
    '    sa.Column("price", sa.Integer, nullable=True),\n'
    '    sa.Column("sku", sa.String(20), nullable=True),\n',
) + (
    'gizmo = sa.Table("gizmo", metadata, sa.Column("id", sa.Integer, primary_key=True),\n'
    + "".join(f'    sa.Column("part_{n}", sa.Text, server_default="none"),\n' for n in range(11))
    + ")\n"
)
# The demo chain, with a downgrade that fails (as one whose data no longer fits the old schema
# does) on its last revision.
DOWN_FAILS = [
    *demo_project.CHAIN["postgresql"][:2],
    (
        "c3",
        '    op.add_column("widget", sa.Column("price", sa.Integer, nullable=True))',
        '    op.execute("SELECT 1 / 0")\n    op.drop_column("widget", "price")',
    ),
]
# A second root revision: a second head beside the chain's.
SIDEWAYS = "5d5d5d5d5d5d"

# A correct revision in plain Alembic style: the enum type is made by create_table (its
# before_create event), and dropped by hand on the way down. Up, down and up in one migration
# context would skip the second CREATE TYPE (the context remembers the type as made).
ENUM_PLAIN = [
    (
        "e0e0e0e0e0e0",
        '    op.create_table("ticket", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("status", sa.Enum("open", "closed", name="status"), nullable=False))',
        '    op.drop_table("ticket")\n    op.execute("DROP TYPE status")',
    )
]
# Several bad revisions in one chain, then an upgrade that fails: every finding is named in one
# run, each with its own cause, the one after a failed downgrade included.
MANY = ["f1f1", "f2f2", "f3f3", "f4f4", "f5f5"]
MANY_FINDINGS = [
    (MANY[0], '    op.execute("CREATE TABLE alpha (id int)")', "    pass"),
    (
        MANY[1],
        '    op.execute("CREATE TABLE beta (id int)")',
        '    op.execute("SELECT 1 / 0")\n    op.execute("DROP TABLE beta")',
    ),
    (
        MANY[2],
        '    op.execute("CREATE TABLE gamma (id int)")',
        '    op.execute("DROP TABLE gamma")',
    ),
    (MANY[3], '    op.execute("CREATE SEQUENCE delta_serial")', "    pass"),
    (
        MANY[4],
        '    op.execute("CREATE TABLE epsilon (id int)")\n'
        '    op.execute("SELECT * FROM no_such_epsilon")',
        "    pass",
    ),
]


def two_heads_project() -> Project:
    project = demo_project.write("postgresql", name="stairway_two_heads")
    demo_project.add_revision(
        project.migrations / "versions", SIDEWAYS, None, "    pass", "    pass", doc="sideways"
    )
    return project


# Each planted project, built by name (the enum ones from the revisions autogenerate wrote).
PLANTED: dict[str, Callable[[dict[str, str]], Project]] = {
    "objects_good": lambda _: objects_project(
        "objects_good", fast_down=FAST_PATH_DOWN, full_down=FULL_READ_DOWN
    ),
    "fast_left": lambda _: objects_project("fast_left", fast_down="pass", full_down=FULL_READ_DOWN),
    "full_left": lambda _: objects_project("full_left", fast_down=FAST_PATH_DOWN, full_down="pass"),
    "enum_good": lambda revisions: enum_project("enum_good", revisions, PENDING, left=False),
    "enum_left": lambda revisions: enum_project("enum_left", revisions, PENDING, left=True),
    "enum_drift": lambda revisions: enum_project("enum_drift", revisions, ARCHIVED, left=False),
    "model_drift": lambda _: demo_project.write(
        "postgresql", name="stairway_model_drift", models=MODEL_DRIFT
    ),
    "two_heads": lambda _: two_heads_project(),
    "down_fails": lambda _: demo_project.write(
        "postgresql", name="stairway_down_fails", chain=DOWN_FAILS
    ),
    "enum_plain": lambda _: demo_project.write(
        "postgresql", name="stairway_enum_plain", chain=ENUM_PLAIN, models=enum_models(OPEN_CLOSED)
    ),
    "many_findings": lambda _: demo_project.write(
        "postgresql", name="stairway_many_findings", chain=MANY_FINDINGS
    ),
}
AUTOGENERATED = ("enum_good", "enum_left", "enum_drift")


def planted(*names: str) -> pytest.MarkDecorator:
    """The planted projects a test reads (none named: all of them). A session running some of
    this module's tests (a mutation's, a developer's -k) builds and walks only theirs."""
    unknown = set(names) - set(PLANTED)
    assert not unknown, f"no planted project {unknown}"
    return pytest.mark.planted(*names)


@pytest.fixture(scope="module")
def projects(request: pytest.FixtureRequest) -> dict[str, Project]:
    """The planted projects the session's tests of this module read, by the id their tests
    carry in the run's output."""
    wanted: set[str] = set()
    for item in request.session.items:
        if item.module is request.module and (mark := item.get_closest_marker("planted")):
            wanted.update(mark.args or PLANTED)
    assert wanted, "a test reading the planted projects names them: @planted(...)"
    needs_revisions = any(name in AUTOGENERATED for name in wanted)
    revisions = request.getfixturevalue("enum_revisions") if needs_revisions else {}
    return {name: PLANTED[name](revisions) for name in sorted(wanted)}


@pytest.fixture(scope="module")
def superuser_run(projects: dict[str, Project], server_url: URL) -> Run:
    """The planted projects, on the test server's superuser: the event triggers' fast path."""
    return run_checks(projects, server_url)


@pytest.fixture(scope="module")
def plain_role_run(projects: dict[str, Project], server_url: URL) -> Iterator[Run]:
    """The enum type left behind, on a server that gives the tests a plain role (CREATEDB
    only): no event triggers, so every snapshot reads the whole schema."""
    role, password = f"plain_{uuid.uuid4().hex[:8]}", "plain-pw"
    admin = server_url.set(database="postgres")

    def execute(statement: str) -> None:
        on_connection(admin, lambda connection: connection.execute(text(statement)))

    execute(f"CREATE ROLE \"{role}\" LOGIN CREATEDB PASSWORD '{password}'")
    try:
        plain = server_url.set(username=role, password=password)
        wanted = {name: projects[name] for name in ("enum_left", "enum_plain") if name in projects}
        yield run_checks(wanted, plain)
    finally:
        execute(f'DROP ROLE "{role}"')


@planted()
def test_only_the_planted_defects_fail(superuser_run: Run) -> None:
    # Correct downgrades of every kind of object pass, and the enum is created, extended and
    # dropped by the autogenerated revisions, which match the models: every built-in test passes
    # on those projects, and on each planted one only the test its defect concerns fails (and,
    # with two heads, the models test: it compares at head, as `make check` does, which two
    # heads do not have).
    for project in ("objects_good", "enum_good", "enum_plain"):
        assert superuser_run.outcome("test_stairway", project) == "PASSED", superuser_run.output
    assert superuser_run.not_passed() == {
        "test_stairway[fast_left]",
        "test_stairway[full_left]",
        "test_stairway[enum_left]",
        "test_models_match_head_schema[enum_drift]",
        "test_models_match_head_schema[model_drift]",
        "test_single_head[two_heads]",
        "test_models_match_head_schema[two_heads]",
        "test_stairway[down_fails]",
        # An upgrade that fails fails every test that needs the chain at head.
        "test_stairway[many_findings]",
        "test_upgrade_base_to_head_one_revision_at_a_time[many_findings]",
        "test_models_match_head_schema[many_findings]",
        "test_data_survives_later_upgrades[many_findings]",
        "test_a_fleet_reaches_head[many_findings]",
    }, superuser_run.output


@planted()
def test_a_project_without_data_checks_passes_rather_than_skips(
    superuser_run: Run, projects: dict[str, Project]
) -> None:
    # None of the demo projects has data checks: a skip would be a test that proves nothing.
    for project in set(projects) - {"many_findings"}:  # its upgrade fails: no data to check
        test = "test_data_survives_later_upgrades"
        assert superuser_run.outcome(test, project) == "PASSED", superuser_run.output
    summary = superuser_run.output.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ failed, \d+ passed in [\d.]+s( \([\d:]+\))? =+", summary), summary


@pytest.mark.parametrize(
    ("project", "revision", "left"),
    [
        pytest.param(
            "fast_left", FAST_PATH, FAST_PATH_LEFT, id="fast_path", marks=planted("fast_left")
        ),
        pytest.param(
            "full_left", FULL_READ, FULL_READ_LEFT, id="full_read", marks=planted("full_left")
        ),
    ],
)
def test_stairway_names_every_kind_of_object_a_downgrade_leaves(
    superuser_run: Run, project: str, revision: str, left: tuple[str, ...]
) -> None:
    assert superuser_run.outcome("test_stairway", project) == "FAILED", superuser_run.output
    failure = superuser_run.failure("test_stairway", project)
    # The revision's own finding: an object it leaves must not surface only later, blamed on
    # the next revision (which a snapshot that missed it would do).
    (finding,) = [f for f in failure.split("\n- ") if f.startswith(f"revision {revision} ")]
    missed = [row for row in left if row not in finding]
    assert not missed, f"the stairway did not name {missed} for {revision}:\n{failure}"


@planted("enum_left")
def test_stairway_names_an_enum_type_a_downgrade_leaves(superuser_run: Run) -> None:
    assert superuser_run.outcome("test_stairway", "enum_left") == "FAILED", superuser_run.output
    failure = superuser_run.failure("test_stairway", "enum_left")
    assert f"revision {ENUM_CREATED} " in failure and ENUM_LEFT in failure, failure


@planted("enum_left")
def test_stairway_names_an_enum_type_left_without_a_superuser(plain_role_run: Run) -> None:
    # Event triggers, which let the stairway re-read only what each step touched, need a
    # superuser. The fallback reads the whole schema: it catches the same bug, and the other
    # tests still pass.
    assert plain_role_run.outcome("test_stairway", "enum_left") == "FAILED", plain_role_run.output
    failure = plain_role_run.failure("test_stairway", "enum_left")
    assert f"revision {ENUM_CREATED} " in failure and ENUM_LEFT in failure, failure
    assert plain_role_run.not_passed() == {"test_stairway[enum_left]"}, plain_role_run.output
    for test in (
        "test_upgrade_base_to_head_one_revision_at_a_time",
        "test_models_match_head_schema",
    ):
        assert plain_role_run.outcome(test, "enum_left") == "PASSED", plain_role_run.output


@planted("enum_drift")
def test_enum_value_drift_fails_the_models_test(superuser_run: Run) -> None:
    # The models test compares as `make check` does, enum values included (alembic-postgresql-
    # enum): a value added to the model without a revision is drift.
    test = "test_models_match_head_schema"
    assert superuser_run.outcome(test, "enum_drift") == "FAILED", superuser_run.output
    failure = superuser_run.failure(test, "enum_drift")
    assert "archived" in failure and "status" in failure, failure


@planted("model_drift")
def test_model_drift_is_named(superuser_run: Run) -> None:
    test = "test_models_match_head_schema"
    assert superuser_run.outcome(test, "model_drift") == "FAILED", superuser_run.output
    failure = superuser_run.failure(test, "model_drift")
    # The revision autogenerate would write, as code, rather than reprs of Table objects.
    assert "write a revision for the change with make migration" in failure, failure
    assert "op.add_column('widget', sa.Column('sku', sa.String(length=20)" in failure, failure
    assert "op.create_table('gizmo'," in failure and "sa.Column('part_10'" in failure, failure
    assert "Table(" not in failure and "MetaData(" not in failure, failure
    assert "###" not in failure, failure
    assert len(failure) < 3000, failure


@planted("down_fails")
def test_a_downgrade_failing_in_the_stairway_gets_the_downgrade_advice(
    superuser_run: Run,
) -> None:
    assert superuser_run.outcome("test_stairway", "down_fails") == "FAILED", superuser_run.output
    failure = superuser_run.failure("test_stairway", "down_fails")
    assert "revision c3 " in failure and "downgrade failed" in failure, failure
    assert "division by zero" in failure, failure
    assert "Fix that revision's downgrade()" in failure and "make rollback" in failure, failure
    assert "make migrate" not in failure, failure
    assert "server_default or a backfill" not in failure, failure  # the upgrade's remedies


@planted("enum_plain")
def test_a_plain_alembic_enum_goes_round_the_stairway(
    superuser_run: Run, plain_role_run: Run
) -> None:
    # make migrate, make rollback, make migrate pass on it: each is a run of its own, and so is
    # each step of the stairway (a fresh migration context), so the second upgrade creates the
    # type again. Where the downgrade is rolled back instead (a superuser's run) there is no
    # second upgrade: a plain role's run takes the revision up again.
    for run in (superuser_run, plain_role_run):
        for test in ("test_stairway", "test_models_match_head_schema"):
            assert run.outcome(test, "enum_plain") == "PASSED", run.output


@planted("many_findings")
def test_the_stairway_names_every_finding_and_the_upgrade_that_stopped_it(
    superuser_run: Run,
) -> None:
    failure = superuser_run.failure("test_stairway", "many_findings")
    findings = [line for line in failure.splitlines() if line.startswith("- ")]
    assert len(findings) == 4, failure
    left, down_failed, sequence_left, stopped = findings
    # Each names its revision, what differs and the fix.
    assert f"revision {MANY[0]} " in left and "public.alpha" in left, left
    assert "downgrade() drop what it leaves" in left and "make rollback" in left, left
    assert f"revision {MANY[1]} " in down_failed, down_failed
    assert "downgrade failed" in down_failed and "division by zero" in down_failed, down_failed
    assert "Fix that revision's downgrade()" in down_failed, down_failed
    assert f"revision {MANY[3]} " in sequence_left and "delta_serial" in sequence_left
    # The upgrade that failed after them, with its own cause; the good revision is not named.
    assert stopped.startswith(f"- the stairway stopped: upgrade to revision {MANY[4]} "), stopped
    assert "no_such_epsilon" in stopped, stopped
    assert f"revision {MANY[2]} " not in failure, failure


@planted("two_heads")
def test_a_second_head_is_named(superuser_run: Run) -> None:
    assert superuser_run.outcome("test_single_head", "two_heads") == "FAILED", superuser_run.output
    failure = superuser_run.failure("test_single_head", "two_heads")
    assert "more than one head" in failure and SIDEWAYS in failure, failure


def enum_state(connection: Connection) -> tuple[set[str], str | None]:
    labels = connection.execute(
        text(
            "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum "
            "WHERE enumtypid = to_regtype('public.status')"
        )
    ).scalar()
    return Migrations.current_heads(connection), labels


@planted("enum_good")
def test_autogenerated_enum_revisions_roll_back_and_forward(
    projects: dict[str, Project], database_url: URL
) -> None:
    """Back to base in one rollback (two revisions), then to head again."""
    migrations = Migrations(projects["enum_good"])
    migrations.upgrade(url=database_url)
    assert on_connection(database_url, enum_state) == ({ENUM_EXTENDED}, "open,closed,pending")
    config = migrations.alembic_config(url=database_url)
    config.attributes["command"] = "downgrade"
    command.downgrade(config, "-2")
    assert on_connection(database_url, enum_state) == (set(), None)
    migrations.upgrade(url=database_url)
    assert on_connection(database_url, enum_state) == ({ENUM_EXTENDED}, "open,closed,pending")


# A failure part-way from base: a good revision after the demo's first, then one that fails
# after a statement that succeeded.
GOOD, BAD = "a1a1a1a1a1a1", "b2b2b2b2b2b2"


@pytest.fixture(scope="module")
def failing_project() -> Project:
    chain = [
        demo_project.CHAIN["postgresql"][0],
        (GOOD, '    op.execute("CREATE TABLE good_one (id int)")', "    pass"),
        (
            BAD,
            '    op.execute("CREATE TABLE never_kept (id int)")\n    op.execute("SELECT 1 / 0")',
            "    pass",
        ),
    ]
    return demo_project.write("postgresql", name="stairway_partway", chain=chain)


def tables(connection: Connection) -> set[str]:
    rows = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ).scalars()
    return set(rows) - {"alembic_version", "alembic_version_checksums"}


def test_a_failure_part_way_from_base_keeps_the_good_revisions_and_says_so(
    failing_project: Project, database_url: URL
) -> None:
    result = demo_project.module_cli(
        failing_project,
        "upgrade",
        env={"DATABASE_URL": database_url.render_as_string(hide_password=False)},
    )
    assert result.returncode != 0, result.stdout
    assert f"{BAD}.py" in result.stdout and "division by zero" in result.stdout, result.stdout
    # The message says where the database stands: at the last good revision.
    assert f"version stays at {GOOD}" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    # Started from base: the first revision and the good one stay applied.
    assert on_connection(database_url, Migrations.current_heads) == {GOOD}
    assert on_connection(database_url, tables) == {"widget", "good_one"}


# A revision that keeps a temporary table for its own data work (danswer's 4ea2c93919c1 does):
# it lives until the session ends, so a second upgrade in the same session would find it.
# make migrate, make rollback and make migrate are three sessions, and pass.
TEMP_TABLE = [
    (
        "t7t7t7t7t7t7",
        '    op.execute("CREATE TEMPORARY TABLE scratch AS SELECT 1 AS one")\n'
        '    op.execute("CREATE TABLE kept (id int)")',
        '    op.execute("CREATE TEMPORARY TABLE scratch AS SELECT 1 AS one")\n'
        '    op.execute("DROP TABLE kept")',
    )
]


def test_a_temporary_table_does_not_outlive_its_step_in_the_stairway(database_url: URL) -> None:
    project = demo_project.write("postgresql", name="stairway_temp_table", chain=TEMP_TABLE)
    outcome = Walk(database_url)
    Harness(project).walk_base_to_head(database_url, outcome, stairway=True)
    assert outcome.upgrade_failure is None, outcome.upgrade_failure
    assert not outcome.stairway_failures, outcome.stairway_failures
    assert on_connection(database_url, Migrations.current_heads) == {"t7t7t7t7t7t7"}
