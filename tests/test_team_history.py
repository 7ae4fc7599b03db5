"""Working as a team: `make check-history` and `make migration-rebase` on a git repository with
real branches and merges, the revisions written by `make migration`, and migrated on a real
server; the pre-commit hook and the generated CI's pull-request step run as a user's would."""

from pathlib import Path

import pytest
import yaml

from .conftest import Server, bake, clean_env, install, make, must, revision_id, run, versions

MODEL = '''"""A model added on a branch."""

from sqlmodel import Field, SQLModel


class {name}(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=80)
'''
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def git(project: Path, *args: str) -> str:
    return must(run(project, *GIT, *args))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A render in a git repository on `main` (make install sets the pre-commit hook there),
    its first revision committed."""
    project = bake(tmp_path_factory.mktemp("team"))
    git(project, "init", "--quiet", "--initial-branch=main")
    install(project)
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "--no-verify", "-m", "render")
    return project


def add_model(project: Path, name: str, env: dict[str, str]) -> Path:
    """A model file and the revision `make migration` writes for it, committed; the revision."""
    before = set(versions(project))
    model = project / "src" / "my_service" / "models" / f"{name.lower()}.py"
    model.write_text(MODEL.format(name=name), encoding="utf-8")
    must(make(project, "migration", f"msg=add {name.lower()}", env=env))
    (revision,) = set(versions(project)) - before
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "--no-verify", "-m", f"add {name}")
    return revision


def test_two_branches_on_one_head_are_caught_rebased_and_migrate(
    project: Path, server: Server
) -> None:
    with server.new_database() as production, server.new_database() as laptop:
        live, dev = (clean_env(DATABASE_URL=server.url(db)) for db in (production, laptop))
        must(make(project, "migrate", env=live))
        must(make(project, "migrate", env=dev))
        first = revision_id(versions(project)[0])

        # Two developers branch from main's head; each adds a model and its revision.
        git(project, "switch", "--quiet", "-c", "gadgets")
        gadget = revision_id(add_model(project, "Gadget", live))
        output = must(make(project, "check-history", env=live))
        assert "1 new revision(s), in one line after main's head" in output
        git(project, "switch", "--quiet", "-c", "widgets", "main")
        widget_file = add_model(project, "Widget", dev)
        widget = revision_id(widget_file)
        # Alone, each branch has one head and passes what it had before this check.
        assert len(must(make(project, "heads", env=dev)).split("Rev: ")) == 2

        # gadgets merges first and production migrates.
        git(project, "switch", "--quiet", "main")
        git(project, "merge", "--quiet", "--no-ff", "gadgets", "-m", "merge gadgets")
        must(make(project, "migrate", env=live))
        assert server.version(production) == {gadget}

        # widgets, before it merges: refused, naming the revision, its file and the fix.
        git(project, "switch", "--quiet", "widgets")
        result = make(project, "check-history", env=dev)
        assert result.returncode != 0
        assert f"{widget} ({widget_file.name}): follows {first}, but the line ends at main's " in (
            result.stdout
        )
        assert f"make migration-rebase rev={widget} (after git merge main)" in result.stdout
        assert f"{gadget} (" in result.stdout and "main has this revision" in result.stdout

        # Merged as git does it, the history has two heads: the check names the fix.
        git(project, "merge", "--quiet", "main", "-m", "bring main in")
        assert len(must(make(project, "heads", env=dev)).split("Rev: ")) == 3
        result = make(project, "check-history", env=dev)
        assert result.returncode != 0 and f"Fix: make migration-rebase rev={widget}\n" in (
            result.stdout
        )
        output = must(make(project, "migration-rebase", f"rev={widget}", env=dev))
        assert f"{widget} now follows {gadget}" in output
        must(make(project, "check-history", env=dev))
        text = widget_file.read_text(encoding="utf-8")
        assert (
            f"Revises: {gadget}\n" in text
            and f'down_revision: str | Sequence[str] | None = "{gadget}"' in text
        )
        # The edited file stays as `make lint` wants it.
        must(run(project, ".venv/bin/ruff", "format", "--check", str(widget_file)))
        must(run(project, ".venv/bin/ruff", "check", str(widget_file)))

        # Production, at gadgets' revision, takes the rebased one; one head, no drift.
        must(make(project, "migrate", env=live))
        assert server.version(production) == {widget}
        assert {"gadget", "widget"} <= server.tables(production)
        assert "No new upgrade operations detected" in must(make(project, "check", env=live))
        # The developer's database, at the revision's old parent, follows too.
        must(make(project, "migrate", env=dev))
        assert server.version(laptop) == {widget}
        git(project, "commit", "--quiet", "--no-verify", "-am", "rebase the widget revision")


def test_an_id_longer_than_the_version_column_is_named_before_it_fails_a_deploy(
    project: Path, server: Server
) -> None:
    long_id = "add_customer_loyalty_points_column_v2"  # 37 characters
    git(project, "switch", "--quiet", "-c", "readable-ids", "main")
    with server.new_database() as db:
        env = clean_env(DATABASE_URL=server.url(db))
        must(make(project, "migrate", env=env))
        last_good = server.version(db)
        before = set(versions(project))
        must(
            run(
                project,
                ".venv/bin/alembic",
                "revision",
                "-m",
                "loyalty",
                "--rev-id",
                long_id,
                env=env,
            )
        )
        (long_file,) = set(versions(project)) - before
        result = make(project, "check-history", env=env)
        assert result.returncode != 0
        assert f"{long_id} ({long_file.name}): the id is 37 characters" in result.stdout
        assert "alembic_version.version_num holds 32" in result.stdout
        # What the check saves a team from: the deploy fails on the server.
        failed = make(project, "migrate", env=env)
        assert failed.returncode != 0 and "varying(32)" in failed.stdout
        assert server.version(db) == last_good
    long_file.unlink()


def new_revision(project: Path, msg: str) -> Path:
    """The blank revision `make migration-empty` writes (no database needed), committed."""
    before = set(versions(project))
    must(make(project, "migration-empty", f"msg={msg}"))
    (revision,) = set(versions(project)) - before
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "--no-verify", "-m", msg)
    return revision


def test_the_pre_commit_hook_and_the_pull_request_step_run_the_check(
    project: Path, tmp_path: Path
) -> None:
    # main moves on after `stale` branched off; stale adds a revision on the old head.
    git(project, "switch", "--quiet", "-c", "stale", "main")
    git(project, "switch", "--quiet", "main")
    ahead = revision_id(new_revision(project, "ahead on main"))
    git(project, "switch", "--quiet", "stale")
    stale = new_revision(project, "stale branch")
    name = f"{revision_id(stale)} ({stale.name}): follows"

    env = clean_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    hook = run(
        project,
        ".venv/bin/pre-commit",
        "run",
        "check-history",
        "--files",
        str(stale.relative_to(project)),
        env=env,
    )
    assert hook.returncode != 0
    assert name in hook.stdout and f"the line ends at main's head {ahead}" in hook.stdout

    # The generated CI's step, as a runner would run it: origin holds main, BASE names it.
    origin = tmp_path / "origin.git"
    must(run(project, "git", "clone", "--quiet", "--bare", str(project), str(origin)))
    git(project, "remote", "add", "origin", str(origin))
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["test"]["steps"] if "check-history" in s.get("run", "")]
    assert step["if"] == "github.event_name == 'pull_request'"
    assert step["env"]["BASE"] == "${{ github.base_ref }}"
    result = run(project, "bash", "-ec", step["run"], env=clean_env(BASE="main"))
    assert result.returncode != 0
    assert name in result.stdout and f"the line ends at origin/main's head {ahead}" in result.stdout
    git(project, "switch", "--quiet", "main")
    result = run(project, "bash", "-ec", step["run"], env=clean_env(BASE="main"))
    assert result.returncode == 0, result.stdout
    assert "0 new revision(s), in one line after origin/main's head" in result.stdout


def test_an_applied_revision_edited_afterwards_is_refused_until_accepted(
    project: Path, server: Server
) -> None:
    git(project, "switch", "--quiet", "-c", "edits", "main")
    with server.new_database() as db:
        env = clean_env(DATABASE_URL=server.url(db))
        must(make(project, "migrate", env=env))
        first = versions(project)[0]
        original = first.read_text(encoding="utf-8")
        # A reformat and a comment change nothing the database ran.
        first.write_text(
            original.replace("def upgrade", "# reviewed\ndef upgrade"), encoding="utf-8"
        )
        must(make(project, "migrate", env=env))
        # A change of what it runs is refused by migrate and check, naming the revision.
        edited = original.replace('sa.Column("name"', 'sa.Column("title"', 1)
        assert edited != original
        first.write_text(edited, encoding="utf-8")
        for target in ("migrate", "check"):
            result = make(project, target, env=env)
            assert result.returncode != 0, result.stdout
            assert f"Revision {revision_id(first)} ({first.name}) was edited after this " in (
                result.stdout
            )
            assert f"make accept-edit rev={revision_id(first)}" in result.stdout
        output = must(make(project, "accept-edit", f"rev={revision_id(first)}", env=env))
        assert "is recorded as its file is now" in output
        must(make(project, "migrate", env=env))
        first.write_text(original, encoding="utf-8")


def test_squash_replaces_old_revisions_with_a_proved_baseline(
    project: Path, server: Server
) -> None:
    """`make squash upto=R` on a branch with two models added: proved, the files replaced, lint
    clean; a database at R takes the later revision, an older one is refused naming the tag,
    a fresh one builds from the baseline with no drift. (That `make test` passes on a squashed
    history, the data check of a folded revision running at the baseline, benchmarks/squash.py
    checks on 100 revisions; the unit tier checks the parts.)"""
    git(project, "switch", "--quiet", "-c", "squash", "main")
    with (
        server.new_database() as dev,
        server.new_database() as at_r,
        server.new_database() as old,
        server.new_database() as fresh,
    ):
        env = {
            name: clean_env(DATABASE_URL=server.url(db))
            for name, db in (("dev", dev), ("at_r", at_r), ("old", old), ("fresh", fresh))
        }
        first = revision_id(versions(project)[0])
        must(make(project, "migrate", f"rev={first}", env=env["old"]))
        must(make(project, "migrate", env=env["dev"]))
        upto = revision_id(add_model(project, "Gizmo", env["dev"]))
        must(make(project, "migrate", env=env["dev"]))
        later = revision_id(add_model(project, "Doohickey", env["dev"]))
        git(project, "tag", "v7")
        must(make(project, "migrate", f"rev={upto}", env=env["at_r"]))
        assert "Missing upto=" in make(project, "squash", env=env["dev"]).stdout

        output = must(make(project, "squash", f"upto={upto}", env=env["dev"]))
        assert f"Proved: the chain up to {upto} and the baseline build the same schema" in output
        # Written by `make migration` in one minute, the two files sort by their random ids.
        assert {revision_id(path) for path in versions(project)} == {upto, later}
        (baseline,) = (path for path in versions(project) if revision_id(path) == upto)
        # As `make lint` wants it (the project's post-write hooks ran on it).
        must(run(project, ".venv/bin/ruff", "format", "--check", str(baseline)))
        must(run(project, ".venv/bin/ruff", "check", str(baseline)))

        must(make(project, "migrate", env=env["at_r"]))
        assert server.version(at_r) == {later}
        refused = make(project, "migrate", env=env["old"])
        assert refused.returncode != 0
        assert f"The database is at {first}, which `make squash` folded into the baseline " in (
            refused.stdout
        )
        assert "(the last is v7)" in refused.stdout and "Traceback" not in refused.stdout
        assert server.version(old) == {first}
        must(make(project, "migrate", env=env["fresh"]))
        assert {"gizmo", "doohickey", "item"} <= server.tables(fresh)
        assert "No new upgrade operations detected" in must(
            make(project, "check", env=env["fresh"])
        )
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "--no-verify", "-m", "squash")


def test_the_pull_request_plan_step_writes_what_its_revisions_do_to_the_summary(
    project: Path, server: Server, tmp_path: Path
) -> None:
    """The generated CI's plan step, as a runner would run it: the base branch's migrations
    from a worktree of it, then `make plan format=md` into the job summary; the database is
    left at the base's head. `make plan` with `fail-on=risky` on the same database."""
    git(project, "switch", "--quiet", "main")
    git(project, "switch", "--quiet", "-c", "planned", "main")
    with server.new_database() as ci, server.new_database() as scratch_dev:
        env = clean_env(DATABASE_URL=server.url(ci))
        dev = clean_env(DATABASE_URL=server.url(scratch_dev))
        must(make(project, "migrate", env=dev))
        main_head = server.version(scratch_dev)
        added = revision_id(add_model(project, "Sprocket", dev))
        origin = tmp_path / "origin.git"
        must(run(project, "git", "clone", "--quiet", "--bare", str(project), str(origin)))
        git(project, "remote", "remove", "origin") if "origin" in git(project, "remote") else None
        git(project, "remote", "add", "origin", str(origin))
        git(project, "fetch", "--quiet", "origin", "main:refs/remotes/origin/main")
        workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
        (step,) = [s for s in workflow["jobs"]["test"]["steps"] if "make plan" in s.get("run", "")]
        assert step["if"] == "github.event_name == 'pull_request'"
        summary = tmp_path / "summary.md"
        runner = tmp_path / "runner"
        runner.mkdir()
        result = run(
            project,
            "bash",
            "-ec",
            step["run"],
            env={
                **env,
                "BASE": "main",
                "RUNNER_TEMP": str(runner),
                "GITHUB_STEP_SUMMARY": str(summary),
            },
        )
        assert result.returncode == 0, result.stdout
        written = summary.read_text()
        assert "### make plan: 1 pending revision(s)" in written, written
        assert f"#### `{added}` add sprocket" in written and "CREATE TABLE sprocket" in written
        # At the base's head: the plan ran the branch's revision on a scratch database only.
        assert server.version(ci) == main_head and "sprocket" not in server.tables(ci)
        # The same database, with the Make target a reviewer runs: a new table is no risk.
        output = must(make(project, "plan", "fail-on=risky", env=env))
        assert f"{added} (add sprocket)" in output and "RISKY" not in output
    git(project, "switch", "--quiet", "main")


def test_make_test_runs_the_last_release_on_the_new_schema(project: Path, server: Server) -> None:
    """Tagged v1, the next release's revisions: `make migration`'s split (a required column added
    nullable in the pre revision) keeps v1's inserts working; a pre revision adding it NOT NULL
    without a default fails `make test`, naming the revision and v1's INSERT."""
    env = clean_env(TEST_DATABASE_URL=server.url("postgres"))
    git(project, "tag", "v1")
    model = project / "src" / "my_service" / "models" / "item.py"
    kept = model.read_text(encoding="utf-8")
    before = set(versions(project))
    try:
        model.write_text(
            kept.replace("    name: str", "    sku: str = Field(max_length=20)\n    name: str", 1),
            encoding="utf-8",
        )
        with server.new_database() as name:
            dev = clean_env(DATABASE_URL=server.url(name))
            must(make(project, "migrate", env=dev))
            must(make(project, "migration", "msg=sku", env=dev))
        split = make(project, "test", "args=-k old_release -p no:cacheprovider", env=env)
        assert split.returncode == 0, split.stdout
        said = "Old release v1 (the newest tag) checked against 1 pre revision(s) since\n"
        assert said in split.stdout, split.stdout  # every table checked: none listed as not
        for path in set(versions(project)) - before:
            path.unlink()
        must(make(project, "migration-empty", "msg=sku required"))
        (hand,) = set(versions(project)) - before
        text = hand.read_text(encoding="utf-8").replace(
            "def upgrade() -> None:\n    pass",
            'def upgrade() -> None:\n    op.add_column("item", sa.Column("sku", sa.String(20), '
            "nullable=False))",
        )
        hand.write_text(text, encoding="utf-8")
        broken = make(project, "test", "args=-k old_release -p no:cacheprovider", env=env)
        assert broken.returncode != 0
        assert f"{revision_id(hand)} (sku required) breaks the old release's INSERT item" in (
            broken.stdout
        ), broken.stdout
        assert 'null value in column "sku"' in broken.stdout
    finally:
        git(project, "tag", "-d", "v1")
        model.write_text(kept, encoding="utf-8")
        for path in set(versions(project)) - before:
            path.unlink()
