"""The Label Studio ML backend protocol, served under ``/ml`` (point Label Studio at ``http://HOST:PORT/ml``).

Endpoints (JSON shapes as label-studio-ml-backend's ``api.py``):
- ``GET /ml/health`` (and ``GET /ml/``) -> ``{"status": "UP", "model_class", "model_version"}``
- ``POST /ml/setup`` ``{project, schema, ...}`` -> ``{"model_version"}``
- ``POST /ml/predict`` ``{tasks, label_config, project, params: {context}}`` ->
  ``{"results": [{"result": [...], "score", "model_version"}, ...], "model_version"}``.
  Without ``params.context.result``: one prediction per task holding the image's
  *stored* pre-fill as the annotator sees it (accepted masks and confident proposals; none
  in the control arm; ``engine.interop.label_studio_prefill``) as BrushLabels, each region
  with its ``score``. Images not pre-filled yet answer an empty prediction at once and are
  queued: a background task pre-fills them after the answer
  (``DATAENGINE_ML_BACKEND_PREFILL_ON_PREDICT``; else ``dataengine worker`` does). With it
  (interactive): KeyPointLabels (``is_positive``; percent ``x``/``y``) and/or
  one RectangleLabels (percent box; the last one counts) are decoded by the
  app's segmenter into one BrushLabels mask, labelled with the prompt's label.
- ``POST /ml/webhook`` ``{action, annotation, task, project}``: on
  ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` the annotation's regions are
  stored as human masks and its ``lead_time`` as an ``import_lead_time`` event
  (``engine.interop.importers.label_studio.record_annotation``); other actions are acknowledged.
- ``GET /ml/metrics`` -> ``{}``; ``GET /ml/versions`` -> ``{"versions": [...]}``.
Task images are matched to ingested images as ``engine.interop.label_studio`` documents
(``dataengine_sha256`` / ``dataengine_image_id`` in task data, or the image URL).

Authentication (``annotator_ui.routes.ml_auth.ml_user``; every endpoint, ``/ml/health`` too: Label Studio sends the
model's credentials there as well): by default an app API token (``dataengine user token
NAME``) as ``Authorization: Bearer <token>`` or ``Token <token>``, or as HTTP basic auth
``NAME:<token>`` (Label Studio 1.23's model settings: "Basic Authentication", user NAME,
password the token: its ML connector sends no other credentials); with ``DATAENGINE_ML_BACKEND_BASIC_AUTH=NAME:PASSWORD`` also HTTP
basic auth ("Use basic auth" in the model settings), acting as app user NAME;
``DATAENGINE_ML_BACKEND_AUTH=none`` allows anonymous calls, and the app then refuses to
start on a non-loopback address. Each request acts with its user's rights: ``predict``
reads only images the user may read (``routes.tasks.ensure_can_read``; others answer as if
not ingested), ``webhook`` needs annotator rights, an annotator's own recent lease on the
image, and no one else's live lease on it. Task images are resolved only against ingested
rows, never by looking at the server's filesystem.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Body, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from annotator_ui.deps import SegmenterDep, SessionDep, SettingsDep
from annotator_ui.routes.ml_auth import MlUser, MlWriter, ml_user
from annotator_ui.routes.ml_tasks import ensure_can_write, find_image, image_for
from db import lease_lookups
from db.models import Image, Project, User
from engine.imageio import ImageRejected, load_rgb
from engine.interop.importers.common import FileOutcome, LabelPolicy
from engine.interop.importers.label_studio import record_annotation
from engine.interop.label_studio import (
    LabelConfig,
    mask_to_brush,
    parse_label_config,
)
from engine.interop.label_studio_prefill import shown_prefill
from engine.lru import LRU
from engine.segment.protocol import Embedding, PromptError

log = logging.getLogger("dataengine.ml_backend")
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
EMBEDDINGS_KEPT = 4  # per-app LRU when the segmenter has no cache of its own
_cache_lock = threading.Lock()  # guards creating the per-app LRU


router = APIRouter(prefix="/ml", tags=["label-studio-ml"], dependencies=[Depends(ml_user)])


def _model_version(seg: Any) -> str:
    return str(getattr(seg, "model_key", None) or getattr(seg, "name", "segmenter"))


def _model_class(seg: Any) -> str:
    return type(seg).__name__


@router.get("/health")
@router.get("/")
def health(seg: SegmenterDep) -> dict[str, Any]:
    return {"status": "UP", "model_class": _model_class(seg), "model_version": _model_version(seg)}


@router.get("/metrics")
def metrics() -> dict[str, Any]:
    return {}


@router.get("/versions")
def versions(seg: SegmenterDep) -> dict[str, Any]:
    return {"versions": [_model_version(seg)], "message": ""}


@router.post("/setup")
def setup_model(
    seg: SegmenterDep, body: dict[str, Any] = Body(default_factory=dict)
) -> dict[str, Any]:
    cfg = parse_label_config(body.get("schema"))
    log.info("Label Studio project %s set up (brush tag %r)", body.get("project"), cfg.brush)
    return {"model_version": _model_version(seg)}


def _embedding(request: Request, seg: Any, image: Image) -> Embedding:
    max_pixels = request.app.state.settings.max_image_pixels

    def load() -> np.ndarray:
        try:
            return load_rgb(image.uri, max_pixels=max_pixels)
        except ImageRejected as err:
            raise HTTPException(status_code=404, detail=f"image {image.id}: {err}") from err

    if image.sha256 and hasattr(seg, "embed_cached"):
        return seg.embed_cached(image.sha256, load)
    with _cache_lock:
        cache: LRU[int, Embedding] | None = getattr(request.app.state, "ml_embeddings", None)
        if cache is None:
            cache = request.app.state.ml_embeddings = LRU(EMBEDDINGS_KEPT)
    return cache.get_or_put(image.id, lambda: seg.embed(load()))


def _prompt(context: dict[str, Any], h: int, w: int) -> tuple[Any, Any, Any, str | None]:
    """context.result -> (points Nx2 px | None, labels N | None, box XYXY px | None, label)."""
    points, labels, box, label = [], [], None, None
    for ctx in context.get("result") or []:
        if not isinstance(ctx, dict) or not isinstance(ctx.get("value"), dict):
            raise PromptError("each context result needs a 'value' object")
        kind = str(ctx.get("type", "")).lower()
        value = ctx["value"]
        names = value.get(kind) or value.get("labels") or []
        label = str(names[0]) if names else label
        try:
            x, y = float(value["x"]) * w / 100, float(value["y"]) * h / 100
        except (KeyError, TypeError, ValueError) as err:
            raise PromptError(f"{kind} needs numeric percent x and y") from err
        if kind == "keypointlabels":
            positive = ctx.get("is_positive", value.get("is_positive", True))
            points.append([min(max(x, 0.0), w - 1e-3), min(max(y, 0.0), h - 1e-3)])
            labels.append(1 if positive else 0)
        elif kind == "rectanglelabels":
            try:
                bw, bh = float(value["width"]) * w / 100, float(value["height"]) * h / 100
            except (KeyError, TypeError, ValueError) as err:
                raise PromptError("rectanglelabels needs numeric percent width and height") from err
            box = [max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))]
        else:
            raise PromptError(
                f"context region type {kind!r} is not a prompt (use keypoints or a rectangle)"
            )
    return (
        np.asarray(points, dtype=np.float64) if points else None,
        np.asarray(labels, dtype=np.int64) if labels else None,
        np.asarray(box, dtype=np.float64) if box is not None else None,
        label,
    )


def _interactive(
    request: Request,
    session: Any,
    seg: Any,
    task: Any,
    context: dict[str, Any],
    cfg: LabelConfig,
    user: User | None,
) -> dict[str, Any]:
    image = image_for(session, task, cfg, user)
    emb = _embedding(request, seg, image)
    h, w = emb.image_size
    try:
        points, labels, box, label = _prompt(context, h, w)
        result = seg.decode(emb, points=points, labels=labels, box=box)
    except PromptError as err:
        raise HTTPException(status_code=422, detail=f"bad interactive prompt: {err}") from err
    if label is not None and cfg.labels and label not in cfg.labels:
        label = None  # not a label of this config: an unlabelled region
    region = {
        "id": f"de{uuid.uuid4().hex[:8]}",
        "from_name": cfg.brush,
        "to_name": cfg.image,
        "type": "brushlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {
            "format": "rle",
            "rle": mask_to_brush(result.mask),
            "brushlabels": [label] if label else [],
        },
        "score": float(result.score),
        "readonly": False,
    }
    return {"result": [region], "score": float(result.score), "model_version": _model_version(seg)}


def _prefill(
    session: Any, seg: Any, task: Any, cfg: LabelConfig, user: User | None, queue: set[int]
) -> dict[str, Any]:
    """The task's stored pre-fill as the annotator would see it; never computed here: an
    image with no pre-fill yet is added to ``queue`` and answered empty for now."""
    image, reason = find_image(session, task, cfg, user)
    version = _model_version(seg)
    if image is None:
        log.info(
            "predict: no pre-fill for task %s: %s",
            task.get("id") if isinstance(task, dict) else "?",
            reason,
        )
        return {"result": [], "score": 0.0, "model_version": version}
    arm = lease_lookups.arm_of(session, image_id=image.id, user_id=user.id if user else None)
    shown = shown_prefill(session, image=image, cfg=cfg, arm=arm, default_version=version)
    if shown.pending:
        queue.add(image.id)
    return shown.as_prediction()


def _queue_prefill(request: Request, seg: Any, image_ids: set[int]) -> set[int]:
    """Mark ``image_ids`` as being pre-filled by this process; returns the ones not already
    in flight (a second "retrieve predictions" while the first runs queues nothing twice)."""
    with _cache_lock:
        flight: set[int] | None = getattr(request.app.state, "ml_prefill_in_flight", None)
        if flight is None:
            flight = request.app.state.ml_prefill_in_flight = set()
        new = image_ids - flight
        flight |= new
    return new


def _run_prefill(request: Request, seg: Any, image_ids: set[int]) -> None:
    """Background task: pre-fill the queued images (per project), then release them."""
    from engine.flywheel.prefill import prefill_project  # the flywheel, loaded on first use

    factory = request.app.state.session_factory
    try:
        with factory() as s:
            projects = dict(
                s.execute(select(Image.id, Image.project_id).where(Image.id.in_(image_ids))).all()
            )
        for project_id in sorted(set(projects.values())):
            ids = [i for i, p in projects.items() if p == project_id]
            summary = prefill_project(
                factory,
                project_id=project_id,
                segmenter=seg,
                model_version_id=None,
                image_ids=ids,
                max_pixels=request.app.state.settings.max_image_pixels,
            )
            log.info(
                "predict: pre-filled %d queued image(s) of project %d (%d failed)",
                summary.done,
                project_id,
                summary.failed,
            )
    except Exception:  # noqa: BLE001 - a background task has no caller; the worker retries
        log.exception("predict: queued pre-fill of images %s failed", sorted(image_ids))
    finally:
        with _cache_lock:
            request.app.state.ml_prefill_in_flight -= image_ids


@router.post("/predict")
def predict(
    request: Request,
    session: SessionDep,
    seg: SegmenterDep,
    user: MlUser,
    background: BackgroundTasks,
    body: dict[str, Any] = Body(...),
) -> dict[str, Any]:
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise HTTPException(status_code=422, detail="'tasks' must be a list of Label Studio tasks")
    cfg = parse_label_config(body.get("label_config"))
    params = body.get("params") or {}
    context = params.get("context") if isinstance(params, dict) else None
    if isinstance(context, dict) and context.get("result"):
        if not tasks:
            raise HTTPException(status_code=422, detail="interactive predict needs the task")
        results = [_interactive(request, session, seg, tasks[0], context, cfg, user)]
    else:
        queue: set[int] = set()
        results = [_prefill(session, seg, t, cfg, user, queue) for t in tasks]
        if queue and request.app.state.settings.ml_backend_prefill_on_predict:
            session.commit()  # end this request's transaction: SQLite lets one writer at a time
            new = _queue_prefill(request, seg, queue)
            if new:
                background.add_task(_run_prefill, request, seg, new)
    return {"results": results, "model_version": _model_version(seg)}


@router.post("/webhook")
def webhook(
    session: SessionDep, settings: SettingsDep, user: MlWriter, body: dict[str, Any] = Body(...)
) -> JSONResponse:
    action = body.get("action")
    if action not in WEBHOOK_ACTIONS:
        return JSONResponse(status_code=200, content={"status": "Unknown event", "action": action})
    task, annotation = body.get("task"), body.get("annotation")
    if not isinstance(task, dict) or not isinstance(annotation, dict):
        raise HTTPException(
            status_code=422, detail=f"{action} needs 'task' and 'annotation' objects"
        )
    project_cfg = body.get("project") if isinstance(body.get("project"), dict) else {}
    cfg = parse_label_config(project_cfg.get("label_config"))
    image = image_for(session, task, cfg, user)
    ensure_can_write(session, settings, user, image)
    project = session.get(Project, image.project_id)
    outcome = FileOutcome(path=f"webhook {action}")
    masks = record_annotation(
        session,
        image=image,
        task=task,
        annotation=annotation,
        labels=LabelPolicy(project, add_labels=not project.labels),
        outcome=outcome,
        user_id=user.id if user is not None else None,
    )
    session.commit()
    return JSONResponse(
        status_code=201,
        content={
            "status": "ok",
            "result": {
                "image_id": image.id,
                "mask_ids": [m.id for m in masks],
                "events": outcome.events,
                "lead_time": annotation.get("lead_time"),
                "skipped": [{"item": i, "reason": r} for i, r in outcome.skipped],
            },
        },
    )
