"""Import Label Studio JSON exports (and webhook annotations): BrushLabels, PolygonLabels, RectangleLabels.

- Each non-cancelled annotation goes through
  ``engine.interop.importers.label_studio_annotation.record_annotation`` (the webhook uses
  the same): a region that kept a proposal's id ``m<id>`` accepts it (same pixels) or fixes
  it (other pixels, the proposal as parent); other regions, labelled or not, become human
  masks; an annotation version already recorded (by task id, annotation id and
  ``updated_at``) is a no-op; ``lead_time`` is an ``import_lead_time`` event (imported effort).
- A rectangle that only repeats the box of a brush/polygon region with the same
  label in the same annotation is skipped (our exports with ``--boxes`` emit both).
- With ``options["predictions"]`` the tasks' predictions are imported too, as
  ``source="model"``, ``status="proposed"`` masks with ``predicted_iou`` = score.
  Label Studio's default JSON export lists predictions by id: they are fetched from its API
  with ``options["ls_url"]``/``["ls_token"]``, and without them the file is refused with a
  message naming ``--ls-url``/``--ls-token``.
Task images are found as ``engine.interop.label_studio.find_task_image`` documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Image, Project
from engine.interop.importers.common import (
    FileOutcome,
    FileRejected,
    ImageResolver,
    LabelPolicy,
    add_mask,
)
from engine.interop.importers.label_studio_annotation import record_annotation, regions
from engine.interop.label_studio import find_task_image, task_image_name
from engine.interop.label_studio_api import LabelStudio, LabelStudioError, fetch_prediction
from engine.mask_payload import MaskPayloadError, check_score

__all__ = ["import_document", "record_annotation"]


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
    for mask, label, res in regions(results, image, outcome, where):
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


def _fetch_prediction(prediction_id: int, options: dict[str, Any]) -> dict[str, Any]:
    """A prediction Label Studio's JSON export lists by id, from its API; refused without one."""
    url, token = options.get("ls_url"), options.get("ls_token")
    if not url or not token:
        raise FileRejected(
            "this Label Studio export lists predictions by id (its default JSON export): pass "
            "--ls-url URL and --ls-token TOKEN (a Label Studio access token) to fetch them "
            "from Label Studio, or leave out --predictions"
        )
    client = options.get("_ls_client")
    if client is None:
        client = options["_ls_client"] = LabelStudio(str(url), str(token))
    try:
        return fetch_prediction(client, prediction_id)
    except LabelStudioError as err:
        raise FileRejected(f"prediction {prediction_id}: {err}") from err


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
    try:
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
                    if isinstance(pred, int) and not isinstance(pred, bool):
                        pred = _fetch_prediction(pred, options)
                    if isinstance(pred, dict):
                        _record_prediction(
                            session,
                            image=image,
                            task=task,
                            prediction=pred,
                            labels=labels,
                            outcome=outcome,
                        )
    finally:  # the Label Studio client of predictions listed by id, if one was opened
        client = options.pop("_ls_client", None)
        if client is not None:
            client.close()
    session.flush()
