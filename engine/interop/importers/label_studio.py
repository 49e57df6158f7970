"""Import Label Studio JSON exports (and webhook annotations): BrushLabels, PolygonLabels, RectangleLabels.

- Each non-cancelled annotation's regions become human masks (``accepted``);
  ``mask.meta["label_studio"]`` keeps task id, annotation id, region id,
  ``completed_by`` and ``lead_time``.
- ``lead_time`` (seconds Label Studio measured) is recorded as effort: one
  ``import_lead_time`` Event per annotation (payload ``{"seconds", "task_id",
  "annotation_id", "completed_by", "updated_at", "mask_ids"}``), by the
  inactive service user ``label-studio`` unless a user is given. The event's
  uuid is derived from (task, annotation, updated_at): the same annotation
  version is never recorded twice, and a newer version supersedes the masks of
  the older one.
- A rectangle that only repeats the box of a brush/polygon region with the same
  label in the same annotation is skipped (our exports with ``--boxes`` emit both).
- With ``options["predictions"]`` the tasks' predictions are imported too, as
  ``source="model"``, ``status="proposed"`` masks with ``predicted_iou`` = score.
Task images are found as ``engine.interop.label_studio.find_task_image`` documents.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, Image, Mask, Project
from engine.flywheel import events as event_kinds
from engine.interop.importers.common import (
    FileOutcome,
    FileRejected,
    ImageResolver,
    LabelPolicy,
    add_mask,
    service_user,
)
from engine.interop.label_studio import find_task_image, region_to_mask, task_image_name
from engine.mask_payload import MaskPayloadError, check_score
from engine.masks import mask_bbox

NAMESPACE = uuid.UUID("8a3c1f0e-5d2b-4e6f-9a7c-1b2d3e4f5a6b")


def _regions(
    results: list[Any], image: Image, outcome: FileOutcome, where: str
) -> list[tuple[np.ndarray, str | None, dict[str, Any]]]:
    """Results -> (mask, label, result) for every usable mask region; the rest are skipped."""
    out: list[tuple[np.ndarray, str | None, dict[str, Any]]] = []
    rects: list[tuple[np.ndarray, str | None, dict[str, Any]]] = []
    for k, res in enumerate(results):
        item = f"{where} region {res.get('id', k) if isinstance(res, dict) else k}"
        if not isinstance(res, dict):
            outcome.skip(item, "malformed region (not an object)")
            continue
        kind = str(res.get("type", "")).lower()
        if kind in ("keypointlabels", "choices", "textarea", "labels", "relation", "rating"):
            outcome.skip(item, f"{kind} is not a mask region")
            continue
        try:
            mask, label = region_to_mask(res, image.height, image.width)
        except (ValueError, KeyError, TypeError) as err:
            outcome.skip(item, f"malformed region: {err}")
            continue
        (rects if kind == "rectanglelabels" else out).append((mask, label, res))
    shapes = {(label, tuple(mask_bbox(m))) for m, label, _ in out}
    for mask, label, res in rects:
        if (label, tuple(mask_bbox(mask))) in shapes or any(
            lbl == label and np.allclose(box, mask_bbox(mask), atol=1.0) for lbl, box in shapes
        ):
            outcome.skip(
                f"{where} region {res.get('id')}", "rectangle repeats the box of a mask region"
            )
            continue
        out.append((mask, label, res))
    return out


def record_annotation(
    session: Session,
    *,
    image: Image,
    task: dict[str, Any],
    annotation: dict[str, Any],
    labels: LabelPolicy,
    outcome: FileOutcome,
    user_id: int | None = None,
) -> list[Mask]:
    """Store one Label Studio annotation of ``image``: its masks and its lead_time event.

    Returns the new masks (empty if it was cancelled or this version was already recorded).
    """
    task_id, ann_id = task.get("id"), annotation.get("id")
    where = f"task {task_id} annotation {ann_id}"
    if annotation.get("was_cancelled"):
        outcome.skip(where, "cancelled (skipped) in Label Studio")
        return []
    results = annotation.get("result")
    if not isinstance(results, list):
        outcome.skip(where, "annotation has no 'result' list")
        return []
    stamp = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    event_uuid = str(uuid.uuid5(NAMESPACE, f"{image.id}:{task_id}:{ann_id}:{stamp}"))
    if session.scalar(select(Event.id).where(Event.uuid == event_uuid)) is not None:
        outcome.skip(where, "this version of the annotation was already imported")
        return []
    if ann_id is not None:  # a newer version supersedes the masks of the older one
        for old in session.scalars(
            select(Mask).where(Mask.image_id == image.id, Mask.status == "accepted")
        ):
            ls = (old.meta or {}).get("label_studio") or {}
            if ls.get("annotation_id") == ann_id and ls.get("task_id") == task_id:
                old.status = "superseded"
    lead_time = annotation.get("lead_time")
    lead_time = float(lead_time) if isinstance(lead_time, int | float) else None
    masks: list[Mask] = []
    for mask, label, res in _regions(results, image, outcome, where):
        reason = labels.check(label)
        if reason:
            outcome.skip(f"{where} region {res.get('id')}", reason)
            continue
        meta = {
            "label_studio": {
                "task_id": task_id,
                "annotation_id": ann_id,
                "region_id": res.get("id"),
                "type": str(res.get("type")).lower(),
                "completed_by": annotation.get("completed_by"),
                "lead_time": lead_time,
            }
        }
        row = add_mask(session, image=image, mask=mask, label=label, meta=meta, author_id=user_id)
        if isinstance(row, str):
            outcome.skip(f"{where} region {res.get('id')}", row)
            continue
        masks.append(row)
    session.flush()
    outcome.masks += len(masks)
    author = user_id if user_id is not None else service_user(session).id
    session.add(
        Event(
            uuid=event_uuid,
            user_id=author,
            image_id=image.id,
            session_id=f"label-studio:{task_id}:{ann_id}"[:64],
            seq=0,
            kind=event_kinds.IMPORT_LEAD_TIME,
            payload={
                "seconds": lead_time,
                "task_id": task_id,
                "annotation_id": ann_id,
                "completed_by": annotation.get("completed_by"),
                "updated_at": stamp or None,
                "mask_ids": [m.id for m in masks],
            },
            client_time=0.0,
            visible=True,
        )
    )
    outcome.events += 1
    return masks


def _record_prediction(
    session: Session,
    *,
    image: Image,
    task: dict[str, Any],
    prediction: dict[str, Any],
    labels: LabelPolicy,
    outcome: FileOutcome,
) -> None:
    where = f"task {task.get('id')} prediction {prediction.get('id', '')}".rstrip()
    results = prediction.get("result")
    if not isinstance(results, list):
        outcome.skip(where, "prediction has no 'result' list")
        return
    for mask, label, res in _regions(results, image, outcome, where):
        if label is not None and (reason := labels.check(label)):
            outcome.skip(f"{where} region {res.get('id')}", reason)
            continue
        try:
            raw = res.get("score", prediction.get("score"))
            score = check_score(raw if isinstance(raw, int | float) else None)
        except MaskPayloadError as err:
            outcome.skip(f"{where} region {res.get('id')}", str(err))
            continue
        row = add_mask(
            session,
            image=image,
            mask=mask,
            label=label,
            source="model",
            status="proposed",
            predicted_iou=score,
            meta={
                "label_studio": {
                    "task_id": task.get("id"),
                    "region_id": res.get("id"),
                    "model_version": prediction.get("model_version"),
                }
            },
        )
        if isinstance(row, str):
            outcome.skip(f"{where} region {res.get('id')}", row)
            continue
        outcome.masks += 1


def import_document(
    session: Session,
    *,
    project: Project,
    doc: Any,
    path: Path,
    resolver: ImageResolver,
    labels: LabelPolicy,
    outcome: FileOutcome,
    options: dict[str, Any],
) -> None:
    """Import a Label Studio JSON export (a list of tasks, or one task)."""
    tasks = [doc] if isinstance(doc, dict) and "data" in doc else doc
    if not isinstance(tasks, list):
        raise FileRejected("not a Label Studio JSON export: expected a list of tasks")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            if isinstance(task, dict) and "image" in task and "id" in task:
                raise FileRejected("this is a JSON-MIN export; export as JSON (full) instead")
            outcome.skip(f"task #{i}", "malformed task (needs a 'data' object)")
            continue
        where = f"task {task.get('id', '#' + str(i))}"
        image, reason = find_task_image(session, task["data"], project_id=project.id)
        if image is None:
            name = task_image_name(task["data"])
            if name:
                image, reason = resolver.find(name, outcome)
        if image is None:
            outcome.skip(where, reason or "image not found")
            continue
        outcome.images += 1
        annotations = task.get("annotations", task.get("completions", []))
        for ann in annotations if isinstance(annotations, list) else []:
            if not isinstance(ann, dict):
                outcome.skip(where, "malformed annotation (not an object)")
                continue
            record_annotation(
                session,
                image=image,
                task=task,
                annotation=ann,
                labels=labels,
                outcome=outcome,
                user_id=options.get("user_id"),
            )
        if options.get("predictions"):
            for pred in task.get("predictions") or []:
                if isinstance(pred, dict):
                    _record_prediction(
                        session,
                        image=image,
                        task=task,
                        prediction=pred,
                        labels=labels,
                        outcome=outcome,
                    )
    session.flush()
