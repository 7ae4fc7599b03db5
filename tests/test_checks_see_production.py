"""`make check`, `make migration` and the generated `make test` see what production sees: a named
CHECK added or changed, a partial index's WHERE changed, an Integer -> BigInteger primary key
whose SERIAL sequence must widen too, a revision that fails on populated tables, and a failed
downgrade answered with the downgrade's own advice. Unchanged models stay clean (no false
positive on an expression PostgreSQL writes differently)."""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import Server, bake, clean_env, install, make, must, revision_id, versions_dir

COUNTER_MODEL = '''"""A SERIAL primary key, a NOT NULL text column and a partial index."""

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Counter(SQLModel, table=True):
    __table_args__ = (
        sa.Index("ix_counter_open", "hits", postgresql_where=sa.text("label IS NOT NULL")),
    )
    id: int | None = Field(default=None, primary_key=True)
    code: str
    hits: int = 0
    label: str | None = None
'''
# Added to the existing item table: Alembic alone (1.19.2 and later) does not see it.
ITEM_CHECK = '\n    __table_args__ = (sa.CheckConstraint("length(name) > 0", name="name_set"),)\n'


@pytest.fixture(scope="module")
def env(server: Server) -> Iterator[dict[str, str]]:
    with server.new_database("tmpl_seen") as name:
        # The generated tests use the same server: an embedded one of their own would live below
        # /tmp/pytest-of-<user>, which any pytest run starting meanwhile resets to mode 0700.
        yield clean_env(
            DATABASE_URL=server.url(name), TEST_DATABASE_URL=server.url("postgres"), CI="true"
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """Counter created, then a CHECK added to item: two revisions written by make migration."""
    project = install(bake(tmp_path_factory.mktemp("seen")))
    models = project / "src" / "my_service" / "models"
    (models / "counter.py").write_text(COUNTER_MODEL, encoding="utf-8")
    must(make(project, "migrate", env=env))
    must(make(project, "migration", "msg=add counter", env=env))
    must(make(project, "migrate", env=env))
    item = models / "item.py"
    item.write_text(item.read_text(encoding="utf-8") + ITEM_CHECK, encoding="utf-8")
    must(make(project, "migration", "msg=check item name", env=env))
    must(make(project, "migrate", env=env))
    return project


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_check_added_to_an_existing_table_is_written(project: Path) -> None:
    revision = next(versions_dir(project).glob("*_check_item_name.py")).read_text("utf-8")
    assert 'op.create_check_constraint(op.f("ck_item_name_set"), "item"' in revision


def test_unchanged_models_are_clean(project: Path, env: dict[str, str]) -> None:
    # PostgreSQL prints `length(name) > 0` as `CHECK ((length((name)::text) > 0))` and the
    # predicate as `(label IS NOT NULL)`: the same definitions, so no drift.
    output = must(make(project, "check", env=env))
    assert "No new upgrade operations detected" in output


@pytest.fixture(scope="module")
def drift(project: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The CHECK's expression, the index's WHERE and the key's width changed in the models:
    what make check says, and the revision make migration writes (applied, left in place)."""
    models = project / "src" / "my_service" / "models"
    edit(models / "item.py", "length(name) > 0", "length(name) > 2")
    edit(models / "counter.py", "label IS NOT NULL", "label IS NULL")
    edit(
        models / "counter.py",
        "id: int | None = Field(default=None, primary_key=True)",
        "id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)",
    )
    check = make(project, "check", env=env)
    assert check.returncode != 0, check.stdout
    must(make(project, "migration", "msg=drift", env=env))
    revision = next(versions_dir(project).glob("*_drift.py"))
    yield check.stdout, revision.read_text(encoding="utf-8")


def test_a_changed_check_expression_is_seen(drift: tuple[str, str]) -> None:
    check, revision = drift
    assert "ck_item_name_set" in check
    assert 'op.create_check_constraint(op.f("ck_item_name_set"), "item", "length(name) > 2")' in (
        revision
    )


def test_a_changed_partial_index_predicate_is_seen(drift: tuple[str, str]) -> None:
    check, revision = drift
    assert "ix_counter_open" in check
    upgrade = revision.split("def downgrade")[0]
    assert "drop_index" in upgrade and 'postgresql_where=sa.text("label IS NULL")' in upgrade


def test_a_serial_key_made_bigint_widens_its_sequence(
    project: Path, drift: tuple[str, str], env: dict[str, str], server: Server
) -> None:
    check, _ = drift
    assert "counter_id_seq" in check
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")

    def sequence_type() -> str:
        rows = server.fetch(
            database,
            "SELECT format_type(seqtypid, NULL) FROM pg_sequence "
            "WHERE seqrelid = 'counter_id_seq'::regclass",
        )
        return str(rows[0][0])

    must(make(project, "migrate", env=env))
    assert sequence_type() == "bigint"
    must(make(project, "check", env=env))
    must(make(project, "rollback", env=env))
    assert sequence_type() == "integer"
    must(make(project, "migrate", env=env))


def test_the_generated_models_test_sees_the_drift(
    project: Path, drift: tuple[str, str], env: dict[str, str]
) -> None:
    revision = next(versions_dir(project).glob("*_drift.py"))
    must(make(project, "migrate", env=env))
    must(make(project, "rollback", env=env))
    kept = revision.read_text(encoding="utf-8")
    revision.unlink()
    try:
        output = make(
            project, "test", "args=-p no:cacheprovider tests/test_migrations.py", env=env
        ).stdout
    finally:
        revision.write_text(kept, encoding="utf-8")
    assert re.search(r"test_models_match_head_schema.*FAILED|FAILED.*test_models_match", output)
    for name in ("ck_item_name_set", "ix_counter_open", "counter_id_seq"):
        assert name in output, name


NOT_NULL_REVISION = '''"""A NOT NULL column without a default: passes on empty tables only."""

import sqlalchemy as sa
from alembic import op

revision: str = "0000notnull1"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("counter", sa.Column("owner", sa.String(), nullable=False))


def downgrade() -> None:
    op.drop_column("counter", "owner")
'''


def test_the_walk_fails_a_not_null_column_without_default_on_populated_tables(
    project: Path, drift: tuple[str, str], env: dict[str, str]
) -> None:
    head = revision_id(next(versions_dir(project).glob("*_drift.py")))
    planted = versions_dir(project) / "20990101_0000_0000notnull1_owner.py"
    planted.write_text(NOT_NULL_REVISION.replace("@down@", head), encoding="utf-8")
    try:
        output = make(
            project, "test", "args=-p no:cacheprovider tests/test_migrations.py", env=env
        ).stdout
    finally:
        planted.unlink()
    assert "upgrade to revision 0000notnull1" in output, output
    # counter's rows come from the walk alone, which had to make a value for its NOT NULL text.
    assert 'column "owner" of relation "counter" contains null values' in output
    assert "held generated rows" in output


def test_a_failed_downgrade_gets_the_downgrade_advice(
    project: Path, drift: tuple[str, str], env: dict[str, str]
) -> None:
    revision = next(versions_dir(project).glob("*_drift.py"))
    kept = revision.read_text(encoding="utf-8")
    must(make(project, "migrate", env=env))
    revision.write_text(
        kept.replace(
            "def downgrade() -> None:\n",
            'def downgrade() -> None:\n    op.execute("SELECT 1 / 0")\n',
        ),
        encoding="utf-8",
    )
    try:
        result = make(project, "rollback", env=env)
    finally:
        revision.write_text(kept, encoding="utf-8")
    assert result.returncode != 0
    assert f"The downgrade of revision {revision_id(revision)}" in result.stdout, result.stdout
    assert "make rollback again" in result.stdout
    assert "run make migrate again" not in result.stdout


SEED_REVISION = '''"""Seed settings: JSONB values of op.bulk_insert (a data migration)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0000seedjson"
down_revision: str | None = "@down@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "setting",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", postgresql.JSONB(), nullable=False),
    )
    rows = [{"id": 1, "value": {"tags": ["it's", 2]}}, {"id": 2, "value": []}]
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("setting")
'''
READS_DATA_REVISION = '''"""Reads rows through op.get_bind(): there are none offline."""

from alembic import op

revision: str = "0000readsdata"
down_revision: str | None = "0000seedjson"
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
    op.create_index("ix_setting_value", "setting", ["value"])


def downgrade() -> None:
    op.drop_index("ix_setting_value", table_name="setting")
'''


def test_sql_and_lint_render_json_and_name_what_cannot_render(
    project: Path, drift: tuple[str, str], env: dict[str, str]
) -> None:
    head = revision_id(next(versions_dir(project).glob("*_drift.py")))
    planted = {
        "20990102_0000_0000seedjson_seed.py": SEED_REVISION.replace("@down@", head),
        "20990103_0000_0000readsdata_count.py": READS_DATA_REVISION,
        "20990104_0000_0000afterall_index.py": AFTER_REVISION,
    }
    for name, body in planted.items():
        (versions_dir(project) / name).write_text(body, encoding="utf-8")
    try:
        sql = must(make(project, "sql", "rev=" + head + ":0000seedjson", env=env))
        sql_through = make(project, "sql", "rev=" + head + ":head", env=env)
        lint = make(project, "lint-migrations", env=env)
    finally:
        for name in planted:
            (versions_dir(project) / name).unlink()
    assert "INSERT INTO setting (id, value) VALUES (1, '{\"tags\": [\"it''s\", 2]}')" in sql
    assert "Traceback" not in lint.stdout, lint.stdout
    # make sql names the revision it cannot render, and why, without a traceback.
    assert sql_through.returncode != 0
    assert re.search(r"0000readsdata_count\.py, line \d+ cannot be rendered", sql_through.stdout)
    assert "op.get_bind()" in sql_through.stdout and "Traceback" not in sql_through.stdout
    assert "20990103_0000_0000readsdata_count.py: not linted: " in lint.stdout
    # The revisions around it were rendered and linted: the JSON seed without a finding (the
    # project's squawk rules leave out style preferences), the index after it with one.
    assert "0000seedjson_seed.py: not linted" not in lint.stdout
    assert "1 revision(s) could not be rendered offline" in lint.stdout
    assert "0000afterall_index.sql" in lint.stdout and "require-concurrent-index" in lint.stdout
    assert lint.returncode != 0
