"""`make lint-migrations`' phase rule: a `pre` revision runs while the old release still serves
traffic, so it must not remove, rename or tighten what that release reads and writes. Such steps
belong in a `post` revision (`make migration` splits them out; `make migration-empty phase=post`
for one written by hand).

The rule reads each pre revision's `upgrade()` (the source, not its SQL: a helper's own clean-up
of what it made, such as the temporary CHECK of `op.set_not_null`, is not the revision's doing).
A revision accepts a step on purpose with a line in its file, reviewed with it:

    # lint-migrations: contracts in pre: the column was never released

The rule applies once a project takes up the phases: from its first post revision, or as
`phases-from` under [tool.alembic-steady] in pyproject.toml says: "base" (every revision: a
project that starts with phases, as the template's does), or "REV" (the history written before is
left alone: REV and the revisions before it are not read).
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from ..project import Project
from ..runner.phases import Phases

SETTING = "phases-from"
ACCEPT_LINE = re.compile(
    r"^[ \t]*#[ \t]*lint-migrations:[ \t]*contracts in pre:[ \t]*(\S.*)$", re.M
)
# op.<name>(...) (or batch_op.<name>) that removes or renames what the old release uses.
REMOVING = {
    "drop_table",
    "drop_column",
    "drop_index",
    "drop_index_concurrently",
    "drop_constraint",
    "rename_table",
    "set_not_null",
}
# SQL a revision runs through op.execute("...") that does the same.
REMOVING_SQL = re.compile(
    r"\bDROP\s+(TABLE|COLUMN|INDEX|CONSTRAINT|FOREIGN\s+KEY|CHECK)\b|\bRENAME\b|\bSET\s+NOT\s+NULL\b",
    re.I,
)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.what} in a pre revision"


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _removes(call: ast.Call) -> str | None:
    """What `call` removes, renames or tightens, as the finding says it; None for the rest."""
    function = call.func
    if not isinstance(function, ast.Attribute):
        return None
    name = function.attr
    if name in REMOVING:
        return f"op.{name}()"
    if name == "alter_column":
        nullable = _keyword(call, "nullable")
        if isinstance(nullable, ast.Constant) and nullable.value is False:
            return "op.alter_column(nullable=False)"
        if _keyword(call, "new_column_name") is not None:
            return "op.alter_column(new_column_name=...)"
    if name == "execute" and call.args:
        sql = call.args[0]
        if isinstance(sql, ast.Constant) and isinstance(sql.value, str):
            found = REMOVING_SQL.search(sql.value)
            if found:
                return f"op.execute() with {' '.join(found.group(0).upper().split())}"
    return None


def removing_steps(path: Path) -> list[Finding]:
    """The steps of the revision file's upgrade() that remove, rename or tighten."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    upgrade = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
        ),
        None,
    )
    if upgrade is None:
        return []
    return [
        Finding(path, node.lineno, what)
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call) and (what := _removes(node)) is not None
    ]


def accepted(path: Path) -> str | None:
    found = ACCEPT_LINE.search(path.read_text(encoding="utf-8"))
    return found.group(1).strip() if found else None


def check(project: Project, phases: Phases) -> tuple[list[Finding], list[str]]:
    """(findings, accepted lines) of the pre revisions after `phases-from`; none before the
    project takes up the phases."""
    since = project.setting(SETTING, None)
    if since is None and not phases.used:
        return [], []
    before: set[str] = set()
    if since not in (None, "base"):
        if since not in phases.revisions:
            raise ValueError(
                f"{SETTING} = {since!r} in pyproject.toml names no revision here: give the id of "
                'the last revision written before the project took up deploy phases, or "base"'
            )
        before = phases.applied([since])
    findings: list[Finding] = []
    accepting: list[str] = []
    for name, revision in phases.revisions.items():
        if name in phases.post or name in before or revision.path is None:
            continue
        path = Path(revision.path)
        steps = removing_steps(path)
        if steps and (reason := accepted(path)) is not None:
            accepting.append(f"{path.name}: contracts in pre (accepted in the file: {reason})")
        else:
            findings.extend(steps)
    return sorted(findings, key=lambda f: (f.path.name, f.line)), accepting


ADVICE = (
    "The old release still uses what these steps remove: move them to a post revision, which "
    "runs after the rollout (make migration splits a model change that way; make migration-empty "
    'msg="..." phase=post writes an empty one). Accept one on purpose with a line in its file: '
    "`# lint-migrations: contracts in pre: <why>`; history from before the phases: "
    f'`{SETTING} = "<revision>"` under [tool.alembic-steady] in pyproject.toml.'
)
