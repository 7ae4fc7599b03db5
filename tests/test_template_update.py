"""Taking a newer template version: a project made with `cruft create` records its answers and
the template commit in `.cruft.json`, and `cruft update` brings a later commit's changes in while
the user's own edits and files stay. The template is a local git repository with two commits, so
no network is used."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from .conftest import TEMPLATE, clean_env, must, run

BIN = Path(sys.executable).parent
# Files of this checkout that are not the template's: virtualenvs, renders, caches.
NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".venv*", "build", ".pytest_cache", ".ruff_cache", ".mypy_cache", "__pycache__"
)
USER_NOTE = "# Our team's note: item names are unique per tenant.\n"
V2_SECTION = "\n## Added in template v2\n"
TOOLKIT_FIX = "\n# A fix of toolkit v2.\n"


def git_env() -> dict[str, str]:
    return clean_env(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        GIT_CONFIG_NOSYSTEM="1",
    )


def commit_all(repo: Path, message: str) -> str:
    env = git_env()
    must(run(repo, "git", "add", "-A", env=env))
    must(run(repo, "git", "commit", "--quiet", "--no-verify", "-m", message, env=env))
    return must(run(repo, "git", "rev-parse", "HEAD", env=env)).strip()


@pytest.fixture
def template_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository of this template: commit v1 is the current tree; its second commit is
    made by the test."""
    repo = tmp_path / "template"
    # symlinks=True: vendor/alembic-steady stays a link to the toolkit, as in git.
    shutil.copytree(TEMPLATE, repo, ignore=NOT_TEMPLATE, symlinks=True)
    must(run(repo, "git", "init", "--quiet", "--initial-branch=main", env=git_env()))
    return repo, commit_all(repo, "v1")


def test_update_brings_template_changes_and_keeps_user_edits(
    template_repo: tuple[Path, str], tmp_path: Path
) -> None:
    repo, v1 = template_repo
    cruft = str(BIN / "cruft")
    env = git_env()
    must(
        run(
            tmp_path,
            cruft,
            "create",
            str(repo),
            "--no-input",
            "--output-dir",
            str(tmp_path / "out"),
            "--extra-context",
            json.dumps({"project_name": "Ledger", "web_framework": "none"}),
            env=env,
        )
    )
    project = tmp_path / "out" / "ledger"
    recorded = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert recorded["commit"] == v1
    assert recorded["context"]["cookiecutter"]["web_framework"] == "none"

    # The user's project: in git, with an edit to a generated file and a file of their own.
    must(run(project, "git", "init", "--quiet", "--initial-branch=main", env=env))
    commit_all(project, "rendered")
    item = project / "src" / "ledger" / "models" / "item.py"
    item.write_text(item.read_text(encoding="utf-8") + USER_NOTE, encoding="utf-8")
    own = project / "src" / "ledger" / "models" / "invoice.py"
    own.write_text('"""Our own model module."""\n', encoding="utf-8")
    env_py = project / "src" / "ledger" / "migrations" / "env.py"
    env_py.write_text(env_py.read_text(encoding="utf-8") + USER_NOTE, encoding="utf-8")
    commit_all(project, "our work")

    # Template v2 changes the generated README, adds a file, and fixes the toolkit.
    toolkit_file = Path("src", "alembic_steady", "runner", "messages.py")
    fixed = repo / "packages" / "alembic-steady" / toolkit_file
    fixed.write_text(fixed.read_text(encoding="utf-8") + TOOLKIT_FIX, encoding="utf-8")
    readme = repo / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + V2_SECTION, encoding="utf-8")
    (repo / "{{cookiecutter.project_slug}}" / "CHANGES.md").write_text(
        "# Changes of {{ cookiecutter.project_name }}\n", encoding="utf-8"
    )
    v2 = commit_all(repo, "v2")

    assert run(project, cruft, "check", env=env).returncode != 0, "v2 not seen as newer"
    must(run(project, cruft, "update", "--skip-apply-ask", env=env))

    assert (project / "README.md").read_text(encoding="utf-8").endswith(V2_SECTION)
    # The toolkit's fix reaches vendor/ as a whole-file change, with no conflict in the files the
    # team owns (their env.py edit stays), and no .rej file anywhere.
    vendored = project / "vendor" / "alembic-steady" / toolkit_file
    assert vendored.read_text(encoding="utf-8").endswith(TOOLKIT_FIX)
    assert env_py.read_text(encoding="utf-8").endswith(USER_NOTE)
    assert not list(project.rglob("*.rej"))
    assert (project / "CHANGES.md").read_text(encoding="utf-8") == "# Changes of Ledger\n"
    assert item.read_text(encoding="utf-8").endswith(USER_NOTE)
    assert own.is_file()
    # The answers stay; only the template commit moves, so the next update starts from v2.
    recorded = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert recorded["commit"] == v2
    assert recorded["context"]["cookiecutter"]["web_framework"] == "none"
    assert not (project / "src" / "ledger" / "app").exists()
    must(run(project, cruft, "check", env=env))
