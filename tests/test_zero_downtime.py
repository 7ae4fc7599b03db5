"""Zero-downtime changes on a table with rows: the safe operations of `migrations/ops.py`, the
forms `make migration` writes on existing tables, and `make lint-migrations` on them.

One project is rendered and installed for the module, and one database serves it; the tests run
in file order, each starting where the previous one left the project, as a developer would.
"""

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from .conftest import Server, bake, clean_env, install, make, must, revision_id, versions

MODELS = ("src", "my_service", "models")
OWNER = '''"""A model as a user would write it: the ordinary SQLModel int primary key."""

from sqlmodel import Field, SQLModel


class Owner(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, index=True)
'''
ITEM_FIELDS = """    sku: str | None = Field(default=None, index=True)
    owner_id: int | None = Field(default=None, foreign_key="owner.id")
    ref: uuid.UUID | None = None
    code: str | None = Field(default=None, unique=True)
"""
ROWS = 3000


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(bake(tmp_path_factory.mktemp("zero_downtime")))


@pytest.fixture(scope="module")
def db(server: Server) -> Iterator[str]:
    with server.new_database("tmpl_zd") as name:
        yield name


@pytest.fixture(scope="module")
def env(server: Server, db: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(db))


def new_revision(project: Path, before: list[Path]) -> Path:
    new = sorted(set(versions(project)) - set(before))
    assert len(new) == 1, new
    return new[0]


def empty_revision(project: Path, env: dict[str, str], msg: str, upgrade: str) -> Path:
    """`make migration-empty`, then its upgrade() written by hand, as a user would."""
    before = versions(project)
    must(make(project, "migration-empty", f"msg={msg}", env=env))
    path = new_revision(project, before)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("def upgrade() -> None:\n    pass", f"def upgrade() -> None:\n{upgrade}"),
        encoding="utf-8",
    )
    return path


def edit_item(project: Path, old: str, new: str) -> None:
    item = project.joinpath(*MODELS, "item.py")
    text = item.read_text(encoding="utf-8")
    assert old in text, old
    item.write_text(text.replace(old, new), encoding="utf-8")


def test_autogenerate_writes_concurrent_index_and_validated_foreign_key(
    project: Path, env: dict[str, str], server: Server, db: str
) -> None:
    must(make(project, "migrate", env=env))
    server.execute(
        db, f"INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g"
    )
    project.joinpath(*MODELS, "owner.py").write_text(OWNER, encoding="utf-8")
    edit_item(
        project, "from datetime import datetime\n", "import uuid\nfrom datetime import datetime\n"
    )
    item = project.joinpath(*MODELS, "item.py")
    item.write_text(item.read_text(encoding="utf-8") + ITEM_FIELDS, encoding="utf-8")

    before = versions(project)
    must(make(project, "migration", "msg=add owner", env=env))
    text = new_revision(project, before).read_text(encoding="utf-8")
    # The new table keeps the plain forms; the existing, populated one gets the safe forms.
    assert 'op.create_table(\n        "owner"' in text
    assert 'op.create_index(op.f("ix_owner_name"), "owner"' in text
    assert 'op.create_index_concurrently(op.f("ix_item_sku"), "item", ["sku"]' in text
    assert re.search(
        r'op\.create_foreign_key_validated\(\s*op\.f\("fk_item_owner_id_owner"\)', text
    )
    assert 'op.drop_index_concurrently(op.f("ix_item_sku"), table_name="item")' in text
    assert (
        'op.create_unique_constraint_concurrently(op.f("uq_item_code"), "item", ["code"])' in text
    )
    assert 'op.create_index(op.f("ix_item_sku")' not in text
    # The concurrent steps commit what precedes them, so a rerun must skip the columns added.
    assert 'sa.Column("sku", sa.String(), nullable=True), if_not_exists=True' in text
    assert "sqlmodel" not in text and "my_service" not in text

    linted = make(project, "lint-migrations")
    assert linted.returncode == 0, linted.stdout
    assert "squawk: no findings." in linted.stdout

    must(make(project, "migrate", env=env))
    assert server.fetch(
        db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_item_sku'::regclass"
    ) == [(True,)]
    assert server.fetch(
        db, "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_item_owner_id_owner'"
    ) == [(True,)]
    assert server.fetch(
        db, "SELECT contype::text FROM pg_constraint WHERE conname = 'uq_item_code'"
    ) == [("u",)]
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))
    # Both directions, as seed 4 asks: down through drop_index_concurrently, and up again.
    must(make(project, "rollback", env=env))
    assert server.fetch(db, "SELECT to_regclass('ix_item_sku') IS NULL") == [(True,)]
    must(make(project, "migrate", env=env))


def test_not_null_fails_cleanly_on_nulls_then_backfill_and_not_null_pass(
    project: Path, env: dict[str, str], server: Server, db: str
) -> None:
    at = server.version(db)
    edit_item(
        project,
        "    sku: str | None = Field(default=None, index=True)",
        "    sku: str = Field(index=True)",
    )
    before = versions(project)
    generated = must(make(project, "migration", "msg=sku required", env=env))
    not_null = new_revision(project, before)
    text = not_null.read_text(encoding="utf-8")
    assert 'op.set_not_null("item", "sku")' in text
    assert re.search(r"# REVIEW: item\.sku becomes NOT NULL: existing NULLs .*[Bb]ackfill", text)
    assert "nullable=False" not in text.split("def downgrade")[0]
    assert "WARNING: this revision makes item.sku NOT NULL: backfill its NULLs first" in generated

    failed = make(project, "migrate", env=env)
    assert failed.returncode != 0
    assert "item.sku still has NULLs: backfill them first" in failed.stdout
    assert server.version(db) == at
    # Nothing is left behind that would reject the app's NULLs before it is ready for them.
    assert server.fetch(
        db, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ck_item_sku%'"
    ) == [(0,)]
    server.execute(db, "INSERT INTO item (name) VALUES ('written by the old app')")

    # The order the README gives: backfill first, then NOT NULL.
    not_null.unlink()
    total = ROWS + 1
    empty_revision(
        project,
        env,
        "backfill sku",
        """    op.backfill("item", {"sku": "'SKU-' || id"}, where="sku IS NULL", batch_size=700)""",
    )
    output = must(make(project, "migrate", env=env))
    assert re.search(
        rf"backfill item\.sku: 700/{total} rows \(\d+%\), \d+ rows/s, ETA \d+s", output
    )
    assert f"backfill item.sku: {total}/{total} rows (100%)" in output
    assert server.fetch(
        db, "SELECT count(*) FROM item WHERE sku IS DISTINCT FROM 'SKU-' || id"
    ) == [(0,)]

    must(make(project, "migration", "msg=sku required", env=env))
    must(make(project, "migrate", env=env))
    assert server.fetch(
        db,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'item'::regclass AND attname = 'sku'",
    ) == [(True,)]
    assert server.fetch(
        db, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ck_item_sku%'"
    ) == [(0,)]
    linted = make(project, "lint-migrations")
    assert "squawk: no findings." in linted.stdout, linted.stdout
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))


def test_type_changes_and_not_null_columns_are_flagged_for_what_they_do(
    project: Path, env: dict[str, str]
) -> None:
    owner = project.joinpath(*MODELS, "owner.py")
    item = project.joinpath(*MODELS, "item.py")
    saved = {path: path.read_text(encoding="utf-8") for path in (owner, item)}
    owner.write_text(
        OWNER.replace("max_length=80", "max_length=40")
        .replace("primary_key=True)", "primary_key=True, sa_type=sa.BigInteger)")
        .replace("from sqlmodel", "import sqlalchemy as sa\nfrom sqlmodel")
        + "    code: str\n",
        encoding="utf-8",
    )
    edit_item(project, "    ref: uuid.UUID | None = None", "    ref: str | None = None")
    before = versions(project)
    try:
        output = must(make(project, "migration", "msg=types", env=env))
        text = new_revision(project, before).read_text(encoding="utf-8")
        assert "narrows owner.name from VARCHAR(80) to VARCHAR(40): can lose data" in output
        assert "widens owner.id from INTEGER to BIGINT: rewrites the table" in output
        assert "its downgrade narrows it back to INTEGER and can lose data" in output
        # A Uuid column is named as PostgreSQL writes it, not as SQLAlchemy's CHAR(32) fallback.
        assert "converts item.ref from UUID to VARCHAR" in output
        assert (
            "adds NOT NULL column owner.code without a server default: fails on a table with rows"
            in output
        )
        for note in (
            "narrows owner.name",
            "widens owner.id",
            "converts item.ref",
            "adds NOT NULL column owner.code",
        ):
            assert re.search(rf"# REVIEW: .*{re.escape(note)}", text), note
    finally:
        for path, content in saved.items():
            path.write_text(content, encoding="utf-8")
        for path in set(versions(project)) - set(before):
            path.unlink()


async def connect(server: Server, db: str) -> asyncpg.Connection:
    return await asyncpg.connect(**server.connect_args(db))


async def writes_pass_while_the_migration_scans(
    server: Server, db: str, project: Path, env: dict[str, str], table: str
) -> str:
    """Hold SHARE UPDATE EXCLUSIVE on `table` (what VALIDATE, CREATE INDEX CONCURRENTLY and
    autovacuum take), start `alembic upgrade head`, wait until it queues for `table`, and write
    meanwhile. Returns the lock mode the migration waited for."""
    holder = await connect(server, db)
    writer = await connect(server, db)
    process = None
    try:
        await holder.execute("BEGIN")
        await holder.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
        process = await asyncio.create_subprocess_exec(
            ".venv/bin/alembic", "upgrade", "head", cwd=project, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        mode = None
        for _ in range(200):
            mode = await holder.fetchval(
                "SELECT mode FROM pg_locks WHERE NOT granted AND relation = $1::regclass", table
            )
            if mode:
                break
            await asyncio.sleep(0.05)
        assert mode, "the migration never queued for the table"
        # The application writes while the migration waits in the lock queue: a queued ACCESS
        # EXCLUSIVE or SHARE lock would make these wait too, and the timeout would cancel them.
        await writer.execute("SET statement_timeout = '2s'")
        for n in range(20):
            await writer.execute(f"INSERT INTO {table} (note, owner_id) VALUES ('w{n}', 1)")
            await writer.execute(f"UPDATE {table} SET note = note WHERE id = {n + 1}")
            await asyncio.sleep(0.02)
        await holder.execute("COMMIT")
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, output.decode()
        return str(mode)
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await holder.close()
        await writer.close()


LEDGER = f"""
CREATE TABLE ledger (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text,
                     owner_id bigint, code text);
INSERT INTO owner (id, name) VALUES (1, 'first') ON CONFLICT DO NOTHING;
INSERT INTO ledger (note, owner_id) SELECT 'n' || g, 1 FROM generate_series(1, {ROWS}) g;
"""


NOT_NULL_DONE = (
    "SELECT attnotnull AND NOT EXISTS (SELECT FROM pg_constraint WHERE conname = "
    "'ck_ledger_note_not_null') FROM pg_attribute WHERE attrelid = 'ledger'::regclass "
    "AND attname = 'note'"
)


@pytest.mark.parametrize(
    ("operation", "leftover", "check", "waits_for"),
    [
        (
            'op.set_not_null("ledger", "note")',
            # A run stopped after its first step left the NOT VALID CHECK: the rerun validates it.
            "ALTER TABLE ledger ADD CONSTRAINT ck_ledger_note_not_null "
            "CHECK (note IS NOT NULL) NOT VALID",
            NOT_NULL_DONE,
            "ShareUpdateExclusiveLock",
        ),
        (
            'op.create_foreign_key_validated("fk_ledger_owner_id_owner", "ledger", "owner", '
            '["owner_id"], ["id"])',
            "ALTER TABLE ledger ADD CONSTRAINT fk_ledger_owner_id_owner FOREIGN KEY (owner_id) "
            "REFERENCES owner (id) NOT VALID",
            "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_ledger_owner_id_owner'",
            "ShareUpdateExclusiveLock",
        ),
        (
            'op.create_index_concurrently("ix_ledger_note", "ledger", ["note"], unique=True)',
            # A failed concurrent build (duplicates) left an INVALID index of the same name.
            "CREATE UNIQUE INDEX CONCURRENTLY ix_ledger_note ON ledger (owner_id)",
            "SELECT indisvalid AND indisunique AND pg_get_indexdef(indexrelid) LIKE '%(note)' "
            "FROM pg_index WHERE indexrelid = 'ix_ledger_note'::regclass",
            "ShareUpdateExclusiveLock",
        ),
        (
            # From the first step: its moment of ACCESS EXCLUSIVE waits behind the holder (as it
            # would behind autovacuum) only briefly at a time, so writes get through in between.
            'op.set_not_null("ledger", "note")',
            "SELECT 1",
            NOT_NULL_DONE,
            "AccessExclusiveLock",
        ),
    ],
    ids=["not-null", "foreign-key", "index", "brief-exclusive-lock"],
)
def test_live_operations_let_writes_through(
    project: Path,
    env: dict[str, str],
    server: Server,
    db: str,
    operation: str,
    leftover: str,
    check: str,
    waits_for: str,
) -> None:
    """A second session holds SHARE UPDATE EXCLUSIVE on the table while the operation runs: the
    scans (VALIDATE, CREATE INDEX CONCURRENTLY) queue for that same mode, which lets writes
    through; the brief strong locks give way after a moment. A write blocked until the holder
    lets go would hit its 2 s statement_timeout and fail the test."""
    server.execute(db, "DROP TABLE IF EXISTS ledger")
    server.execute(db, LEDGER)
    # The failed concurrent build raises; its INVALID index stays for the operation to replace.
    with contextlib.suppress(asyncpg.UniqueViolationError):
        server.execute(db, leftover)
    path = empty_revision(project, env, "live change", f"    {operation}")
    try:
        mode = asyncio.run(
            writes_pass_while_the_migration_scans(server, db, project, env, "ledger")
        )
        assert mode == waits_for
        assert server.fetch(db, check) == [(True,)]
    finally:
        # The ledger is not one of the models: leave the chain as `make check` expects it.
        must(make(project, "rollback", env=env))
        path.unlink()
        server.execute(db, "DROP TABLE IF EXISTS ledger")


def test_interrupted_backfill_resumes_where_it_stopped(
    project: Path, env: dict[str, str], server: Server, db: str
) -> None:
    server.execute(db, "DROP TABLE IF EXISTS ledger")
    server.execute(db, LEDGER)
    at = server.version(db)
    path = empty_revision(
        project,
        env,
        "backfill codes",
        '    op.backfill("ledger", {"code": "\'C-\' || id"}, where="code IS NULL",\n'
        "        batch_size=100, pause=0.05)",
    )
    try:
        process = subprocess.Popen(
            [".venv/bin/alembic", "upgrade", "head"],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("backfill ledger.code:"):
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)  # a deploy job killed midway
        process.wait()
        (done,) = server.fetch(db, "SELECT count(*) FROM ledger WHERE code IS NOT NULL")[0]
        assert 0 < done < ROWS
        assert server.version(db) == at

        output = must(make(project, "migrate", env=env))
        remaining = ROWS - done
        # It starts where the killed run stopped: only the rows still NULL are counted and updated.
        assert f"backfill ledger.code: {remaining}/{remaining} rows (100%)" in output
        assert server.fetch(db, "SELECT count(*) FROM ledger WHERE code = 'C-' || id") == [(ROWS,)]
        assert server.version(db) == {revision_id(path)}
    finally:
        must(make(project, "rollback", env=env))
        path.unlink()
        server.execute(db, "DROP TABLE IF EXISTS ledger")


BACKFILL_FROM_CODE = """
import asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from alembic_steady.authoring.ops import backfill
from my_service.settings import get_settings

async def main() -> None:
    engine = create_async_engine(get_settings().sqlalchemy_url)
    async with engine.connect() as conn:
        done = await conn.run_sync(
            backfill, "ledger", {"code": "upper(note)"}, where="code IS NULL", batch_size=1000
        )
    await engine.dispose()
    print("updated", done)

asyncio.run(main())
"""


def test_backfill_runs_from_code(
    project: Path, env: dict[str, str], server: Server, db: str
) -> None:
    server.execute(db, LEDGER)
    try:
        result = subprocess.run(
            [".venv/bin/python", "-c", BACKFILL_FROM_CODE],
            cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"updated {ROWS}" in result.stdout
        assert f"backfill ledger.code: {ROWS}/{ROWS} rows (100%)" in result.stderr
        assert server.fetch(db, "SELECT count(*) FROM ledger WHERE code = upper(note)") == [(ROWS,)]
    finally:
        server.execute(db, "DROP TABLE IF EXISTS ledger")


UPGRADE_IN_CALLERS_TRANSACTION = """
import asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from my_service.migrations import upgrade
from my_service.settings import get_settings

async def main() -> None:
    engine = create_async_engine(get_settings().sqlalchemy_url)
    async with engine.connect() as conn:
        await conn.run_sync(lambda c: upgrade(connection=c))
        await conn.commit()
    await engine.dispose()

asyncio.run(main())
"""


def test_safe_operation_inside_a_callers_transaction_is_refused_clearly(
    project: Path, env: dict[str, str], server: Server, db: str
) -> None:
    at = server.version(db)
    path = empty_revision(
        project,
        env,
        "index description",
        '    op.create_index_concurrently("ix_item_description", "item", ["description"])',
    )
    try:
        result = subprocess.run(
            [".venv/bin/python", "-c", UPGRADE_IN_CALLERS_TRANSACTION],
            cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert "commit step by step, outside any transaction" in last
        assert "`make migrate` or upgrade() without a connection" in last
        assert server.version(db) == at
        assert server.fetch(db, "SELECT to_regclass('ix_item_description') IS NULL") == [(True,)]
    finally:
        path.unlink()


def test_lint_reads_every_ignore_line_and_names_the_revision(
    project: Path, env: dict[str, str]
) -> None:
    path = empty_revision(
        project,
        env,
        "blocking changes",
        '    op.create_index("ix_item_description", "item", ["description"])\n'
        '    op.drop_column("item", "description")',
    )
    text = path.read_text(encoding="utf-8")
    try:
        flagged = make(project, "lint-migrations")
        assert flagged.returncode != 0
        assert "require-concurrent-index-creation" in flagged.stdout
        assert "ban-drop-column" in flagged.stdout
        summary = flagged.stdout.split("squawk: 1 revision(s) with findings:", 1)[1]
        assert path.name in summary and "# squawk-ignore: <rule>" in summary
        # The ordinary model's revision and the safe forms are not among the findings.
        assert "add_owner" not in flagged.stdout and "sku_required" not in flagged.stdout

        path.write_text(
            "# squawk-ignore: require-concurrent-index-creation\n" + text, encoding="utf-8"
        )
        still = make(project, "lint-migrations")
        assert still.returncode != 0 and "ban-drop-column" in still.stdout
        assert "require-concurrent-index-creation" not in still.stdout

        path.write_text(
            "# squawk-ignore: require-concurrent-index-creation\n"
            "# squawk-ignore: ban-drop-column\n" + text,
            encoding="utf-8",
        )
        assert "squawk: no findings." in must(make(project, "lint-migrations"))
    finally:
        path.unlink()
    must(make(project, "lint"))
