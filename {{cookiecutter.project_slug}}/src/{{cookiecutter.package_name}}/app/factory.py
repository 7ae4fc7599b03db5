"""The app factory and its lifespan: one async engine per process, created at start-up and
disposed at shutdown, so no connection outlives the server."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import URL

from ..db import create_engine, create_session_factory
from ..migrations import phases
from . import health, items


def create_app(url: URL | None = None) -> FastAPI:
    """The service, on `url` or on the configured database (DATABASE_URL or DB_*)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url=url)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        # The revision files do not change while the process runs: read their phases once, not
        # on every readiness probe.
        app.state.phases = phases()
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title={{ cookiecutter.project_name | python_string }}, lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(items.router)
    return app
