"""`make lint-migrations` names a revision it cannot render offline and lints the others: what
only a render shows, since squawk (squawk-cli) comes with the project's own tools.

The rest of what `make check`, `make migration`, `make sql` and the generated `make test` see of
production is the toolkit's to prove, without a render: packages/alembic-steady/tests/postgresql/
test_pg_compare.py (named CHECKs, partial-index predicates, SERIAL sequences, no false drift),
test_pg_offline.py (JSONB literals, a revision that cannot be rendered) and
test_pg_populated_walk.py (the walk on tables holding rows, a failed downgrade's advice)."""

from pathlib import Path

from .conftest import make, revision_id, versions, versions_dir

READS_DATA_REVISION = '''"""Reads rows through op.get_bind(): there are none offline."""

from alembic import op

revision: str = "0000readsdata"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    count = op.get_bind().exec_driver_sql("SELECT count(*) FROM item").scalar()
    op.execute(f"COMMENT ON TABLE item IS '{count} items'")


def downgrade() -> None:
    op.execute("COMMENT ON TABLE item IS NULL")
'''
AFTER_REVISION = '''"""An index without CONCURRENTLY: squawk finds it, after the unrendered one."""

from alembic import op

revision: str = "0000afterall"
down_revision: str | None = "0000readsdata"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_item_name_lint", "item", ["name"])


def downgrade() -> None:
    op.drop_index("ix_item_name_lint", table_name="item")
'''


def test_lint_names_what_cannot_render_and_lints_the_rest(default_project: Path) -> None:
    head = revision_id(versions(default_project)[-1])
    planted = {
        "20990103_0000_0000readsdata_count.py": READS_DATA_REVISION.replace("@down@", head),
        "20990104_0000_0000afterall_index.py": AFTER_REVISION,
    }
    for name, body in planted.items():
        (versions_dir(default_project) / name).write_text(body, encoding="utf-8")
    try:
        lint = make(default_project, "lint-migrations")
    finally:
        for name in planted:
            (versions_dir(default_project) / name).unlink()
    assert "Traceback" not in lint.stdout, lint.stdout
    assert "20990103_0000_0000readsdata_count.py: not linted: " in lint.stdout
    assert "cannot be rendered as SQL offline" in lint.stdout
    # The revision after it was rendered and linted: squawk finds its blocking index.
    assert "1 revision(s) could not be rendered offline" in lint.stdout
    assert "0000afterall_index.sql" in lint.stdout and "require-concurrent-index" in lint.stdout
    assert lint.returncode != 0
    assert "`# lint-migrations: not offline: <why>`" in lint.stdout


def test_a_revision_that_must_read_data_is_accepted_in_its_file(default_project: Path) -> None:
    """Without a way to accept it, one such revision keeps the generated CI red for ever."""
    head = revision_id(versions(default_project)[-1])
    accepted = READS_DATA_REVISION.replace("@down@", head).replace(
        "from alembic import op\n",
        "from alembic import op\n\n# lint-migrations: not offline: comments with the item count\n",
    )
    planted = versions_dir(default_project) / "20990103_0000_0000readsdata_count.py"
    planted.write_text(accepted, encoding="utf-8")
    try:
        lint = make(default_project, "lint-migrations")
    finally:
        planted.unlink()
    assert lint.returncode == 0, lint.stdout
    assert (
        "0000readsdata_count.py: not linted (accepted in the file: comments with the item count)"
        in lint.stdout
    )
    assert "squawk: no findings." in lint.stdout
