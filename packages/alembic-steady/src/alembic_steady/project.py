"""What the toolkit needs to know of the project it migrates: its name, where its revisions live,
how to read its settings, and the commands its messages may suggest."""

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from alembic.util import CommandError
from sqlalchemy.engine import URL, make_url


class MigrationSettings(Protocol):
    """The settings a migration run reads (the template's pydantic-settings class has them all).

    Durations are PostgreSQL-style strings ("500ms", "2s", "0" for no limit); waits are seconds.
    """

    @property
    def sqlalchemy_url(self) -> URL: ...
    @property
    def migration_url(self) -> URL: ...
    @property
    def environment(self) -> str: ...
    @property
    def db_connect_timeout(self) -> float: ...
    @property
    def migration_lock_wait(self) -> float: ...
    @property
    def migration_lock_timeout(self) -> str: ...
    @property
    def migration_lock_retries(self) -> int: ...
    @property
    def migration_lock_retry_total(self) -> float: ...
    @property
    def migration_statement_timeout(self) -> str: ...
    @property
    def backup_lock_wait(self) -> str: ...


@dataclass(frozen=True)
class StaticSettings:
    """Settings for a project that has no settings class of its own (a stock `alembic init`
    project): its URL (alembic.ini's `sqlalchemy.url`, say), and the toolkit's defaults for the
    rest. The URL is needed only where no caller passes one."""

    url: URL | str | None
    environment: str = "development"
    db_connect_timeout: float = 10.0
    migration_lock_wait: float = 60.0
    migration_lock_timeout: str = "1s"
    migration_lock_retries: int = 30
    migration_lock_retry_total: float = 300.0
    migration_statement_timeout: str = "0"
    backup_lock_wait: str = "30s"

    @property
    def sqlalchemy_url(self) -> URL:
        """The URL on the dialect's async driver: alembic.ini's `postgresql://` or `mysql://`
        would otherwise load a sync DBAPI the async runner cannot use."""
        if self.url is None:
            raise CommandError(
                "No database URL: set sqlalchemy.url in alembic.ini (or pass url= to the API)."
            )
        from .dialects.base import by_name  # the dialects import this module

        url = make_url(self.url)
        backend = url.get_backend_name()
        dialect = by_name("postgresql" if backend == "postgres" else backend)
        if url.drivername not in dialect.accepted_schemes:
            return url  # another driver named deliberately: SQLAlchemy accepts it or says why
        return url.set(drivername=dialect.async_driver)

    @property
    def migration_url(self) -> URL:
        return self.sqlalchemy_url


@dataclass(frozen=True)
class Commands:
    """The commands messages tell a user to run next, in the words of the way they came in.

    The Make targets by default; the module CLI of a wheel (`python -m <package>.migrations`)
    replaces what it can run itself, so a Kubernetes Job is told something it can do.
    """

    migrate: str = "make migrate"
    # `migrate` to a given revision; {revision} is replaced.
    migrate_rev: str = "make migrate rev={revision}"
    # `migrate` of one deploy phase (pre or post); {phase} is replaced.
    migrate_phase: str = "make migrate phase={phase}"
    rollback: str = "make rollback"
    stamp: str = "make stamp"
    current: str = "make current"
    history: str = "make history"
    heads: str = "make heads"
    merge: str = "make merge"
    migration: str = 'make migration msg="..."'
    backup: str = "make backup"
    db_up: str = "make db-up"
    backfill: str = "make backfill"
    # Recording a deliberate edit of an applied revision; {revision} is replaced.
    accept_edit_rev: str = "make accept-edit rev={revision}"

    def migrate_to(self, revision: str) -> str:
        return self.migrate_rev.format(revision=revision)

    def migrate_in(self, phase: str) -> str:
        return self.migrate_phase.format(phase=phase)

    def rollback_to(self, argument: str) -> str:
        """`make rollback steps=2`, `make rollback rev=R`: Make takes arguments as variables."""
        return f"{self.rollback} {argument}"

    def stamp_to(self, revision: str) -> str:
        return f"{self.stamp} rev={revision}"

    def accept_edit_of(self, revision: str) -> str:
        return self.accept_edit_rev.format(revision=revision)


MAKE = Commands()


@dataclass(frozen=True)
class Project:
    """One service's migrations.

    `package` names the migration lock (replicas of one service serialise, other services on the
    server do not) and the migration session (`application_name`); `migrations` is the folder
    holding env.py and `versions/`; `settings` returns the validated settings; `describe` says
    in one line which database a command-line run is about to change (never the password);
    `root` is the source tree (`.env`, `backups/`, `.devdb/`), None in an installed wheel;
    `dialect` is the server the project runs on ("postgresql", "mysql"); `schema` is the tenant
    schema a run migrates (PostgreSQL: its tables and version table live there), None for the
    database's own.
    """

    package: str
    migrations: Path
    settings: Callable[[], MigrationSettings]
    describe: Callable[[URL], str] = field(default=lambda url: f"Database: {url.database}")
    commands: Commands = MAKE
    root: Path | None = None
    dialect: str = "postgresql"
    schema: str | None = None

    @property
    def versions(self) -> Path:
        return self.migrations / "versions"

    @property
    def folder(self) -> Path:
        """Where the chores keep their files: the source tree, else the current folder."""
        return self.root or Path.cwd()

    @property
    def session_name(self) -> str:
        return f"{self.package} migrations"

    @property
    def lock_name(self) -> str:
        """What the migration lock is named for: the project, and the tenant schema a run
        migrates, so tenants of one database migrate side by side and each one alone."""
        return self.package if self.schema is None else f"{self.package}/{self.schema}"

    @property
    def module_commands(self) -> Commands:
        """The words of the module CLI, for what it runs itself; Make's for the rest."""
        module = f"python -m {self.package}.migrations"
        return replace(
            self.commands,
            migrate=f"{module} upgrade",
            migrate_rev=f"{module} upgrade " + "{revision}",
            migrate_phase=f"{module} upgrade --phase " + "{phase}",
            current=f"{module} current",
            backfill=f"{module} backfill run",
            accept_edit_rev=f"{module} accept-edit " + "{revision}",
        )

    def setting(self, name: str, default: Any) -> Any:
        """`name` under [tool.alembic-steady] in the project's pyproject.toml, else `default`."""
        pyproject = self.folder / "pyproject.toml"
        if not pyproject.is_file():
            return default
        table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        return table.get("alembic-steady", {}).get(name, default)

    def with_commands(self, commands: Commands) -> "Project":
        return replace(self, commands=commands)
