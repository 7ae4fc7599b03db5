"""Typed settings, read from the environment first and then from `.env`.

`.env` is the one at the project root (next to `pyproject.toml` and `alembic.ini`), whatever the
current directory; an installed wheel, which has no project root, reads `./.env` if there is one.

The database is named either by `DATABASE_URL` or by its `DB_*` parts, and the rule is:

1. Database settings come from ONE place. If the environment sets `DATABASE_URL`,
   `MIGRATION_DATABASE_URL` or any `DB_*` variable, the database settings of `.env` are ignored,
   all of them: `DB_NAME=x make migrate` reaches database `x` with the other parts from the
   environment or their defaults, never the database that a `DATABASE_URL` in `.env` names.
   Otherwise they all come from `.env`.
2. Within that place, `DATABASE_URL` wins over the `DB_*` parts.

Other settings (`ENVIRONMENT`, timeouts) are read one by one, the environment first.

Either way the result is a SQLAlchemy `URL` object for {% if cookiecutter.database == "mysql" %}aiomysql{% else %}asyncpg{% endif %}; it is handed to the engine as an
object and never rendered back into a string (SQLAlchemy 2 masks the password when it does) or into
`alembic.ini` (whose ConfigParser chokes on `%`). `describe()` names a database in one line for
commands to print: database, host and user, never the password.
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from alembic_steady.dialects import by_name, parse_url
from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL


def _project_root() -> Path | None:
    """The project folder when running from its source tree (src layout, editable install)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


PROJECT_ROOT = _project_root()
ENV_FILE = (PROJECT_ROOT or Path.cwd()) / ".env"
# The settings that name the database, as environment variables; see rule 1 above.
DATABASE_VARIABLES = (
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
)
DATABASE_FIELDS = frozenset(name.lower() for name in DATABASE_VARIABLES)
# The server this project runs on; alembic-steady knows its URL schemes and async driver.
DIALECT = "{{ cookiecutter.database }}"


def parse_database_url(raw: str) -> URL:
    """Parse a {% if cookiecutter.database == "mysql" %}MySQL URL and switch it to aiomysql{% else %}PostgreSQL URL and switch it to asyncpg{% endif %}, keeping its query parameters.

    Errors name the variable and never echo the value, which holds the password.
    """
    return parse_url(raw, DIALECT)


def database_in_environment() -> bool:
    """Whether the environment names the database (then `.env`'s database settings do not count).
    An empty variable (`DATABASE_URL=`, as Compose passes an unset one) names nothing."""
    return any(name.upper() in DATABASE_VARIABLES and value for name, value in os.environ.items())


def database_source(env_file: Path | None = ENV_FILE) -> str:
    """Where the database settings come from, for the line commands print."""
    if database_in_environment():
        return "the environment"
    if env_file is not None and env_file.is_file():
        names = {name.upper() for name in dotenv_values(env_file)}
        if names & set(DATABASE_VARIABLES):
            return str(env_file)
    return "the defaults"


class _DotEnvUnlessEnvironmentNamesDatabase(PydanticBaseSettingsSource):
    """`.env` values, without its database settings when the environment or the caller's
    arguments give any database setting (rule 1 of the module docstring)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        dotenv: PydanticBaseSettingsSource,
        given: tuple[PydanticBaseSettingsSource, ...],
    ) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv
        self.given = given

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for all fields at once

    def __call__(self) -> dict[str, Any]:
        values = self.dotenv()
        given = {name.lower() for source in self.given for name in source()}
        if given & DATABASE_FIELDS:
            return {k: v for k, v in values.items() if k.lower() not in DATABASE_FIELDS}
        return values


def describe(url: URL, source: str | None = None) -> str:
    """One line naming the database `url` points at: database, host, user; never the password."""
    host = url.host or url.query.get("host") or "localhost"
    where = f"{host}:{url.port}" if url.port else str(host)
    line = f"Database {url.database!r} on {where} as {url.username or '(default user)'}"
    return f"{line} (settings from {source})" if source else line


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
        env_ignore_empty=True,  # `DATABASE_URL=` is unset, as in database_in_environment()
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        dotenv = _DotEnvUnlessEnvironmentNamesDatabase(
            settings_cls, dotenv_settings, (init_settings, env_settings)
        )
        return init_settings, env_settings, dotenv, file_secret_settings

    environment: Literal["development", "test", "staging", "production"] = "development"

    # A full URL wins over the parts below (from the same place: see the module docstring).
    # SecretStr keeps it out of reprs and logs.
    database_url: SecretStr | None = None
    db_host: str = "localhost"
    db_port: int = Field(default={% if cookiecutter.database == "mysql" %}3306{% else %}5432{% endif %}, ge=1, le=65535)
    db_user: str = "{% if cookiecutter.database == "mysql" %}root{% else %}postgres{% endif %}"
    db_password: SecretStr = SecretStr("")
    db_name: str = "{{ cookiecutter.package_name }}"

    # Seconds to wait for a connection before giving up with a clear message.
    db_connect_timeout: float = Field(default=10.0, gt=0)
    # Seconds a migration run waits for another one to finish ({% if cookiecutter.database == "mysql" %}GET_LOCK{% else %}advisory lock{% endif %}) before giving up.
    migration_lock_wait: float = Field(default=60.0, gt=0)
{%- if cookiecutter.database == "mysql" %}
    # How long one attempt of a migration statement may wait for a metadata lock (durations as
    # "1s", "2min"; MySQL's lock_wait_timeout counts whole seconds, so rounded up to at least 1s;
    # "0" = no limit). App queries queue behind a waiting ALTER, so this is their worst stall.
    # The statement bound is max_statement_time (MariaDB) or max_execution_time (MySQL).
{%- else %}
    # How long one attempt of a migration statement may wait for a table lock (PostgreSQL
    # units, "0" = no limit). App queries queue behind a waiting ALTER, so this is their worst
    # stall; attempts start at a quarter of it and double up to it.
{%- endif %}
    migration_lock_timeout: str = "1s"
    migration_statement_timeout: str = "0"
    # How long `make backup` (pg_dump --lock-wait-timeout) waits for its table locks{% if cookiecutter.database == "mysql" %} (unused
    # on MySQL: mysqldump has no such bound){% endif %}.
    backup_lock_wait: str = "30s"
    # A revision whose statement hit the lock timeout is rolled back and tried again, at most
    # this many times and for at most this many seconds in all.
    migration_lock_retries: int = Field(default=30, ge=1)
    migration_lock_retry_total: float = Field(default=300.0, gt=0)
    # The URL migrations use when the app's goes through a transaction pooler (PgBouncer's
    # transaction mode), which loses session state: a direct or session-pooled connection.
    migration_database_url: SecretStr | None = None

    @field_validator("database_url", "migration_database_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _url_must_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_database_url(value.get_secret_value())
        return value

    @property
    def migration_url(self) -> URL:
        """The {% if cookiecutter.database == "mysql" %}aiomysql{% else %}asyncpg{% endif %} URL migrations connect with: MIGRATION_DATABASE_URL, else the app's."""
        if self.migration_database_url is not None:
            return parse_database_url(self.migration_database_url.get_secret_value())
        return self.sqlalchemy_url

    @property
    def sqlalchemy_url(self) -> URL:
        """The {% if cookiecutter.database == "mysql" %}aiomysql{% else %}asyncpg{% endif %} URL to connect with; every part escaped by `URL.create`."""
        if self.database_url is not None:
            return parse_database_url(self.database_url.get_secret_value())
        return URL.create(
            by_name(DIALECT).async_driver,
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=self.db_host,
            port=self.db_port,
            database=self.db_name,
        )

    def describe_database(self) -> str:
        """The line every command that touches the database prints first (never the password)."""
        return describe(self.sqlalchemy_url, database_source())


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
