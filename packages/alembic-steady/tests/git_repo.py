"""Real git repositories for the tests of the history check and the squash: commands run with
an identity of their own and no user or system configuration."""

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def repository(root: Path, message: str = "first", tag: str | None = None) -> None:
    """`root` as a repository on `main` with everything in it committed (and tagged)."""
    git(root, "init", "-q", "-b", "main")
    commit(root, message)
    if tag:
        git(root, "tag", tag)
