"""Each option value passes its own generated `make test` after a real install (test_render.py
lints every combination): `web_framework=none` on the default Python (the default answers are
covered by test_readme_promises.py), and the FastAPI project on every other supported Python
found on this machine (pyenv's versions, as on the development machine and CI)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TEMPLATE, bake, clean_env, make, must

OPTIONS = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
DEFAULT_PYTHON = OPTIONS["python_version"][0]


def pyenv_python(version: str) -> Path | None:
    """The newest pyenv-installed interpreter of `version` (e.g. 3.12), if any."""
    root = os.environ.get("PYENV_ROOT")
    if root is None and shutil.which("pyenv"):
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False
        ).stdout.strip()
    found = sorted(
        Path(root or Path.home() / ".pyenv").glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    return found[-1] if found else None


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder outside pytest's basetemp. The project's embedded PostgreSQL runs as another user
    and needs to traverse the path to its binaries in .venv; every pytest process that starts
    (the project's own `make test`, a parallel run) resets /tmp/pytest-of-<user> to mode 0700."""
    with tempfile.TemporaryDirectory(prefix="tmpl-combination-") as folder:
        yield Path(folder)


def install_and_test(project: Path, *install_args: str) -> None:
    """Install and run the generated tests (test_render lints every combination already)."""
    must(make(project, "install", *install_args))
    output = must(make(project, "test", "args=-p no:cacheprovider", env=clean_env(CI="true")))
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary


def test_without_web_framework(workdir: Path) -> None:
    install_and_test(bake(workdir, web_framework="none"))


@pytest.mark.parametrize("version", [v for v in OPTIONS["python_version"] if v != DEFAULT_PYTHON])
def test_fastapi_on_python(workdir: Path, version: str) -> None:
    python = pyenv_python(version)
    if python is None:
        pytest.fail(
            f"No Python {version} found under pyenv's versions/: install it "
            f"(pyenv install {version}) or deselect with -k 'not {version}'."
        )
    project = bake(workdir, python_version=version)
    install_and_test(project, f"PYTHON={python}")
    venv_python = project / ".venv" / "bin" / "python"
    version_output = subprocess.run(
        [str(venv_python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version_output.strip() == str(tuple(int(p) for p in version.split("."))), version_output
