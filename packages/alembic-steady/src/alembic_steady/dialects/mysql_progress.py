"""MySQL: the record of a revision a run is inside of, so a run after a dead one (a replica that
takes the lock, a Job's retry) stops instead of repeating what the dead run committed.

Each DDL statement commits what ran before it, so the runner writes the record just before each
DDL statement of a revision: the implicit commit makes it durable together with the statements it
names. It says which statements of the revision are committed and which DDL statement was
running (applied or not: the run ended inside it). The revision's own transaction deletes it
with the version row's update, so it survives exactly when a revision was left part way. A run
that fails, or is stopped by a signal, knows what stays and settles the record to that (none at
all when nothing of the revision was committed). `stamp`, the way back after the repair, clears
it.

The table lives beside alembic_version: autogenerate and the tests' stairway leave it out.
"""

from alembic.util import CommandError
from sqlalchemy import Connection, text

from ..project import Commands
from ..runner.progress import Progress, named

TABLE = "alembic_steady_progress"

_CREATE = text(
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "revision VARCHAR(255) NOT NULL PRIMARY KEY, "
    "from_revisions VARCHAR(255) NOT NULL, "
    "to_revisions VARCHAR(255) NOT NULL, "
    "committed TEXT NOT NULL, "
    "running TEXT NOT NULL, "
    "updated_at DATETIME NOT NULL)"
)
_EXISTS = text(
    "SELECT COUNT(*) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)
_WRITE = text(
    f"INSERT INTO {TABLE} (revision, from_revisions, to_revisions, committed, running, "
    "updated_at) VALUES (:revision, :from_revisions, :to_revisions, :committed, :running, "
    "UTC_TIMESTAMP()) ON DUPLICATE KEY UPDATE from_revisions = VALUES(from_revisions), "
    "to_revisions = VALUES(to_revisions), committed = VALUES(committed), "
    "running = VALUES(running), updated_at = VALUES(updated_at)"
)


def exists(connection: Connection) -> bool:
    return bool(connection.execute(_EXISTS, {"table": TABLE}).scalar_one())


def create(connection: Connection) -> None:
    connection.execute(_CREATE)


def _key(progress: Progress) -> str:
    """The record's key: the revision as the runner names it, within the column's length."""
    return (progress.revision or "")[:255]


def before_ddl(
    connection: Connection, progress: Progress, committed: list[str], running: str
) -> None:
    """In the transaction the DDL statement `running` is about to commit implicitly."""
    connection.execute(
        _WRITE,
        {
            "revision": _key(progress),
            "from_revisions": named(progress.at),
            "to_revisions": named(progress.to),
            "committed": "; ".join(committed),
            "running": running,
        },
    )


def done(connection: Connection, progress: Progress) -> None:
    """In the revision's transaction: it is applied, nothing of it is left half way."""
    connection.execute(
        text(f"DELETE FROM {TABLE} WHERE revision = :revision"),
        {"revision": _key(progress)},
    )


def settle(connection: Connection, progress: Progress, committed: list[str]) -> None:
    """After the revision stopped: what stays is known, `committed` (none: no record)."""
    connection.rollback()
    if committed:
        before_ddl(connection, progress, committed, "")
    else:
        done(connection, progress)
    connection.commit()


def forget(connection: Connection) -> None:
    if exists(connection):
        connection.execute(text(f"DELETE FROM {TABLE}"))
        connection.commit()


def refuse_unfinished(connection: Connection, commands: Commands) -> None:
    """Stop when a run ended inside a revision: running it from its start would repeat what that
    run committed (a data statement twice, then a DDL statement failing)."""
    found = connection.execute(
        text(
            "SELECT revision, from_revisions, to_revisions, committed, running, updated_at "
            f"FROM {TABLE} ORDER BY updated_at LIMIT 1"
        )
    ).first()
    connection.commit()
    if found is None:
        return
    revision, before, after, committed, running, when = found
    what = f"it had committed {committed}" if committed else "it had committed none of it"
    if running:
        what += f", and was running (so may have applied) {running}"
    raise CommandError(
        f"A previous run stopped inside revision {revision} ({before} -> {after}, {when} UTC): "
        f"{what}. The version row still says {before}: running the revision again would repeat "
        f"what was committed. Finish it by hand and `{commands.stamp_to(after)}`, or undo what "
        f"it committed and `{commands.stamp_to(before)}`; either clears this record ({TABLE})."
    )
