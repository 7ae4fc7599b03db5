"""The queue of backfills (authoring/backfill_queue.py): a table of the project's database,
`alembic_version_backfills`, a row per job. Named like the version table, it is the runner's:
no model's, left out of autogenerate, of the walk's generated rows and of its snapshots."""

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
)

TABLE = "alembic_version_backfills"
QUEUED, RUNNING, PAUSED, DONE = "queued", "running", "paused", "done"


def jobs_table() -> Table:
    """The queue, unqualified: on the search path, so a tenant schema's run has its own."""
    return Table(
        TABLE,
        MetaData(),
        Column("name", String(200), primary_key=True),
        Column("queued_by", String(300), nullable=False),
        Column("table_name", String(200), nullable=False),
        Column("schema_name", String(200)),
        Column("assignments", Text, nullable=False),
        Column("where_sql", Text, nullable=False),
        Column("key_column", String(200), nullable=False),
        Column("batch_size", Integer, nullable=False),
        Column("pause", Float, nullable=False),
        Column("state", String(16), nullable=False),
        Column("last_key", Text),
        Column("rows_done", BigInteger, nullable=False, server_default="0"),
        Column("queued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
    )


@dataclass
class Job:
    name: str
    state: str
    table_name: str
    schema_name: str | None
    assignments: str
    where_sql: str
    key_column: str
    batch_size: int
    pause: float
    last_key: str | None
    rows_done: int
    queued_by: str


def jobs(connection: Connection, name: str | None = None) -> list[Job]:
    """The queued jobs, oldest first (none where nothing was ever queued)."""
    if not inspect(connection).has_table(TABLE):
        return []
    table = jobs_table()
    query = table.select().order_by(table.c.queued_at, table.c.name)
    if name is not None:
        query = query.where(table.c.name == name)
    return [
        Job(**{field: row._mapping[field] for field in Job.__dataclass_fields__})
        for row in connection.execute(query)
    ]


def set_state(connection: Connection, name: str, to: str, from_: tuple[str, ...]) -> Job | None:
    """Move job `name` to state `to` if it is in one of `from_`; the job as it is then (None
    when there is no such job)."""
    found = jobs(connection, name)
    if not found:
        return None
    table = jobs_table()
    connection.execute(
        table.update()
        .where(table.c.name == name, table.c.state.in_(from_))
        .values(state=to, updated_at=func.now())
    )
    (job,) = jobs(connection, name)
    return job
