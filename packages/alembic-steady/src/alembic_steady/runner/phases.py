"""Deploy phases: `pre` revisions expand the schema before a release rolls out, `post` revisions
contract it once no instance of the old release is left (docs: "Deploy phases").

Every revision is `pre` unless it is on the `post` line: a second line of revisions in the same
folder, started by the revision labelled `post` (Alembic's `--head=base --branch-label=post`),
each later one following the line's head and depending on the `pre` revision it comes with:

    pre:   a1 -> a2 -> a3 -> a4           (alembic_version holds both heads: a4, p2)
    post:        p1 -------> p2           (p1 depends on a2, p2 on a4)

So `upgrade --phase pre` applies the pre revisions alone (none of them needs a post one), `--phase
post` the post revisions once every pre revision is applied, and a plain upgrade both, every pre
revision first. A history without the label is all `pre`: nothing changes for it.
"""

from collections.abc import Iterable
from typing import TypedDict

from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from ..project import Commands
from . import alembic_internals
from .alembic_internals import ChosenSteps

PRE, POST = "pre", "post"
PHASES = (PRE, POST)
LABEL = POST  # the branch label of the post line's first revision


def _labels(revision: Script) -> tuple[str, ...]:
    labels = getattr(revision.module, "branch_labels", None) or ()
    return (labels,) if isinstance(labels, str) else tuple(labels)


def _down(revision: Script) -> tuple[str, ...]:
    down = revision.down_revision
    return () if down is None else (down,) if isinstance(down, str) else tuple(down)


def _depends(revision: Script) -> tuple[str, ...]:
    depends = revision.dependencies
    return () if not depends else (depends,) if isinstance(depends, str) else tuple(depends)


def post_line(revisions: dict[str, Script]) -> set[str]:
    """The post line of `revisions` (by id): its first revision, labelled `post`, and every
    revision that follows it."""
    children: dict[str, list[str]] = {}
    for revision in revisions.values():
        for down in _down(revision):
            children.setdefault(down, []).append(revision.revision)
    post: set[str] = set()
    todo = [name for name, revision in revisions.items() if LABEL in _labels(revision)]
    while todo:
        name = todo.pop()
        if name not in post:
            post.add(name)
            todo.extend(children.get(name, ()))
    return post


class Phases:
    """The phase of each revision of a script directory."""

    def __init__(self, script: ScriptDirectory) -> None:
        self.script = script
        self.revisions = {revision.revision: revision for revision in script.walk_revisions()}
        self.post = post_line(self.revisions)

    @property
    def used(self) -> bool:
        """True once the history has a post line."""
        return bool(self.post)

    def phase(self, revision: str) -> str:
        return POST if revision in self.post else PRE

    def heads(self, phase: str) -> list[str]:
        """The heads of one phase's revisions (the pre line's: what the code of a release needs)."""
        mine = {r for r in self.revisions if self.phase(r) == phase}
        followed = {down for r in mine for down in _down(self.revisions[r])}
        return sorted(mine - followed)

    def problems(self) -> list[str]:
        """Where the history breaks the phases' rules, each naming the revision and the fix."""
        found = []
        for name, revision in self.revisions.items():
            if LABEL in _labels(revision) and _down(revision):
                found.append(
                    f"{name} starts the post line but follows {', '.join(_down(revision))}: the "
                    "post line starts from base (down_revision = None) and depends on the pre "
                    "revision it comes with (depends_on)"
                )
            needs = [r for r in (*_down(revision), *_depends(revision)) if r in self.post]
            if name not in self.post and needs:
                found.append(
                    f"{name} is a pre revision that follows or depends on the post revision "
                    f"{', '.join(needs)}: the pre phase could not apply it before the rollout. "
                    "Base it on the pre line's head instead"
                )
        return found

    def applied(self, current: Iterable[str]) -> set[str]:
        """Every revision a database at `current` has applied."""
        done: set[str] = set()
        todo = [r for r in current if r in self.revisions]
        while todo:
            name = todo.pop()
            if name not in done:
                done.add(name)
                revision = self.revisions[name]
                todo.extend(
                    r for r in (*_down(revision), *_depends(revision)) if r in self.revisions
                )
        return done

    def head_rows(self) -> tuple[str, ...]:
        """What the version table of a database at every head holds: Alembic's heads, less those
        another head depends on (a post revision's depends_on stands for its pre revision)."""
        heads = self.script.get_heads()
        return tuple(
            sorted(h for h in heads if not any(h in self.applied([o]) for o in heads if o != h))
        )

    def ready(self, current: Iterable[str]) -> bool:
        """True when a database at `current` has every pre revision (what the code needs) and no
        revision this history lacks. Its post revisions may still be pending."""
        current = set(current)
        if not current <= set(self.revisions):
            return False
        return {r for r in self.revisions if r not in self.post} <= self.applied(current)

    def in_deploy_order(self, revisions: list[Script]) -> list[Script]:
        """`revisions` (in an order Alembic may apply them) with every pre revision first, as a
        plain upgrade applies them. No pre revision needs a post one, so the order holds."""
        return [r for r in revisions if r.revision not in self.post] + [
            r for r in revisions if r.revision in self.post
        ]


def upgrade_steps(phases: Phases, phase: str | None, commands: Commands) -> ChosenSteps:
    """Alembic's upgrade to every head of the running migration's scripts (`phases` read from
    them), as `upgrade --phase` applies it: `pre` the pre revisions only, `post` the post ones
    (refused while a pre revision is pending), None both, every pre revision first."""

    def steps(heads: tuple[str, ...], context: MigrationContext) -> list[RevisionStep]:
        assert context.script is not None
        every = alembic_internals.upgrade_steps(context.script, heads)
        pre = [step for step in every if step.revision.revision not in phases.post]
        post = [step for step in every if step.revision.revision in phases.post]
        if phase == PRE:
            return pre
        if phase == POST and pre:
            names = ", ".join(step.revision.revision for step in pre)
            raise CommandError(
                f"phase=post: the pre revision(s) {names} are not applied yet, and the release "
                f"being finished needs them: run {commands.migrate_in(PRE)} first (before the "
                "rollout)"
            )
        return pre + post

    return ChosenSteps(steps)


class Placement(TypedDict, total=False):
    """Where `alembic revision` puts a new revision (its head, branch_label, depends_on)."""

    head: str
    branch_label: list[str]
    depends_on: str | None


def placement(phases: "Phases | None", phase: str, depends_on: str | None = None) -> Placement:
    """Where a new revision of `phase` goes, as `alembic revision` takes it (head, branch_label,
    depends_on): a pre one on the pre line's head; a post one on the post line's head, or from
    base as the line's first (labelled `post`), depending on `depends_on` or else the pre head.
    Empty: Alembic's own default (a history without phases)."""
    pre_heads = phases.heads(PRE) if phases else []
    if phase == PRE:
        return {"head": pre_heads[0]} if phases and phases.used and len(pre_heads) == 1 else {}
    depends_on = depends_on or (pre_heads[0] if len(pre_heads) == 1 else None)
    post_heads = phases.heads(POST) if phases else []
    where = Placement(depends_on=depends_on)
    if post_heads:
        where["head"] = post_heads[0]
    else:
        where["head"], where["branch_label"] = "base", [LABEL]
    return where


def phase_of(value: object) -> str | None:
    """A phase given by a caller (`--phase`, `-x phase=`), checked."""
    if value in (None, ""):
        return None
    if value not in PHASES:
        raise CommandError(
            f"phase={value!r} is not a phase: give pre (before the rollout) or post (after it), "
            "or leave it out for both"
        )
    return str(value)
