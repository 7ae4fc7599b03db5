"""Refusals before anything runs: production guards, revision sanity checks, a writable target."""

import os
from collections.abc import Iterable

from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text

from ..settings import Settings


def command_name(config: Config) -> str | None:
    """The Alembic command being run (`upgrade`, `check`, ...), or None when unknown."""
    if "command" in config.attributes:
        return str(config.attributes["command"])
    cmd = getattr(config.cmd_opts, "cmd", None)
    return cmd[0].__name__ if cmd else None


def refuse_in_production(command: str | None, settings: Settings) -> None:
    """Rollbacks and stamps in production need CONFIRM=yes, so nobody loses data by a typo."""
    if settings.environment != "production" or command not in ("downgrade", "stamp"):
        return
    if os.environ.get("CONFIRM") != "yes":
        raise CommandError(
            f"Refusing to {command} in production: it can lose data or hide unapplied migrations. "
            "Take a backup (make backup), then run again with CONFIRM=yes."
        )


def require_known_revisions(current: tuple[str, ...], script: ScriptDirectory) -> None:
    """A version row that no revision file defines (a deleted file, a branch not pulled)."""
    unknown = [rev for rev in current if not _defined(script, rev)]
    if unknown:
        raise CommandError(
            f"The database is at {', '.join(unknown)}, which no revision file defines: pull or "
            "restore that revision file, or reset the record with "
            "`alembic stamp --purge <known revision>`."
        )


def _defined(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def require_database_at_head(current: tuple[str, ...], script: ScriptDirectory) -> None:
    """Before comparing models with the database, make sure the comparison means something."""
    heads = script.get_heads()
    if len(heads) > 1:
        raise CommandError(
            f"There is more than one head ({', '.join(sorted(heads))}): run `make merge` first."
        )
    if set(current) != set(heads):
        raise CommandError(
            f"The database is at {', '.join(current) or 'base'}, behind head "
            f"{', '.join(heads)}: run `make migrate` first."
        )


def refuse_upgrade_below_current(
    current: tuple[str, ...], script: ScriptDirectory, destination: object
) -> None:
    """`alembic upgrade <older revision>` silently does nothing; say how to go down instead."""
    if isinstance(destination, str) and destination.startswith("-"):
        raise CommandError(
            f"rev={destination} would go down, and make migrate only goes up. To go back, run "
            f"`make rollback steps={destination[1:]}` (in production with CONFIRM=yes, after "
            "make backup)."
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
        raise CommandError(
            f"{destination} is below the database's revision ({', '.join(current)}), and an "
            f"upgrade never goes down. To go back, run `make rollback rev={destination}` "
            "(in production with CONFIRM=yes, after make backup)."
        )


def require_writable(connection: Connection) -> None:
    """A standby or a read-only default would fail on the first write, named as something else."""
{%- if cookiecutter.database == "mysql" %}
    read_only = connection.execute(text("SELECT @@global.read_only")).scalar_one()
    connection.commit()
    if read_only:
        raise CommandError(
            "The server is read-only (read_only = ON, as a replica is): migrations must run on "
            "the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it."
        )
{%- else %}
    standby, read_only = connection.execute(
        text("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')")
    ).one()
    connection.commit()
    if standby:
        raise CommandError(
            "The database is a read-only standby (pg_is_in_recovery() is true): migrations must "
            "run on the primary. Point MIGRATION_DATABASE_URL (or DATABASE_URL) at it."
        )
    if read_only == "on":
        raise CommandError(
            "The database is read-only for this role (default_transaction_read_only = on): "
            "migrate as a role or database where it is off, or point MIGRATION_DATABASE_URL at "
            "the primary."
        )
{%- endif %}


def explain_model_drift(
    context: MigrationContext, revision: object, directives: Iterable[MigrationScript]
) -> None:
    """`alembic check` found model changes no revision has: say how to write one."""
    for script in directives:
        upgrade_ops = script.upgrade_ops
        diffs = upgrade_ops.as_diffs() if upgrade_ops is not None else []
        if diffs:
            raise CommandError(
                f"New upgrade operations detected: {diffs}. The models differ from the "
                'migrations: write a revision for the change with make migration msg="...".'
            )
