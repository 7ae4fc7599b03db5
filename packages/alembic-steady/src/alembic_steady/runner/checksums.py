"""Checksums of applied revisions: a revision edited after a database ran it is refused.

Production ran a revision's old text; a database built later runs the new one, and nothing
notices. So each run records a fingerprint of every revision it applies, in the revision's own
transaction, in a table beside the version table (`alembic_version_checksums`). `make migrate`,
`make check` and `wait-for-head` compare the applied revisions' fingerprints with their files and
refuse a file whose code changed, naming the revision and the lines, until `make accept-edit
rev=R` records the change as deliberate.

The comparison is of the code, not of the bytes: Python parses the file, its docstrings are
dropped and `ast.unparse` writes it out again. Reformatting (ruff format), comments and the
header's message may change freely; anything the revision runs may not. A run records the file's
bytes (their hash, and the text), and compares code only for a file whose bytes changed: from the
file now and from the text recorded. A run that applies revisions parses none of them (parsing a
300-table baseline took 0.09 s, a small revision 1.5 ms), and a file unchanged byte for byte is
accepted without parsing it, immune to a change of `ast.unparse`'s output between Python versions.
The recorded text lets a refusal show what changed. (Records written by earlier versions of the
toolkit hold the code's hash and the code itself, parsed when applied: compared as they are.)

A database migrated before this existed has no table: the next upgrade creates it and records the
applied revisions as their files are now, without complaint. A rollback forgets the revisions it
undoes (an edited downgrade runs: fixing a broken downgrade is a normal edit); `stamp` records
the stamped revisions.
"""

import ast
import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Column, Connection, MetaData, String, Table, Text, delete, inspect, select
from sqlalchemy.engine import URL

from ..project import Commands, Project
from . import guards

TABLE = "alembic_version_checksums"
# A record's code hash when it holds the file's text, not yet parsed.
UNPARSED = ""
# The commands that compare the applied revisions with their files before they run.
VERIFYING = ("upgrade", "check")
# Lines of a refusal's diff, at most: enough to recognise the edit, short enough to read.
DIFF_LINES = 12


@dataclass(frozen=True)
class Fingerprint:
    file_sha256: str
    code_sha256: str
    code: str


def fingerprint(path: str | Path) -> Fingerprint:
    """The file's fingerprint, its code's hash and code included; parsed once per process while
    the file stays as it was."""
    data = Path(path).read_bytes()
    file_hash = _sha(data)
    known = _FINGERPRINTS.get(file_hash)
    if known is None:
        code = normalised(data.decode("utf-8"))
        known = _FINGERPRINTS[file_hash] = Fingerprint(file_hash, _sha(code.encode()), code)
    return known


_FINGERPRINTS: dict[str, Fingerprint] = {}


def normalised(source: str) -> str:
    """What a revision runs, as Python reads it: no comments, formatting or docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table(schema: str | None) -> Table:
    return Table(
        TABLE,
        MetaData(schema=schema),
        Column("revision", String(255), primary_key=True),
        Column("file_sha256", String(64), nullable=False),
        Column("code_sha256", String(64), nullable=False),
        Column("code", Text, nullable=False),
    )


def keeps_records(command: str | None, steps_revisions: bool) -> bool:
    """Whether a run keeps the records in step: one that applies or undoes revisions (Alembic's
    own upgrade and downgrade, called from code, name no command: they step revisions)."""
    return command in ("upgrade", "downgrade", "stamp") or steps_revisions


def applied(script: ScriptDirectory, heads: Iterable[str]) -> dict[str, Script]:
    """The revisions a database at `heads` has applied: the heads and all before them."""
    heads = tuple(heads)
    if not heads:
        return {}
    return {
        revision.revision: script.get_revision(revision.revision)
        for revision in script.revision_map.iterate_revisions(heads, "base")
    }


class Ledger:
    """The checksums table of one database, as a run reads and writes it: read once, then kept
    in step with what the run writes (each revision adds or removes its own record)."""

    def __init__(self, script: ScriptDirectory, schema: str | None = None) -> None:
        self.script = script
        self.table = table(schema)
        self.schema = schema
        # Revision -> (file hash, code hash); None until read, and while there is no table.
        self.records: dict[str, tuple[str, str]] | None = None
        # The records as they were before the last sync(), for rolled_back().
        self._before_sync: dict[str, tuple[str, str]] | None = None

    def read(self, connection: Connection) -> dict[str, tuple[str, str]] | None:
        if self.records is None and inspect(connection).has_table(TABLE, schema=self.schema):
            columns = self.table.c
            rows = connection.execute(
                select(columns.revision, columns.file_sha256, columns.code_sha256)
            )
            self.records = {revision: (file_, code) for revision, file_, code in rows}
        return self.records

    def verify(self, connection: Connection, heads: Iterable[str], commands: Commands) -> None:
        """Refuse when an applied revision's file holds other code than the database ran."""
        records = self.read(connection) or {}
        changed = []  # the applied revisions whose files' bytes changed
        for revision, script in applied(self.script, heads).items():
            if revision not in records:
                continue
            file_hash, code_hash = records[revision]
            path = Path(script.path)
            if _sha(path.read_bytes()) != file_hash:
                changed.append((script, fingerprint(path), code_hash))
        if not changed:
            return
        texts = self._codes(connection, [script.revision for script, _, _ in changed])
        edited: list[tuple[Script, Fingerprint]] = []
        ran: dict[str, str] = {}  # the code each ran here
        for script, now, code_hash in changed:
            code = texts[script.revision]
            if code_hash == UNPARSED:  # the file's text, recorded unparsed: its code read now
                code = normalised(code)
                code_hash = _sha(code.encode())
            ran[script.revision] = code
            # A baseline of `make squash` under the id of the revision it replaces: a database
            # at that revision recorded the replaced file's code.
            replaced = getattr(script.module, guards.SQUASHED_CODE, None)
            if code_hash not in (now.code_sha256, replaced):
                edited.append((script, now))
        if edited:
            raise CommandError(refusal(edited, ran, commands))

    def _codes(self, connection: Connection, revisions: list[str]) -> dict[str, str]:
        """What is recorded of each of `revisions` as it ran here: its file's text, or (a record
        with the code's hash) its code."""
        columns = self.table.c
        query = select(columns.revision, columns.code).where(columns.revision.in_(revisions))
        return {revision: code for revision, code in connection.execute(query)}

    def _ready(self, connection: Connection) -> None:
        """The records read, the table created first where there is none."""
        if self.read(connection) is None:
            self.table.create(connection)
            self.records = {}

    def prepare(self, connection: Connection, heads: Iterable[str]) -> None:
        """Create the table when missing, and record applied revisions without a record (a
        database migrated before checksums existed) as their files are now."""
        self._ready(connection)
        self.sync(connection, heads)

    def sync(self, connection: Connection, heads: Iterable[str]) -> None:
        """Make the records those of the revisions a database at `heads` has applied: the new
        ones as their files are now, the undone ones forgotten. After prepare()."""
        assert self.records is not None, "prepare() first"
        self._before_sync = dict(self.records)
        now = applied(self.script, heads)
        gone = set(self.records) - set(now)
        if gone:
            connection.execute(delete(self.table).where(self.table.c.revision.in_(gone)))
        new = [_row(script) for revision, script in now.items() if revision not in self.records]
        if new:
            connection.execute(self.table.insert(), new)
        for revision in gone:
            del self.records[revision]
        for row in new:
            self.records[row["revision"]] = (row["file_sha256"], row["code_sha256"])

    def rolled_back(self) -> None:
        """The transaction of the last sync() was rolled back: the records are as before it."""
        self.records = self._before_sync
        self._before_sync = None

    def accept(self, connection: Connection, heads: Iterable[str], revision: str) -> Script:
        """Record `revision`'s file as it is now: a deliberate edit."""
        now = applied(self.script, heads)
        if revision not in now:
            raise CommandError(
                f"{revision} is not applied to this database: there is no edit to accept "
                "(its file runs as it is when the revision is applied)."
            )
        self._ready(connection)
        script = now[revision]
        connection.execute(delete(self.table).where(self.table.c.revision == revision))
        connection.execute(self.table.insert(), [_row(script)])
        return script


def refusal(
    edited: list[tuple[Script, Fingerprint]], codes: dict[str, str], commands: Commands
) -> str:
    """What `verify` says: each edited revision with the lines that changed (as it ran here, -;
    as its file has them now, +), then the fix."""
    import difflib  # only to word a refusal: a run at head does without it

    parts = []
    for script, now in edited:
        diff = [
            line
            for line in difflib.unified_diff(
                codes[script.revision].splitlines(), now.code.splitlines(), lineterm="", n=0
            )
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
        more = len(diff) - DIFF_LINES
        shown = diff[:DIFF_LINES] + ([f"  ... and {more} more lines"] if more > 0 else [])
        parts.append(
            f"Revision {script.revision} ({Path(script.path).name}) was edited after this "
            "database applied it; its code now differs from what ran here:\n"
            + "\n".join(f"  {line}" for line in shown)
        )
    first = edited[0][0]
    return (
        "\n".join(parts)
        + "\nA database built from the files now would differ from this one. Put the file "
        f"back as it was (git log -p -- {Path(first.path).name}); if the edit is deliberate "
        "and this database needs nothing more, record it: "
        f"{commands.accept_edit_of(first.revision)}."
    )


def accept_edit(project: Project, script: ScriptDirectory, revision: str, url: URL | None) -> str:
    """`accept-edit`: record `revision`'s file as it is now on the project's database (or
    `url`'s), in one transaction. The file's path."""
    from .environment import migration_engine  # it imports this module

    settings = project.settings()
    engine = migration_engine(url or settings.migration_url, settings, project)

    def accept(connection: Connection) -> str:
        heads = MigrationContext.configure(connection).get_current_heads()
        return str(Ledger(script).accept(connection, heads, revision).path)

    async def run() -> str:
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(accept)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _row(script: Script) -> dict[str, str]:
    """A revision's record as it is applied: its file's hash and text, unparsed (verify reads
    its code only if the file changes)."""
    data = Path(script.path).read_bytes()
    return {
        "revision": script.revision,
        "file_sha256": _sha(data),
        "code_sha256": UNPARSED,
        "code": data.decode("utf-8"),
    }
