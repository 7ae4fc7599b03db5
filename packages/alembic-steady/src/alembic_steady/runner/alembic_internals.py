"""Every use of Alembic's internals, in one place, so an Alembic release that changes them breaks
this module (and its tests) rather than the runner at large.

- `impl._exec`: where every `op.*` operation and `op.execute()` land; Alembic offers no public
  hook around one statement (statements run on `op.get_bind()` directly bypass it).
- `alembic.command`'s own upgrade/downgrade `fn`, recognised by its module, and applied one
  revision per `run_migrations()` by resuming the steps it yields; `ScriptDirectory._upgrade_revs`,
  the steps of Alembic's upgrade, which the deploy phases choose from and order.
- `MigrationContext._has_version_table` and `get_current_heads`: once a revision of the run is
  applied, the version table exists (Alembic never drops it) and holds the heads that revision
  wrote, so the next run_migrations() starts from them without the two round trips.
- `ScriptDirectory._load_revisions`: every revision file, also the second of two with one id
  (Alembic's map keeps one and warns), so the history check can name both files.
- `write_hooks._run_hooks`: the project's post-write hooks, which Alembic runs only inside
  `alembic revision`, on the baseline `make squash` writes.
- `alembic.context._proxy`: the running EnvironmentContext behind the `context` module env.py
  passes, whose options hold the command's `fn` and destination before `configure()`.
- `MigrationContext._transaction`: None while a revision runs in a transaction Alembic did not
  begin (a caller's), where `autocommit_block()` cannot commit; otherwise the revision's own
  transaction, which `roll_back_revision` rolls back from inside it.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory, write_hooks
from sqlalchemy import Connection

from .progress import Progress

# Called with the connection (None offline), the statement's SQL, and a function running it.
StatementHook = Callable[[Connection | None, str, Callable[[], Any]], Any]


def hook_statements(context: MigrationContext, hook: StatementHook) -> None:
    """Route every statement a revision runs through `op` past `hook`."""
    impl = context.impl
    run = impl._exec

    def _exec(construct: Any, *args: Any, **kwargs: Any) -> Any:
        compiled = (
            construct if isinstance(construct, str) else construct.compile(dialect=impl.dialect)
        )
        return hook(impl.connection, str(compiled), lambda: run(construct, *args, **kwargs))

    setattr(impl, "_exec", _exec)  # noqa: B010  (mypy refuses assigning to a method)


def wraps_alembic_command(fn: object) -> TypeGuard[Callable[..., Iterable[RevisionStep]]]:
    """Alembic's own upgrade/downgrade `fn`, which may be applied a revision at a time; a
    caller's own `fn` (a test walk, say) runs untouched."""
    return getattr(fn, "__module__", None) == "alembic.command" and getattr(
        fn, "__name__", None
    ) in ("upgrade", "downgrade")


@dataclass(frozen=True)
class Stepwise:
    """A caller's steps (the test walk's), applied as `make migrate` applies Alembic's: one
    revision per run_migrations(), each in its own transaction, retried, its statements hooked.

    `steps(heads, context)` yields the steps one at a time and may run checks on
    `context.connection` between them: the next step is asked for only once the one before has
    committed. With `fresh_contexts`, every step runs in a migration context of its own, as a
    separate `make migrate` or `make rollback` would (nothing one step's operations remember,
    such as the enum types a create_table made, carries into the next).
    """

    steps: Callable[[tuple[str, ...], MigrationContext], Iterable["RevisionStep | Inspected"]]
    fresh_contexts: bool = False

    def __call__(self, heads: tuple[str, ...], context: MigrationContext) -> Iterator[RevisionStep]:
        """Run as given where the runner does not step (inside a caller's transaction): an
        `Inspected` step is looked at once applied, and never rolled back (the caller's
        transaction holds the steps before it)."""
        for item in self.steps(heads, context):
            if isinstance(item, Inspected):
                yield item.step
                item.look(False)
            else:
                yield item


@dataclass
class Inspected:
    """A step a `Stepwise` yields to look at the database inside the step's own transaction,
    once the step is applied (its version row written) and before the transaction ends.

    `look(whole)` is told whether that transaction holds the whole step: False where part of it
    committed before its end (an autocommit_block(), a commit of its own, DDL on a server
    without transactional DDL). It returns True to have the step rolled back instead of
    committed, which the runner does only where the step is whole: the database is then where
    it was before the step, and `rolled_back` says so. Everything else runs as `make migrate` or
    `make rollback` runs the step (its statements hooked, retried on lock timeouts).
    """

    step: RevisionStep
    look: Callable[[bool], bool]
    rolled_back: bool = False


@dataclass(frozen=True)
class ChosenSteps:
    """Alembic's upgrade steps as the runner chose and ordered them (the deploy phases): applied
    as Alembic's own are, one revision per run_migrations()."""

    steps: Callable[[tuple[str, ...], MigrationContext], Iterable[RevisionStep]]

    def __call__(self, heads: tuple[str, ...], context: MigrationContext) -> Iterable[RevisionStep]:
        return self.steps(heads, context)


def upgrade_steps(script: ScriptDirectory, heads: tuple[str, ...]) -> list[RevisionStep]:
    """The steps `alembic upgrade heads` takes from `heads`, in Alembic's order."""
    return script._upgrade_revs("heads", heads)  # type: ignore[arg-type]


def runs_one_revision_at_a_time(fn: object) -> bool:
    """Alembic's own upgrade/downgrade, the runner's `ChosenSteps`, or a caller's `Stepwise`."""
    return isinstance(fn, Stepwise | ChosenSteps) or wraps_alembic_command(fn)


class OneRevisionAtATime:
    """Wraps Alembic's upgrade/downgrade `fn` (or a caller's `Stepwise`) so each
    run_migrations() applies one revision.

    Alembic's whole list of steps is computed once, from the heads at the start, so relative
    targets (+1, -2) keep their meaning; a `Stepwise`'s are asked for one at a time. A failed
    attempt leaves its step first in line.
    """

    def __init__(
        self,
        fn: Callable[..., Iterable[RevisionStep]] | Stepwise,
        progress: Progress,
        offering: Callable[[], None] | None = None,
    ) -> None:
        self._fn, self._progress = fn, progress
        # Called as each step is handed to Alembic, which begins its transaction next.
        self._offering = offering
        self._pending: list[RevisionStep | Inspected] | None = None
        self._source: Iterator[RevisionStep | Inspected] | None = None
        self.offered: RevisionStep | None = None
        self.inspected: Inspected | None = None  # the offered step, where it is inspected

    def __call__(self, heads: tuple[str, ...], context: MigrationContext) -> Iterator[Any]:
        if self._pending is None:
            if isinstance(self._fn, Stepwise):
                self._pending, self._source = [], iter(self._fn.steps(heads, context))
            else:
                self._pending = list(self._fn(heads, context))
        if not self._pending and self._source is not None:
            step = next(self._source, None)
            if step is not None:
                self._pending.append(step)
            connection = context.connection
            if connection is not None and connection.in_transaction():
                # What the caller ran before the step commits apart: the revision's own
                # transaction holds the revision alone, as in `make migrate`.
                connection.commit()
        first = self._pending[0] if self._pending else None
        self.inspected = first if isinstance(first, Inspected) else None
        self.offered = first.step if isinstance(first, Inspected) else first
        if self.offered is not None:
            script = self.offered.revision
            self._progress.start(
                tuple(heads),
                f"{script.revision} ({script.doc})",
                tuple(self.offered.to_revisions),
            )
            if self._offering is not None:
                self._offering()
            yield self.offered
            self._pending.pop(0)  # reached only once the step's transaction has committed


def roll_back_revision(context: MigrationContext) -> None:
    """Roll back the transaction Alembic runs the current revision in, from inside it (an
    on_version_apply callback): the revision's run then ends without committing anything."""
    transaction = context._transaction
    assert transaction is not None, "only inside a revision's own transaction"
    transaction.rollback()
    context._transaction = None  # what Alembic's own commit leaves: its exit does nothing more


def heads_known(context: MigrationContext, heads: tuple[str, ...]) -> None:
    """Tell `context` its version table exists and holds `heads` (what the run's last revision
    wrote, under the migration lock): the next run_migrations() starts from them without looking
    the table up or reading it. Once only: any later read goes to the table."""
    if callable(getattr(context, "_has_version_table", None)):
        setattr(context, "_has_version_table", lambda: True)  # noqa: B010
    read = context.get_current_heads

    def known() -> tuple[str, ...]:
        setattr(context, "get_current_heads", read)  # noqa: B010
        return heads

    setattr(context, "get_current_heads", known)  # noqa: B010


def environment_options(context: Any) -> dict[str, Any]:
    """The options the command gave the running EnvironmentContext (`fn`, `destination_rev`);
    `context` is the `alembic.context` module or an EnvironmentContext."""
    environment = getattr(context, "_proxy", context)
    return dict(getattr(environment, "context_opts", {}))


def in_callers_transaction(context: MigrationContext) -> bool:
    """True while revisions run inside a transaction the caller began, not Alembic."""
    return getattr(context, "_transaction", 1) is None


def revision_files(script: ScriptDirectory) -> list[Script]:
    """Every revision file of `script`'s folders, two with one id included."""
    return list(script._load_revisions())


def run_write_hooks(script: ScriptDirectory, path: Path) -> None:
    """The project's post-write hooks (alembic.ini's `[post_write_hooks]`) on a revision file
    written by other means than `alembic revision`: Alembic runs them only inside it."""
    if script.hooks:
        write_hooks._run_hooks(path, script.hooks)
