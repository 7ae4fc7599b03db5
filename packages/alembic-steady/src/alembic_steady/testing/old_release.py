"""The release before this one, on the schema this one's pre revisions make.

During a deploy the old release serves traffic while the pre revisions run, and until the
rollout ends after them (runner/phases.py). Its code must go on working: a pre revision that
adds a NOT NULL column without a default breaks its inserts, one that drops or renames a column
its selects. The check takes the old release's source from git, migrates a database to that
release's heads, starts a process that imports the old models (old_release_child.py), and after
each pre revision added since runs their INSERT, SELECT and UPDATE on every table. What already
fails at the old release's own heads (a type no value is made for, a CHECK the made-up row does
not meet) is listed as not checked, never blamed on a revision.

Which release: OLD_RELEASE (a git ref: the base branch in CI), else `old-release` under
[tool.alembic-steady], else the newest tag reachable from HEAD. Without git or a tag there is
nothing to compare, and the run says so.
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL

import alembic_steady

from ..runner.phases import PRE, Phases
from . import markers
from .old_release_child import URL_VARIABLE
from .walk import Harness

VARIABLE = "OLD_RELEASE"
SETTING = "old-release"
# What a pre revision that breaks the old release is told to do instead.
ADVICE = (
    "A pre revision runs while the old release serves: add a column nullable or with a server "
    "default, and make it NOT NULL, drop or rename things in a post revision (`make migration` "
    "splits them so; docs/deploy-phases.md)."
)


@dataclass
class Outcome:
    said: str  # one line for the end of the run: which release, what was checked
    failures: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)


def release_ref(folder: Path, setting: object) -> tuple[str | None, str]:
    """The old release's git ref and where it came from; None and why there is none."""
    if named := os.environ.get(VARIABLE):
        return named, VARIABLE
    if isinstance(setting, str) and setting:
        return setting, f"{SETTING} in pyproject.toml"
    if _git(folder, "rev-parse", "--git-dir") is None:
        return None, f"{folder} is not in a git repository"
    tag = _git(folder, "describe", "--tags", "--abbrev=0")
    if tag is None:
        return None, f"no tag is reachable from HEAD; set {VARIABLE}=<git ref> to name one"
    return tag, "the newest tag"


def _git(folder: Path, *args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def extract(source: Path, ref: str, into: Path) -> Path:
    """The source folder (the one holding the package) as it is at `ref`, under `into`."""
    top = _git(source, "rev-parse", "--show-toplevel")
    if top is None:
        raise LookupError(f"{source} is not in a git repository")
    inside = source.resolve().relative_to(Path(top).resolve())
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "--", inside.as_posix() or "."],
        cwd=top,
        capture_output=True,
    )
    if archive.returncode != 0:
        error = archive.stderr.decode(errors="replace").strip().splitlines()
        raise LookupError(f"git archive {ref}: {error[0] if error else 'failed'}")
    into.mkdir(parents=True, exist_ok=True)
    tar = into / "release.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as files:
        files.extractall(into / "tree", filter="data")
    return into / "tree" / inside


class OldRelease:
    """The process that runs the old release's statements (old_release_child.py)."""

    def __init__(self, source: Path, package: str, url: URL) -> None:
        toolkit = Path(alembic_steady.__file__).resolve().parent.parent
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(source), str(toolkit)]),
            URL_VARIABLE: url.render_as_string(hide_password=False),
        }
        child = "alembic_steady.testing.old_release_child"
        # -P: python -m would put the working folder first on the path, and from a project's
        # root (no src/ layout) the package there, the new release's, would load instead.
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", child, package],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def check(self) -> dict[str, str]:
        """Each statement of the old release that fails now: its kind and table -> why."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write("check\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"the old release's models did not load:\n{error.strip()}")
        found: dict[str, str] = json.loads(line)
        return found

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def check(harness: Harness, url: URL) -> Outcome:
    """Migrate `url` (empty) to the old release's heads, then through each pre revision since,
    running the old release's statements after each: the revision after which one fails first
    is named with it."""
    project = harness.project
    source = project.migrations.parent.parent  # the folder holding the package
    ref, why = release_ref(source, project.setting(SETTING, None))
    if ref is None:
        return Outcome(f"Old release NOT checked: {why}.")
    with tempfile.TemporaryDirectory(prefix="old-release-") as folder:
        try:
            old_source = extract(source, ref, Path(folder))
        except LookupError as exc:
            return Outcome(f"Old release NOT checked: {exc}.", failures=[f"{ref}: {exc}"])
        inside = project.migrations.relative_to(source)
        old = ScriptDirectory(str(old_source / inside))
        known = {revision.revision for revision in old.walk_revisions()}
        phases = Phases(harness.script)
        missing = sorted(head for head in old.get_heads() if not _defines(harness.script, head))
        if missing:
            return Outcome(
                f"Old release NOT checked: its heads {missing} ({ref}, {why}) are not in this "
                "history (squashed?); name a later release in OLD_RELEASE."
            )
        new = [
            revision
            for revision in harness.revisions_base_to_head()
            if revision.revision not in known and phases.phase(revision.revision) == PRE
        ]
        said = f"Old release {ref} ({why}) checked against {len(new)} pre revision(s) since"
        if not new:
            return Outcome(said + ": none to check.")
        for head in sorted(old.get_heads(), key=lambda head: phases.phase(head) != PRE):
            harness.migrations.upgrade(head, url=url)
        release = OldRelease(old_source, project.package, url)
        try:
            return _step(harness, url, release, new, said)
        finally:
            release.close()


def _defines(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _step(harness: Harness, url: URL, release: OldRelease, new: list[Script], said: str) -> Outcome:
    before = release.check()
    outcome = Outcome(said)
    if before:
        outcome.said += "; not checked (failing at the old release's own heads): " + "; ".join(
            f"{what}: {why}" for what, why in sorted(before.items())
        )
    blamed = set(before)
    for revision in new:
        harness.migrations.upgrade(revision.revision, url=url)
        broken = {what: why for what, why in release.check().items() if what not in blamed}
        blamed |= set(broken)
        reason = markers.read(revision.path).breaks_old_release
        for what, why in sorted(broken.items()):
            finding = f"{revision.revision} ({revision.doc}) breaks the old release's {what}: {why}"
            if reason:
                outcome.accepted.append(f"{finding} (accepted: {reason})")
            else:
                outcome.failures.append(finding)
    return outcome
