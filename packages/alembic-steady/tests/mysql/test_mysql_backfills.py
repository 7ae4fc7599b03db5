"""Queued backfills are PostgreSQL's: on MySQL a revision that queues one fails saying so, before
it changes anything, and `backfill` says the same."""

import demo_project
from queries import heads
from sqlalchemy.engine import URL


def test_a_queued_backfill_is_refused_naming_postgresql(database_url: URL) -> None:
    project = demo_project.with_revisions(
        "mysql",
        "backfills",
        [
            (
                "d4",
                '    op.queue_backfill("widget", {"price": "0"}, where="price IS NULL")',
                "    pass",
                "",
            )
        ],
    )
    run = demo_project.module_cli(project, "upgrade", url=database_url)
    assert run.returncode == 1
    assert "op.queue_backfill and op.require_backfill are PostgreSQL's" in run.stdout, run.stdout
    assert heads(database_url) == {"c3"}
    status = demo_project.module_cli(project, "backfill", "status", url=database_url)
    assert status.returncode == 1
    assert "backfill status: backfill run|status|pause|resume are PostgreSQL's" in status.stdout
