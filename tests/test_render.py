"""Rendering: names, every option combination, no template leftovers, lint-clean output, and
answers refused before anything is written."""

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException

from .conftest import TEMPLATE, bake, clean_env, must, run

OPTIONS = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
CHOICES = ("database", "web_framework", "python_version", "github_actions")
COMBINATIONS = [
    dict(zip(CHOICES, values, strict=True))
    for values in itertools.product(*(OPTIONS[choice] for choice in CHOICES))
]
# What only the FastAPI option renders (pruned by hooks/post_gen_project.py otherwise).
WEB_ONLY = ("src/my_service/app", "tests/test_app.py", "deploy/deployment.yaml")
# What `make help` lists in every project (with FastAPI, `run` too).
MAKE_TARGETS = (
    "help",
    "install",
    "lock",
    "upgrade-deps",
    "pre-commit",
    "db-up",
    "db-down",
    "db-reset",
    "migrate",
    "migration",
    "migration-empty",
    "rollback",
    "stamp",
    "current",
    "history",
    "heads",
    "merge",
    "check",
    "check-history",
    "migration-rebase",
    "squash",
    "accept-edit",
    "sql",
    "plan",
    "fleet-migrate",
    "fleet-status",
    "backup",
    "restore",
    "psql",
    "rehearse",
    "backfill",
    "backfill-status",
    "backfill-pause",
    "backfill-resume",
    "test",
    "lint-migrations",
    "lint",
    "format",
    "clean",
    "migration-current",
    "migration-history",
    "migration-stamp",
)
BACKFILL_TARGETS = ("backfill", "backfill-status", "backfill-pause", "backfill-resume")
LEFTOVER = re.compile(r"{{|}}|{%|%}|cookiecutter\.")
# GitHub Actions' own expressions (`${{ matrix.image }}`) in a render's workflows are not ours.
GITHUB_EXPRESSION = re.compile(r"\$\{\{[^{}]*\}\}")


# A default render owns at most this many lines of Python outside vendor/ (the toolkit's copy,
# which an update replaces): the machinery is the library's, not every project's (issue #20).
OWN_PYTHON_LINES = 1200


def test_defaults(tmp_path: Path) -> None:
    project = bake(tmp_path)
    assert project.name == "my-service"
    assert (project / "src" / "my_service" / "models" / "item.py").is_file()
    assert 'name = "my-service"' in (project / "pyproject.toml").read_text(encoding="utf-8")
    assert (project / ".github" / "workflows" / "ci.yml").is_file()
    own = {
        str(path.relative_to(project)): len(path.read_text(encoding="utf-8").splitlines())
        for path in project.rglob("*.py")
        if "vendor" not in path.relative_to(project).parts
    }
    assert sum(own.values()) <= OWN_PYTHON_LINES, sorted(own.items(), key=lambda item: -item[1])


def test_custom_name(tmp_path: Path) -> None:
    project = bake(tmp_path, project_name="Billing Ledger API")
    assert project.name == "billing-ledger-api"
    assert (project / "src" / "billing_ledger_api" / "migrations" / "env.py").is_file()
    assert "# Billing Ledger API" in (project / "README.md").read_text(encoding="utf-8")


def test_next_steps_are_printed(tmp_path: Path) -> None:
    # PWD as a shell sets it: the hook says `cd` relative to the folder cookiecutter ran in.
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE)]
    result = run(tmp_path, *command, env=clean_env(PWD=str(tmp_path)))
    output = must(result)
    for step in ("cd my-service", "make install", "make db-up", "make migrate"):
        assert step in output


def python_files(project: Path) -> dict[str, str]:
    """What ruff and mypy read: the Python files and pyproject.toml, by path."""
    paths = [*project.rglob("*.py"), project / "pyproject.toml"]
    return {str(path.relative_to(project)): path.read_text(encoding="utf-8") for path in paths}


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per Python version, shared by the combinations (per xdist worker)."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize("answers", COMBINATIONS, ids=lambda a: "-".join(a.values()))
def test_every_combination_renders_clean_and_type_checks(
    tmp_path: Path, answers: dict[str, str], default_project: Path, mypy_cache: Path
) -> None:
    project = bake(tmp_path, **answers)
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            # Mako's ${...} in script.py.mako is Alembic's template, not a leftover.
            if ".github" in path.parts:
                text = GITHUB_EXPRESSION.sub("", text)
            assert not LEFTOVER.search(text), f"unrendered template text in {path}"
    assert (project / ".github").exists() == (answers["github_actions"] == "yes")
    # Dependabot's updates come with the workflow that checks them (test_service validates both).
    assert (project / ".github" / "dependabot.yml").exists() == (answers["github_actions"] == "yes")
    web = answers["web_framework"] == "fastapi"
    mysql = answers["database"] == "mysql"
    for path in WEB_ONLY:
        assert (project / path).exists() == web, path
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    assert f'requires-python = ">={answers["python_version"]}"' in pyproject
    assert ('"fastapi>=' in pyproject) == web
    assert ('"aiomysql>=' in pyproject, '"asyncpg>=' in pyproject) == (mysql, not mysql)
    assert (project / ".squawk.toml").exists() == (not mysql)  # squawk lints PostgreSQL's SQL
    # The queued backfills and their runner are PostgreSQL's.
    assert (project / "deploy" / "backfill-cronjob.yaml").exists() == (not mysql)
    assert not list(project.rglob("*_mysql.*")), "a MySQL variant left under its own name"
    assert ("\nrun: " in (project / "Makefile").read_text(encoding="utf-8")) == web
    # Every target of the Makefile parses and is listed, whatever the answers cut out of it.
    listed = set(re.findall(r"^  ([a-z-]+) ", must(run(project, "make", "help")), re.M))
    expected = {*MAKE_TARGETS, *(("run",) if web else ()), *(("dbshell",) if mysql else ())}
    # rehearse restores with pg_restore; the queued backfills are PostgreSQL's.
    expected -= {"rehearse", *BACKFILL_TARGETS} if mysql else set()
    assert listed == expected, listed ^ expected
    if answers["github_actions"] == "no":
        # The answer adds .github/ only: the code is that of the render with it, linted there.
        with_ci = bake(tmp_path / "with-ci", **{**answers, "github_actions": "yes"})
        assert python_files(project) == python_files(with_ci)
        return
    ruff = [sys.executable, "-m", "ruff"]
    must(run(project, *ruff, "check", "."))
    must(run(project, *ruff, "format", "--check", "."))
    # mypy --strict from the default project's installed environment (a superset of every
    # combination's dependencies), so each combination costs a type check, not an install. Its
    # files come first on mypy's path, ahead of the default project's editable install.
    mypy = default_project / ".venv" / "bin" / "mypy"
    must(run(project, str(mypy), "--cache-dir", str(mypy_cache / answers["python_version"])))


@pytest.mark.parametrize(
    ("answers", "complaint"),
    [
        ({"project_slug": "My Service!"}, "project_slug"),
        ({"project_slug": "-service"}, "project_slug"),
        ({"package_name": "my-service"}, "package_name"),
        ({"package_name": "9lives"}, "package_name"),
        ({"package_name": "class"}, "keyword"),
        ({"package_name": "asyncio"}, "standard library"),
        ({"package_name": "a" * 40}, "package_name"),
        ({"project_slug": "a" * 41}, "at most 40 characters"),
        # A dependency's import name would shadow it (`alembic` breaks every migration command),
        # a folder's would clash with it.
        ({"package_name": "alembic"}, "would shadow a dependency"),
        ({"package_name": "tests"}, "would shadow a dependency or a folder"),
    ],
)
def test_invalid_answers_write_nothing(
    tmp_path: Path, answers: dict[str, str], complaint: str
) -> None:
    args = [f"{key}={value}" for key, value in answers.items()]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_invalid_answers_raise_from_the_api(tmp_path: Path) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, package_name="import")
