"""Flywheel metrics for the dashboard (reviewer, admin): JSON figures, PNG plots, HTML report.

The dashboard page is ``/static/dashboard.html``; it reads these endpoints.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import HTMLResponse

from annotator_ui.deps import ReviewerUser, SessionDep, SettingsDep
from db.projects import get_project, list_projects
from engine.flywheel.metrics import FIGURES
from engine.flywheel.metrics_project import project_metrics
from engine.flywheel.report import LABELS, PLOTS, plot_png, render_html

router = APIRouter(prefix="/api/metrics", tags=["metrics"])

ProjectQ = Annotated[str, Query(min_length=1, max_length=200, description="Project name.")]
RepsQ = Annotated[int, Query(ge=10, le=10000, description="Bootstrap resamples.")]
SeedQ = Annotated[int, Query(ge=0, description="Bootstrap seed.")]
IdleQ = Annotated[
    float | None,
    Query(gt=0, le=86400, description="Idle cap in seconds: recompute every figure from the "
          "raw events with this cap (default: the configured DATAENGINE_IDLE_SECONDS)."),
]  # fmt: skip


def _compute(
    session: Any, settings: Any, project: str, reps: int, seed: int, idle: float | None
) -> dict[str, Any]:
    p = get_project(session, name=project)
    idle_s = idle if idle is not None else settings.idle_seconds
    m = project_metrics(session, project_id=p.id, idle_s=idle_s, reps=reps, seed=seed)
    session.commit()  # keep the refreshed effort cache (derived rows only)
    m["project"] = p.name
    return m


@router.get("")
def metrics(
    project: ProjectQ,
    session: SessionDep,
    settings: SettingsDep,
    _user: ReviewerUser,
    reps: RepsQ = 1000,
    seed: SeedQ = 0,
    idle_seconds: IdleQ = None,
) -> dict[str, Any]:
    """Figures per round and arm: ``{"project", "idle_s", "rounds": [...], "groups": [{"round"
    (None: no round open), "arm", "images_done", "active_seconds", "released_s",
    "imported_s", "figures": {name: {"value", "lo", "hi", "num", "den"}}}], "notes": [...]}``
    (definitions: ``docs/effort.md``)."""
    m = _compute(session, settings, project, reps, seed, idle_seconds)
    m["labels"] = {f: LABELS[f] for f in FIGURES}
    m["plots"] = {f: PLOTS[f][0] for f in PLOTS}
    return m


@router.get("/projects")
def projects(session: SessionDep, _user: ReviewerUser) -> list[dict[str, Any]]:
    """Projects to choose from on the dashboard: ``[{"id", "name"}]``."""
    return [{"id": p.id, "name": p.name} for p in list_projects(session)]


@router.get("/plots/{figure}.png", response_class=Response)
def plot(
    figure: str,
    project: ProjectQ,
    session: SessionDep,
    settings: SettingsDep,
    _user: ReviewerUser,
    reps: RepsQ = 1000,
    seed: SeedQ = 0,
    idle_seconds: IdleQ = None,
) -> Response:
    """One figure per round and arm with 95 % intervals and SAM reference lines (PNG)."""
    if figure not in PLOTS:
        raise HTTPException(404, detail=f"no plot {figure!r}; choose one of {', '.join(PLOTS)}")
    png = plot_png(_compute(session, settings, project, reps, seed, idle_seconds), figure)
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/report.html", response_class=HTMLResponse)
def report(
    project: ProjectQ,
    session: SessionDep,
    settings: SettingsDep,
    _user: ReviewerUser,
    reps: RepsQ = 1000,
    seed: SeedQ = 0,
    idle_seconds: IdleQ = None,
) -> HTMLResponse:
    """The self-contained HTML report (same as ``dataengine report``)."""
    m = _compute(session, settings, project, reps, seed, idle_seconds)
    return HTMLResponse(render_html(m, title=f"Data Engine flywheel report: {m['project']}"))
