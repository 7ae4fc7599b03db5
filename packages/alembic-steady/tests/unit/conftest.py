"""The unit tier: no database, no network, no sleeping."""

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary folder of the test's own, outside pytest's base folder.

    Creating pytest's /tmp/pytest-of-<user> resets it to mode 0700 (locking out an embedded
    server that the integration tiers may be running from below it) and sweeps its old runs,
    which can take long after big integration runs: the unit tier keeps out of it.
    """
    with tempfile.TemporaryDirectory(prefix="alembic-steady-unit-") as folder:
        yield Path(folder).resolve()


@pytest.fixture
def offline() -> Iterator[tuple[Operations, io.StringIO]]:
    """Operations printing PostgreSQL's SQL (as `make sql` runs them), and what they printed."""
    output = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": output}
    )
    yield Operations(context), output
