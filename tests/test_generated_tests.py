"""The generated project's own `make test` passes on a real PostgreSQL, with nothing skipped."""

import os
import re
from pathlib import Path

from .conftest import clean_env, make, must


def test_generated_make_test_passes(default_project: Path) -> None:
    env = clean_env(CI="true")
    if "TEST_DATABASE_URL" in os.environ:
        env["TEST_DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
    output = must(make(default_project, "test", "args=-v", env=env))
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary and "failed" not in summary
    for test in ("test_stairway", "test_upgrade_base_to_head", "test_models_match_head_schema", "test_single_head"):
        assert f"{test} PASSED" in output
