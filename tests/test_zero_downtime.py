"""Zero-downtime changes through the Make targets: `make migration` on a table with rows writes
the safe forms (SQLModel's types as plain SQLAlchemy, ruff-formatted), `make lint-migrations`
runs squawk on them, and `make migrate` applies them.

What the forms, the safe operations and the backfill do is proven without a render in
packages/alembic-steady/tests/postgresql/test_pg_operations.py; squawk is a dependency of the
rendered projects only, so its findings are checked here.

One project is rendered and installed for the module; each test starts from it as installed (what
an earlier test wrote under src/ is undone first) and on a database of its own, so a test's
failure is its own and the tests pass in any order or alone.
"""

import json
import re
from pathlib import Path

import pytest

from .conftest import Server, bake, clean_env, install, make, must, versions

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
# PostgreSQL's lock modes that stop a table's writers.
STOP_WRITERS = {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, bytes]]:
    """The installed render and its source files as installed."""
    project = install(bake(tmp_path_factory.mktemp("zero_downtime")))
    return project, {path: path.read_bytes() for path in project.joinpath("src").rglob("*.py")}


@pytest.fixture
def project(installed: tuple[Path, dict[Path, bytes]]) -> Path:
    """The render with its models and revisions as installed, whatever a test before this one
    wrote: its new files go, its edits are undone."""
    project, files = installed
    for path in project.joinpath("src").rglob("*.py"):
        if path not in files:
            path.unlink()
    for path, content in files.items():
        if path.read_bytes() != content:
            path.write_bytes(content)
    return project


@pytest.fixture
def env(server: Server, database: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=server.url(database))


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


def test_make_migration_then_make_migrate_on_a_table_with_rows(
    project: Path, env: dict[str, str], server: Server, database: str
) -> None:
    must(make(project, "migrate", env=env))
    server.execute(
        database, f"INSERT INTO item (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g"
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
    assert 'op.create_index_concurrently(op.f("ix_item_sku"), "item", ["sku"]' in text
    assert re.search(
        r'op\.create_foreign_key_validated\(\s*op\.f\("fk_item_owner_id_owner"\)', text
    )
    assert 'op.create_index(op.f("ix_item_sku")' not in text
    # SQLModel's AutoString is written as plain SQLAlchemy: the revision never imports the app.
    assert 'sa.Column("sku", sa.String(), nullable=True), if_not_exists=True' in text
    assert "sqlmodel" not in text and "my_service" not in text

    linted = make(project, "lint-migrations")
    assert linted.returncode == 0, linted.stdout
    assert "squawk: no findings." in linted.stdout

    # `make plan` measures, on an empty scratch database, the locks `make rehearse` measures
    # on a copy of the 3,000 rows; with fail-on=risky it passes the safe forms.
    planned = json.loads(must(make(project, "plan", "format=json", "fail-on=risky", env=env)))
    (plan,) = planned["revisions"]
    assert not planned["risky"] and not plan["risky"], plan
    assert {"relation": "item", "mode": "SHARE UPDATE EXCLUSIVE", "rows": ROWS} in [
        lock for statement in plan["statements"] for lock in statement["locks"]
    ], plan
    must(make(project, "backup", env=env))
    (dump,) = project.joinpath("backups").glob("*.dump")
    rehearsed = must(make(project, "rehearse", f"file={dump}", env=env))
    dump.unlink()
    held = set(re.findall(r"^    ([A-Z ]+) on (\S+), held", rehearsed, re.M))
    predicted = {
        (lock["mode"], lock["relation"])
        for statement in plan["statements"]
        for lock in statement["locks"]
    }
    # Every lock the rehearsal saw was predicted, and the same locks that stop writers. (Outside
    # a transaction the rehearsal samples a statement's locks while it runs, and may miss a weak
    # one held a millisecond; the plan runs such a statement again in a transaction to read
    # them.)
    assert held <= predicted, rehearsed
    assert {lock for lock in held if lock[0] in STOP_WRITERS} == {
        lock for lock in predicted if lock[0] in STOP_WRITERS
    }, rehearsed

    must(make(project, "migrate", env=env))
    assert server.fetch(
        database, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_item_sku'::regclass"
    ) == [(True,)]
    assert server.fetch(
        database, "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_item_owner_id_owner'"
    ) == [(True,)]
    assert "No new upgrade operations detected" in must(make(project, "check", env=env))


def test_lint_reads_every_ignore_line_and_names_the_revision(
    project: Path, env: dict[str, str]
) -> None:
    # The safe NOT NULL drops its temporary CHECK with the ignore comment squawk reads. (Both
    # revisions are pre ones, which the phase rule reads too: each accepts that in its file.)
    accept = "    # lint-migrations: contracts in pre: squawk's own findings are under test\n"
    empty_revision(project, env, "name not null", accept + '    op.set_not_null("item", "name")')
    path = empty_revision(
        project,
        env,
        "blocking changes",
        accept + '    op.create_index("ix_item_description", "item", ["description"])\n'
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
        # The template's own revision and the safe forms are not among the findings.
        assert "create_item" not in flagged.stdout and "name_not_null" not in summary

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
