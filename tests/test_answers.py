"""Template answers a newcomer may type: quotes, backslashes and non-ASCII letters render a valid
project; line breaks, quotes in names and names that shadow a dependency are refused with the
hook's short message; the next steps name the right folder; `args=` stays with the template."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import TEMPLATE, bake, clean_env, must, run


def render(
    tmp_path: Path, *answers: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The cookiecutter command line, from `cwd` (PWD set as a shell sets it)."""
    folder = cwd or tmp_path
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE), *answers]
    return run(folder, *command, env=clean_env(PWD=str(folder)))


def test_quotes_and_backslashes_render_a_valid_project(tmp_path: Path) -> None:
    name = 'Ledger \\ "Q" \\N'
    description = 'Says "hi" \\ and C:\\new\\table, ends with a quote"'
    author = 'O"Brien \\'
    project = bake(tmp_path, project_name=name, description=description, author_name=author)
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert metadata["description"] == description
    assert metadata["authors"] == [{"name": author}]
    init = project / "src" / project.name.replace("-", "_") / "__init__.py"
    assert (
        ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) == f"{name}: {description}"
    )
    must(run(project, sys.executable, "-m", "ruff", "check", "."))
    must(run(project, sys.executable, "-m", "ruff", "format", "--check", "."))


def test_unicode_project_name_gets_an_ascii_slug(tmp_path: Path) -> None:
    project = bake(tmp_path, project_name="Café Ünïcode Señor")
    assert project.name == "cafe-unicode-senor"
    assert (project / "src" / "cafe_unicode_senor" / "__init__.py").is_file()


@pytest.mark.parametrize("field", ["project_name", "description", "author_name"])
def test_line_break_in_an_answer_is_refused(tmp_path: Path, field: str) -> None:
    result = render(tmp_path, f"{field}=first line\nsecond line")
    assert result.returncode != 0
    assert f"ERROR: {field} contains a line break" in result.stdout, result.stdout
    assert [path.name for path in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ('project_slug=my"service', "project_slug 'my\"service' is not valid"),
        ('package_name=my"pkg', "package_name 'my\"pkg' is not a valid Python package name"),
        ("package_name=my\\pkg", "is not a valid Python package name"),
    ],
)
def test_quote_in_a_name_gets_the_short_message(
    tmp_path: Path, answer: str, complaint: str
) -> None:
    result = render(tmp_path, answer)
    assert result.returncode != 0
    assert complaint in result.stdout, result.stdout
    assert "SyntaxError" not in result.stdout
    assert [path.name for path in tmp_path.iterdir()] == []


@pytest.mark.parametrize(
    "package", ["alembic", "tests", "sqlalchemy", "sqlmodel", "pydantic", "fastapi", "httpx"]
)
def test_package_shadowing_a_dependency_or_folder_is_refused(tmp_path: Path, package: str) -> None:
    result = render(tmp_path, f"package_name={package}")
    assert result.returncode != 0
    assert f"package_name {package!r} would shadow a dependency or a folder" in result.stdout
    assert [path.name for path in tmp_path.iterdir()] == []


def test_no_import_name_a_render_installs_is_a_package_name_it_accepts(
    default_project: Path,
) -> None:
    """The hook's list of taken names holds every top-level import name installed in a render
    (its dependencies' dependencies too): a package named like one shadows it."""
    hook = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8")
    words = hook.split("TAKEN = set(", 1)[1].split('"""')[1]
    taken = set(words.split())
    names = "import importlib.metadata as m, json; print(json.dumps([*m.packages_distributions()]))"
    installed = json.loads(must(run(default_project, ".venv/bin/python", "-c", names)))
    valid = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
    missing = {
        name
        for name in installed
        if valid.match(name) and name not in sys.stdlib_module_names and name not in taken
    }
    assert not missing, f"add to TAKEN in hooks/pre_gen_project.py: {sorted(missing)}"


def test_next_steps_name_the_folder_from_where_cookiecutter_ran(tmp_path: Path) -> None:
    output = must(render(tmp_path, "--output-dir", "build/demo"))
    assert "cd build/demo/my-service\n" in output, output


def test_bench_args_do_not_reach_the_rendered_projects_make(tmp_path: Path) -> None:
    # `make bench` runs benchmarks/run.py, which runs `make test` in a rendered project. A
    # stand-in python records the environment it gets: the project's make would read `args`
    # from it, or from MAKEFLAGS.
    (tmp_path / "python").write_text(f"#!/bin/sh\nenv > {tmp_path}/env\n", encoding="utf-8")
    (tmp_path / "python").chmod(0o755)
    result = subprocess.run(
        ["make", "-o", ".venv/.installed", "bench", f"BIN={tmp_path}", "args=--leaked"],
        cwd=TEMPLATE,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    environment = (tmp_path / "env").read_text(encoding="utf-8")
    assert "--leaked" not in environment


def test_readme_render_commands_name_a_local_clone_and_where_cookiecutter_comes_from() -> None:
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    block = readme.split("To render a project of your own", 1)[1].split("```bash", 1)[1]
    commands = block.split("```", 1)[0].strip().splitlines()
    assert "<owner>" not in readme
    runners = [line.split("cookiecutter ")[0] for line in commands]
    assert runners[:2] == ["uvx ", "pipx run "] and runners[2] == ".venv/bin/"
    # The local form, run as written from this folder, renders.
    folder = commands[2].split("#")[0].split()[1]
    assert (TEMPLATE / folder / "cookiecutter.json").is_file()


def test_one_deleted_line_switches_every_install_to_the_published_toolkit(tmp_path: Path) -> None:
    """The README's switch from vendor/ to the published alembic-steady: deleting the
    [tool.uv.sources] line, then `make lock`, moves the pip fallback of `make install`, the lock
    and the Dockerfile's install (its RUN line, run here into a scratch /venv) off vendor/. The
    release is not on PyPI yet, so a wheel built from vendor/ stands in for the index."""
    project = bake(tmp_path)
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    docker_run = dockerfile.split("\nRUN uv sync", 1)[1].split("\n", 1)[0]
    venv = tmp_path / "image-venv"
    # The Dockerfile's ENV, pointed here; uv's cache kept (--no-cache only keeps the image small).
    image_env = clean_env(
        UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=sys.executable, UV_LINK_MODE="copy"
    )
    command = ["uv", "sync", *docker_run.replace("--no-cache", "").split()]

    def installs() -> tuple[str, subprocess.CompletedProcess[str]]:
        # `make -n` prints the recipe (each branch of its `command -v uv`) without running it.
        recipe = must(run(project, "make", "-n", "install")).splitlines()
        pip_line = next(line for line in recipe if "--no-deps" in line)
        return pip_line, run(project, *command, env=image_env)

    def toolkit_in_image() -> str:
        site = next(venv.glob("lib/python*/site-packages"))
        assert not list(site.glob("*.pth")), "an editable link in the image"
        assert not list(site.glob("pytest*")), "a dev tool in the image"
        return next(site.glob("alembic_steady-*.dist-info")).name

    assert "--locked" in command and "--no-editable" in command
    pip_line, docker = installs()
    assert "-e vendor/alembic-steady" in pip_line
    must(docker)
    assert toolkit_in_image() == "alembic_steady-0.1.0.dist-info"

    pyproject = project / "pyproject.toml"
    lines = pyproject.read_text(encoding="utf-8").splitlines(keepends=True)
    pyproject.write_text(
        "".join(line for line in lines if not line.startswith("alembic-steady = {")),
        encoding="utf-8",
    )
    pip_line, docker = installs()
    assert "vendor" not in pip_line and "-e ." in pip_line
    # The lock still names vendor/: the image build stops (--locked) rather than install it.
    assert docker.returncode != 0, docker.stdout
    wheels = tmp_path / "index"
    must(run(project, "uv", "build", "--wheel", "-o", str(wheels), "vendor/alembic-steady"))
    must(run(project, "make", "lock", env=clean_env(UV_FIND_LINKS=str(wheels))))
    lock = (project / "uv.lock").read_text(encoding="utf-8")
    assert "vendor/alembic-steady" not in lock
    requirements = (project / "requirements-dev.txt").read_text(encoding="utf-8")
    # Pinned for pip (hashed where an index serves it; the local stand-in has none to export).
    assert "\nalembic-steady==0.1.0" in requirements and "vendor" not in requirements
    shutil.rmtree(venv)
    must(run(project, *command, env={**image_env, "UV_FIND_LINKS": str(wheels)}))
    toolkit_in_image()
