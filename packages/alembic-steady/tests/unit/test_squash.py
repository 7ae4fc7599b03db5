"""tools/squash.py without a database: which revisions a squash folds and what it refuses (real
git repositories, revision files Alembic loads), the baseline's header and statements as written,
the proof's comparison, and the runner's refusal of a database at a folded revision. The
postgresql and mysql tiers run whole squashes on real servers."""

from pathlib import Path
from types import SimpleNamespace

import git_repo
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory, write_hooks
from git_repo import git
from sqlalchemy.dialects.mysql import aiomysql
from sqlalchemy.dialects.postgresql import asyncpg
from support import FakeConnection, make_project, script_directory, write_revisions

from alembic_steady import Project
from alembic_steady.dialects import mysql_squash, postgresql_schema, postgresql_squash
from alembic_steady.dialects import postgresql as postgresql_module
from alembic_steady.dialects.mysql import MySQL
from alembic_steady.dialects.postgresql import PostgreSQL
from alembic_steady.runner import alembic_internals, guards
from alembic_steady.testing.data_checks import DATA_CHECKS, DataCheck
from alembic_steady.testing.walk import checked_at
from alembic_steady.tools import squash


def repository(root: Path, chain: list[tuple[str, str | None]]) -> tuple[Project, ScriptDirectory]:
    write_revisions(root / "migrations" / "versions", chain)
    git_repo.repository(root, "chain")
    project = make_project(root)
    script = ScriptDirectory(str(root / "migrations"), version_locations=[str(project.versions)])
    return project, script


def test_the_squash_folds_the_revision_and_all_before_it_in_order(tmp_path: Path) -> None:
    project, script = repository(tmp_path, [("a", None), ("b", "a"), ("c", "b"), ("d", "c")])
    git(tmp_path, "tag", "v2.1")
    plan = squash.plan(project, script, "c")
    assert [revision.revision for revision in plan.folded] == ["a", "b", "c"]
    assert plan.upto.revision == "c" and plan.release == "v2.1"
    # Without a tag, the commit (git describe --always).
    git(tmp_path, "tag", "-d", "v2.1")
    head = git(tmp_path, "rev-parse", "--short", "HEAD").strip()
    assert squash.plan(project, script, "c").release == head


def test_a_branch_from_below_the_squash_point_is_refused(tmp_path: Path) -> None:
    project, script = repository(
        tmp_path, [("a", None), ("b", "a"), ("c", "b"), ("x", "a"), ("m", ("c", "x"))]
    )
    with pytest.raises(squash.SquashError, match="x follows a, which the squash would delete"):
        squash.plan(project, script, "c")
    # Up to the merge, both branches are folded in.
    folded = [revision.revision for revision in squash.plan(project, script, "m").folded]
    assert sorted(folded) == ["a", "b", "c", "m", "x"] and folded[-1] == "m"


def test_nothing_to_squash_an_unknown_revision_and_uncommitted_files_are_refused(
    tmp_path: Path,
) -> None:
    project, script = repository(tmp_path, [("a", None), ("b", "a")])
    with pytest.raises(squash.SquashError, match="a is the first revision: there is nothing"):
        squash.plan(project, script, "a")
    with pytest.raises(squash.SquashError, match="zz is not a revision of this project"):
        squash.plan(project, script, "zz")
    write_revisions(project.versions, [("c", "b")])
    with pytest.raises(squash.SquashError, match="uncommitted changes: commit them first"):
        squash.plan(project, script, "b")


def test_outside_git_the_squash_says_why_it_cannot_name_a_release(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    script = script_directory(tmp_path / "migrations", [("a", None), ("b", "a")])
    with pytest.raises(squash.SquashError, match="git cannot say which"):
        squash.plan(project, script, "b")


TEMPLATE_OUTPUT = '''"""squashed baseline"""

revision = "b"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    pass
'''


def test_the_header_records_the_folded_ids_the_release_and_the_old_code(tmp_path: Path) -> None:
    project, script = repository(tmp_path, [("a", None), ("b", "a")])
    git(tmp_path, "tag", "v1")
    plan = squash.plan(project, script, "b")
    text = squash.with_header(TEMPLATE_OUTPUT, squash.header(plan, "f" * 64))
    namespace: dict[str, object] = {}
    exec(compile(text, "baseline.py", "exec"), namespace)
    assert namespace[guards.SQUASHED_REVISIONS] == ("a", "b")
    assert namespace[guards.SQUASHED_RELEASE] == "v1"
    assert namespace[guards.SQUASHED_CODE] == "f" * 64
    assert text.index("depends_on = None") < text.index("squashed_revisions")
    with pytest.raises(squash.SquashError, match="writes no `depends_on` line"):
        squash.with_header(TEMPLATE_OUTPUT.replace("depends_on", "depends"), "x")


def test_a_database_at_a_folded_revision_is_refused_naming_the_release(tmp_path: Path) -> None:
    versions = tmp_path / "migrations" / "versions"
    write_revisions(versions, [("b", None), ("c", "b")])
    baseline = versions / "b_step.py"
    baseline.write_text(
        baseline.read_text().replace(
            "depends_on = None\n",
            'depends_on = None\nsquashed_revisions = ("a", "b")\nsquashed_release = "v1.4"\n',
        )
    )
    script = ScriptDirectory(str(tmp_path / "migrations"), version_locations=[str(versions)])
    refusal = guards.squashed_into(script, "a")
    assert refusal is not None
    assert "The database is at a, which `make squash` folded into the baseline b" in refusal
    assert "(the last is v1.4)" in refusal
    assert refusal.endswith(
        "which takes it to b or later; then this release upgrades it as before."
    )
    assert guards.squashed_into(script, "q") is None
    # A baseline written by hand, without the release: the words say which one.
    baseline.write_text(baseline.read_text().replace('squashed_release = "v1.4"\n', ""))
    script = ScriptDirectory(str(tmp_path / "migrations"), version_locations=[str(versions)])
    assert "(the last is the release before the squash)" in str(guards.squashed_into(script, "a"))
    with pytest.raises(Exception, match="folded into the baseline b"):
        guards.require_known_revisions(("a",), script)
    with pytest.raises(Exception, match="which no revision file here defines"):
        guards.require_known_revisions(("q",), script)


def test_multi_line_statements_keep_their_lines_and_quotes() -> None:
    one = squash._render_statement(None, squash.SQLStatement("SELECT 'it''s'"))  # type: ignore[arg-type]
    assert one == "op.execute(\"SELECT 'it''s'\")"
    body = "CREATE FUNCTION f()\n AS $$ SELECT '\\' $$"
    rendered = squash._render_statement(None, squash.SQLStatement(body))  # type: ignore[arg-type]
    assert rendered.splitlines()[0] == "op.execute("
    assert eval("(" + rendered.removeprefix("op.execute(")) == body


def test_the_proof_names_what_differs() -> None:
    same = {("column", "public.t.a integer")}
    assert squash.compare(same, same, {"t": [("1",)]}, {"t": [("1",)]}) == []
    differences = squash.compare(
        same | {("type", "public.positive domain")}, same, {"t": [("1",)]}, {}
    )
    assert differences == [
        "the baseline builds [] and misses [type public.positive domain]",
        "the rows of t differ (1 from the chain, 0 from the baseline; first: ('1',) from the "
        "chain, None from the baseline)",
    ]
    assert squash.compare(same, same, {"t": [("1",), ("2",)]}, {"t": [("1",), ("3",)]}) == [
        "the rows of t differ (2 from the chain, 2 from the baseline; first: ('2',) from the "
        "chain, ('3',) from the baseline)"
    ]


def test_the_data_checks_of_folded_revisions_run_at_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "migrations" / "versions"
    write_revisions(versions, [("b", None), ("c", "b")])
    baseline = versions / "b_step.py"
    baseline.write_text(
        baseline.read_text().replace(
            "depends_on = None\n", 'depends_on = None\nsquashed_revisions = ("a", "b")\n'
        )
    )
    script = ScriptDirectory(str(tmp_path / "migrations"), version_locations=[str(versions)])
    check = DataCheck(before=lambda connection: None, after=lambda connection: None)
    for revision in ("a", "c"):
        monkeypatch.setitem(DATA_CHECKS, revision, check)
    assert checked_at(script.get_revision("b")) == ["a"]  # type: ignore[arg-type]
    assert checked_at(script.get_revision("c")) == ["c"]  # type: ignore[arg-type]


NEXTVAL = "nextval('%s'::regclass)"


# -- the dialects' side: what each reads beyond autogenerate, and how seed rows are written ----


def test_postgresql_reads_what_autogenerate_leaves_out_in_the_order_it_must_run() -> None:
    connection = FakeConnection(
        [
            [('"tenant"',)],
            [('"citext"', '"public"')],
            [("public.mood", "mood", "'calm', 'busy'"), ("public.state", "state", "'open'")],
            [
                ("public.kind_id_seq", "kind_id_seq", "integer", 1, 1, 99, 1, 1, False, "k"),
                ("public.old_id_seq", "old_id_seq", "bigint", 2, 1, 9, 5, 1, True, "public.t.id"),
                ("public.ticket", "ticket", "integer", 1, 1, 9, 100, 1, False, None),
                ("public.pair_a_seq", "pair_a_seq", "integer", 1, 1, 9, 1, 1, False, None),
            ],
            [("CREATE OR REPLACE FUNCTION public.touch()\n AS $$ $$\n", "FUNCTION public.touch()")],
            [("'public.kind_id_seq'", 2)],
            [
                ("VIEW", "public.priced", " WITH (security_barrier=true)", " SELECT 1 AS X;"),
                ("MATERIALIZED VIEW", "public.totals", "", " SELECT 2;"),
            ],
            [("CREATE TRIGGER t BEFORE INSERT ON public.widget",)],
        ]
    )
    metadata = sa.MetaData()
    sa.Table("note", metadata, sa.Column("text", sa.Text))  # no key
    sa.Table("counted", metadata, sa.Column("id", sa.Integer, sa.Identity(), primary_key=True))
    uuid_key = sa.Column(
        "id", sa.Uuid, server_default=sa.text("gen_random_uuid()"), primary_key=True
    )
    sa.Table("token", metadata, uuid_key)
    # A key of two columns is no SERIAL: its sequence is made like any other.
    sa.Table(
        "pair",
        metadata,
        sa.Column(
            "a", sa.Integer, sa.DefaultClause(sa.text(NEXTVAL % "pair_a_seq")), primary_key=True
        ),
        sa.Column("b", sa.Integer, primary_key=True),
    )
    sa.Table(
        "kind",
        metadata,
        sa.Column(
            "id",
            sa.Integer,
            sa.DefaultClause(sa.text(NEXTVAL % "kind_id_seq")),
            autoincrement=True,
            primary_key=True,
        ),
        sa.Column("label", sa.Text),
        sa.Column("state", sa.Enum("open", name="state")),
    )
    # Renamed from `old`: its key still counts from old_id_seq, which SERIAL would not make.
    renamed = sa.Table(
        "t",
        metadata,
        sa.Column(
            "id",
            sa.Integer,
            sa.DefaultClause(sa.text(NEXTVAL % "old_id_seq")),
            autoincrement=True,
            primary_key=True,
        ),
    )
    objects = PostgreSQL().squash_objects(connection, metadata)  # type: ignore[arg-type]
    assert [sql for sql, _ in connection.sql] == [
        postgresql_squash.SCHEMAS,
        postgresql_squash.EXTENSIONS,
        postgresql_squash.ENUMS,
        postgresql_squash.OWN_SEQUENCES,
        postgresql_squash.FUNCTIONS,
        postgresql_squash.SEQUENCES,
        postgresql_squash.VIEWS,
        postgresql_squash.TRIGGERS,
    ]
    assert objects.before == [
        'CREATE SCHEMA "tenant"',
        'CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "public"',
        "CREATE TYPE public.mood AS ENUM ('calm', 'busy')",  # no column uses it
        "CREATE SEQUENCE public.old_id_seq AS bigint INCREMENT BY 2 MINVALUE 1 MAXVALUE 9 "
        "START WITH 5 CACHE 1 CYCLE",
        "CREATE SEQUENCE public.ticket AS integer INCREMENT BY 1 MINVALUE 1 MAXVALUE 9 "
        "START WITH 100 CACHE 1 NO CYCLE",
        "CREATE SEQUENCE public.pair_a_seq AS integer INCREMENT BY 1 MINVALUE 1 MAXVALUE 9 "
        "START WITH 1 CACHE 1 NO CYCLE",
        "SET LOCAL check_function_bodies = off",
        "CREATE OR REPLACE FUNCTION public.touch()\n AS $$ $$",
    ]
    assert objects.after == [
        "ALTER SEQUENCE public.old_id_seq OWNED BY public.t.id",
        "SELECT setval('public.kind_id_seq', 2)",
        "CREATE VIEW public.priced WITH (security_barrier=true) AS\nSELECT 1 AS X",
        "CREATE MATERIALIZED VIEW public.totals AS\nSELECT 2",
        "CREATE TRIGGER t BEFORE INSERT ON public.widget",
    ]
    # A view may read the one before it: they go in the reverse order.
    assert objects.drop_first == ["DROP MATERIALIZED VIEW public.totals", "DROP VIEW public.priced"]
    assert objects.drop_last == [
        "DROP FUNCTION public.touch()",
        "DROP SEQUENCE IF EXISTS public.pair_a_seq",
        "DROP SEQUENCE IF EXISTS public.ticket",
        "DROP SEQUENCE IF EXISTS public.old_id_seq",
        "DROP TYPE IF EXISTS public.state",
        "DROP TYPE IF EXISTS public.mood",
        'DROP EXTENSION "citext"',
        'DROP SCHEMA "tenant"',
    ]
    # As reflected (SQLAlchemy marks a key counting from a sequence autoincrement): kind's key
    # is SERIAL as before; t's is written with its default, not as SERIAL.
    assert metadata.tables["kind"].autoincrement_column is metadata.tables["kind"].c.id
    assert renamed.c.id.autoincrement is False and renamed.autoincrement_column is None
    # Without functions, function bodies stay checked.
    assert "SET LOCAL" not in " ".join(
        PostgreSQL().squash_objects(FakeConnection(), metadata).before  # type: ignore[arg-type]
    )


def test_mysql_reads_routines_views_and_triggers_without_their_definer() -> None:
    connection = FakeConnection(
        [
            [("PROCEDURE", "no`op"), ("FUNCTION", "one")],
            [("no`op", "", "CREATE DEFINER=`root`@`%` PROCEDURE `no``op`() BEGIN END")],
            [("one", "", "CREATE DEFINER=`root`@`%` FUNCTION `one`() RETURNS INT RETURN 1")],
            [("priced",), ("totals",)],
            [
                (
                    "priced",
                    "CREATE ALGORITHM=UNDEFINED DEFINER=`app`@`localhost` SQL SECURITY DEFINER "
                    "VIEW `priced` AS select ' DEFINER=`a`@`b`' AS `x`",
                )
            ],
            [("totals", "CREATE VIEW `totals` AS select 2")],
            [("widget_lower",)],
            [("widget_lower", "", "CREATE DEFINER='a b'@'h' TRIGGER widget_lower SET x = 1")],
        ]
    )
    objects = MySQL().squash_objects(connection, sa.MetaData())  # type: ignore[arg-type]
    assert [sql for sql, _ in connection.sql] == [
        mysql_squash.ROUTINES,
        "SHOW CREATE PROCEDURE `no``op`",
        "SHOW CREATE FUNCTION `one`",
        mysql_squash.VIEWS,
        "SHOW CREATE VIEW `priced`",
        "SHOW CREATE VIEW `totals`",
        mysql_squash.TRIGGERS,
        "SHOW CREATE TRIGGER `widget_lower`",
    ]
    assert objects.before == [
        "CREATE PROCEDURE `no``op`() BEGIN END",
        "CREATE FUNCTION `one`() RETURNS INT RETURN 1",
    ]
    assert objects.after == [
        # The first DEFINER clause only: the one in the view's text is data.
        "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `priced` AS select "
        "' DEFINER=`a`@`b`' AS `x`",
        "CREATE VIEW `totals` AS select 2",
        "CREATE TRIGGER widget_lower SET x = 1",
    ]
    assert objects.drop_first == ["DROP VIEW `totals`", "DROP VIEW `priced`"]
    assert objects.drop_last == ["DROP FUNCTION `one`", "DROP PROCEDURE `no``op`"]


def test_each_dialect_names_its_own_tables_schemas_and_snapshot() -> None:
    runners = ("alembic_version_checksums", "alembic_version_backfills")
    assert PostgreSQL().runners_tables == runners
    assert MySQL().runners_tables == (*runners, "alembic_steady_progress")
    connection = FakeConnection([[("tenant",)]])
    assert PostgreSQL().project_schemas(connection) == [None, "tenant"]  # type: ignore[arg-type]
    assert connection.sql[0][0] == postgresql_module._OTHER_SCHEMAS
    assert MySQL().project_schemas(FakeConnection()) == [None]  # type: ignore[arg-type]
    rows = [("r", 1, "column", "public.t.a integer"), ("t", 2, "type", "public.mood calm")]
    connection = FakeConnection([rows])
    snapshot = PostgreSQL().schema_snapshot(connection)  # type: ignore[arg-type]
    assert snapshot == {("column", "public.t.a integer"), ("type", "public.mood calm")}
    assert connection.sql[0][0] == postgresql_schema.SNAPSHOT_ALL
    mysql_rows = [("table", "t BASE TABLE"), ("view", "v select 1")]
    assert MySQL().schema_snapshot(FakeConnection([mysql_rows])) == set(mysql_rows)  # type: ignore[arg-type]


def test_seed_rows_are_written_as_each_server_reads_its_literals() -> None:
    metadata = sa.MetaData()
    sa.Table(
        "kind",
        metadata,
        sa.Column("id", sa.Integer, sa.Identity(always=True), primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("upper", sa.Text, sa.Computed("upper(label)")),
    )
    sa.Table("plain", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    rows = {"kind": [("1", "it's a\\b"), ("2", None)], "plain": [("7",)]}
    # As connected: PostgreSQL reports standard_conforming_strings on (a backslash is text),
    # MySQL without NO_BACKSLASH_ESCAPES reads one as an escape.
    postgresql_dialect, mysql_dialect = asyncpg.dialect(), aiomysql.dialect()
    postgresql_dialect._backslash_escapes = False
    mysql_dialect._backslash_escapes = True
    on_postgresql = SimpleNamespace(dialect=postgresql_dialect)
    assert squash.seed_inserts(on_postgresql, PostgreSQL(), metadata, rows) == [  # type: ignore[arg-type]
        "INSERT INTO kind (id, label) OVERRIDING SYSTEM VALUE VALUES\n"
        "('1', 'it''s a\\b'),\n('2', NULL)",
        "INSERT INTO plain (id) VALUES\n('7')",
    ]
    on_mysql = SimpleNamespace(dialect=mysql_dialect)
    assert squash.seed_inserts(on_mysql, MySQL(), metadata, {"kind": rows["kind"]}) == [  # type: ignore[arg-type]
        "INSERT INTO kind (id, label) VALUES\n('1', 'it''s a\\\\b'),\n('2', NULL)"
    ]


def test_the_projects_post_write_hooks_run_on_the_written_baseline(tmp_path: Path) -> None:
    seen: list[str] = []

    @write_hooks.register("steady_test_record")
    def record(path: str, options: object) -> None:
        seen.append(path)

    path = tmp_path / "baseline.py"
    hooked = ScriptDirectory(
        str(tmp_path), hooks=[{"_hook_name": "record", "type": "steady_test_record"}]
    )
    alembic_internals.run_write_hooks(hooked, path)
    assert seen == [str(path)]
    alembic_internals.run_write_hooks(ScriptDirectory(str(tmp_path)), path)
    assert seen == [str(path)]
