"""Probes for orchestrators: liveness (the process answers) and readiness (the database answers
and has every pre revision: the post ones run after the rollout). Readiness takes no migration
lock, so probing during a long migration neither waits nor blocks it."""

from typing import Any

from alembic_steady.runner.phases import PRE, Phases
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..migrations import current_heads

router = APIRouter(prefix="/health", tags=["health"])
MIGRATE = "python -m {{ cookiecutter.package_name }}.migrations upgrade"


@router.get("/live")
async def live() -> dict[str, str]:
    """200 while the process runs; it never touches the database, so a database outage does not
    get every replica restarted."""
    return {"status": "alive"}


@router.get("/ready", response_model=None)
async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    """200 when the database answers and has every pre revision; 503 with the reason otherwise."""
    engine: AsyncEngine = request.app.state.engine
    phases: Phases = request.app.state.phases
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(current_heads)
    except (SQLAlchemyError, OSError) as exc:
        # Refused, timed out, bad password, missing database: not ready. The first line names the
        # cause but never the password. Anything else is a bug and gets a 500.
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        return _not_ready(f"cannot connect to the database ({detail})")
    if not phases.ready(current):
        reason = f"database not at head: run the migrations ({MIGRATE})"
        return _not_ready(reason, current=sorted(current), head=phases.heads(PRE))
    return {"status": "ready", "revision": sorted(current)}


def _not_ready(reason: str, **details: Any) -> JSONResponse:
    content = {"status": "not ready", "reason": reason, **details}
    return JSONResponse(status_code=503, content=content)
