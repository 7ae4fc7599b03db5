"""Long revision chains for a rendered project: N tables, N revisions, N matching model modules.

Files are written straight into the project's `versions/` and `models/` folders, bypassing
`alembic revision`, so building a 300-revision chain costs milliseconds instead of 300 Alembic
start-ups. Each generated revision mirrors what autogenerate writes for its model, so the
"models match the migrations" tests pass on every chain.
"""

import re
from pathlib import Path

# Generated files carry this prefix, so a later chain can remove exactly them.
PREFIX = "bench_t"
REVISION_RE = re.compile(r'^revision(?:: str)? = "([^"]+)"', re.MULTILINE)
DOWN_RE = re.compile(r"^down_revision[^=]*= (.+)$", re.MULTILINE)

REVISION_TEMPLATE = '''"""{doc}

Revision ID: {revision}
Revises: {down}
Create Date: {date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = "{down}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''
# What autogenerate writes for one model of the chain.
CREATE_TABLE = """\
    op.create_table(
        "{table}",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_{table}")),
    )
    op.create_index(op.f("ix_{table}_name"), "{table}", ["name"], unique=False)"""
DROP_TABLE = """\
    op.drop_index(op.f("ix_{table}_name"), table_name="{table}")
    op.drop_table("{table}")"""

MODEL_TEMPLATE = '''"""Benchmark table {table}: one of a generated chain."""

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class {cls}(SQLModel, table=True):
    __tablename__ = "{table}"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    name: str = Field(index=True)
'''


def package_dir(project: Path) -> Path:
    """The project's single package under src/ (its name depends on the template's answers)."""
    (package,) = (p for p in (project / "src").iterdir() if (p / "__init__.py").is_file())
    return package


def clear(project: Path) -> None:
    """Remove every file a previous chain generated."""
    package = package_dir(project)
    for path in (package / "migrations" / "versions").glob(f"*_{PREFIX}*.py"):
        path.unlink()
    for path in (package / "models").glob(f"{PREFIX}*.py"):
        path.unlink()


def template_revisions(project: Path) -> tuple[int, str]:
    """How many revisions the template ships, and its single head, read from the files.

    Parsed rather than asked of Alembic: this runs in the benchmark's own venv, which need not
    have the project's dependencies.
    """
    versions = package_dir(project) / "migrations" / "versions"
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        if match := REVISION_RE.search(text):
            revisions.add(match.group(1))
        if match := DOWN_RE.search(text):
            downs.update(re.findall(r'"([^"]+)"', match.group(1)))
    heads = revisions - downs
    if len(heads) != 1:
        raise RuntimeError(f"expected the template to ship one head, found {sorted(heads)}")
    return len(revisions), heads.pop()


def write_chain(project: Path, total: int, baseline: int = 0) -> int:
    """Make the project's chain `total` revisions long; return how many were generated.

    The template's own revisions count towards `total`, so per-revision figures divide by the
    real length of the chain the tests walk. With `baseline`, the first generated revision is a
    squashed baseline creating that many tables (each with its index and model), as a history
    whose old revisions were squashed starts: a large first revision.
    """
    clear(project)
    shipped, down = template_revisions(project)
    package = package_dir(project)
    versions = package / "migrations" / "versions"
    models = package / "models"
    generated = max(total - shipped, 0)
    if baseline and generated:
        tables = [f"{PREFIX}b{index:04d}" for index in range(1, baseline + 1)]
        revision = "bb0000000000"
        (versions / f"20260101_0000_{revision}_{PREFIX}baseline.py").write_text(
            REVISION_TEMPLATE.format(
                doc=f"squashed baseline: {baseline} tables",
                revision=revision,
                down=down,
                date="2026-01-01 00:00:00",
                upgrade="\n".join(CREATE_TABLE.format(table=table) for table in tables),
                downgrade="\n".join(DROP_TABLE.format(table=table) for table in reversed(tables)),
            )
        )
        for index, table in enumerate(tables, 1):
            (models / f"{table}.py").write_text(
                MODEL_TEMPLATE.format(table=table, cls=f"BenchB{index:04d}")
            )
        down, generated = revision, generated - 1
    for index in range(1, generated + 1):
        table = f"{PREFIX}{index:04d}"
        # Hex ids like Alembic's own, and distinct from any 12-digit one the template ships.
        revision = f"be{index:010x}"
        name = f"20260102_0000_{revision}_create_{table}.py"
        (versions / name).write_text(
            REVISION_TEMPLATE.format(
                doc=f"create {table}",
                revision=revision,
                down=down,
                date="2026-01-02 00:00:00",
                upgrade=CREATE_TABLE.format(table=table),
                downgrade=DROP_TABLE.format(table=table),
            )
        )
        (models / f"{table}.py").write_text(
            MODEL_TEMPLATE.format(table=table, cls=f"BenchT{index:04d}")
        )
        down = revision
    return generated + (1 if baseline else 0)
