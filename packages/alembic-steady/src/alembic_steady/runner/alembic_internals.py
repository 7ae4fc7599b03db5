"""Every use of Alembic's internals, in one place, so an Alembic release that changes them breaks
this module (and its tests) rather than the runner at large.

- `impl._exec`: where every `op.*` operation and `op.execute()` land; Alembic offers no public
  hook around one statement (statements run on `op.get_bind()` directly bypass it).
- `alembic.command`'s own upgrade/downgrade `fn`, recognised by its module, and applied one
  revision per `run_migrations()` by resuming the steps it yields.
- `MigrationContext._transaction`: None while a revision runs in a transaction Alembic did not
  begin (a caller's), where `autocommit_block()` cannot commit.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeGuard

from alembic.runtime.migration import MigrationContext, RevisionStep
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


class OneRevisionAtATime:
    """Wraps Alembic's upgrade/downgrade `fn` so each run_migrations() applies one revision.

    The whole list of steps is computed once, from the heads at the start, so relative targets
    (+1, -2) keep their meaning; a failed attempt leaves its step first in line.
    """

    def __init__(self, fn: Callable[..., Iterable[RevisionStep]], progress: Progress) -> None:
        self._fn, self._progress = fn, progress
        self._pending: list[RevisionStep] | None = None
        self.offered: RevisionStep | None = None

    def __call__(self, heads: tuple[str, ...], context: MigrationContext) -> Iterator[Any]:
        if self._pending is None:
            self._pending = list(self._fn(heads, context))
        self.offered = self._pending[0] if self._pending else None
        if self.offered is not None:
            script = self.offered.revision
            self._progress.start(
                tuple(heads),
                f"{script.revision} ({script.doc})",
                tuple(self.offered.to_revisions),
            )
            yield self.offered
            self._pending.pop(0)  # reached only once the step's transaction has committed


def in_callers_transaction(context: MigrationContext) -> bool:
    """True while revisions run inside a transaction the caller began, not Alembic."""
    return getattr(context, "_transaction", 1) is None
