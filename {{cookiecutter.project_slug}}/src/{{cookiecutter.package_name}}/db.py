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
    """An asyncpg engine for `url`, or for the configured database."""
    settings = settings or get_settings()
    return create_async_engine(
        url or settings.sqlalchemy_url,
        pool_pre_ping=True,
        connect_args={"timeout": settings.db_connect_timeout},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit, as async code expects."""
    return async_sessionmaker(engine, expire_on_commit=False)
