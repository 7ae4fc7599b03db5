"""tools/history.py: `check-history` and `migration-rebase` on real git repositories (branches,
merges, a tracked upstream), with revision files Alembic loads. No database: the history check
reads files and git only; the template's tests run the Make targets and migrate the result."""

import os
import py_compile
import tempfile
from collections.abc import Callable
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
from git_repo import commit, git
from support import make_project, write_revisions

from alembic_steady import Project
from alembic_steady.tools import history


@pytest.fixture
def repo(tmp_path: Path) -> Project:
    """A repository on `main` with the chain a <- p committed."""
    git(tmp_path, "init", "-q", "-b", "main")
    write_revisions(tmp_path / "migrations" / "versions", [("a", None), ("p", "a")])
    commit(tmp_path, "a and p")
    return make_project(tmp_path)


def versions(project: Project) -> Path:
    return project.versions


def check(project: Project, *argv: str) -> tuple[int, str]:
    return _run(history.main, project, argv)


def rebase(project: Project, *argv: str) -> tuple[int, str]:
    return _run(history.rebase_main, project, argv)


def _run(
    main: Callable[[Project, list[str]], int], project: Project, argv: tuple[str, ...]
) -> tuple[int, str]:
    """Run from a folder outside the repository: git is asked about the project's, not the
    current folder's (a monorepo's root, a CI job's checkout folder)."""
    out = StringIO()
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="elsewhere-") as elsewhere:
        os.chdir(elsewhere)
        try:
            with redirect_stdout(out):
                code = main(project, list(argv))
        finally:
            os.chdir(cwd)
    return code, out.getvalue()


def two_branches_merged(project: Project) -> None:
    """`one` adds b on p and merges first; `two` adds c on p, then merges main in."""
    root = project.folder
    git(root, "switch", "-q", "-c", "one")
    write_revisions(versions(project), [("b", "p")])
    commit(root, "b")
    git(root, "switch", "-q", "main")
    git(root, "switch", "-q", "-c", "two")
    write_revisions(versions(project), [("c", "p")])
    commit(root, "c")
    git(root, "switch", "-q", "main")
    git(root, "merge", "-q", "--no-ff", "one", "-m", "merge one")
    git(root, "switch", "-q", "two")


def test_a_branch_adding_revisions_after_the_base_head_passes(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("c", "b")])
    code, out = check(repo)
    assert code == 0, out
    assert "2 new revision(s), in one line after main's head" in out


def test_two_branches_on_one_parent_are_caught_before_the_second_merges(repo: Project) -> None:
    two_branches_merged(repo)
    # Before `two` brings main in, it lacks b and its c follows p: both are named.
    code, out = check(repo)
    assert code == 1
    assert "b (b_step.py): main has this revision and this branch does not" in out
    assert "c (c_step.py): follows p, but the line ends at main's head b" in out
    assert "make migration-rebase rev=c (after git merge main)" in out
    code, out = rebase(repo, "c")
    assert code == 1 and "this branch lacks main's revision b: bring it in first" in out
    assert "down_revision = 'p'" in (versions(repo) / "c_step.py").read_text()

    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")  # no conflict: other files
    code, out = check(repo)
    assert code == 1 and "Fix: make migration-rebase rev=c\n" in out
    code, out = rebase(repo, "c")
    assert code == 0 and "c now follows b" in out
    text = (versions(repo) / "c_step.py").read_text()
    assert "down_revision = 'b'" in text
    code, out = check(repo)
    assert code == 0, out
    # What Alembic makes of it: one head, c after b.
    scripts, _ = history.load(versions(repo), "this branch")
    assert scripts["c"].down_revision == "b"


def test_a_rebase_within_the_second_of_the_bytecode_is_seen_by_the_next_check(
    repo: Project,
) -> None:
    """make install compiles the revisions. The rebase swaps one 12-character parent for
    another (same size); within the same second the old bytecode would still be valid to Python,
    so the check right after the rebase would read the old parent."""
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    path = versions(repo) / "c_step.py"
    py_compile.compile(str(path), doraise=True)
    written = path.stat().st_mtime_ns
    assert rebase(repo, "c")[0] == 0
    os.utime(path, ns=(written, written))  # the same second as the bytecode
    code, out = check(repo)
    assert code == 0, out
    scripts, _ = history.load(versions(repo), "this branch")
    assert scripts["c"].down_revision == "b"


def test_rebase_keeps_the_header_and_the_quotes_of_the_file(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    path = versions(repo) / "c_step.py"
    path.write_text(
        '"""step c\n\nRevision ID: c\nRevises: p\nCreate Date: today\n"""\n\n'
        'revision: str = "c"\ndown_revision: str | None = "p"  # the parent\n',
        encoding="utf-8",
    )
    assert rebase(repo, "c")[0] == 0
    text = path.read_text()
    assert "Revises: b\n" in text and 'down_revision: str | None = "b"\n' in text


def test_only_a_revision_of_the_branch_off_the_line_is_rebased(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    code, out = rebase(repo, "b")
    assert code == 1 and "b is on main already" in out
    code, out = rebase(repo, "zz")
    assert code == 1 and "no revision 'zz'" in out
    assert rebase(repo, "c")[0] == 0
    code, out = rebase(repo, "c")
    assert code == 1 and "c already follows the line: nothing to do" in out


def test_a_branch_revision_off_its_own_line_is_re_pointed_onto_its_end(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("c", "b"), ("d", "a"), ("e", "d")])
    code, out = check(repo)
    assert code == 1
    assert "d (d_step.py): follows a, but the line ends at this branch's revision c" in out
    assert "e (e_step.py)" not in out  # it follows d: re-pointing d brings it along
    assert rebase(repo, "d")[0] == 0
    assert check(repo)[0] == 0


def test_two_new_revisions_on_one_parent_keep_the_longer_line(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("c", "p"), ("d", "c")])
    code, out = check(repo)
    assert code == 1
    assert "b (b_step.py): follows p, but the line ends at this branch's revision d" in out
    assert "c (c_step.py)" not in out and "d (d_step.py)" not in out
    assert rebase(repo, "b")[0] == 0
    assert check(repo)[0] == 0


def test_a_revision_id_longer_than_the_version_column_is_refused(repo: Project) -> None:
    long_id = "add_customer_loyalty_points_column"  # 34 characters
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [(long_id, "p")])
    code, out = check(repo)
    assert code == 1
    assert f"{long_id} ({long_id}_step.py): the id is 34 characters" in out
    assert "alembic_version.version_num holds 32" in out
    # A 32-character id fits exactly.
    (versions(repo) / f"{long_id}_step.py").unlink()
    write_revisions(versions(repo), [(long_id[:32], "p")])
    assert check(repo)[0] == 0
    # A team that widened the column says so, and is held to its own length.
    write_revisions(versions(repo), [(long_id, long_id[:32])])
    (repo.folder / "pyproject.toml").write_text(
        "[tool.alembic-steady]\nrevision-id-length = 34\n", encoding="utf-8"
    )
    assert check(repo)[0] == 0


def test_one_id_in_two_files_is_named_with_both_files(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p")])
    (versions(repo) / "b_again.py").write_text(
        (versions(repo) / "b_step.py").read_text(), encoding="utf-8"
    )
    code, out = check(repo)
    assert code == 1
    assert "b (b_again.py and b_step.py): this revision id is used by 2 files" in out


def test_a_second_base_revision_is_named(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("z", None)])
    code, out = check(repo)
    assert code == 1
    assert "the history has 2 base revisions (a, z)" in out
    assert "z (z_step.py): follows nothing (a second base)" in out


def test_a_revision_deleted_on_the_branch_is_named(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    (versions(repo) / "p_step.py").unlink()
    code, out = check(repo)
    assert code == 1
    assert "p (p_step.py): main has this revision and this branch does not" in out
    assert "a revision applied somewhere must never be deleted" in out


def test_a_base_with_two_heads_is_merged_there_first(repo: Project) -> None:
    write_revisions(versions(repo), [("b", "p"), ("c", "p")])
    commit(repo.folder, "two heads on main")
    git(repo.folder, "switch", "-q", "-c", "feature")
    code, out = check(repo)
    assert code == 1 and "main itself has 2 heads (b, c)" in out
    assert "merge them on main first (make merge)" in out


def test_the_base_is_the_tracked_branch_else_origin_main_else_main(repo: Project) -> None:
    root = repo.folder
    git(root, "switch", "-q", "-c", "release")
    write_revisions(versions(repo), [("r", "p")])
    commit(root, "r")
    # Tracking another branch: that one is the base.
    git(root, "switch", "-q", "-c", "fix", "--track", "release")
    write_revisions(versions(repo), [("f", "r")])
    code, out = check(repo)
    assert code == 0 and "after release's head" in out
    # Tracking its own twin (pushed with -u): not a base, it holds the branch's revisions.
    git(root, "remote", "add", "origin", str(root))
    git(root, "update-ref", "refs/remotes/origin/fix", "HEAD")
    git(root, "branch", "-q", "--set-upstream-to", "origin/fix")
    code, out = check(repo)
    assert code == 0 and "2 new revision(s), in one line after main's head" in out
    # origin/main, when there is one, comes before main.
    git(root, "update-ref", "refs/remotes/origin/main", "release")
    code, out = check(repo)
    assert code == 0 and "1 new revision(s), in one line after origin/main's head" in out
    # A base named explicitly wins.
    code, out = check(repo, "--base", "main")
    assert code == 0 and "2 new revision(s)" in out


def test_no_base_to_compare_with_says_how_to_name_one(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    write_revisions(tmp_path / "migrations" / "versions", [("a", None)])
    commit(tmp_path, "a")
    project = make_project(tmp_path)
    code, out = check(project)
    assert code == 1
    assert "there is no origin/main, main, origin/master, master or origin/HEAD; name one: " in out
    assert "make check-history base=<branch>" in out
    code, out = check(project, "--base", "nosuch")
    assert code == 1 and "'nosuch' is not a branch or commit here" in out
    assert check(project, "--base", "trunk")[0] == 0


def test_outside_a_git_repository_the_check_says_so(tmp_path: Path) -> None:
    write_revisions(tmp_path / "migrations" / "versions", [("a", None)])
    code, out = check(make_project(tmp_path))
    assert code == 1 and "check-history: " in out and "not a git repository" in out


def test_a_base_without_revisions_yet_takes_the_first(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "README").write_text("x", encoding="utf-8")
    commit(tmp_path, "empty")
    project = make_project(tmp_path)
    git(tmp_path, "switch", "-q", "-c", "feature")
    write_revisions(versions(project), [("a", None), ("b", "a")])
    code, out = check(project)
    assert code == 0 and "2 new revision(s)" in out


def test_a_repository_without_commits_checks_the_working_tree_alone(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    project = make_project(tmp_path)
    write_revisions(versions(project), [("a", None), ("b", "a")])
    code, out = check(project)
    assert code == 0 and out.endswith("2 new revision(s), in one line.\n")
    write_revisions(versions(project), [("c", "a")])
    code, out = check(project)
    assert (
        code == 1
        and "c (c_step.py): follows a, but the line ends at this branch's revision b" in out
    )


# -- the whole of each message -------------------------------------------------------------


def test_a_branch_of_its_own_pushed_with_a_slash_in_its_name_is_not_the_base(
    repo: Project,
) -> None:
    root = repo.folder
    git(root, "switch", "-q", "-c", "feature/loyalty")
    write_revisions(versions(repo), [("b", "p")])
    commit(root, "b")
    git(root, "remote", "add", "origin", str(root))
    git(root, "update-ref", "refs/remotes/origin/feature/loyalty", "HEAD")
    git(root, "branch", "-q", "--set-upstream-to", "origin/feature/loyalty")
    write_revisions(versions(repo), [("c", "b")])
    assert check(repo) == (0, "check-history: 2 new revision(s), in one line after main's head.\n")


def test_a_duplicate_id_says_which_to_renumber_and_how(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p")])
    (versions(repo) / "b_again.py").write_text(
        (versions(repo) / "b_step.py").read_text(), encoding="utf-8"
    )
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        "b (b_again.py and b_step.py): this revision id is used by 2 files; Alembic runs one of "
        "them",
        "  Fix: give the newer revision a new id (its `revision` line, and the `down_revision` of "
        "any revision that follows it)",
        "check-history: 1 problem(s) against main.",
    ]


def test_a_long_id_says_how_to_shorten_it_or_widen_the_column(repo: Project) -> None:
    long_id = "add_customer_loyalty_points_column"
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [(long_id, "p")])
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        f"{long_id} ({long_id}_step.py): the id is 34 characters; alembic_version.version_num "
        "holds 32, so applying it fails",
        "  Fix: use a shorter id (make migration writes 12), or widen the column first in a "
        "revision of its own and set revision-id-length under [tool.alembic-steady] in "
        "pyproject.toml",
        "check-history: 1 problem(s) against main.",
    ]


@pytest.mark.parametrize(
    "pyproject",
    [
        '[project]\nname = "shop"\n',
        "[tool.ruff]\nline-length = 100\n",
        "[tool.alembic-steady]\n",
    ],
)
def test_a_pyproject_that_sets_no_length_keeps_the_columns_32(
    repo: Project, pyproject: str
) -> None:
    (repo.folder / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b" * 33, "p")])
    code, out = check(repo)
    assert code == 1 and "the id is 33 characters; alembic_version.version_num holds 32" in out
    (versions(repo) / f"{'b' * 33}_step.py").unlink()
    write_revisions(versions(repo), [("b" * 32, "p")])
    assert check(repo)[0] == 0


def test_of_three_base_revisions_the_last_is_named(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("y", None), ("z", None)])
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        "z (z_step.py): the history has 3 base revisions (a, y, z); one starts it",
        "  Fix: point this revision's down_revision at the revision it builds on",
        "y (y_step.py): follows nothing (a second base), but the line ends at main's head p: "
        "after the merge the history would not be one line",
        "  Fix: make migration-rebase rev=y",
        "z (z_step.py): follows nothing (a second base), but the line ends at main's head p: "
        "after the merge the history would not be one line",
        "  Fix: make migration-rebase rev=z",
        "check-history: 3 problem(s) against main.",
    ]


def test_a_base_with_three_heads_names_the_last_and_nothing_else(repo: Project) -> None:
    write_revisions(versions(repo), [("b", "p"), ("c", "p"), ("d", "p")])
    commit(repo.folder, "three heads on main")
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("e", "a")])
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        "d (d_step.py): main itself has 3 heads (b, c, d)",
        "  Fix: merge them on main first (make merge), then check this branch again",
        "check-history: 1 problem(s) against main.",
    ]
    code, out = rebase(repo, "e")
    assert (code, out) == (1, "migration-rebase: main has 3 heads: merge them there first\n")


def test_every_revision_off_the_line_is_named_but_those_following_one_named(
    repo: Project,
) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("d", "a"), ("e", "d"), ("x", "a")])
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        "d (d_step.py): follows a, but the line ends at this branch's revision b: after the "
        "merge the history would not be one line",
        "  Fix: make migration-rebase rev=d",
        "x (x_step.py): follows a, but the line ends at this branch's revision b: after the "
        "merge the history would not be one line",
        "  Fix: make migration-rebase rev=x",
        "check-history: 2 problem(s) against main.",
    ]


def test_a_merge_revision_off_the_line_names_both_parents(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("m", ("a", "p"))])  # type: ignore[list-item]
    code, out = check(repo)
    assert code == 1
    assert out.splitlines() == [
        "m (m_step.py): follows a, p, but the line ends at main's head p: after the merge the "
        "history would not be one line",
        "  Fix: make migration-rebase rev=m",
        "check-history: 1 problem(s) against main.",
    ]


def test_the_line_goes_on_with_the_longest_chain_not_the_first_fork(repo: Project) -> None:
    # b has one revision after it, c two: the line is p, c, d, e, and b (with x after it) is
    # the one to re-point.
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("x", "b"), ("c", "p"), ("d", "c"), ("e", "d")])
    code, out = check(repo)
    assert code == 1
    assert out.splitlines()[0] == (
        "b (b_step.py): follows p, but the line ends at this branch's revision e: after the "
        "merge the history would not be one line"
    )
    assert len(out.splitlines()) == 3
    assert rebase(repo, "b") == (0, "migration-rebase: b now follows e.\n")
    assert check(repo) == (0, "check-history: 5 new revision(s), in one line after main's head.\n")


def test_a_repository_without_commits_or_revisions_passes(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    project = make_project(tmp_path)
    versions(project).mkdir(parents=True)
    assert check(project) == (0, "check-history: 0 new revision(s), in one line.\n")


def test_a_base_that_names_a_range_is_refused(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    code, out = check(repo, "--base", "main..feature")
    assert (code, out) == (
        1,
        "check-history: 'main..feature' is not a branch or commit here: name an existing one "
        "(base=)\n",
    )


def test_a_project_in_a_folder_named_like_an_option_is_read(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    project = make_project(tmp_path / "-app")
    write_revisions(versions(project), [("a", None)])
    commit(tmp_path, "a")
    git(tmp_path, "switch", "-q", "-c", "feature")
    write_revisions(versions(project), [("b", "a")])
    assert check(project) == (
        0,
        "check-history: 1 new revision(s), in one line after main's head.\n",
    )


def test_without_git_the_check_says_it_needs_it(
    repo: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert check(repo) == (
        1,
        "check-history: git is not installed: the check reads the base branch from git\n",
    )


def test_a_git_failure_without_a_message_names_the_command(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    with pytest.raises(history.HistoryError) as failed:
        history.git(tmp_path, "rev-parse", "--verify", "--quiet", "nosuch")
    assert str(failed.value) == "git rev-parse --verify --quiet nosuch failed"


def test_rebase_refuses_a_base_revision_and_says_why(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    assert rebase(repo, "b") == (
        1,
        "migration-rebase: b is on main already: only a revision this branch adds can be "
        "re-pointed (the others may be applied somewhere)\n",
    )


def test_rebase_reads_the_base_it_is_given(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    assert rebase(repo, "c", "--base", "nosuch") == (
        1,
        "migration-rebase: 'nosuch' is not a branch or commit here: name an existing one (base=)\n",
    )
    assert (versions(repo) / "c_step.py").read_text().count("down_revision = 'p'") == 1


def test_rebase_edits_the_header_and_the_assignment_only(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    path = versions(repo) / "c_step.py"
    text = (
        '"""step c\n\nRevision ID: c\nRevises: p\nCreate Date: today\n"""\n\n'
        "revision = 'c'\ndown_revision = 'p'\n\n"
        'QUOTED = """\nRevises: p\ndown_revision = \'p\'\n"""\n'
    )
    path.write_text(text, encoding="utf-8")
    assert rebase(repo, "c") == (0, "migration-rebase: c now follows b.\n")
    assert path.read_text(encoding="utf-8") == (
        '"""step c\n\nRevision ID: c\nRevises: b\nCreate Date: today\n"""\n\n'
        "revision = 'c'\ndown_revision = 'b'\n\n"
        'QUOTED = """\nRevises: p\ndown_revision = \'p\'\n"""\n'
    )


def test_rebase_of_a_file_it_cannot_edit_says_to_edit_it_by_hand(repo: Project) -> None:
    two_branches_merged(repo)
    git(repo.folder, "merge", "-q", "main", "-m", "bring main in")
    path = versions(repo) / "c_step.py"
    path.write_text('"""step c"""\n\nrevision, down_revision = "c", "p"\n', encoding="utf-8")
    assert rebase(repo, "c") == (
        1,
        "migration-rebase: c_step.py has no down_revision line to edit: edit it by hand\n",
    )
    assert path.read_text(encoding="utf-8").endswith('down_revision = "c", "p"\n')


@pytest.mark.parametrize(
    ("tool", "lines"),
    [
        (
            history.main,
            [
                "usage: check-history [-h] [--base BASE]",
                "--base BASE the branch this one merges into",
            ],
        ),
        (
            history.rebase_main,
            [
                "usage: migration-rebase [-h] [--base BASE] revision",
                "revision the branch's revision to re-point",
                "--base BASE the branch this one merges into",
            ],
        ),
    ],
)
def test_each_tools_help_explains_its_arguments(
    repo: Project,
    monkeypatch: pytest.MonkeyPatch,
    tool: Callable[[Project, list[str]], int],
    lines: list[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exited:
        tool(repo, ["--help"])
    assert exited.value.code == 0
    shown = " ".join(out.getvalue().split())
    for line in lines:
        assert line in shown


def test_a_down_revision_spread_over_lines_is_left_to_a_person(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p"), ("c", "a")])
    path = versions(repo) / "c_step.py"
    path.write_text(
        path.read_text().replace("down_revision = 'a'", 'down_revision = (\n    "a"\n)'),
        encoding="utf-8",
    )
    before = path.read_text()
    code, out = rebase(repo, "c")
    assert (code, out) == (
        1,
        "migration-rebase: c_step.py: its down_revision is not one line as make migration "
        "writes it: edit it by hand to 'b' (and its Revises: line)\n",
    )
    assert path.read_text() == before


def test_a_clone_whose_default_branch_has_another_name_compares_with_it(repo: Project) -> None:
    # As a clone of a project whose default branch is `develop` has it: origin/HEAD points there.
    root = repo.folder
    git(root, "branch", "-q", "-m", "develop")
    git(root, "update-ref", "refs/remotes/origin/develop", "HEAD")
    git(root, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/develop")
    git(root, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p")])
    code, out = check(repo)
    assert (code, out) == (
        0,
        "check-history: 1 new revision(s), in one line after origin/develop's head.\n",
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("import not_installed_anywhere\n", "ModuleNotFoundError: No module named "),
        ("def upgrade(:\n", "SyntaxError: "),
    ],
)
def test_a_revision_that_does_not_load_is_named_not_a_traceback(
    repo: Project, body: str, error: str
) -> None:
    # Revisions that import the application (or a dependency it had then) load only where the
    # project is installed; a file that cannot load is named, with the cause.
    git(repo.folder, "switch", "-q", "-c", "feature")
    path = versions(repo) / "b_step.py"
    write_revisions(versions(repo), [("b", "p")])
    path.write_text(body + path.read_text(), encoding="utf-8")
    code, out = check(repo)
    assert code == 1
    assert out.startswith(f"check-history: cannot load b_step.py of this branch ({error}")
    assert out.endswith(
        "): the revisions are loaded as Alembic loads them, so run this where the project is "
        "installed (make install)\n"
    )
    commit(repo.folder, "b, which does not load")
    git(repo.folder, "switch", "-q", "-c", "later")
    code, out = check(repo, "--base", "feature")
    assert out.startswith(f"check-history: cannot load b_step.py of feature ({error}")


def test_a_file_alembic_cannot_read_is_named_in_alembics_words(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    (versions(repo) / "b_step.py").write_text('"""no revision id"""\ndown_revision = "p"\n')
    code, out = check(repo)
    assert code == 1
    assert out.startswith(
        "check-history: cannot load the revisions of this branch: Could not determine revision "
        "id from filename b_step.py."
    )
    assert "make install" not in out


# -- deploy phases: the pre line and the post line, each checked on its own ---------------------


def write_post(project: Project, revision: str, down: str | None, depends: str) -> None:
    """A post revision: the line's first (labelled `post`, from base) when `down` is None."""
    labels = ("post",) if down is None else None
    text = (
        f'"""post {revision}"""\n\nrevision = "{revision}"\ndown_revision = {down!r}\n'
        f"branch_labels = {labels!r}\ndepends_on = {depends!r}\n\n\n"
        "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
    )
    (versions(project) / f"{revision}_post.py").write_text(text, encoding="utf-8")


def test_a_branch_starting_the_post_line_beside_a_pre_revision_passes(repo: Project) -> None:
    git(repo.folder, "switch", "-q", "-c", "feature")
    write_revisions(versions(repo), [("b", "p")])
    write_post(repo, "x1", None, depends="b")  # a second base, but the post line's own
    code, out = check(repo)
    assert code == 0, out
    assert "2 new revision(s), in one line" in out


def test_two_branches_each_adding_a_post_revision_are_caught_and_rebased(repo: Project) -> None:
    write_post(repo, "x1", None, depends="p")
    commit(repo.folder, "the post line")
    root = repo.folder
    git(root, "switch", "-q", "-c", "one")
    write_post(repo, "x2", "x1", depends="p")
    commit(root, "x2")
    git(root, "switch", "-q", "main")
    git(root, "merge", "-q", "--no-ff", "one", "-m", "merge one")
    git(root, "switch", "-q", "-c", "two", "HEAD~1")
    write_revisions(versions(repo), [("b", "p")])  # the pre line moves on: not a finding
    write_post(repo, "x3", "x1", depends="b")
    commit(root, "b and x3")
    git(root, "merge", "-q", "main", "-m", "bring main in")
    code, out = check(repo)
    assert code == 1
    assert "x3 (x3_post.py): follows x1, but the line ends at main's head x2" in out
    assert " b (" not in out and not out.startswith("b (")  # the pre revision is in line
    code, out = rebase(repo, "x3")
    assert code == 0 and "x3 now follows x2" in out
    code, out = check(repo)
    assert code == 0, out
