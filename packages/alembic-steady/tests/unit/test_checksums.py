"""runner/checksums.py without a server: the fingerprint (what counts as an edit), which revisions
a database at some heads has applied, the table, the refusal's words, and the statements the
ledger sends, recorded by a stand-in connection. The live tiers run it on real servers
(tests/postgresql/test_pg_checksums.py, tests/mysql/test_mysql_runner.py)."""

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Integer, String, Text, pool
from support import (
    DEFAULT_URL,
    LINEAR,
    Settings,
    StandInEngine,
    make_project,
    script_directory,
)

from alembic_steady import MAKE
from alembic_steady.runner import checksums, environment
from alembic_steady.runner.checksums import (
    DIFF_LINES,
    TABLE,
    VERIFYING,
    Fingerprint,
    Ledger,
    applied,
    fingerprint,
    keeps_records,
    normalised,
    refusal,
)

MODULE = '''"""Add price.

Revision ID: c
"""

import sqlalchemy as sa  # the types


def upgrade() -> None:
    """Up."""
    x = 1


class Helper:
    """Doc."""


def empty() -> None:
    """Only a docstring."""
'''


def test_the_code_is_kept_and_comments_docstrings_and_formatting_are_not() -> None:
    assert normalised(MODULE) == (
        "import sqlalchemy as sa\n\n"
        "def upgrade() -> None:\n    x = 1\n\n"
        "class Helper:\n    pass\n\n"
        "def empty() -> None:\n    pass\n"
    )
    reformatted = MODULE.replace("x = 1", "x = (\n        1\n    )  # one").replace('"""Up."""', "")
    assert normalised(reformatted) == normalised(MODULE)
    assert normalised(MODULE.replace("x = 1", "x = 2")) != normalised(MODULE)


def test_a_first_statement_that_is_no_string_stays() -> None:
    assert normalised("def f():\n    1\n    return 2\n") == "def f():\n    1\n    return 2\n"
    assert (
        normalised("async def f():\n    'doc'\n    await g()\n")
        == "async def f():\n    await g()\n"
    )


@pytest.fixture(autouse=True)
def no_fingerprints_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test parses its files afresh (the cache lives as long as the process)."""
    monkeypatch.setattr(checksums, "_FINGERPRINTS", {})


def test_an_empty_file_is_no_code() -> None:
    assert normalised("") == "\n"
    assert normalised('"""Only a docstring."""\n') == "pass\n"


def test_the_fingerprint_hashes_the_bytes_and_the_code(tmp_path: Path) -> None:
    path = tmp_path / "c.py"
    path.write_text(MODULE, encoding="utf-8")
    mark = fingerprint(path)
    code = normalised(MODULE)
    assert mark == Fingerprint(
        hashlib.sha256(MODULE.encode()).hexdigest(), hashlib.sha256(code.encode()).hexdigest(), code
    )
    assert fingerprint(str(path)) is mark  # parsed once while the file is unchanged
    path.write_text(MODULE.replace("x = 1", "x = 3"), encoding="utf-8")
    assert fingerprint(path).code_sha256 != mark.code_sha256


def test_the_table_sits_beside_the_version_table() -> None:
    table = checksums.table("audit")
    assert table.name == TABLE == "alembic_version_checksums"
    assert table.schema == "audit"
    columns = {c.name: c for c in table.columns}
    assert list(columns) == ["revision", "file_sha256", "code_sha256", "code"]
    assert [c.name for c in table.primary_key] == ["revision"]
    assert all(not c.nullable for c in table.columns)
    assert isinstance(columns["revision"].type, String) and columns["revision"].type.length == 255
    for name in ("file_sha256", "code_sha256"):
        assert isinstance(columns[name].type, String) and columns[name].type.length == 64
    assert isinstance(columns["code"].type, Text) and not isinstance(columns["code"].type, Integer)
    assert checksums.table(None).schema is None


def test_runs_that_apply_or_undo_revisions_keep_records_and_upgrades_and_checks_verify() -> None:
    assert VERIFYING == ("upgrade", "check")
    for command in ("upgrade", "downgrade", "stamp"):
        assert keeps_records(command, steps_revisions=False)
    for command in ("check", "current", "revision", None):
        assert not keeps_records(command, steps_revisions=False)
    assert keeps_records(None, steps_revisions=True)


MERGED = (*LINEAR, ("x", "a"))


@pytest.fixture
def script(tmp_path: Path) -> ScriptDirectory:
    script_directory(tmp_path / "migrations", MERGED)
    (tmp_path / "migrations" / "versions" / "m_step.py").write_text(
        '"""merge"""\nrevision = "m"\ndown_revision = ("c", "x")\n', encoding="utf-8"
    )
    return ScriptDirectory(str(tmp_path / "migrations"))


def test_applied_revisions_are_the_heads_and_all_before_them(script: ScriptDirectory) -> None:
    assert set(applied(script, ["b"])) == {"a", "b"}
    assert set(applied(script, ("c", "x"))) == {"a", "b", "c", "x"}
    assert set(applied(script, ["m"])) == {"a", "b", "c", "x", "m"}
    assert applied(script, []) == {}
    assert applied(script, ["b"])["b"].path.endswith("b_step.py")


class Recording:
    """A Connection stand-in: records each statement (SQL text, parameters) and answers the
    ledger's two selects from `rows` (revision -> (file hash, code hash, code))."""

    def __init__(self, rows: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.rows = rows or {}
        self.sent: list[tuple[str, Any]] = []

    def execute(self, statement: Any, parameters: Any = None) -> list[tuple[str, ...]]:
        sql = " ".join(str(statement).split())
        self.sent.append((sql, parameters))
        if sql.startswith("SELECT") and "code_sha256" in sql:
            return [(r, f, c) for r, (f, c, _) in self.rows.items()]
        if sql.startswith("SELECT"):
            assert sql.startswith(f"SELECT {TABLE}.revision, {TABLE}.code FROM {TABLE} WHERE"), sql
            wanted = statement.compile().params["revision_1"]
            return [(r, code) for r, (_, _, code) in self.rows.items() if r in wanted]
        return []


SCHEMA: list[str | None] = [None]


@pytest.fixture
def has_table(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the stand-in database has the table (settable); has_table must be asked of the
    run's connection, for the table in the ledger's schema (SCHEMA)."""
    answer = [True]

    class Inspector:
        def __init__(self, connection: object) -> None:
            assert isinstance(connection, Recording)

        def has_table(self, name: str, schema: str | None = None) -> bool:
            assert (name, schema) == (TABLE, SCHEMA[0])
            return answer[0]

    monkeypatch.setattr(checksums, "inspect", Inspector)
    return answer


def recorded_as_files_are(
    script: ScriptDirectory, *revisions: str
) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for revision in revisions:
        mark = fingerprint(script.get_revision(revision).path)
        rows[revision] = (mark.file_sha256, mark.code_sha256, mark.code)
    return rows


def test_the_records_are_read_once_and_not_at_all_without_a_table(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    has_table[0] = False
    connection = Recording()
    ledger = Ledger(script)
    assert ledger.read(connection) is None and connection.sent == []  # type: ignore[arg-type]
    has_table[0] = True
    connection.rows = recorded_as_files_are(script, "a")
    read = ledger.read(connection)  # type: ignore[arg-type]
    assert read == {"a": connection.rows["a"][:2]}
    assert ledger.read(connection) is read  # type: ignore[arg-type]
    assert [sql for sql, _ in connection.sent] == [
        f"SELECT {TABLE}.revision, {TABLE}.file_sha256, {TABLE}.code_sha256 FROM {TABLE}"
    ]


def test_unchanged_and_reformatted_files_pass_and_unrecorded_ones_are_left(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    connection = Recording(recorded_as_files_are(script, "a", "b"))
    path = Path(script.get_revision("b").path)
    path.write_text(path.read_text() + "\n# a comment\n", encoding="utf-8")
    Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]  # c: no record
    has_table[0] = False
    Ledger(script).verify(Recording(), ["c"], MAKE)  # type: ignore[arg-type]


def test_an_edited_applied_revision_is_refused_with_its_lines(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    connection = Recording(recorded_as_files_are(script, "a", "b", "c"))
    path = Path(script.get_revision("b").path)
    path.write_text(path.read_text().replace("    pass\n", "    x = 1\n", 1), encoding="utf-8")
    # Not applied at a: nothing to compare.
    Ledger(script).verify(connection, ["a"], MAKE)  # type: ignore[arg-type]
    with pytest.raises(CommandError) as refused:
        Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "Revision b (b_step.py) was edited after this database applied it; its code now "
        "differs from what ran here:\n"
        "  -    pass\n"
        "  +    x = 1\n"
        "A database built from the files now would differ from this one. Put the file back as it "
        "was (git log -p -- b_step.py); if the edit is deliberate and this database needs "
        "nothing more, record it: make accept-edit rev=b."
    )


def recorded_unparsed(script: ScriptDirectory, *revisions: str) -> dict[str, tuple[str, str, str]]:
    """Records as a run writes them: each file's hash and text, its code not parsed."""
    rows = {}
    for revision in revisions:
        path = Path(script.get_revision(revision).path)
        rows[revision] = (fingerprint(path).file_sha256, "", path.read_text(encoding="utf-8"))
    return rows


def test_a_file_recorded_unparsed_is_compared_by_its_code_once_its_bytes_change(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    """Reformatted or commented: it passes. Its code changed: refused, the lines shown as code
    (what ran here from the recorded text, against the file now)."""
    connection = Recording(recorded_unparsed(script, "a", "b", "c"))
    path = Path(script.get_revision("b").path)
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("    pass\n", "    pass  # nothing yet\n", 1), "utf-8")
    Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]
    path.write_text(original.replace("    pass\n", "    x = 1\n", 1), encoding="utf-8")
    with pytest.raises(CommandError) as refused:
        Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]
    assert "differs from what ran here:\n  -    pass\n  +    x = 1\nA database" in str(
        refused.value
    )
    # Unchanged bytes are not read at all: neither the recorded text nor the file's code.
    path.write_text(original, encoding="utf-8")
    connection.sent.clear()
    Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]
    assert [sql for sql, _ in connection.sent if "code FROM" in sql] == []


def test_a_long_edit_is_cut_and_every_edited_revision_named() -> None:
    old = "\n".join(f"x{i} = {i}" for i in range(20))
    new = "\n".join(f"x{i} = {i + 1}" for i in range(20))
    edited = [
        (_script("b", "/v/b_step.py"), Fingerprint("", "", new)),
        (_script("c", "/v/c_step.py"), Fingerprint("", "", "y = 2")),
    ]
    text = refusal(edited, {"b": old, "c": "y = 1"}, make_project().module_commands)
    lines = text.splitlines()
    assert lines[1 : DIFF_LINES + 1] == [f"  -x{i} = {i}" for i in range(DIFF_LINES)]
    assert lines[DIFF_LINES + 1] == f"    ... and {40 - DIFF_LINES} more lines"
    assert lines[DIFF_LINES + 2 :] == [
        "Revision c (c_step.py) was edited after this database applied it; its code now differs "
        "from what ran here:",
        "  -y = 1",
        "  +y = 2",
        "A database built from the files now would differ from this one. Put the file back as it "
        "was (git log -p -- b_step.py); if the edit is deliberate and this database needs nothing "
        "more, record it: python -m shop.migrations accept-edit b.",
    ]


def _script(revision: str, path: str) -> Any:
    class Script:
        pass

    script = Script()
    script.revision, script.path = revision, path  # type: ignore[attr-defined]
    return script


def test_sync_writes_what_a_step_applied_and_forgets_what_it_undid(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    connection = Recording(recorded_as_files_are(script, "a", "x"))
    ledger = Ledger(script)
    ledger.read(connection)  # type: ignore[arg-type]
    connection.sent.clear()
    ledger.sync(connection, ["b"])  # type: ignore[arg-type]
    (forget, _), (insert, rows) = connection.sent
    assert forget == f"DELETE FROM {TABLE} WHERE {TABLE}.revision IN (__[POSTCOMPILE_revision_1])"
    assert insert.startswith(f"INSERT INTO {TABLE} (revision, file_sha256, code_sha256, code)")
    # The file's bytes, unparsed: a run that applies revisions parses none of them.
    mark = fingerprint(script.get_revision("b").path)
    text = Path(script.get_revision("b").path).read_text(encoding="utf-8")
    assert rows == [
        {"revision": "b", "file_sha256": mark.file_sha256, "code_sha256": "", "code": text}
    ]
    assert ledger.records == {"a": connection.rows["a"][:2], "b": (mark.file_sha256, "")}
    connection.sent.clear()
    ledger.sync(connection, ["b"])  # type: ignore[arg-type]
    assert connection.sent == []  # nothing changed, nothing sent


def test_a_rolled_back_sync_leaves_the_records_as_before_it_without_reading_them(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    """The stairway rolls a downgrade's transaction back: its sync (forgetting the revision it
    undid) is undone with it, and the records are those before it, no query sent."""
    connection = Recording(recorded_as_files_are(script, "a", "b"))
    ledger = Ledger(script)
    ledger.read(connection)  # type: ignore[arg-type]
    before = dict(ledger.records or {})
    ledger.sync(connection, ["a"])  # type: ignore[arg-type]  # the downgrade of b
    assert set(ledger.records or {}) == {"a"}
    connection.sent.clear()
    ledger.rolled_back()
    assert ledger.records == before and connection.sent == []
    ledger.sync(connection, ["b"])  # type: ignore[arg-type]  # at b, as rolled back
    assert connection.sent == []


def test_prepare_creates_the_table_once_and_records_what_is_applied(
    script: ScriptDirectory, has_table: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    has_table[0] = False
    created: list[object] = []
    ledger = Ledger(script)
    monkeypatch.setattr(ledger.table, "create", created.append)
    connection = Recording()
    ledger.prepare(connection, ["b"])  # type: ignore[arg-type]
    assert created == [connection]
    assert set(ledger.records or {}) == {"a", "b"}
    with pytest.raises(AssertionError, match=r"^prepare\(\) first$"):
        Ledger(script).sync(connection, ["b"])  # type: ignore[arg-type]


def test_accepting_rewrites_one_record_and_only_of_an_applied_revision(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    connection = Recording(recorded_as_files_are(script, "a", "b"))
    with pytest.raises(CommandError) as refused:
        Ledger(script).accept(connection, ["b"], "c")  # type: ignore[arg-type]
    assert str(refused.value) == (
        "c is not applied to this database: there is no edit to accept (its file runs as it is "
        "when the revision is applied)."
    )
    connection.sent.clear()
    accepted = Ledger(script).accept(connection, ["b"], "a")  # type: ignore[arg-type]
    assert accepted.revision == "a"
    (_, _), (forget, _), (insert, rows) = connection.sent
    assert forget == f"DELETE FROM {TABLE} WHERE {TABLE}.revision = :revision_1"
    assert insert.startswith(f"INSERT INTO {TABLE}") and [r["revision"] for r in rows] == ["a"]


def test_the_ledger_reads_its_table_in_the_version_tables_schema(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    SCHEMA[0] = "audit"
    try:
        ledger = Ledger(script, "audit")
        assert ledger.table.schema == "audit" and ledger.schema == "audit"
        connection = Recording(recorded_as_files_are(script, "a"))
        assert ledger.read(connection) == {"a": connection.rows["a"][:2]}  # type: ignore[arg-type]
    finally:
        SCHEMA[0] = None


def test_an_unrecorded_revision_does_not_stop_the_others_being_compared(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    connection = Recording(recorded_as_files_are(script, "a", "b"))  # c applied, not recorded
    path = Path(script.get_revision("b").path)
    path.write_text(path.read_text().replace("    pass\n", "    y = 1\n", 1), encoding="utf-8")
    with pytest.raises(CommandError, match=r"^Revision b \(b_step.py\) was edited"):
        Ledger(script).verify(connection, ["c"], MAKE)  # type: ignore[arg-type]


@pytest.mark.parametrize(("added", "cut"), [(0, None), (1, 1)])
def test_the_diff_is_cut_only_past_its_lines(added: int, cut: int | None) -> None:
    # DIFF_LINES // 2 lines changed make DIFF_LINES lines of diff; each added one, one more.
    changed = DIFF_LINES // 2
    old = "\n".join(f"x{i} = {i}" for i in range(changed))
    new = "\n".join([f"x{i} = {i + 1}" for i in range(changed)] + ["z = 0"] * added)
    edited = [(_script("b", "/v/b_step.py"), Fingerprint("", "", new))]
    text = refusal(edited, {"b": old}, MAKE)
    assert ("more lines" in text) is (cut is not None)
    if cut is not None:
        assert f"    ... and {cut} more lines\n" in text


def test_accepting_creates_the_table_on_a_database_without_one(
    script: ScriptDirectory, has_table: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    has_table[0] = False
    ledger = Ledger(script)
    created: list[object] = []
    monkeypatch.setattr(ledger.table, "create", created.append)
    connection = Recording()
    ledger.accept(connection, ["b"], "b")  # type: ignore[arg-type]
    assert created == [connection]


def test_accept_edit_records_the_file_in_one_transaction_on_the_migration_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, settings=lambda: Settings())
    engines: list[StandInEngine] = []

    def engine(url: Any, **kwargs: Any) -> StandInEngine:
        engines.append(StandInEngine(url, **kwargs))
        return engines[-1]

    asked: list[tuple[Any, ...]] = []

    def accept(self: Ledger, connection: Any, heads: Any, revision: str) -> Any:
        asked.append((self.script, connection, tuple(heads), revision))
        return _script(revision, "/v/b_step.py")

    # The runner's own engine (environment.migration_engine), made on the stand-in.
    monkeypatch.setattr(environment, "create_async_engine", engine)
    monkeypatch.setattr(Ledger, "accept", accept)

    def configure(connection: Any) -> Any:
        assert connection is engines[-1].connection
        return SimpleNamespace(get_current_heads=lambda: ("c",))

    monkeypatch.setattr(checksums.MigrationContext, "configure", configure)
    script = script_directory(tmp_path / "elsewhere", LINEAR)
    assert checksums.accept_edit(project, script, "b", None) == "/v/b_step.py"
    (made,) = engines
    assert made.url == DEFAULT_URL and made.opened == ["begin"] and made.disposed
    assert made.kwargs["poolclass"] is pool.NullPool
    assert made.kwargs["connect_args"]["server_settings"]["application_name"] == "shop migrations"
    assert asked == [(script, made.connection, ("c",), "b")]
    given = DEFAULT_URL.set(database="other")
    checksums.accept_edit(project, script, "b", given)
    assert engines[-1].url == given and engines[-1].disposed


def test_a_squashed_baseline_accepts_the_code_databases_at_its_revision_recorded(
    script: ScriptDirectory, has_table: list[bool]
) -> None:
    """`make squash` writes the baseline under b's id: a database at b recorded b's old code,
    which the baseline names; any other code is still an edit."""
    connection = Recording(recorded_as_files_are(script, "a", "b"))
    path = Path(script.get_revision("b").path)
    old_code = connection.rows["b"][1]
    baseline = path.read_text().replace("    pass\n", "    x = 1\n", 1)
    path.write_text(baseline + f'\nsquashed_code_sha256 = "{old_code}"\n', encoding="utf-8")
    fresh = ScriptDirectory(script.dir, version_locations=script.version_locations)
    Ledger(fresh).verify(connection, ["b"], MAKE)  # type: ignore[arg-type]
    path.write_text(baseline + '\nsquashed_code_sha256 = "other"\n', encoding="utf-8")
    fresh = ScriptDirectory(script.dir, version_locations=script.version_locations)
    with pytest.raises(CommandError, match="Revision b"):
        Ledger(fresh).verify(connection, ["b"], MAKE)  # type: ignore[arg-type]
