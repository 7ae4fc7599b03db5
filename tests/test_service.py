"""The generated project as a running service: `make run` serves and its readiness follows the
migrations; the built wheel, installed in a clean venv with no source tree and no alembic.ini,
migrates and waits for head on its own and serves the app (what the Dockerfile, the compose
`migrate` service and the Kubernetes Job and init container run); pre-commit passes on a fresh
render and stops a model change without its revision; the deployment files lint clean.

The render gets a second revision, so a database can stand between two revisions, as while a
release's migrate job runs: neither readiness nor wait-for-head may take that for head."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from .conftest import Server, bake, clean_env, make, must, revision_id, run, versions

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    """Status and JSON body of GET http://127.0.0.1:port/path, 503 included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def serving(args: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[None]:
    """Run a server in its own process group until /health/live answers; stop the group after."""
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(port, "/health/live")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"{args} did not serve on port {port}:\n{output}")
            time.sleep(0.2)
        yield
    finally:
        # The reloader of `make run` has children of its own: stop the whole group we started.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh render in a git repository of its own, then `make install` (which installs the
    pre-commit hook there), then a second, empty revision as `make migration-empty` writes it."""
    project = bake(tmp_path_factory.mktemp("service"))
    must(run(project, "git", "init", "--quiet", "--initial-branch=main"))
    must(make(project, "install"))
    must(make(project, "migration-empty", "msg=second step"))
    return project


@pytest.fixture(scope="module")
def chain(project: Path) -> tuple[str, str]:
    """The template's revision and the head above it."""
    (first,) = [revision_id(path) for path in versions(project) if "create_item" in path.name]
    (head,) = {revision_id(path) for path in versions(project)} - {first}
    return first, head


@pytest.fixture(scope="module")
def wheel_venv(project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The project's wheel and a clean venv with only that wheel, the toolkit's (built from
    vendor/, as the Dockerfile builds it) and their dependencies."""
    dist, toolkit = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("toolkit")
    build = [str(BIN / "uv"), "build", "--wheel", "--out-dir"]
    must(run(project, *build, str(dist)))
    must(run(project, *build, str(toolkit), str(project / "vendor" / "alembic-steady")))
    (wheel,) = dist.glob("*.whl")
    (toolkit_wheel,) = toolkit.glob("*.whl")
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    python = project / ".venv" / "bin" / "python"
    must(run(dist, str(BIN / "uv"), "venv", "--quiet", "--python", str(python), str(venv)))
    install = [str(BIN / "uv"), "pip", "install", "--quiet", "--python", str(venv)]
    must(run(dist, *install, str(toolkit_wheel), str(wheel)))
    return wheel, venv


def test_wheel_carries_the_migrations(wheel_venv: tuple[Path, Path], project: Path) -> None:
    names = set(zipfile.ZipFile(wheel_venv[0]).namelist())
    for path in (
        "migrations/__main__.py",
        "migrations/env.py",
        "migrations/script.py.mako",
        f"migrations/versions/{versions(project)[0].name}",
        "app/factory.py",
    ):
        assert f"my_service/{path}" in names, path


def test_wheel_migrates_waits_for_head_and_serves(
    wheel_venv: tuple[Path, Path], chain: tuple[str, str], server: Server, tmp_path: Path
) -> None:
    # An empty working directory: no source tree, no alembic.ini, no .env.
    venv = wheel_venv[1]
    head = chain[1]
    migrations = [str(venv / "bin" / "python"), "-m", "my_service.migrations"]
    with server.new_database("tmpl_wheel") as db:
        env = clean_env(DATABASE_URL=server.url(db))

        early = run(tmp_path, *migrations, "wait-for-head", "--timeout", "1", env=env)
        assert early.returncode == 1, early.stdout
        assert "Not at head after 1s" in early.stdout and "upgrade" in early.stdout

        # An init container started before the migrate job: it waits, then sees head.
        waiter = subprocess.Popen(
            [*migrations, "wait-for-head", "--timeout", "60", "--interval", "0.2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            must(run(tmp_path, *migrations, "upgrade", env=env))
            assert waiter.wait(timeout=60) == 0
        finally:
            if waiter.poll() is None:
                waiter.kill()
        assert server.tables(db) == {"item"}
        assert server.version(db) == {head}
        assert f"Rev: {head} (head)" in must(run(tmp_path, *migrations, "current", env=env))
        must(run(tmp_path, *migrations, "wait-for-head", "--timeout", "5", env=env))

        # What the image's command runs.
        port = free_port()
        uvicorn = [str(venv / "bin" / "uvicorn"), "my_service.app:create_app", "--factory"]
        with serving([*uvicorn, "--port", str(port)], tmp_path, env, port):
            assert get(port, "/health/ready") == (200, {"status": "ready", "revision": [head]})


def test_wait_for_head_below_head_waits_its_timeout_in_seconds(
    wheel_venv: tuple[Path, Path], chain: tuple[str, str], server: Server, tmp_path: Path
) -> None:
    # One revision short of head, as while a release's migrate job runs: the init container
    # keeps waiting for --timeout seconds (not minutes), then says where the database is.
    first, head = chain
    migrations = [str(wheel_venv[1] / "bin" / "python"), "-m", "my_service.migrations"]
    timeout, interval = 2.0, 0.2
    with server.new_database("tmpl_behind") as db:
        env = clean_env(DATABASE_URL=server.url(db))
        must(run(tmp_path, *migrations, "upgrade", first, env=env))
        started = time.monotonic()
        waiter = subprocess.Popen(
            [
                *migrations,
                "wait-for-head",
                "--timeout",
                f"{timeout:g}",
                "--interval",
                f"{interval:g}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # 20 s: the 2 s wait and a slow start on a busy machine, far below the 120 s that
            # minutes read as seconds would take.
            status = waiter.wait(timeout=20)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()
        elapsed = time.monotonic() - started
        output = waiter.stdout.read() if waiter.stdout else ""
        assert status == 1, f"exit status {status} after {elapsed:.0f}s:\n{output}"
        # It gives up at the first check past the deadline less one interval, not before.
        assert elapsed >= timeout - interval, f"gave up after {elapsed:.1f}s:\n{output}"
        assert f"Not at head after 2s: the database is at {first}, head is {head}" in output


def test_bad_input_is_explained_without_the_password(
    wheel_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    migrations = [str(wheel_venv[1] / "bin" / "python"), "-m", "my_service.migrations"]
    unreachable = clean_env(DATABASE_URL="postgresql://app:s3cret-pw@127.0.0.1:1/app")
    for command in ("upgrade", "current"):
        result = run(tmp_path, *migrations, command, env=unreachable)
        assert result.returncode == 1, result.stdout
        assert "Cannot connect" in result.stdout and "s3cret-pw" not in result.stdout

    result = run(tmp_path, *migrations, "wait-for-head", "--timeout", "1", env=unreachable)
    assert result.returncode == 1
    assert "cannot connect" in result.stdout and "s3cret-pw" not in result.stdout

    result = run(tmp_path, *migrations, "wait-for-head", "--timeout", "0", env=unreachable)
    assert result.returncode == 2 and "above 0" in result.stdout

    result = run(tmp_path, *migrations, "downgrade", "base", env=unreachable)
    assert result.returncode == 2 and "invalid choice" in result.stdout

    wrong = clean_env(DATABASE_URL="mysql://app:s3cret-pw@127.0.0.1/app")
    result = run(tmp_path, *migrations, "wait-for-head", "--timeout", "1", env=wrong)
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stdout and "s3cret-pw" not in result.stdout


def test_make_run_serves_and_ready_follows_make_migrate(
    project: Path, chain: tuple[str, str], server: Server
) -> None:
    first, head = chain
    with server.new_database("tmpl_run") as db:
        port = free_port()
        env = clean_env(DATABASE_URL=server.url(db), PORT=str(port))
        with serving(["make", "--no-print-directory", "run"], project, env, port):
            status, body = get(port, "/health/ready")
            assert status == 503 and body["current"] == [], body
            # One revision short of head: still not ready.
            must(make(project, "migrate", f"rev={first}", env=env))
            status, body = get(port, "/health/ready")
            assert status == 503, body
            assert (body["current"], body["head"]) == ([first], [head]), body
            must(make(project, "migrate", env=env))
            assert get(port, "/health/ready")[0] == 200
            assert get(port, "/items")[0] == 200


def test_pre_commit_passes_on_a_fresh_render_and_stops_drift(project: Path, server: Server) -> None:
    assert (project / ".git" / "hooks" / "pre-commit").is_file(), "make install set no hook"
    pre_commit = str(project / ".venv" / "bin" / "pre-commit")
    with server.new_database("tmpl_hooks") as db:
        env = clean_env(DATABASE_URL=server.url(db))
        env["PRE_COMMIT_HOME"] = str(project.parent / "pre-commit-home")
        must(make(project, "migrate", env=env))
        must(run(project, "git", "add", "-A", env=env))
        output = must(run(project, pre_commit, "run", "--all-files", env=env))
        for hook in ("ruff check", "ruff format", "mypy --strict", "make check"):
            assert re.search(rf"^{re.escape(hook)}.*Passed$", output, re.M), output

        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        must(run(project, *git, "commit", "--quiet", "--no-verify", "-m", "render", env=env))

        # A model without its revision: the commit is stopped by `make check`.
        widget = project / "src" / "my_service" / "models" / "widget.py"
        widget.write_text(
            "from sqlmodel import Field, SQLModel\n\n\n"
            "class Widget(SQLModel, table=True):\n"
            "    id: int | None = Field(default=None, primary_key=True)\n",
            encoding="utf-8",
        )
        try:
            must(run(project, "git", "add", "-A", env=env))
            result = run(project, pre_commit, "run", env=env)
            assert result.returncode != 0
            # ruff and mypy pass the new file; the revision check names what has no revision.
            assert re.search(r"^mypy --strict\.+Passed$", result.stdout, re.M), result.stdout
            assert re.search(r"^make check .*Failed$", result.stdout, re.M), result.stdout
            assert "widget" in result.stdout
        finally:
            widget.unlink()
            run(project, "git", "add", "-A", env=env)


@pytest.mark.parametrize("web_framework", ["fastapi", "none"])
def test_deployment_files_lint_clean(tmp_path: Path, web_framework: str) -> None:
    project = bake(tmp_path, web_framework=web_framework)
    must(run(project, str(BIN / "hadolint"), "Dockerfile"))
    schema = [str(BIN / "check-jsonschema"), "--builtin-schema"]
    must(run(project, *schema, "vendor.compose-spec", "compose.yaml"))
    must(run(project, *schema, "vendor.github-workflows", ".github/workflows/ci.yml"))
    must(run(project, *schema, "vendor.dependabot", ".github/dependabot.yml"))
    updates = yaml.safe_load((project / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"] for update in updates["updates"]}
    assert ecosystems == {"uv", "docker", "github-actions"}

    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    # The pre phase before the app starts, the post phase once it serves (docs/deploy-phases.md).
    module = ["python", "-m", "my_service.migrations", "upgrade", "--phase"]
    migrate, post = compose["services"]["migrate"], compose["services"]["migrate-post"]
    assert (migrate["command"], post["command"]) == ([*module, "pre"], [*module, "post"])
    for name, service in (("migrate-job.yaml", migrate), ("migrate-post-job.yaml", post)):
        job = yaml.safe_load((project / "deploy" / name).read_text(encoding="utf-8"))
        assert job["kind"] == "Job"
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == service["command"]
    # The queued backfills run between the two, one runner at a time.
    cron = yaml.safe_load((project / "deploy" / "backfill-cronjob.yaml").read_text("utf-8"))
    assert cron["kind"] == "CronJob" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == [
        "python",
        "-m",
        "my_service.migrations",
        "backfill",
        "run",
    ]
    if web_framework == "none":
        assert "app" not in compose["services"]
        assert post["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        return
    app = compose["services"]["app"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert post["depends_on"] == {"app": {"condition": "service_healthy"}}
    assert "/health/ready" in " ".join(app["healthcheck"]["test"])
    text = (project / "deploy" / "deployment.yaml").read_text(encoding="utf-8")
    pod = yaml.safe_load(text)["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][3:5] == ["wait-for-head", "--timeout"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health/ready"
