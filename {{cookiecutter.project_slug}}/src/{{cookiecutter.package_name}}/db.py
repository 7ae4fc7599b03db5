"""The async engine and session factory of the service."""

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .settings import Settings, get_settings


def create_engine(settings: Settings | None = None, url: URL | None = None) -> AsyncEngine:
{%- if cookiecutter.database == "mysql" %}
    """An aiomysql engine for `url`, or for the configured database."""
    settings = settings or get_settings()
    return create_async_engine(
        url or settings.sqlalchemy_url,
        pool_pre_ping=True,
        # The server closes idle connections after wait_timeout (8 h by default): recycle first.
        pool_recycle=3600,
        connect_args={"connect_timeout": settings.db_connect_timeout},
    )
{%- else %}
    """An asyncpg engine for `url`, or for the configured database."""
    settings = settings or get_settings()
    return create_async_engine(
        url or settings.sqlalchemy_url,
        pool_pre_ping=True,
        connect_args={"timeout": settings.db_connect_timeout},
    )
{%- endif %}


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit, as async code expects."""
    return async_sessionmaker(engine, expire_on_commit=False)
