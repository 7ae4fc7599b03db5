"""A small project written to a temporary folder, as a team's would be: a package with
`migrations/` (env.py in Alembic's four-function shape, three revisions) and its models, for the
integration tiers to migrate without rendering the template."""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from alembic_steady import Project
from alembic_steady.dialects.clients import Clients

# Alembic's four functions, as a project's env.py keeps them, each calling the toolkit; what
# comes before them (imports, `environment`) differs between a project and a stock one.
FOUR_FUNCTIONS = """

def run_migrations_offline() -> None:
    environment.run_offline()


def do_run_migrations(connection: Connection) -> None:
    environment.run_on(connection)


async def run_async_migrations() -> None:
    await environment.run_async(do_run_migrations)


def run_migrations_online() -> None:
    environment.run_online(run_async_migrations)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

ENV_PY = """
from alembic import context
from alembic_steady.runner.environment import MigrationEnvironment
from sqlalchemy import Connection, MetaData

from {package}.migrations import PROJECT


def target_metadata() -> MetaData:
    from {package}.models import metadata

    return metadata


environment = MigrationEnvironment(context, PROJECT, target_metadata)
"""

# The runner's settings come from the environment where a test sets them (a process it starts,
# the module CLI), else from these defaults; tests in this process replace SETTINGS instead.
MIGRATIONS_INIT = """
import os
from pathlib import Path

from alembic_steady import Project, StaticSettings

SETTINGS = StaticSettings(
    os.environ.get("DATABASE_URL"),
    environment=os.environ.get("ENVIRONMENT", "development"),
    migration_lock_timeout=os.environ.get("MIGRATION_LOCK_TIMEOUT", "{lock_timeout}"),
    migration_lock_retries=int(os.environ.get("MIGRATION_LOCK_RETRIES", "3")),
    migration_lock_retry_total=float(os.environ.get("MIGRATION_LOCK_RETRY_TOTAL", "30")),
    migration_lock_wait=float(os.environ.get("MIGRATION_LOCK_WAIT", "20")),
    migration_statement_timeout=os.environ.get("MIGRATION_STATEMENT_TIMEOUT", "0"),
)
PROJECT = Project(package="{package}", migrations=Path(__file__).parent,
                  settings=lambda: SETTINGS, dialect="{dialect}")
"""

# `python -m <package>.migrations`, as a render's __main__.py has it.
MIGRATIONS_MAIN = """
import sys

from alembic_steady.cli import main
from alembic_steady.runner.api import Migrations

from . import PROJECT

if __name__ == "__main__":
    sys.exit(main(Migrations(PROJECT)))
"""

MODELS = """
import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s",
                                          "pk": "pk_%(table_name)s"})
widget = sa.Table(
    "widget", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("price", sa.Integer, nullable=True),
    sa.Index("ix_widget_name", "name"),
)
"""

REVISION = """\"\"\"{doc}\"\"\"

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
"""

# The project's template for new revisions (autogenerate writes with it), as a project keeps
# next to env.py.
SCRIPT_MAKO = '''"""${message}"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

# (revision, upgrade body, downgrade body); the index is built CONCURRENTLY on PostgreSQL.
CHAIN = {
    "postgresql": [
        (
            "a1",
            '    op.create_table("widget", sa.Column("id", sa.Integer, primary_key=True), '
            'sa.Column("name", sa.String(100), nullable=False), '
            'sa.PrimaryKeyConstraint("id", name="pk_widget"))',
            '    op.drop_table("widget")',
        ),
        (
            "b2",
            '    op.create_index_concurrently("ix_widget_name", "widget", ["name"])',
            '    op.drop_index_concurrently("ix_widget_name", table_name="widget")',
        ),
        (
            "c3",
            '    op.add_column("widget", sa.Column("price", sa.Integer, nullable=True))',
            '    op.drop_column("widget", "price")',
        ),
    ],
}
DOCS = {"a1": "create widget", "b2": "index widget name", "c3": "add price"}
CHAIN["mysql"] = [
    CHAIN["postgresql"][0],
    (
        "b2",
        '    op.create_index("ix_widget_name", "widget", ["name"])',
        '    op.drop_index("ix_widget_name", table_name="widget")',
    ),
    CHAIN["postgresql"][2],
]


# A chain: (revision, upgrade body, downgrade body) each, the first on base.
Chain = list[tuple[str, str, str]]


def write(
    dialect: str,
    *,
    lock_timeout: str = "400ms",
    name: str = "",
    chain: Chain | None = None,
    models: str = MODELS,
) -> Project:
    """Write the project to a new folder on sys.path and return its Project. A test module with
    a chain or models of its own gives it a `name` too: each package is imported once."""
    package = f"steady_demo_{dialect}{'_' + name if name else ''}"
    root = Path(tempfile.mkdtemp(prefix="steady-demo-"))
    versions = root / package / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / package / "models.py").write_text(models, encoding="utf-8")
    migrations = root / package / "migrations"
    (migrations / "__init__.py").write_text(
        MIGRATIONS_INIT.format(package=package, dialect=dialect, lock_timeout=lock_timeout),
        encoding="utf-8",
    )
    (migrations / "__main__.py").write_text(MIGRATIONS_MAIN, encoding="utf-8")
    (migrations / "script.py.mako").write_text(SCRIPT_MAKO, encoding="utf-8")
    env_py = ENV_PY.format(package=package) + FOUR_FUNCTIONS
    (migrations / "env.py").write_text(env_py, encoding="utf-8")
    down = None
    for revision, upgrade, downgrade in CHAIN[dialect] if chain is None else chain:
        add_revision(versions, revision, down, upgrade, downgrade)
        down = revision
    sys.path.insert(0, str(root))
    module = __import__(f"{package}.migrations", fromlist=["PROJECT"])
    project: Project = module.PROJECT
    return project


def with_revisions(
    dialect: str,
    name: str,
    revisions: list[tuple[str, str, str, str]],
    after: str = "c3",
    models: str = MODELS,
) -> Project:
    """The demo project `name` with `revisions` (revision, upgrade, downgrade, doc) chained
    after `after`, and `models` (the models those revisions reach)."""
    project = write(dialect, name=name, models=models)
    down = after
    for revision, upgrade, downgrade, doc in revisions:
        add_revision(project.versions, revision, down, upgrade, downgrade, doc=doc)
        down = revision
    return project


def add_revision(
    versions: Path,
    revision: str,
    down: str | None,
    upgrade: str,
    downgrade: str,
    doc: str = "",
    *,
    labels: tuple[str, ...] | None = None,
    depends: str | None = None,
) -> Path:
    """Write a revision file (bodies indented four spaces, as in CHAIN); its path. `labels` and
    `depends` are its branch_labels and depends_on (a post revision's: runner/phases.py)."""
    text = REVISION.format(
        doc=doc or DOCS.get(revision, revision),
        revision=revision,
        down=down,
        labels=labels,
        depends=depends,
        upgrade=upgrade,
        downgrade=downgrade,
    )
    path = versions / f"{revision}.py"
    path.write_text(text, encoding="utf-8")
    return path


# alembic.ini as a project has it, for plain `alembic` (what `make migrate` and `make sql` run):
# env.py reads its logging sections (fileConfig).
ALEMBIC_INI = """
[alembic]
script_location = {migrations}
path_separator = os

[loggers]
keys = root,alembic_messages

# Alembic prints each error as "FAILED: ..." already; this keeps it from being logged twice.
[logger_alembic_messages]
level = CRITICAL
handlers =
qualname = alembic.util.messaging

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %%(levelname)-5.5s [%%(name)s] %%(message)s
"""


def alembic_ini(project: Project) -> Path:
    """The project's alembic.ini (written on first use, next to its package)."""
    ini = project.migrations.parent.parent / "alembic.ini"
    if not ini.exists():
        migrations = str(project.migrations).replace("%", "%%")
        ini.write_text(ALEMBIC_INI.format(migrations=migrations), encoding="utf-8")
    return ini


def module_cli(
    project: Project,
    *args: str,
    url: URL | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m <package>.migrations ARGS` in a process of its own, as a Job runs it; the
    environment is os.environ's with DATABASE_URL naming `url` and `env` over it (MIGRATION_*
    ...). Its output (stdout and stderr) in `.stdout`."""
    given = dict(env or {})
    if url is not None:
        text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        given = {"DATABASE_URL": text, **given}
    return subprocess.run(
        [sys.executable, "-m", f"{project.package}.migrations", *args],
        env={**os.environ, "PYTHONPATH": pythonpath(project), **given},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )


def started(project: Project, argv: list[str], url: URL, **env: str) -> "subprocess.Popen[str]":
    """`argv` (a migration command) started in the background against `url`, as a deploy job or
    a terminal runs it, with MIGRATION_* settings from `env`; output in `.stdout`."""
    return subprocess.Popen(
        argv,
        env={
            **os.environ,
            "PYTHONPATH": pythonpath(project),
            "DATABASE_URL": url.render_as_string(hide_password=False),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def pythonpath(project: Project) -> str:
    """PYTHONPATH for a process that imports the project (and this toolkit's source first, so a
    mutated copy's code is what runs)."""
    toolkit_src = str(Path(__file__).resolve().parent.parent / "src")
    return os.pathsep.join([str(project.migrations.parent.parent), toolkit_src])


RACER = """
import sys
from sqlalchemy.engine import make_url
from alembic_steady.runner.api import Migrations
from {package}.migrations import PROJECT
Migrations(PROJECT).upgrade(url=make_url(sys.argv[1]))
"""


def race(project: Project, url: URL, runs: int) -> list[tuple[int, str]]:
    """`runs` processes upgrading `url` at once, as replicas starting together (Alembic's
    proxies are per process, so replicas are processes here too): exit status and output each."""
    code = RACER.format(package=project.package)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, url.render_as_string(hide_password=False)],
            env={**os.environ, "PYTHONPATH": pythonpath(project)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(runs)
    ]
    return [(racer.wait(timeout=120), racer.communicate()[0]) for racer in racers]


@contextmanager
def databases(server: URL, clients: Clients, *roles: str) -> Iterator[dict[str, URL]]:
    """A new database per role on `server` (a unique name each), dropped at the end."""
    names = {role: f"{role}_{uuid.uuid4().hex[:8]}" for role in roles}
    urls = {role: clients.create_database(server, name) for role, name in names.items()}
    try:
        yield urls
    finally:
        for name in names.values():
            clients.drop_database(server, name)


def fleet_run(
    project: Project, url: URL, tmp_path: Path, lines: list[str], *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`fleet ARGS --targets FILE --report FILE --format json`: the run and its report."""
    targets, report = tmp_path / "targets", tmp_path / "report.json"
    targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report.unlink(missing_ok=True)
    run = module_cli(
        project,
        "fleet",
        *args,
        "--targets",
        str(targets),
        "--format",
        "json",
        "--report",
        str(report),
        url=url,
        env=env,
    )
    assert report.exists(), run.stdout
    return run, json.loads(report.read_text(encoding="utf-8"))
