"""`make squash upto=R`: the revisions up to R become one baseline revision, proved to build the
same schema and seed rows as the chain it replaces before any file is deleted.

    python -m <package>.migrations squash R

How:
1. The chain runs up to R on a scratch database of the configured server (as `make migrate`
   runs it); its schema is reflected.
2. Alembic's autogenerate writes the baseline from that reflection against a second, empty
   scratch database, with the project's own template and options. What autogenerate does not
   know is added from the server's catalog by the dialect (PostgreSQL: schemas, extensions,
   enum types no table uses, functions, views, triggers, sequence positions; MySQL: views,
   routines, triggers), and so are the rows the chain itself left in its tables (seed rows: a
   fresh chain holds no one else's).
3. The proof: the baseline runs on the empty database; both databases must then hold the same
   schema, compared object by object by the stairway's snapshot, and the same rows. Then the
   baseline goes down, which must leave the database as it found it.
4. Only then the files of R and the revisions before it are deleted and the baseline is written
   under R's id, so a database at R or later upgrades exactly as before, and a fresh one builds
   from the baseline. The baseline lists the ids it folded in and the release that still has
   their files: a database at one of them is refused, naming that release (runner/guards.py).

The scratch databases are dropped at the end, whatever happened. No revision after R may follow
one before it (a branch from below R must be merged first, then squashed up to the merge), and
the revision files must be committed to git: the last commit is the release named for older
databases.
"""

import argparse
import re
import shutil
import tempfile
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.autogenerate.render import renderers
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError, to_tuple
from sqlalchemy import Connection, MetaData, String, Table, cast, func, select
from sqlalchemy.engine import URL

from ..dialects.base import Dialect, SquashObjects, described, for_url
from ..project import Project
from ..runner import alembic_internals, checksums
from ..runner.api import Migrations
from ..runner.guards import SQUASHED_CODE, SQUASHED_RELEASE, SQUASHED_REVISIONS
from ..runner.settings import load_settings
from ..testing.walk import on_connection
from .history import HistoryError, forget_bytecode, git

# Rows a seed table may hold before the squash stops: more is data, not seed rows.
MOST_SEED_ROWS = 10_000


class SquashError(Exception):
    """The squash cannot go ahead: the message says why and what to do. Nothing was changed."""


@dataclass(frozen=True)
class Plan:
    """What a squash up to `upto` folds: its revisions base first, R last."""

    upto: Script
    folded: list[Script]
    release: str


def plan(project: Project, script: ScriptDirectory, upto: str) -> Plan:
    """The revisions to fold into `upto`'s baseline, or why they cannot be."""
    try:
        target = script.get_revision(upto)
    except CommandError:
        target = None
    if target is None:
        raise SquashError(f"{upto} is not a revision of this project: see `make history`")
    folded = list(reversed(list(script.iterate_revisions(target.revision, "base"))))
    if len(folded) < 2:
        raise SquashError(f"{target.revision} is the first revision: there is nothing to squash")
    ids = {revision.revision for revision in folded}
    for revision in script.walk_revisions():
        if revision.revision in ids:
            continue
        for parent in (
            *to_tuple(revision.down_revision, default=()),
            *to_tuple(revision.dependencies, default=()),
        ):
            if parent in ids and parent != target.revision:
                raise SquashError(
                    f"{revision.revision} follows {parent}, which the squash would delete: "
                    f"squash up to a revision that every later revision follows (one after "
                    f"{revision.revision}'s branch is merged)"
                )
    return Plan(target, folded, release(project))


def release(project: Project) -> str:
    """The commit that still has the revision files, in git's words (a tag where there is one).
    Refuses uncommitted revision files: the name would point at a commit without them."""
    folder = project.versions
    try:
        changed = git(folder, "status", "--porcelain", "--", ".")
        described_ = git(folder, "describe", "--tags", "--always").strip()
    except HistoryError as exc:
        raise SquashError(
            f"the squash names the last commit that has the revision files, for databases "
            f"older than the baseline, and git cannot say which: {exc}"
        ) from None
    if changed.strip():
        raise SquashError(
            "the revision files have uncommitted changes: commit them first, so that the "
            "release named for older databases holds them"
        )
    return described_


# -- reading the chain's database ----------------------------------------------------------
def reflected(connection: Connection, dialect: Dialect) -> MetaData:
    """The tables of the project's schemas, as autogenerate reads a database, without the
    runner's own (the version table, the checksums, a dialect's)."""
    left_out = {"alembic_version", *dialect.runners_tables}
    metadata = MetaData()
    for schema in dialect.project_schemas(connection):
        metadata.reflect(
            connection,
            schema=schema,
            only=lambda name, _: name not in left_out,
            resolve_fks=False,
        )
    return metadata


def seed_rows(
    connection: Connection, metadata: MetaData
) -> dict[str, list[tuple[str | None, ...]]]:
    """The rows the chain left in each table (a fresh chain holds only what revisions wrote),
    every value as the server prints it, in primary-key order."""
    rows: dict[str, list[tuple[str | None, ...]]] = {}
    for table in metadata.sorted_tables:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
        if not count:
            continue
        if count > MOST_SEED_ROWS:
            raise SquashError(
                f"the chain leaves {count} rows in {table.fullname}: more than seed rows "
                f"({MOST_SEED_ROWS} at most). Move that data out of the revisions (a load "
                "script) and squash again"
            )
        columns = _inserted(table)
        order = list(table.primary_key.columns) or columns
        query = select(*(cast(column, String) for column in columns)).order_by(*order)
        rows[table.fullname] = [tuple(row) for row in connection.execute(query)]
    return rows


def _inserted(table: Table) -> list[Any]:
    """The columns an INSERT may name: not the generated ones."""
    return [column for column in table.columns if column.computed is None]


def seed_inserts(
    connection: Connection,
    dialect: Dialect,
    metadata: MetaData,
    rows: dict[str, list[tuple[str | None, ...]]],
) -> list[str]:
    """One INSERT per seed table, its values as text literals the server converts on the way
    in (every type reads its own printed form)."""
    # The dialect's own string literals, as literal_binds renders them (MySQL's escape
    # backslashes where the server reads them as escapes).
    compiler = connection.dialect.statement_compiler(connection.dialect, None)

    def quote(value: str) -> str:
        return str(compiler.render_literal_value(value, String()))

    preparer = connection.dialect.identifier_preparer
    statements = []
    for table in metadata.sorted_tables:
        if table.fullname not in rows:
            continue
        columns = _inserted(table)
        names = ", ".join(preparer.quote(column.name) for column in columns)
        values = ",\n".join(
            "(" + ", ".join("NULL" if v is None else quote(v) for v in row) + ")"
            for row in rows[table.fullname]
        )
        identity = any(column.identity is not None for column in columns)
        statements.append(
            f"INSERT INTO {preparer.format_table(table)} ({names})"
            f"{dialect.insert_identity if identity else ''} VALUES\n{values}"
        )
    return statements


# -- writing the baseline --------------------------------------------------------------------
class SQLStatement(ops.MigrateOperation):
    """A statement of the baseline that autogenerate has no operation for."""

    def __init__(self, sql: str) -> None:
        self.sql = sql


@renderers.dispatch_for(SQLStatement)
def _render_statement(autogen_context: AutogenContext, op: SQLStatement) -> str:
    # Multi-line SQL (a function's body) keeps its lines, one string each: a triple-quoted
    # string would take the indentation of the code around it into the function's text.
    lines = op.sql.splitlines(keepends=True)
    if len(lines) == 1:
        return f"op.execute({op.sql!r})"
    return "op.execute(\n" + "".join(f"    {line!r}\n" for line in lines) + ")"


def baseline_directives(objects: SquashObjects, inserts: list[str]) -> Any:
    """process_revision_directives for the baseline: the dialect's objects and the seed rows
    around what autogenerate wrote for the tables."""

    def add(
        context: MigrationContext, revision: Any, directives: list[ops.MigrationScript]
    ) -> None:
        script = directives[0]
        upgrade, downgrade = script.upgrade_ops, script.downgrade_ops
        assert upgrade is not None and downgrade is not None
        upgrade.ops[:0] = [SQLStatement(sql) for sql in objects.before]
        upgrade.ops += [SQLStatement(sql) for sql in (*inserts, *objects.after)]
        # Dropping a table drops its indexes: dropping them first only trips MySQL, where an
        # index a foreign key needs cannot go on its own.
        dropped = {
            (op.schema, op.table_name) for op in downgrade.ops if isinstance(op, ops.DropTableOp)
        }
        for container in [downgrade, *downgrade.ops]:
            if isinstance(container, ops.OpContainer):
                container.ops[:] = [
                    op
                    for op in container.ops
                    if not (
                        isinstance(op, ops.DropIndexOp) and (op.schema, op.table_name) in dropped
                    )
                ]
        downgrade.ops[:] = [
            op for op in downgrade.ops if not (isinstance(op, ops.OpContainer) and op.is_empty())
        ]
        downgrade.ops[:0] = [SQLStatement(sql) for sql in objects.drop_first]
        downgrade.ops += [SQLStatement(sql) for sql in objects.drop_last]

    return add


def squash_config(project: Project, url: URL, versions: Path) -> Config:
    """The project's Alembic config (with its alembic.ini's file template, where it has one) on
    `url`, with `versions` as the only folder of revisions."""
    config = Migrations(project).alembic_config(url)
    ini = _alembic_ini(project)
    if ini is not None:
        from_ini = Config(ini)
        for option in ("file_template", "truncate_slug_length", "timezone"):
            value = from_ini.get_main_option(option)
            if value is not None:
                config.set_main_option(option, value.replace("%", "%%"))
    config.set_main_option("version_locations", str(versions).replace("%", "%%"))
    return config


def header(plan_: Plan, code_sha256: str) -> str:
    """The baseline's record of what it folded in, read by the runner."""
    ids = "".join(f'    "{revision.revision}",\n' for revision in plan_.folded)
    first, last = plan_.folded[0].revision, plan_.upto.revision
    return (
        f"\n# `make squash` folded the revisions {first} to {last} into this one"
        f" ({date.today().isoformat()}).\n"
        "# A database at one of them upgrades with a release that still has their files (the\n"
        f"# last: {plan_.release}), then with this one. At this revision or later, as before.\n"
        f"{SQUASHED_REVISIONS}: tuple[str, ...] = (\n{ids})\n"
        f'{SQUASHED_RELEASE}: str = "{plan_.release}"\n'
        f"# The code of {last}'s file before the squash, as databases at {last} recorded it.\n"
        f'{SQUASHED_CODE}: str = "{code_sha256}"\n'
    )


def with_header(text: str, block: str) -> str:
    """The generated file with `block` after its `depends_on` line."""
    match = re.search(r"^depends_on\b.*$", text, re.M)
    if match is None:
        raise SquashError("the project's script.py.mako writes no `depends_on` line")
    return f"{text[: match.end()]}\n{block}{text[match.end() :]}"


# -- the proof -------------------------------------------------------------------------------
@dataclass
class Proof:
    objects: int
    rows: int
    tables: int


def compare(
    chain: set[tuple[str, str]],
    baseline: set[tuple[str, str]],
    chain_rows: dict[str, list[tuple[str | None, ...]]],
    baseline_rows: dict[str, list[tuple[str | None, ...]]],
) -> list[str]:
    """What differs between the chain's database and the baseline's, in a message's lines."""
    differences = []
    if chain != baseline:
        differences.append(
            f"the baseline builds {described(baseline - chain)} and misses "
            f"{described(chain - baseline)}"
        )
    for name in sorted(set(chain_rows) | set(baseline_rows)):
        built, rebuilt = chain_rows.get(name, []), baseline_rows.get(name, [])
        if built != rebuilt:
            first = next(
                (pair for pair in zip(built, rebuilt, strict=False) if pair[0] != pair[1]),
                (
                    built[len(rebuilt)] if len(built) > len(rebuilt) else None,
                    rebuilt[len(built)] if len(rebuilt) > len(built) else None,
                ),
            )
            differences.append(
                f"the rows of {name} differ ({len(built)} from the chain, {len(rebuilt)} from "
                f"the baseline; first: {first[0]} from the chain, {first[1]} from the baseline)"
            )
    return differences


def prove(
    project: Project, dialect: Dialect, plan_: Plan, urls: list[URL], folder: Path
) -> tuple[Path, Proof]:
    """Build the chain and the baseline; the baseline's file (in `folder`) once both hold the
    same schema and rows, and its downgrade leaves an empty database."""
    chain_url, base_url = urls
    migrations = Migrations(project)
    migrations.upgrade(plan_.upto.revision, url=chain_url)

    def read_chain(connection: Connection) -> tuple[MetaData, SquashObjects, Any, Any, list[str]]:
        metadata = reflected(connection, dialect)
        rows = seed_rows(connection, metadata)
        return (
            metadata,
            dialect.squash_objects(connection, metadata),
            dialect.schema_snapshot(connection),
            rows,
            seed_inserts(connection, dialect, metadata, rows),
        )

    metadata, objects, chain_schema, chain_rows, inserts = on_connection(chain_url, read_chain)
    empty = on_connection(base_url, dialect.schema_snapshot)
    config = squash_config(project, base_url, folder)
    config.attributes["target_metadata"] = metadata
    config.attributes["command"] = "revision"
    message = "squashed baseline"
    with redirect_stdout(StringIO()):  # Alembic's "Generating <temporary path>"
        command.revision(
            config,
            message,
            autogenerate=True,
            head="base",
            rev_id=plan_.upto.revision,
            process_revision_directives=baseline_directives(objects, inserts),
        )
    (path,) = folder.glob("*.py")
    code = checksums.fingerprint(plan_.upto.path).code_sha256
    path.write_text(with_header(path.read_text(encoding="utf-8"), header(plan_, code)))
    config.attributes["command"] = "upgrade"
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise SquashError(f"the baseline does not run on an empty database: {exc}") from None

    def read_baseline(connection: Connection) -> tuple[Any, Any]:
        metadata_b = reflected(connection, dialect)
        return dialect.schema_snapshot(connection), seed_rows(connection, metadata_b)

    base_schema, base_rows = on_connection(base_url, read_baseline)
    differences = compare(chain_schema, base_schema, chain_rows, base_rows)
    if differences:
        raise SquashError(
            "the baseline does not build what the chain builds, so nothing was changed:\n  "
            + "\n  ".join(differences)
        )
    config.attributes["command"] = "downgrade"
    try:
        command.downgrade(config, "base")
    except CommandError as exc:
        raise SquashError(
            f"the baseline's downgrade fails on the database it built, so nothing was changed: "
            f"{exc}"
        ) from None
    left = on_connection(base_url, dialect.schema_snapshot)
    if left != empty:
        raise SquashError(
            f"the baseline's downgrade leaves {described(left - empty)} and removes "
            f"{described(empty - left)}, so nothing was changed"
        )
    seeds = sum(len(rows) for rows in chain_rows.values())
    return path, Proof(len(chain_schema), seeds, len(chain_rows))


# -- putting it in place ---------------------------------------------------------------------
def replace_files(project: Project, plan_: Plan, baseline: Path) -> Path:
    """Delete the folded revisions' files (and their bytecode), then write the baseline in R's
    file, whose name keeps its place among the others (and git shows it as R's file changed),
    and run the project's post-write hooks on it (ruff, compile), as `make migration` does for
    a new revision."""
    target = Path(plan_.upto.path)
    for revision in plan_.folded:
        source = Path(revision.path)
        forget_bytecode(source)
        source.unlink()
    shutil.copyfile(baseline, target)
    ini = _alembic_ini(project)
    if ini is not None:
        alembic_internals.run_write_hooks(ScriptDirectory.from_config(Config(ini)), target)
    return target


def _alembic_ini(project: Project) -> Path | None:
    """The project's alembic.ini: at the root of its source tree, or beside its package."""
    for path in (project.folder / "alembic.ini", project.migrations.parents[1] / "alembic.ini"):
        if path.is_file():
            return path
    return None


def main(project: Project, argv: list[str]) -> int:
    """squash R"""
    parser = argparse.ArgumentParser(prog="squash")
    parser.add_argument("upto", help="the last revision to fold into the baseline")
    args = parser.parse_args(argv)
    settings = load_settings(project.settings)
    server = settings.migration_url
    dialect = for_url(server)
    try:
        script = ScriptDirectory.from_config(Migrations(project).alembic_config())
        plan_ = plan(project, script, args.upto)
        print(
            f"Squashing {len(plan_.folded)} revisions ({plan_.folded[0].revision} to "
            f"{plan_.upto.revision}) on two scratch databases of {server.host or 'the server'}..."
        )
        with (
            tempfile.TemporaryDirectory(prefix="squash-") as folder,
            dialect.clients().scratch_databases(server, "squash", "chain", "baseline") as urls,
        ):
            draft, proof = prove(project, dialect, plan_, urls, Path(folder))
            written = replace_files(project, plan_, draft)
    except (SquashError, CommandError) as exc:
        print(f"squash: {exc}")
        return 1
    print(
        f"Proved: the chain up to {plan_.upto.revision} and the baseline build the same schema "
        f"({proof.objects} object parts) and seed rows ({proof.rows} in {proof.tables} "
        "tables); the baseline's downgrade empties the database."
    )
    shown = (
        written.relative_to(project.folder) if written.is_relative_to(project.folder) else written
    )
    print(
        f"Wrote {shown} and deleted the {len(plan_.folded)} files it replaces. A database at "
        f"{plan_.upto.revision} or later upgrades as before; an older one is refused, naming "
        f"{plan_.release}. Commit the change."
    )
    return 0
