"""The revision history a team shares: `make check-history`, `make migration-rebase`.

Two branches that each add a revision on the same parent pass CI alone; once both are merged the
history has two heads and the deploy fails. This check runs before the merge, against the branch
the work will merge into (the base): the revisions this branch adds must follow the base's head
in one line, every revision id must be unique and fit `alembic_version.version_num` (32
characters), and the history must have one base. With deploy phases (runner/phases.py) each line,
pre and post, is checked on its own: a branch's pre revisions follow the base's pre head, its
post revisions the post head (or start the post line from base). Each finding names the
revision, its file and the fix.

    python -m <package>.migrations check-history [--base REF]
    python -m <package>.migrations migration-rebase REV [--base REF]

The base, unless named: the branch the current one tracks when that is another branch (`git
switch -c feature --track origin/main`), else `origin/main`, else `main` (then `origin/master`,
`master`, for older repositories; then the remote's default branch, `origin/HEAD`, whatever its
name). A branch's own remote twin (`origin/feature`, where `git push
-u` points) is not a base: it holds this branch's revisions already.

The base's revisions are read from git (`git show`), never checked out, and loaded by Alembic
like the working tree's. `migration-rebase` re-points the first revision that does not follow
the line onto its end (the base's head, or the branch's last revision that does follow it),
editing its `down_revision` and its header's `Revises:` line, as django-linear-migrations'
rebase does for Django.

A team that widened the version column deliberately (a revision of its own, before any longer
id) says so in pyproject.toml, and the check then holds ids to that length:

    [tool.alembic-steady]
    revision-id-length = 64
"""

import argparse
import ast
import py_compile
import re
import subprocess
import tempfile
import traceback
import warnings
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError, to_tuple

from ..project import Project
from ..runner.alembic_internals import revision_files
from ..runner.phases import PHASES, POST, PRE, post_line

# alembic_version.version_num is a VARCHAR(32) as Alembic creates it, on PostgreSQL and MySQL.
VERSION_NUM_LENGTH = 32
DEFAULT_BASES = ("origin/main", "main", "origin/master", "master")
# The base of a repository with no commit yet (`git init`, then the first `make install`): no
# revisions, so every one of the working tree is new.
NO_COMMITS = "the repository without commits"
DOWN_REVISION = re.compile(r"^(down_revision\b[^=\n]*=[ \t]*)(.+)$", re.M)
REVISES = re.compile(r"^(Revises:[ \t]*)(.*)$", re.M)


class HistoryError(Exception):
    """The check cannot run (no git, an unknown base): the message says why and what to do."""


@dataclass(frozen=True)
class Finding:
    revision: str
    file: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.revision} ({self.file}): {self.problem}\n  Fix: {self.fix}"


@dataclass(frozen=True)
class History:
    """The revisions of the working tree and of the base, by id (files, for duplicates)."""

    base_ref: str
    base: dict[str, Script]
    here: dict[str, Script]
    here_files: dict[str, list[str]]
    max_id_length: int

    def of_phase(self, phase: str) -> "History":
        """The revisions of one deploy phase's line (the ids and files stay whole)."""

        def mine(revisions: dict[str, Script]) -> dict[str, Script]:
            post = post_line(revisions)
            return {r: s for r, s in revisions.items() if (r in post) == (phase == POST)}

        return replace(self, base=mine(self.base), here=mine(self.here))

    @property
    def base_heads(self) -> list[str]:
        pointed_at = {parent for script in self.base.values() for parent in parents(script)}
        return sorted(set(self.base) - pointed_at)

    @property
    def new(self) -> list[str]:
        return sorted(set(self.here) - set(self.base))

    @cached_property
    def line(self) -> tuple[list[str], list[str]]:
        """The new revisions that follow the base's head one after another, and the rest. Where
        two follow one revision, the line goes on with the one with more revisions after it
        (the first id of equals): the other is the one to re-point."""
        heads = self.base_heads
        end = heads[0] if len(heads) == 1 else None
        remaining, line = set(self.new), list[str]()
        while True:
            following = [r for r in remaining if parents(self.here[r]) == _just(end)]
            if not following:
                return line, sorted(remaining)
            end = min(following, key=lambda r: (-self._after(r, remaining), r))
            line.append(end)
            remaining.discard(end)

    def _after(self, revision: str, among: set[str]) -> int:
        """How many revisions of `among` follow `revision`, one after another at most."""
        children = [r for r in among if parents(self.here[r]) == (revision,)]
        return max((1 + self._after(child, among) for child in children), default=0)

    @property
    def end_of_line(self) -> str | None:
        line, _ = self.line
        if line:
            return line[-1]
        heads = self.base_heads
        return heads[0] if len(heads) == 1 else None


def parents(script: Script) -> tuple[str, ...]:
    return to_tuple(script.down_revision, default=())


def _just(revision: str | None) -> tuple[str, ...]:
    return () if revision is None else (revision,)


def git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise HistoryError(
            "git is not installed: the check reads the base branch from git"
        ) from None
    if done.returncode != 0:
        raise HistoryError(done.stderr.strip() or f"git {' '.join(args)} failed")
    return done.stdout


def _resolves(folder: Path, ref: str) -> bool:
    try:
        git(folder, "rev-parse", "--verify", "--quiet", ref + "^{commit}")
    except HistoryError:
        return False
    return True


def default_base(folder: Path) -> str:
    """The tracked branch when it is another branch, else origin/main, else main, ..."""
    try:
        upstream = git(folder, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
        branch = git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    except HistoryError:
        upstream = branch = ""
    upstream, branch = upstream.strip(), branch.strip()
    # origin/feature/x is the twin of feature/x: the remote's name ends at the first slash.
    if upstream and upstream.partition("/")[2] != branch:
        return upstream
    for candidate in DEFAULT_BASES:
        if _resolves(folder, candidate):
            return candidate
    # The default branch of the clone's remote, whatever its name (develop, trunk, ...).
    if _resolves(folder, "origin/HEAD"):
        return git(folder, "rev-parse", "--abbrev-ref", "origin/HEAD").strip()
    if not _resolves(folder, "HEAD"):
        return NO_COMMITS
    raise HistoryError(
        "no base branch to compare with: this branch tracks none, and there is no origin/main, "
        "main, origin/master, master or origin/HEAD; name one: make check-history base=<branch>"
    )


def load(folder: Path, where: str) -> tuple[dict[str, Script], dict[str, list[str]]]:
    """Alembic's reading of a `versions/` folder: revisions by id, and every file of each id.
    A file that does not load (it imports what this environment lacks) is named, from `where`
    (this branch, or the base)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "present more than once": reported as a finding
            scripts = revision_files(ScriptDirectory(str(folder.parent)))
    except CommandError as exc:  # Alembic's own verdict on a file (no revision id): it names it
        raise HistoryError(f"cannot load the revisions of {where}: {exc}") from None
    except Exception as exc:
        inside = [
            frame.filename
            for frame in traceback.extract_tb(exc.__traceback__)
            if Path(frame.filename).parent == folder
        ]
        # A file that does not compile names itself; one that raises is in the traceback.
        failed = getattr(exc, "filename", None) or (inside[-1] if inside else "a revision file")
        raise HistoryError(
            f"cannot load {Path(failed).name} of {where} ({type(exc).__name__}: {exc}): the "
            "revisions are loaded as Alembic loads them, so run this where the project is "
            "installed (make install)"
        ) from None
    by_id: dict[str, Script] = {}
    files: dict[str, list[str]] = {}
    for script in scripts:
        by_id.setdefault(script.revision, script)
        files.setdefault(script.revision, []).append(Path(script.path).name)
    return by_id, files


def read_history(project: Project, base_ref: str | None) -> History:
    versions = project.versions.resolve()
    top = Path(git(versions, "rev-parse", "--show-toplevel").strip())
    ref = base_ref or default_base(top)
    if ref != NO_COMMITS and not _resolves(top, ref):
        raise HistoryError(f"{ref!r} is not a branch or commit here: name an existing one (base=)")
    inside = versions.relative_to(top).as_posix()
    with tempfile.TemporaryDirectory(prefix="check-history-") as tmp:
        copy = Path(tmp) / "migrations" / "versions"
        copy.mkdir(parents=True)
        # Empty when the base has no such folder yet (the branch adds the first revisions).
        listed = (
            "" if ref == NO_COMMITS else git(top, "ls-tree", "--name-only", ref, "--", f"{inside}/")
        )
        for path in listed.splitlines():
            if path.endswith(".py"):
                text = git(top, "show", f"{ref}:{path}")
                (copy / Path(path).name).write_text(text, encoding="utf-8")
        base, _ = load(copy, ref)
    here, here_files = load(versions, "this branch")
    return History(ref, base, here, here_files, max_id_length(project))


def max_id_length(project: Project) -> int:
    return int(project.setting("revision-id-length", VERSION_NUM_LENGTH))


def findings(history: History) -> list[Finding]:
    found: list[Finding] = []
    ref = history.base_ref
    for revision, names in sorted(history.here_files.items()):
        if len(names) > 1:
            found.append(
                Finding(
                    revision,
                    " and ".join(sorted(names)),
                    f"this revision id is used by {len(names)} files; Alembic runs one of them",
                    "give the newer revision a new id (its `revision` line, and the "
                    "`down_revision` of any revision that follows it)",
                )
            )
    for revision in history.new:
        if len(revision) > history.max_id_length:
            found.append(
                Finding(
                    revision,
                    _file(history.here[revision]),
                    f"the id is {len(revision)} characters; alembic_version.version_num holds "
                    f"{history.max_id_length}, so applying it fails",
                    "use a shorter id (make migration writes 12), or widen the column first in "
                    "a revision of its own and set revision-id-length under "
                    "[tool.alembic-steady] in pyproject.toml",
                )
            )
    for revision in sorted(set(history.base) - set(history.here)):
        found.append(
            Finding(
                revision,
                _file(history.base[revision]),
                f"{ref} has this revision and this branch does not",
                f"bring {ref} in first (git merge {ref}, or git rebase {ref}); a revision "
                "applied somewhere must never be deleted",
            )
        )
    for phase in PHASES:
        found.extend(_line_findings(history.of_phase(phase)))
    return found


def _line_findings(history: History) -> list[Finding]:
    """One line's findings: one base, one head on the base branch, the new revisions after it."""
    found: list[Finding] = []
    ref = history.base_ref
    roots = sorted(r for r, script in history.here.items() if not parents(script))
    if len(roots) > 1:
        found.append(
            Finding(
                roots[-1],
                _file(history.here[roots[-1]]),
                f"the history has {len(roots)} base revisions ({', '.join(roots)}); one starts it",
                "point this revision's down_revision at the revision it builds on",
            )
        )
    heads = history.base_heads
    if len(heads) > 1:
        found.append(
            Finding(
                heads[-1],
                _file(history.base[heads[-1]]),
                f"{ref} itself has {len(heads)} heads ({', '.join(heads)})",
                f"merge them on {ref} first (make merge), then check this branch again",
            )
        )
        return found
    line, astray = history.line
    end = history.end_of_line
    for revision in astray:
        script = history.here[revision]
        if set(parents(script)) & set(astray):
            continue  # it follows one named here: re-pointing that one brings it along
        follows = ", ".join(parents(script)) or "nothing (a second base)"
        where = f"{ref}'s head {end}" if not line else f"this branch's revision {end}"
        found.append(
            Finding(
                revision,
                _file(script),
                f"follows {follows}, but the line ends at {where}: after the merge the history "
                "would not be one line",
                f"make migration-rebase rev={revision}"
                + ("" if end in history.here else f" (after git merge {ref})"),
            )
        )
    return found


def _file(script: Script) -> str:
    return Path(script.path).name


def rebase(project: Project, history: History, revision: str) -> str:
    """Re-point `revision` onto the end of the line; the new parent."""
    if revision not in history.here:
        raise HistoryError(
            f"no revision {revision!r} in {project.versions}: name one of make history"
        )
    if revision in history.base:
        raise HistoryError(
            f"{revision} is on {history.base_ref} already: only a revision this branch adds "
            "can be re-pointed (the others may be applied somewhere)"
        )
    history = history.of_phase(POST if revision in post_line(history.here) else PRE)
    if revision not in history.line[1]:
        raise HistoryError(f"{revision} already follows the line: nothing to do")
    if len(history.base_heads) != 1:
        raise HistoryError(
            f"{history.base_ref} has {len(history.base_heads)} heads: merge them there first"
        )
    end = history.end_of_line
    assert end is not None
    if end not in history.here:
        raise HistoryError(
            f"this branch lacks {history.base_ref}'s revision {end}: bring it in first "
            f"(git merge {history.base_ref}, or git rebase {history.base_ref}), then run this again"
        )
    path = Path(history.here[revision].path)
    text = path.read_text(encoding="utf-8")
    found = DOWN_REVISION.search(text)
    if found is None:
        raise HistoryError(f"{path.name} has no down_revision line to edit: edit it by hand")
    quote = '"' if '"' in found.group(2) else "'"
    text = DOWN_REVISION.sub(lambda m: f"{m.group(1)}{quote}{end}{quote}", text, count=1)
    text = REVISES.sub(lambda m: f"{m.group(1)}{end}", text, count=1)
    # Written on one line, as `make migration` writes it; anything else (a value spread over
    # lines) is left to a person rather than half edited.
    if _down_revision(text) != end:
        raise HistoryError(
            f"{path.name}: its down_revision is not one line as make migration writes it: edit "
            f"it by hand to {end!r} (and its Revises: line)"
        )
    path.write_text(text, encoding="utf-8")
    refresh_bytecode(path)
    return end


def refresh_bytecode(path: Path) -> None:
    """Compile an edited revision afresh. `make install` compiles the revisions; an edit that
    keeps the file's size (one 12-character id for another) within the second of its bytecode
    leaves that bytecode valid to Python, which would load the old parent from it."""
    try:
        py_compile.compile(str(path), doraise=True)
    except (OSError, py_compile.PyCompileError):
        # Unwritable __pycache__, or a file that no longer compiles: no stale bytecode stays.
        forget_bytecode(path)


def forget_bytecode(source: Path) -> None:
    """Delete what Python compiled of `source` (every optimization level)."""
    for compiled in (source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"):
        compiled.unlink(missing_ok=True)


def _down_revision(source: str) -> object:
    """The value the module assigns to down_revision, as Python reads it (None if unreadable)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "down_revision" for t in targets):
                try:
                    return ast.literal_eval(node.value)
                except ValueError:
                    return None
    return None


def main(project: Project, argv: list[str]) -> int:
    """check-history [--base REF]"""
    parser = argparse.ArgumentParser(prog="check-history")
    parser.add_argument("--base", default=None, help="the branch this one merges into")
    args = parser.parse_args(argv)
    try:
        history = read_history(project, args.base or None)
    except HistoryError as exc:
        print(f"check-history: {exc}")
        return 1
    found = findings(history)
    for finding in found:
        print(finding)
    if found:
        print(f"check-history: {len(found)} problem(s) against {history.base_ref}.")
        return 1
    added = len(history.new)
    after = "" if history.base_ref == NO_COMMITS else f" after {history.base_ref}'s head"
    print(f"check-history: {added} new revision(s), in one line{after}.")
    return 0


def rebase_main(project: Project, argv: list[str]) -> int:
    """migration-rebase REV [--base REF]"""
    parser = argparse.ArgumentParser(prog="migration-rebase")
    parser.add_argument("revision", help="the branch's revision to re-point")
    parser.add_argument("--base", default=None, help="the branch this one merges into")
    args = parser.parse_args(argv)
    try:
        history = read_history(project, args.base or None)
        parent = rebase(project, history, args.revision)
    except HistoryError as exc:
        print(f"migration-rebase: {exc}")
        return 1
    print(f"migration-rebase: {args.revision} now follows {parent}.")
    return 0
