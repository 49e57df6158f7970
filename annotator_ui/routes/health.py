"""Liveness and readiness (no login needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from annotator_ui.deps import SessionDep

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
def health(request: Request, session: SessionDep) -> dict[str, object]:
    session.execute(text("SELECT 1"))
    seg = getattr(request.app.state, "segmenter", None)
    return {
        "status": "ok",
        "database": session.get_bind().dialect.name,
        "backend": getattr(seg, "name", None),
        "model": getattr(seg, "model_key", None),
    }
