"""The unit tier: no database, no network, no sleeping."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary folder of the test's own, outside pytest's base folder.

    Creating pytest's /tmp/pytest-of-<user> resets it to mode 0700 (locking out an embedded
    server that the integration tiers may be running from below it) and sweeps its old runs,
    which can take long after big integration runs: the unit tier keeps out of it.
    """
    with tempfile.TemporaryDirectory(prefix="alembic-steady-unit-") as folder:
        yield Path(folder).resolve()
