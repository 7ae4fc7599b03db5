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

from alembic_steady.runner.alembic_internals import (
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
