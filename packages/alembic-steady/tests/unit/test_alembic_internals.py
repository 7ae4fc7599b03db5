"""runner/alembic_internals.py: every use of Alembic's internals, checked against the installed
Alembic (its command functions, run offline on a tiny chain) and with fakes."""

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from support import LINEAR, write_revisions

from alembic_steady.runner import alembic_internals
from alembic_steady.runner.alembic_internals import (
    Inspected,
    OneRevisionAtATime,
    Stepwise,
    heads_known,
    hook_statements,
    in_callers_transaction,
    runs_one_revision_at_a_time,
    wraps_alembic_command,
)
from alembic_steady.runner.progress import Progress

# env.py of the chain: records the `fn` Alembic's command handed it, runs nothing.
ENV_PY = """
from alembic import context

context.configure(dialect_name="postgresql")
context.config.attributes["fn"] = context.get_context().opts.get("fn")
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "env.py").write_text(ENV_PY, encoding="utf-8")
    write_revisions(tmp_path / "versions", LINEAR)
    # Its own stream: Alembic's default, sys.stdout as it was when alembic was first imported,
    # may be a capture an earlier pytest session in this process has closed (mutmut's runs).
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(tmp_path))
    return config


def fn_of(config: Config, run: Callable[[], None]) -> Any:
    """The `fn` an Alembic command passes to env.py."""
    config.attributes.pop("fn", None)
    run()
    return config.attributes["fn"]


# -- wraps_alembic_command -----------------------------------------------------------------


def test_alembics_upgrade_and_downgrade_fns_are_recognised(config: Config) -> None:
    assert wraps_alembic_command(fn_of(config, lambda: command.upgrade(config, "head")))
    assert wraps_alembic_command(fn_of(config, lambda: command.downgrade(config, "base")))


@pytest.mark.parametrize(
    "run",
    [
        lambda config: command.stamp(config, "head"),
        lambda config: command.current(config),
        lambda config: command.check(config),
    ],
)
def test_alembics_other_fns_are_not(config: Config, run: Callable[[Config], None]) -> None:
    fn = fn_of(config, lambda: run(config))
    assert not wraps_alembic_command(fn)


def upgrade(heads: tuple[str, ...], context: object) -> list[object]:
    return []


def test_a_callers_own_fn_is_not_even_when_named_like_alembics() -> None:
    assert not wraps_alembic_command(upgrade)  # a test walk's function, say
    assert not wraps_alembic_command(None)


def test_a_fn_of_alembic_command_named_otherwise_is_not() -> None:
    def stamp(heads: tuple[str, ...], context: object) -> list[object]:
        return []

    stamp.__module__ = "alembic.command"
    assert not wraps_alembic_command(stamp)
    upgrade_like = SimpleNamespace(__module__="alembic.command", __name__="upgrade")
    assert wraps_alembic_command(upgrade_like)


# -- OneRevisionAtATime --------------------------------------------------------------------


def step(revision: str, doc: str) -> SimpleNamespace:
    """An upgrade step to `revision`."""
    return SimpleNamespace(
        revision=SimpleNamespace(revision=revision, doc=doc), to_revisions=(revision,)
    )


class RecordingFn:
    """Alembic's `fn` stand-in: the steps from the heads it is first asked with."""

    def __init__(self, *steps: SimpleNamespace) -> None:
        self.steps = list(steps)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, heads: tuple[str, ...], context: object) -> Iterator[SimpleNamespace]:
        self.calls.append(heads)
        return iter(self.steps)


def test_each_call_offers_one_step_and_starts_it_in_the_progress() -> None:
    fn = RecordingFn(step("a1", "create item"), step("b2", "add price"))
    progress = Progress()
    steps = OneRevisionAtATime(fn, progress)

    assert steps.inspected is None  # Alembic's own steps: nothing to inspect
    assert list(steps((), None)) == [fn.steps[0]]
    assert steps.offered is fn.steps[0]
    assert (progress.at, progress.revision, progress.to) == ((), "a1 (create item)", ("a1",))

    assert list(steps(("a1",), None)) == [fn.steps[1]]
    assert (progress.at, progress.revision) == (("a1",), "b2 (add price)")

    assert list(steps(("b2",), None)) == []
    assert steps.offered is None


def test_a_step_is_done_only_once_the_generator_resumes() -> None:
    # A failed attempt never resumes the generator: its step stays first in line.
    fn = RecordingFn(step("a1", "create item"), step("b2", "add price"))
    steps = OneRevisionAtATime(fn, Progress())
    failed = steps((), None)
    assert next(failed) is fn.steps[0]
    failed.close()
    retried = steps((), None)
    assert next(retried) is fn.steps[0]
    assert list(retried) == []  # resumed: the step committed
    assert next(steps(("a1",), None)) is fn.steps[1]


def test_the_steps_are_computed_once_from_the_first_heads() -> None:
    # `upgrade +2` means two from where the run started, not two from each revision.
    fn = RecordingFn(step("a1", "x"), step("b2", "y"))
    steps = OneRevisionAtATime(fn, Progress())
    for heads in ((), ("a1",), ("b2",)):
        list(steps(heads, None))
    assert fn.calls == [()]


def test_nothing_to_do_offers_nothing_and_starts_nothing() -> None:
    progress = Progress(at=("c",))
    steps = OneRevisionAtATime(RecordingFn(), progress)
    assert list(steps(("c",), None)) == []
    assert steps.offered is None
    assert progress == Progress(at=("c",))


def test_with_alembics_own_upgrade_fn(config: Config) -> None:
    fn = fn_of(config, lambda: command.upgrade(config, "head"))
    progress = Progress()
    steps = OneRevisionAtATime(fn, progress)
    offered = []
    heads: tuple[str, ...] = ()
    while True:
        batch = list(steps(heads, None))
        if not batch:
            break
        [revision_step] = batch
        offered.append(progress.revision)
        heads = (revision_step.revision.revision,)
    assert offered == ["a (step a)", "b (step b)", "c (step c)"]


def test_a_callers_stepwise_steps_are_asked_for_one_at_a_time(config: Config) -> None:
    # The test walk's steps: the runner applies them as it applies Alembic's, and asks for the
    # next only once the one before has committed (the walk checks the database in between);
    # a retried step is offered again without asking.
    asked: list[str] = []
    a1, b2 = step("a1", "create item"), step("b2", "add price")

    def walk(heads: tuple[str, ...], context: object) -> Iterator[Any]:
        for offered in (a1, b2):
            asked.append(offered.revision.revision)
            yield offered
        asked.append("end")

    stepwise = Stepwise(walk)
    assert runs_one_revision_at_a_time(stepwise)
    assert runs_one_revision_at_a_time(fn_of(config, lambda: command.upgrade(config, "head")))
    assert not runs_one_revision_at_a_time(upgrade)  # a plain fn runs as given
    steps = OneRevisionAtATime(stepwise, Progress())
    context = SimpleNamespace(connection=None)
    failed = steps((), context)
    assert next(failed) is a1 and asked == ["a1"]
    failed.close()  # a failed attempt: a1 stays first in line, nothing more is asked
    assert list(steps((), context)) == [a1] and asked == ["a1"]
    assert list(steps(("a1",), context)) == [b2] and asked == ["a1", "b2"]
    assert list(steps(("b2",), context)) == [] and steps.offered is None
    assert asked == ["a1", "b2", "end"]
    # Where the runner does not step (a caller's transaction), the steps run as given.
    assert list(stepwise((), context)) == [a1, b2]


def test_an_inspected_step_is_offered_as_its_step_and_named_to_the_runner() -> None:
    # The runner hands Alembic the step itself, and keeps the Inspected to look and maybe roll
    # back inside the step's transaction; `offering` marks each hand-over (where the runner
    # starts counting the step's commits).
    a1, b2 = step("a1", "create item"), step("b2", "add price")
    inspected = Inspected(a1, lambda whole: whole)

    def walk(heads: tuple[str, ...], context: object) -> Iterator[Any]:
        yield inspected
        yield b2

    offered: list[str] = []
    progress = Progress()
    steps = OneRevisionAtATime(
        Stepwise(walk), progress, lambda: offered.append(str(progress.revision))
    )
    context = SimpleNamespace(connection=None)
    assert list(steps((), context)) == [a1]
    assert steps.offered is a1 and steps.inspected is inspected
    assert list(steps(("a1",), context)) == [b2]
    assert steps.offered is b2 and steps.inspected is None
    assert offered == ["a1 (create item)", "b2 (add price)"]


def test_where_the_runner_does_not_step_an_inspected_step_is_looked_at_and_kept() -> None:
    # Inside a caller's transaction the steps run as given: each looked at once applied (when
    # Alembic asks for the next), told it is not whole, and never rolled back.
    a1, b2 = step("a1", "create item"), step("b2", "add price")
    told: list[bool] = []
    inspected = Inspected(a1, lambda whole: told.append(whole) or True)

    def walk(heads: tuple[str, ...], context: object) -> Iterator[Any]:
        yield inspected
        yield b2

    given = iter(Stepwise(walk)((), SimpleNamespace(connection=None)))
    assert next(given) is a1 and told == []
    assert next(given) is b2 and told == [False]
    assert not inspected.rolled_back


# -- hook_statements -----------------------------------------------------------------------


def test_every_op_statement_passes_the_hook_as_sql() -> None:
    output = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": output}
    )
    seen: list[str] = []

    def hook(connection: object, sql: str, run: Callable[[], Any]) -> Any:
        seen.append(sql)
        return run() if "SELECT" in sql else None

    hook_statements(context, hook)
    operations = Operations(context)
    operations.execute("SELECT 1")
    operations.add_column("item", sa.Column("price", sa.Integer()))
    assert seen == ["SELECT 1", "ALTER TABLE item ADD COLUMN price INTEGER"]
    # What the hook ran was run; what it held back was not.
    assert "SELECT 1;" in output.getvalue()
    assert "ALTER TABLE" not in output.getvalue()


# -- in_callers_transaction ----------------------------------------------------------------


def test_alembics_context_has_the_transaction_attribute_read() -> None:
    context = MigrationContext.configure(dialect_name="postgresql", opts={"as_sql": True})
    assert hasattr(context, "_transaction")
    assert in_callers_transaction(context)  # none begun by Alembic


def test_a_transaction_alembic_began_is_not_the_callers() -> None:
    assert not in_callers_transaction(SimpleNamespace(_transaction=object()))
    assert not in_callers_transaction(SimpleNamespace())


# -- heads_known -------------------------------------------------------------------------


def test_a_context_told_its_heads_starts_from_them_once_then_reads_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run_migrations() of the installed Alembic reads the heads through these two methods.
    assert callable(getattr(MigrationContext, "_has_version_table", None))
    monkeypatch.setattr(MigrationContext, "get_current_heads", lambda self: ("read",))
    context = MigrationContext.configure(dialect_name="postgresql")
    heads_known(context, ("a1",))
    assert context._has_version_table() is True
    assert context.get_current_heads() == ("a1",)
    assert context.get_current_heads() == ("read",)  # a later read goes to the table


# -- what each wrapper hands on ------------------------------------------------------------


def test_an_object_of_alembic_command_without_a_name_is_not_its_upgrade() -> None:
    assert not wraps_alembic_command(SimpleNamespace(__module__="alembic.command"))


def test_a_stepwise_walk_is_handed_the_heads_and_the_context() -> None:
    handed: list[tuple[object, object]] = []

    def walk(heads: tuple[str, ...], context: object) -> Iterator[Any]:
        handed.append((heads, context))
        yield step("b2", "add price")

    context = SimpleNamespace(connection=None)
    list(Stepwise(walk)(("a1",), context))
    list(OneRevisionAtATime(Stepwise(walk), Progress())(("a1",), context))
    assert handed == [(("a1",), context), (("a1",), context)]


def test_alembics_fn_is_handed_the_heads_and_the_context() -> None:
    handed: list[object] = []

    def fn(heads: tuple[str, ...], context: object) -> list[Any]:
        handed.append(context)
        return [step("a1", "create item")]

    context = SimpleNamespace(connection=None)
    list(OneRevisionAtATime(fn, Progress())((), context))
    assert handed == [context]


def test_nothing_is_offered_before_the_first_run() -> None:
    assert OneRevisionAtATime(RecordingFn(), Progress()).offered is None


class TransactionLog:
    """A connection with a transaction open, recording whether it was committed."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def in_transaction(self) -> bool:
        return True

    def commit(self) -> None:
        self.log.append("commit")


def test_what_a_walk_ran_before_its_step_commits_before_the_step_runs() -> None:
    connection = TransactionLog()

    def walk(heads: tuple[str, ...], context: object) -> Iterator[Any]:
        connection.log.append("walk checks")
        yield step("a1", "create item")

    steps = OneRevisionAtATime(Stepwise(walk), Progress())
    offered = steps((), SimpleNamespace(connection=connection))
    next(offered)
    assert connection.log == ["walk checks", "commit"]


def test_the_hook_gets_the_connection_and_runs_the_statement_with_its_arguments() -> None:
    ran: list[tuple[object, tuple[object, ...], dict[str, object]]] = []
    connection = object()

    def _exec(construct: object, *args: object, **kwargs: object) -> str:
        ran.append((construct, args, kwargs))
        return "result"

    impl = SimpleNamespace(_exec=_exec, dialect=None, connection=connection)
    handed: list[object] = []

    def hook(on: object, sql: str, run: Callable[[], Any]) -> Any:
        handed.append(on)
        return run()

    hook_statements(SimpleNamespace(impl=impl), hook)
    assert impl._exec("SELECT 1", {"a": 1}, execution_options={"x": 2}) == "result"
    assert handed == [connection]
    assert ran == [("SELECT 1", ({"a": 1},), {"execution_options": {"x": 2}})]


def test_a_construct_is_compiled_for_the_migrations_dialect() -> None:
    # The hook (and the dialect's statement checks) read the SQL PostgreSQL will run.
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": io.StringIO()}
    )
    seen: list[str] = []
    hook_statements(context, lambda connection, sql, run: seen.append(sql))
    Operations(context).execute(sa.table("item", sa.column("price")).update().values(price=1))
    assert seen == ["UPDATE item SET price=%(price)s"]


def test_a_context_without_the_version_table_check_is_told_its_heads() -> None:
    # An Alembic without `_has_version_table`: the heads are still known, nothing is patched.
    context = SimpleNamespace(get_current_heads=lambda: ("read",))
    heads_known(context, ("a1",))
    assert context.get_current_heads() == ("a1",)
    assert not hasattr(context, "_has_version_table")


def test_the_commands_options_are_read_from_the_proxy_module_or_the_context_itself() -> None:
    context = SimpleNamespace(context_opts={"fn": "its fn", "destination_rev": "heads"})
    module = SimpleNamespace(_proxy=context)  # `alembic.context`, as env.py passes it
    assert alembic_internals.environment_options(module) == context.context_opts
    assert alembic_internals.environment_options(context) == context.context_opts
    assert alembic_internals.environment_options(SimpleNamespace()) == {}


def test_a_revision_rolled_back_from_inside_leaves_alembic_nothing_to_commit() -> None:
    from alembic_steady.runner.alembic_internals import roll_back_revision

    done: list[str] = []
    transaction = SimpleNamespace(rollback=lambda: done.append("rollback"))
    context: Any = SimpleNamespace(_transaction=transaction)
    roll_back_revision(context)
    assert done == ["rollback"] and context._transaction is None
    with pytest.raises(AssertionError) as refused:
        roll_back_revision(context)
    assert str(refused.value) == "only inside a revision's own transaction"
