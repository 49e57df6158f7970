"""Liveness, readiness and Prometheus metrics (no login needed).

- ``GET /livez``: 200 while the process serves requests (nothing else checked).
- ``GET /readyz``: 200 when the model is loaded and the database is reachable and at the
  code's schema revision; else 503 ``{"status": "not ready", "reason": ...}``.
- ``GET /metrics``: Prometheus text format (``annotator_ui.observability``). Like the
  probes it needs no login; expose it only to the monitoring network (or block it at the
  reverse proxy).
- ``GET /api/health``: the older combined check (database + model names), kept for the
  compose healthcheck and clients that use it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from annotator_ui.deps import SessionDep
from annotator_ui.observability import metrics_response, ready_response

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: model loaded, database reachable and migrated (else 503)."""
    return ready_response(request.app)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this app (text exposition format)."""
    return metrics_response(request.app)


@router.get("/api/health")
def health(request: Request, session: SessionDep) -> dict[str, object]:
    session.execute(text("SELECT 1"))
    seg = getattr(request.app.state, "segmenter", None)
    return {
        "status": "ok",
        "database": session.get_bind().dialect.name,
        "backend": getattr(seg, "name", None),
        "model": getattr(seg, "model_key", None),
    }
