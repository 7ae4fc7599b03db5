"""Refusals before anything runs: production guards and revision sanity checks (whether the
target is writable is the dialect's to ask)."""

import os
from collections.abc import Callable, Iterable

from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from ..project import Commands, MigrationSettings
from .phases import PHASES, Phases
from .progress import named


def command_name(config: Config) -> str | None:
    """The Alembic command being run (`upgrade`, `check`, ...), or None when unknown."""
    if "command" in config.attributes:
        return str(config.attributes["command"])
    cmd = getattr(config.cmd_opts, "cmd", None)
    return cmd[0].__name__ if cmd else None


def refuse_in_production(
    command: str | None, settings: MigrationSettings, commands: Commands
) -> None:
    """Rollbacks and stamps in production need CONFIRM=yes, so nobody loses data by a typo."""
    if settings.environment != "production" or command not in ("downgrade", "stamp"):
        return
    if os.environ.get("CONFIRM") != "yes":
        raise CommandError(
            f"Refusing to {command} in production: it can lose data or hide unapplied migrations. "
            f"Take a backup ({commands.backup}), then run again with CONFIRM=yes."
        )


def require_known_revisions(current: tuple[str, ...], script: ScriptDirectory) -> None:
    """A version row that no revision file defines (a deleted file, a branch not pulled)."""
    unknown = [rev for rev in current if not _defined(script, rev)]
    if unknown:
        refused = squashed_into(script, unknown[0])
        if refused is not None:
            raise CommandError(refused)
        raise CommandError(
            f"The database is at {', '.join(unknown)}, which no revision file here defines. "
            "After switching git branches, that is the other branch's revision: switch back, "
            "roll it back there, then return. Otherwise pull or restore that revision file, or "
            "reset the record with `alembic stamp --purge <known revision>`."
        )


# The module attributes of a baseline `make squash` wrote (tools/squash.py): the revisions it
# folded in, the release that still has their files, and the replaced file's code fingerprint.
SQUASHED_REVISIONS = "squashed_revisions"
SQUASHED_RELEASE = "squashed_release"
SQUASHED_CODE = "squashed_code_sha256"


def folded(revision: Script) -> tuple[str, ...]:
    """The revisions a baseline of `make squash` folded in; none for any other revision."""
    return tuple(getattr(revision.module, SQUASHED_REVISIONS, ()))


def squashed_into(script: ScriptDirectory, revision: str) -> str | None:
    """Why a database at `revision`, which `make squash` folded into a baseline, cannot be
    upgraded by this release (and which release can); None when no baseline names it."""
    for baseline in script.walk_revisions():
        if baseline.down_revision is not None:
            continue
        if revision in folded(baseline):
            release = getattr(baseline.module, SQUASHED_RELEASE, "the release before the squash")
            return (
                f"The database is at {revision}, which `make squash` folded into the baseline "
                f"{baseline.revision}: this release cannot upgrade it, and never builds a schema "
                f"in its place. Upgrade it first with a release that still has {revision}'s file "
                f"(the last is {release}), which takes it to {baseline.revision} or later; then "
                "this release upgrades it as before."
            )
    return None


def _defined(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def require_database_at_head(
    current: tuple[str, ...], script: ScriptDirectory, commands: Commands
) -> None:
    """Before comparing models with the database, make sure the comparison means something."""
    history = Phases(script)
    for phase in PHASES:
        if len(heads := history.heads(phase)) > 1:
            raise CommandError(
                f"There is more than one head ({', '.join(heads)}): run `{commands.merge}` first."
            )
    if history.applied(current) != set(history.revisions):
        raise CommandError(
            f"The database is at {named(current)}, behind head "
            f"{', '.join(history.head_rows())}: run `{commands.migrate}` first."
        )


def refuse_upgrade_below_current(
    current: tuple[str, ...], script: ScriptDirectory, destination: object, commands: Commands
) -> None:
    """`alembic upgrade <older revision>` silently does nothing; say how to go down instead."""
    if isinstance(destination, str) and destination.startswith("-"):
        raise CommandError(
            f"rev={destination} would go down, and {commands.migrate} only goes up. To go back, "
            f"run `{commands.rollback_to('steps=' + destination[1:])}` (in production with "
            f"CONFIRM=yes, after {commands.backup})."
        )
    if not current or not isinstance(destination, str | None):
        return
    if destination is None:  # Alembic's name for base
        destination, below = "base", True
    else:
        try:
            target = script.get_revision(destination)
        except Exception:
            return  # relative (+1), symbolic (heads) or unknown: Alembic answers those itself
        if target is None or target.revision in current:
            return
        ancestors = {rev.revision for rev in script.iterate_revisions(current, "base")}
        below = target.revision in ancestors
    if below:
        back = commands.rollback_to(f"rev={destination}")
        raise CommandError(
            f"{destination} is below the database's revision ({', '.join(current)}), and an "
            f"upgrade never goes down. To go back, run `{back}` "
            f"(in production with CONFIRM=yes, after {commands.backup})."
        )


def explain_model_drift(commands: Commands) -> Callable[..., None]:
    """`alembic check`'s hook: model changes no revision has are named, with how to write one."""

    def explain(
        context: MigrationContext, revision: object, directives: Iterable[MigrationScript]
    ) -> None:
        # Imported here: only `check` renders a drift, and upgrades start without the renderer.
        from ..authoring.drift import drift_message

        for script in directives:
            upgrade_ops = script.upgrade_ops
            if upgrade_ops is not None and not upgrade_ops.is_empty():
                raise CommandError(drift_message(upgrade_ops, context, commands))

    return explain


def require_configured_mappers() -> None:
    """Models whose relationships SQLAlchemy cannot resolve (`owner: "User | None"` with no
    User model) match the schema, so a comparison alone passes them and only the app fails:
    configure the mappers, as the app's first query would, and name what is wrong."""
    from sqlalchemy.orm import configure_mappers

    try:
        configure_mappers()
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise CommandError(
            f"The models do not configure ({type(exc).__name__}): {reason} Fix the model it "
            "names (a relationship's target class or its foreign key), then run again."
        ) from None
