"""Typed settings, read from the environment first and then from `.env`.

The database is named either by `DATABASE_URL` or by its `DB_*` parts. Either way the result is a
SQLAlchemy `URL` object for asyncpg; it is handed to the engine as an object and never rendered back
into a string (SQLAlchemy 2 masks the password when it does) or into `alembic.ini` (whose
ConfigParser chokes on `%`).
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# Every scheme users paste from hosting providers, all driven through asyncpg.
ACCEPTED_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
ASYNC_DRIVER = "postgresql+asyncpg"


def parse_database_url(raw: str) -> URL:
    """Parse a PostgreSQL URL and switch it to asyncpg, keeping its query parameters.

    Errors name the variable and never echo the value, which holds the password.
    """
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ValueError(
            "DATABASE_URL is not a valid URL; expected "
            "postgresql://USER:PASSWORD@HOST:PORT/NAME (percent-encode special characters)"
        ) from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise ValueError(
            f"DATABASE_URL uses the unsupported scheme {url.drivername!r}; "
            "use postgresql:// (or postgres://, postgresql+asyncpg://)"
        )
    return url.set(drivername=ASYNC_DRIVER)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "test", "staging", "production"] = "development"

    # A full URL wins over the parts below. SecretStr keeps it out of reprs and logs.
    database_url: SecretStr | None = None
    db_host: str = "localhost"
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_user: str = "postgres"
    db_password: SecretStr = SecretStr("")
    db_name: str = "{{ cookiecutter.package_name }}"

    # Seconds to wait for a connection before giving up with a clear message.
    db_connect_timeout: float = Field(default=10.0, gt=0)
    # Seconds a migration run waits for another one to finish (advisory lock) before giving up.
    migration_lock_wait: float = Field(default=60.0, gt=0)
    # How long one attempt of a migration statement may wait for a table lock (PostgreSQL
    # units, "0" = no limit). App queries queue behind a waiting ALTER, so this is their worst
    # stall; attempts start at a quarter of it and double up to it.
    migration_lock_timeout: str = "1s"
    migration_statement_timeout: str = "0"
    # A revision whose statement hit the lock timeout is rolled back and tried again, at most
    # this many times and for at most this many seconds in all.
    migration_lock_retries: int = Field(default=30, ge=1)
    migration_lock_retry_total: float = Field(default=300.0, gt=0)
    # The URL migrations use when the app's goes through a transaction pooler (PgBouncer's
    # transaction mode), which loses session state: a direct or session-pooled connection.
    migration_database_url: SecretStr | None = None

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _url_must_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_database_url(value.get_secret_value())
        return value

    @field_validator("migration_database_url", mode="before")
    @classmethod
    def _empty_migration_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("migration_database_url")
    @classmethod
    def _migration_url_must_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_database_url(value.get_secret_value())
        return value

    @property
    def migration_url(self) -> URL:
        """The asyncpg URL migrations connect with: MIGRATION_DATABASE_URL, else the app's."""
        if self.migration_database_url is not None:
            return parse_database_url(self.migration_database_url.get_secret_value())
        return self.sqlalchemy_url

    @property
    def sqlalchemy_url(self) -> URL:
        """The asyncpg URL to connect with; every part escaped by `URL.create`."""
        if self.database_url is not None:
            return parse_database_url(self.database_url.get_secret_value())
        return URL.create(
            ASYNC_DRIVER,
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=self.db_host,
            port=self.db_port,
            database=self.db_name,
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
