"""runner/guards.py: the refusals before anything runs, on a real revision chain a -> b -> c."""

from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from support import LINEAR, Settings, make_project, script_directory

from alembic_steady import MAKE
from alembic_steady.runner import guards

MODULE = make_project(package="shop").module_commands


@pytest.fixture
def chain(tmp_path: Path) -> ScriptDirectory:
    return script_directory(tmp_path, LINEAR)


@pytest.fixture
def forked(tmp_path: Path) -> ScriptDirectory:
    """a -> b, a -> x: two heads."""
    return script_directory(tmp_path, (("a", None), ("b", "a"), ("x", "a")))


# -- require_known_revisions ---------------------------------------------------------------


@pytest.mark.parametrize("current", [(), ("a",), ("c",)])
def test_known_revisions_pass(chain: ScriptDirectory, current: tuple[str, ...]) -> None:
    guards.require_known_revisions(current, chain)


def test_a_version_row_no_file_defines_is_named(chain: ScriptDirectory) -> None:
    with pytest.raises(CommandError) as raised:
        guards.require_known_revisions(("b", "dead01", "dead02"), chain)
    assert str(raised.value) == (
        "The database is at dead01, dead02, which no revision file here defines. After "
        "switching git branches, that is the other branch's revision: switch back, roll it back "
        "there, then return. Otherwise pull or restore that revision file, or reset the record "
        "with `alembic stamp --purge <known revision>`."
    )


# -- require_database_at_head --------------------------------------------------------------


def test_at_head_passes(chain: ScriptDirectory) -> None:
    guards.require_database_at_head(("c",), chain, MAKE)


@pytest.mark.parametrize(("current", "at"), [((), "base"), (("a",), "a"), (("b",), "b")])
def test_behind_head_names_the_migrate_command(
    chain: ScriptDirectory, current: tuple[str, ...], at: str
) -> None:
    with pytest.raises(CommandError) as raised:
        guards.require_database_at_head(current, chain, MODULE)
    assert str(raised.value) == (
        f"The database is at {at}, behind head c: run `python -m shop.migrations upgrade` first."
    )


def test_more_than_one_head_names_the_merge_command(forked: ScriptDirectory) -> None:
    with pytest.raises(CommandError) as raised:
        guards.require_database_at_head(("b", "x"), forked, MAKE)
    assert str(raised.value) == "There is more than one head (b, x): run `make merge` first."


# -- refuse_upgrade_below_current ----------------------------------------------------------


def test_a_negative_relative_upgrade_is_sent_to_rollback_steps(chain: ScriptDirectory) -> None:
    with pytest.raises(CommandError) as raised:
        guards.refuse_upgrade_below_current(("c",), chain, "-1", MAKE)
    assert str(raised.value) == (
        "rev=-1 would go down, and make migrate only goes up. To go back, run "
        "`make rollback steps=1` (in production with CONFIRM=yes, after make backup)."
    )


@pytest.mark.parametrize("ancestor", ["a", "b"])
def test_an_upgrade_to_an_ancestor_is_sent_to_rollback_rev(
    chain: ScriptDirectory, ancestor: str
) -> None:
    with pytest.raises(CommandError) as raised:
        guards.refuse_upgrade_below_current(("c",), chain, ancestor, MAKE)
    assert str(raised.value) == (
        f"{ancestor} is below the database's revision (c), and an upgrade never goes down. To "
        f"go back, run `make rollback rev={ancestor}` (in production with CONFIRM=yes, after "
        "make backup)."
    )


def test_an_upgrade_to_base_is_sent_to_rollback_rev_base(chain: ScriptDirectory) -> None:
    # Alembic's get_revision_argument() turns "base" into None.
    with pytest.raises(CommandError, match=r"run `make rollback rev=base`"):
        guards.refuse_upgrade_below_current(("b",), chain, None, MAKE)


@pytest.mark.parametrize("destination", ["+1", "c", "head", "heads", "b", "zzz", ("c",)])
def test_upgrades_that_go_up_or_that_alembic_answers_pass(
    chain: ScriptDirectory, destination: object
) -> None:
    guards.refuse_upgrade_below_current(("b",), chain, destination, MAKE)


@pytest.mark.parametrize("destination", ["a", None, "c"])
def test_any_upgrade_from_base_passes(chain: ScriptDirectory, destination: str | None) -> None:
    guards.refuse_upgrade_below_current((), chain, destination, MAKE)


def test_a_revision_on_another_branch_is_not_below(forked: ScriptDirectory) -> None:
    guards.refuse_upgrade_below_current(("b",), forked, "x", MAKE)


# -- refuse_in_production ------------------------------------------------------------------

PRODUCTION = Settings(environment="production")


@pytest.fixture
def no_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFIRM", raising=False)


@pytest.mark.usefixtures("no_confirm")
@pytest.mark.parametrize("name", ["downgrade", "stamp"])
def test_rollbacks_and_stamps_in_production_need_confirm(name: str) -> None:
    with pytest.raises(CommandError) as raised:
        guards.refuse_in_production(name, PRODUCTION, MAKE)
    assert str(raised.value) == (
        f"Refusing to {name} in production: it can lose data or hide unapplied migrations. "
        "Take a backup (make backup), then run again with CONFIRM=yes."
    )


@pytest.mark.parametrize("name", ["downgrade", "stamp"])
def test_confirm_yes_lets_them_through(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("CONFIRM", "yes")
    guards.refuse_in_production(name, PRODUCTION, MAKE)


@pytest.mark.parametrize("answer", ["", "y", "YES", "true", "1"])
def test_only_confirm_yes_counts(monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setenv("CONFIRM", answer)
    with pytest.raises(CommandError):
        guards.refuse_in_production("downgrade", PRODUCTION, MAKE)


@pytest.mark.usefixtures("no_confirm")
@pytest.mark.parametrize("name", ["upgrade", "current", "check", "revision", None])
def test_other_commands_run_in_production(name: str | None) -> None:
    guards.refuse_in_production(name, PRODUCTION, MAKE)


@pytest.mark.usefixtures("no_confirm")
@pytest.mark.parametrize("environment", ["development", "test", "staging"])
def test_rollbacks_run_unconfirmed_outside_production(environment: str) -> None:
    guards.refuse_in_production("downgrade", replace(PRODUCTION, environment=environment), MAKE)


# -- explain_model_drift -------------------------------------------------------------------


def drift(*upgrade: ops.MigrateOperation) -> ops.MigrationScript:
    return ops.MigrationScript("rev", ops.UpgradeOps(ops=list(upgrade)), ops.DowngradeOps(ops=[]))


def test_model_drift_is_shown_as_the_upgrade_a_revision_needs() -> None:
    # Not Alembic's list of Table(...) reprs: the code to write, as autogenerate would.
    explain = guards.explain_model_drift(MAKE)
    script = drift(ops.AddColumnOp("item", sa.Column("price", sa.Integer())))
    with pytest.raises(CommandError) as raised:
        explain(MigrationContext.configure(dialect_name="postgresql"), None, [script])
    assert str(raised.value) == (
        "The models differ from the migrations: write a revision for the change with "
        'make migration msg="...". Its upgrade() would be:\n'
        "    op.add_column('item', sa.Column('price', sa.Integer(), nullable=True))"
    )


def test_no_drift_passes() -> None:
    guards.explain_model_drift(MAKE)(None, None, [drift()])


# -- command_name --------------------------------------------------------------------------


def test_command_name_from_the_attributes_a_caller_set() -> None:
    config = Config()
    config.attributes["command"] = "upgrade"
    assert guards.command_name(config) == "upgrade"


@pytest.mark.parametrize("fn", [command.upgrade, command.downgrade, command.check, command.stamp])
def test_command_name_from_the_command_line(fn: object) -> None:
    config = Config(cmd_opts=Namespace(cmd=(fn, ["revision"], [])))
    assert guards.command_name(config) == fn.__name__


def test_the_attributes_win_over_the_command_line() -> None:
    config = Config(cmd_opts=Namespace(cmd=(command.upgrade, [], [])))
    config.attributes["command"] = "check"
    assert guards.command_name(config) == "check"


@pytest.mark.parametrize("cmd_opts", [None, Namespace(), Namespace(cmd=None)])
def test_command_name_is_none_when_unknown(cmd_opts: Namespace | None) -> None:
    assert guards.command_name(Config(cmd_opts=cmd_opts)) is None


# -- more than one current revision --------------------------------------------------------


def test_an_upgrade_below_two_current_heads_names_both(forked: ScriptDirectory) -> None:
    with pytest.raises(CommandError) as raised:
        guards.refuse_upgrade_below_current(("b", "x"), forked, "a", MAKE)
    assert str(raised.value).startswith(
        "a is below the database's revision (b, x), and an upgrade never goes down."
    )


# -- require_configured_mappers ------------------------------------------------------------


def test_models_that_do_not_configure_are_named_with_the_fix() -> None:
    models = sa.orm.registry()

    class Order:
        pass

    table = sa.Table("order_", models.metadata, sa.Column("id", sa.Integer, primary_key=True))
    models.map_imperatively(Order, table, properties={"owner": sa.orm.relationship("Nobody")})
    try:
        with pytest.raises(CommandError) as raised:
            guards.require_configured_mappers()
    finally:
        models.dispose()  # configure_mappers() covers every registry: leave none broken
    message = str(raised.value)
    assert message.startswith("The models do not configure (InvalidRequestError): ")
    assert "expression 'Nobody' failed to locate a name ('Nobody')." in message
    assert message.endswith(
        " Fix the model it names (a relationship's target class or its foreign key), then run "
        "again."
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_models_that_configure_pass() -> None:
    guards.require_configured_mappers()


def test_behind_both_lines_of_deploy_phases_names_both_heads(tmp_path: Path) -> None:
    # a <- b <- c, and the post line p (from base, depending on b): a database at b lacks c and p.
    script = script_directory(tmp_path, LINEAR)
    post = (
        '"""p"""\nrevision = "p"\ndown_revision = None\nbranch_labels = ("post",)\n'
        'depends_on = "b"\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n'
    )
    (tmp_path / "versions" / "p_post.py").write_text(post, encoding="utf-8")
    script = ScriptDirectory(str(tmp_path), version_locations=[str(tmp_path / "versions")])
    with pytest.raises(CommandError) as raised:
        guards.require_database_at_head(("b",), script, MAKE)
    assert str(raised.value) == (
        "The database is at b, behind head c, p: run `make migrate` first."
    )
    guards.require_database_at_head(("c", "p"), script, MAKE)  # both lines at head
