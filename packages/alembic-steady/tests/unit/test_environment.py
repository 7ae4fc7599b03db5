"""runner/environment.py without a server: what a MigrationEnvironment makes of the way it was
called (the config env.py gets), what it asks Alembic to configure, and what it says when nothing
happened. Running revisions is the live tiers' (tests/postgresql/test_pg_runner.py & co.)."""

import io
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from support import DEFAULT_URL, Settings, make_project

from alembic_steady import MAKE
from alembic_steady.runner import environment as environment_module
from alembic_steady.runner.environment import MigrationEnvironment
from alembic_steady.runner.retries import RetryPolicy


class AlembicContext:
    """`alembic.context` as env.py sees it: the config, and configure() recorded."""

    def __init__(self, attributes: dict[str, Any], cmd_opts: Any = None) -> None:
        self.config = SimpleNamespace(
            cmd_opts=cmd_opts, attributes=attributes, config_file_name=None
        )
        self.configured: list[dict[str, Any]] = []

    def configure(self, **kwargs: Any) -> None:
        self.configured.append(kwargs)


def environment(
    tmp_path: Path,
    attributes: dict[str, Any] | None = None,
    *,
    cmd_opts: Any = None,
    metadata: Any = None,
    **settings: Any,
) -> MigrationEnvironment:
    project = make_project(tmp_path, settings=lambda: Settings(**settings))
    return MigrationEnvironment(AlembicContext(attributes or {}, cmd_opts), project, metadata)


# -- how it was called -----------------------------------------------------------------------


def test_code_calling_upgrade_keeps_its_signals_output_and_words(tmp_path: Path) -> None:
    env = environment(tmp_path, {"command": "upgrade"})
    assert (env.command_line, env.cancels_on_signals, env.talks) == (False, False, False)
    assert env.project.commands == MAKE
    assert env.command == "upgrade"


def test_the_module_cli_talks_in_its_own_words_and_may_cancel_on_signals(tmp_path: Path) -> None:
    words = make_project(package="shop").module_commands
    env = environment(tmp_path, {"commands": words, "cancel_on_signals": True})
    assert (env.command_line, env.cancels_on_signals, env.talks) == (False, True, True)
    assert env.project.commands == words


def test_a_command_line_run_talks_and_cancels_on_signals(tmp_path: Path) -> None:
    env = environment(tmp_path, cmd_opts=Namespace(cmd=None))
    assert (env.command_line, env.cancels_on_signals, env.talks) == (True, True, True)


def test_the_target_is_the_settings_migration_url_unless_a_caller_names_one(
    tmp_path: Path,
) -> None:
    assert environment(tmp_path).url == DEFAULT_URL
    given = make_url("mysql+asyncmy://app@db.internal/shop")
    env = environment(tmp_path, {"url": given})
    assert env.url == given and env.dialect.name == "mysql"


def test_a_callers_engine_names_the_database_to_migrate(tmp_path: Path) -> None:
    engine = create_async_engine("postgresql+asyncpg://app@other.internal/shop")  # not connected
    assert environment(tmp_path, {"connection": engine}).url == engine.url
    assert environment_module._url_of(engine) == engine.url
    assert environment_module._url_of(None) is None
    assert environment_module._url_of("postgresql://x") is None


def test_the_retry_policy_and_the_settings_come_from_the_project(tmp_path: Path) -> None:
    env = environment(tmp_path, migration_lock_timeout="2s", migration_lock_retries=4)
    assert env.policy == RetryPolicy(2000.0, 4, 300.0)
    assert env.settings.migration_lock_retries == 4


def test_a_rollback_in_production_is_refused_before_anything_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONFIRM", raising=False)
    with pytest.raises(CommandError, match=r"^Refusing to downgrade in production"):
        environment(tmp_path, {"command": "downgrade"}, environment="production")


def test_a_tenant_schema_is_the_runs_own_with_its_version_table(tmp_path: Path) -> None:
    env = environment(tmp_path, {"command": "upgrade", "schema": "acme"})
    assert env.project.schema == "acme" and env.project.lock_name == "shop/acme"
    # Its version table is found on the search path (see PostgreSQL.enter_schema): naming its
    # schema here would make autogenerate compare it as one of the tenant's tables.
    assert "version_table_schema" not in configured(env)
    words = make_project(package="shop").module_commands
    env = environment(tmp_path, {"commands": words, "schema": "acme"})
    assert (env.project.schema, env.project.commands) == ("acme", words)  # both kept


def test_a_tenant_schema_on_a_callers_connection_is_refused_before_it_is_used(
    tmp_path: Path,
) -> None:
    engine = create_async_engine("postgresql+asyncpg://app@other.internal/shop")  # not connected
    env = environment(tmp_path, {"connection": engine, "schema": "acme"})
    with pytest.raises(CommandError, match=r"^A tenant schema is migrated on a connection of"):
        env.run_online(lambda: None)  # type: ignore[arg-type,return-value]


# -- configure -----------------------------------------------------------------------------


def models() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("item", metadata, sa.Column("id", sa.Integer, primary_key=True))
    return metadata


def configured(env: MigrationEnvironment, **kwargs: Any) -> dict[str, Any]:
    env.configure(**kwargs)
    [options] = env.context.configured
    return options


@pytest.mark.parametrize("command", ["upgrade", "downgrade", "stamp", "current"])
def test_commands_that_do_not_compare_never_import_the_models(tmp_path: Path, command: str) -> None:
    def metadata() -> sa.MetaData:
        raise AssertionError("the models were imported")

    options = configured(environment(tmp_path, {"command": command}, metadata=metadata), url="u")
    assert options == {"target_metadata": None, "transaction_per_migration": True, "url": "u"}


def test_writing_a_revision_compares_with_the_autogenerate_hooks(tmp_path: Path) -> None:
    from alembic_steady.authoring import autogen

    target = models()
    given = {"command": "revision", "renames": "item.a=b"}  # make migration renames=item.a=b
    options = configured(environment(tmp_path, given, metadata=lambda: target))
    assert options["target_metadata"] is target
    assert options["transaction_per_migration"] is True
    hook = options["process_revision_directives"]
    assert hook.func is autogen.process_revision_directives
    assert hook.keywords == {"renames_given": "item.a=b"}
    assert options["compare_type"] is True and options["render_item"] is autogen.render_item


def test_on_mysql_the_dialect_adds_its_own_options(tmp_path: Path) -> None:
    url = make_url("mysql+asyncmy://app@db.internal/shop")
    options = configured(
        environment(tmp_path, {"command": "revision", "url": url}, metadata=models)
    )
    assert "include_name" in options  # the runner's own table is nobody's model


def test_a_callers_metadata_replaces_the_models_and_only_its_schemas_are_compared(
    tmp_path: Path,
) -> None:
    """`make squash` compares a reflection of a database, whose tables may span schemas: those
    schemas and the default are compared, never a server's others (MySQL's databases)."""

    def models() -> sa.MetaData:
        raise AssertionError("the models were imported")

    reflected = sa.MetaData()
    sa.Table("t", reflected, sa.Column("id", sa.Integer), schema="tenant")
    sa.Table("u", reflected, sa.Column("id", sa.Integer))
    attributes = {"command": "revision", "target_metadata": reflected}
    options = configured(environment(tmp_path, attributes, metadata=models))
    assert options["target_metadata"] is reflected and options["include_schemas"] is True
    include = options["include_name"]
    assert include("tenant", "schema", {}) and include(None, "schema", {})
    assert not include("performance_schema", "schema", {})
    assert not include("alembic_version_checksums", "table", {}) and include("u", "table", {})

    one_schema = sa.MetaData()
    sa.Table("u", one_schema, sa.Column("id", sa.Integer))
    attributes = {"command": "revision", "target_metadata": one_schema}
    options = configured(environment(tmp_path, attributes, metadata=models))
    assert options["target_metadata"] is one_schema and "include_schemas" not in options


def test_without_models_a_revision_compares_nothing(tmp_path: Path) -> None:
    options = configured(environment(tmp_path, {"command": "revision"}))
    assert options == {"target_metadata": None, "transaction_per_migration": True}


# -- saying so when nothing happened -------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "found", "last", "said"),
    [
        ("upgrade", ("a1", "b2"), None, "Nothing to apply: the database is at a1, b2.\n"),
        ("upgrade", (), None, "Nothing to apply: the database is at base.\n"),
        ("upgrade", ("a1",), "b2 (add price)", ""),  # it applied something
        ("upgrade", None, None, ""),  # it never read the database
        ("current", (), None, "No revision is applied yet (base): make migrate applies them.\n"),
        ("current", ("a1",), None, ""),  # Alembic printed the revision
        ("downgrade", (), None, ""),
    ],
)
def test_silence_is_broken_when_nothing_was_applied_or_nothing_is(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    found: tuple[str, ...] | None,
    last: str | None,
    said: str,
) -> None:
    env = environment(tmp_path, {"command": command})
    env.progress.found, env.progress.last = found, last
    env._say_when_nothing_happened()
    assert capsys.readouterr().err == said


def test_an_engine_of_its_own_connects_one_at_a_time_under_the_session_name(
    tmp_path: Path,
) -> None:
    url = URL.create("postgresql+asyncpg", host="db.internal", database="shop")
    project = make_project(tmp_path)
    engine = environment_module.migration_engine(url, Settings(), project)
    assert engine.url == url
    assert type(engine.pool).__name__ == "NullPool"  # releasing it releases the lock


# -- logging and the words of a drift --------------------------------------------------------


@pytest.fixture
def logging_configured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        environment_module, "fileConfig", lambda path, **kwargs: calls.append((path, kwargs))
    )
    return calls


def with_ini(env_context: AlembicContext, path: str) -> AlembicContext:
    env_context.config.config_file_name = path
    return env_context


def test_a_run_from_alembic_ini_logs_as_it_says_keeping_the_apps_loggers(
    tmp_path: Path, logging_configured: list[tuple[Any, dict[str, Any]]]
) -> None:
    project = make_project(tmp_path, settings=Settings)
    MigrationEnvironment(with_ini(AlembicContext({}), "alembic.ini"), project)
    assert logging_configured == [("alembic.ini", {"disable_existing_loggers": False})]


def test_code_that_keeps_its_own_logging_is_left_alone(
    tmp_path: Path, logging_configured: list[tuple[Any, dict[str, Any]]]
) -> None:
    project = make_project(tmp_path, settings=Settings)
    context = with_ini(AlembicContext({"configure_logger": False}), "alembic.ini")
    MigrationEnvironment(context, project)
    MigrationEnvironment(AlembicContext({}), project)  # no ini file at all
    assert logging_configured == []


def test_a_revision_on_mysql_is_checked_for_mixed_ddl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_url("mysql+asyncmy://app@db.internal/shop")
    options = configured(
        environment(tmp_path, {"command": "revision", "url": url}, metadata=models)
    )
    from alembic.operations import ops
    from sqlalchemy.dialects import mysql

    upgrade = ops.UpgradeOps(ops=[ops.DropTableOp("a"), ops.DropTableOp("b")])
    directives = [ops.MigrationScript("rev", upgrade, ops.DowngradeOps(ops=[]))]
    context = SimpleNamespace(dialect=mysql.dialect(), opts={"target_metadata": None}, script=None)
    options["process_revision_directives"](context, None, directives)
    assert "WARNING: this revision runs 2 DDL statements" in capsys.readouterr().err


def test_a_drift_found_by_check_names_the_command_that_writes_a_revision(tmp_path: Path) -> None:
    from alembic.operations import ops
    from alembic.runtime.migration import MigrationContext

    options = configured(environment(tmp_path, {"command": "check"}, metadata=models))
    upgrade = ops.UpgradeOps(ops=[ops.DropTableOp("old")])
    drift = ops.MigrationScript("rev", upgrade, ops.DowngradeOps(ops=[]))
    with pytest.raises(CommandError) as raised:
        options["process_revision_directives"](
            MigrationContext.configure(dialect_name="postgresql"), None, [drift]
        )
    assert 'write a revision for the change with make migration msg="..."' in str(raised.value)


# -- offline: the SQL printed for review -----------------------------------------------------

ENV_PY = """
from alembic import context
from alembic_steady.runner.environment import MigrationEnvironment

MigrationEnvironment(context, context.config.attributes["project"]).run_offline()
"""

REVISION = '''"""create item"""
import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''

SEED = """\
    item = sa.table("item", sa.column("id", sa.Integer), sa.column("meta", sa.JSON))
    op.bulk_insert(item, [{"id": 1, "meta": {"note": "it's"}}])"""


def offline_sql(tmp_path: Path, body: str, url: URL | None = DEFAULT_URL) -> list[str]:
    from alembic import command
    from alembic.config import Config

    project = make_project(tmp_path, settings=lambda: Settings(url, migration_lock_timeout="2s"))
    (project.migrations / "versions").mkdir(parents=True)
    (project.migrations / "env.py").write_text(ENV_PY, encoding="utf-8")
    revision = REVISION.format(body=body)
    (project.migrations / "versions" / "a1_item.py").write_text(revision, encoding="utf-8")
    output = io.StringIO()
    config = Config(output_buffer=output, stdout=io.StringIO())
    config.set_main_option("script_location", str(project.migrations))
    config.attributes.update(project=project, configure_logger=False)
    command.upgrade(config, "head", sql=True)
    return [line for line in output.getvalue().splitlines() if line]


def test_the_offline_script_sets_the_timeouts_and_writes_json_values(tmp_path: Path) -> None:
    lines = offline_sql(tmp_path, SEED)
    assert lines[:3] == ["SET lock_timeout = '2s';", "SET statement_timeout = '0';", "BEGIN;"]
    assert "INSERT INTO item (id, meta) VALUES (1, '{\"note\": \"it''s\"}');" in lines
    assert lines[-1] == "COMMIT;"


def test_a_revision_that_needs_the_database_is_named_offline(tmp_path: Path) -> None:
    from alembic import op

    try:
        with pytest.raises(CommandError) as raised:
            offline_sql(tmp_path, "    op.get_bind().execute(sa.text('SELECT 1')).scalar()")
    finally:
        # Alembic's Operations.context() leaves `op` bound when a revision raises (no finally):
        # later tests expect it unbound.
        if op._proxy is not None:
            op._proxy._remove_proxy()
    assert str(raised.value).startswith("a1_item.py, line 12 cannot be rendered as SQL offline: ")


def test_values_in_offline_statements_are_written_into_the_sql(tmp_path: Path) -> None:
    body = """\
    item = sa.table("item", sa.column("price", sa.Integer))
    op.execute(item.update().values(price=5))
    op.execute(sa.text("UPDATE item SET note = :note").bindparams(note="it's"))"""
    lines = offline_sql(tmp_path, body)
    assert "UPDATE item SET price=5;" in lines
    assert "UPDATE item SET note = 'it''s';" in lines


def test_the_mysql_offline_script_bounds_its_lock_waits(tmp_path: Path) -> None:
    url = make_url("mysql+asyncmy://app@db.internal/shop")
    lines = offline_sql(tmp_path, "    op.execute('SELECT 1')", url)
    assert lines[0] == "SET SESSION lock_wait_timeout = 2;"


# -- the checksums of applied revisions ------------------------------------------------------


class RecordingLedger:
    """checksums.Ledger, recording what the run asks of it."""

    made: ClassVar[list["RecordingLedger"]] = []

    def __init__(self, script: Any, schema: str | None) -> None:
        self.script, self.schema = script, schema
        self.asked: list[tuple[Any, ...]] = []
        RecordingLedger.made.append(self)

    def verify(self, connection: Any, heads: Any, commands: Any) -> None:
        self.asked.append(("verify", connection, heads, commands))

    def prepare(self, connection: Any, heads: Any) -> None:
        self.asked.append(("prepare", connection, heads))


def alembic_upgrade() -> None:
    """Stands for Alembic's own upgrade `fn`, which the runner applies a revision at a time."""


alembic_upgrade.__module__, alembic_upgrade.__name__ = "alembic.command", "upgrade"


@pytest.mark.parametrize(
    ("command", "current", "fn", "asked"),
    [
        ("upgrade", ("a",), alembic_upgrade, ["verify", "prepare"]),
        ("check", ("a",), None, ["verify"]),
        ("downgrade", ("a",), alembic_upgrade, ["prepare"]),
        ("stamp", None, None, ["prepare"]),
        ("current", ("a",), None, []),
        (None, ("a",), alembic_upgrade, ["prepare"]),  # Alembic's upgrade called from code
        (None, ("a",), None, []),
    ],
)
def test_a_run_verifies_and_keeps_the_checksums_as_its_command_asks(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str | None,
    current: tuple[str, ...] | None,
    fn: Any,
    asked: list[str],
) -> None:
    RecordingLedger.made = []
    monkeypatch.setattr(environment_module.checksums, "Ledger", RecordingLedger)
    env = environment(tmp_path, {"command": command} if command else {})
    context: Any = env.context
    context.script = "the script"
    context.get_context = lambda: SimpleNamespace(
        version_table_schema="audit", get_current_heads=lambda: ("b",)
    )
    connection: Any = object()
    ledger = env._checksums(connection, current, fn)
    (made,) = RecordingLedger.made
    assert (made.script, made.schema) == ("the script", "audit")
    assert [what[0] for what in made.asked] == asked
    if "verify" in asked:
        assert made.asked[0] == ("verify", connection, current, MAKE)
    if "prepare" in asked:
        # The heads the run read already; a stamp, which read none, reads them (("b",)).
        assert made.asked[-1] == ("prepare", connection, current or ("b",))
        assert ledger is made
    else:
        assert ledger is None


# -- deploy phases, offline (make sql): the order and the phase a run applies -----------------

PHASED = {  # a1 <- a2 (pre); p1 (post, from base, after a1). Alembic's own order: a1, p1, a2.
    "a1": (None, None, None, '    op.execute("CREATE TABLE item (id int, legacy text)")'),
    "p1": (None, ("post",), "a1", '    op.execute("ALTER TABLE item DROP COLUMN legacy")'),
    "a2": ("a1", None, None, "    op.execute(\"UPDATE item SET legacy = 'x'\")"),
}


def phased_sql(
    tmp_path: Path, revision: str = "head", *, cmd_opts: Any = None, **attributes: Any
) -> list[str]:
    """`make sql` of the phased history: the revisions each `-- Running upgrade` line names."""
    from alembic import command
    from alembic.config import Config

    project = make_project(tmp_path, settings=lambda: Settings(DEFAULT_URL))
    (project.migrations / "versions").mkdir(parents=True)
    (project.migrations / "env.py").write_text(ENV_PY, encoding="utf-8")
    for name, (down, labels, depends, body) in PHASED.items():
        text = REVISION.format(body=body).replace('revision = "a1"', f'revision = "{name}"')
        text = text.replace("down_revision = None", f"down_revision = {down!r}")
        text = text.replace("branch_labels = None", f"branch_labels = {labels!r}")
        text = text.replace("depends_on = None", f"depends_on = {depends!r}")
        (project.migrations / "versions" / f"{name}.py").write_text(text, encoding="utf-8")
    output = io.StringIO()
    config = Config(output_buffer=output, stdout=io.StringIO(), cmd_opts=cmd_opts)
    config.set_main_option("script_location", str(project.migrations))
    config.attributes.update(project=project, configure_logger=False, command="upgrade")
    config.attributes.update(attributes)
    try:
        command.upgrade(config, revision, sql=True)
    finally:
        # A refusal raised while Alembic runs leaves `op` bound (see the test above).
        from alembic import op

        if op._proxy is not None:
            op._proxy._remove_proxy()
    running = [line for line in output.getvalue().splitlines() if line.startswith("-- Running")]
    return [line.rsplit(" ", 1)[-1] for line in running]


def test_offline_every_pre_revision_comes_first(tmp_path: Path) -> None:
    assert phased_sql(tmp_path) == ["a1", "a2", "p1"]


def test_offline_one_phase_alone_from_the_api_or_alembics_x_argument(tmp_path: Path) -> None:
    assert phased_sql(tmp_path / "api", phase="pre") == ["a1", "a2"]
    given = SimpleNamespace(x=["other=a=b", "phase=pre", "flag"], cmd=None)
    assert phased_sql(tmp_path / "x", cmd_opts=given) == ["a1", "a2"]
    from alembic.util import CommandError

    with pytest.raises(CommandError, match=r"^phase='pre=now' is not a phase"):
        phased_sql(tmp_path / "eq", cmd_opts=SimpleNamespace(x=["phase=pre=now"], cmd=None))


def test_offline_a_revision_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    from alembic.util import CommandError

    PHASED["b9"] = ("a2", None, None, "    op.execute(")  # does not compile
    try:
        with pytest.raises(CommandError) as refused:
            phased_sql(tmp_path)
    finally:
        del PHASED["b9"]
    # Alembic reads every file first: the run stops there, before any SQL, naming the file.
    message = str(refused.value)
    assert message.startswith("a revision cannot be rendered as SQL offline: SyntaxError: ")
    assert "(b9.py, line 12)" in message


def test_offline_the_post_phase_alone_is_refused_while_pre_revisions_are_missing(
    tmp_path: Path,
) -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError, match=r"^phase=post: the pre revision\(s\) a1, a2 are not"):
        phased_sql(tmp_path, phase="post")


def test_a_phase_with_a_revision_or_another_command_is_refused(tmp_path: Path) -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError, match=r"^phase=pre upgrades to that phase's head"):
        phased_sql(tmp_path / "rev", "a1", phase="pre")
    with pytest.raises(CommandError, match=r"^phase=post applies to an upgrade, not to downgrade$"):
        environment(tmp_path / "down", {"command": "downgrade", "phase": "post"})
    with pytest.raises(CommandError, match=r"^phase='soon' is not a phase"):
        environment(tmp_path / "bad", {"command": "upgrade", "phase": "soon"})


def test_a_history_without_phases_runs_alembics_own_upgrade(tmp_path: Path) -> None:
    env = environment(tmp_path, {"command": "upgrade"})
    assert env.phase is None and env.upgrade_fn is None  # no options of a running command


def test_make_migration_passes_renames_as_an_x_argument(tmp_path: Path) -> None:
    """`make migration renames=...` runs `alembic -x renames=... revision --autogenerate`."""
    given = SimpleNamespace(x=["renames=item.a=b"], cmd=None)
    env = environment(tmp_path, {"command": "revision"}, cmd_opts=given)
    assert env.renames == "item.a=b"
    assert environment(tmp_path / "none", {"command": "revision"}).renames is None
