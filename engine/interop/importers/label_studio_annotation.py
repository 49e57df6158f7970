"""One Label Studio annotation into the product (the webhook and the JSON importer share it).

What a region means depends on where it came from:

- a region whose id is ``m<mask id>`` of a mask of this image (the id our predictions and
  exports give each region) *is that mask*: unchanged pixels accept a proposal (status
  ``accepted``, same row: it stays ``source="model"`` and counts as pre-fill precision),
  changed pixels fix it (a new ``model_edited`` row with the proposal as ``parent_id``, the
  proposal ``superseded``; ``db.masks.fix``). An accepted mask kept unchanged is left alone.
- any other region is a new human mask (``accepted``), labelled or not (an unlabelled
  region imports with ``label=None``).
- when the annotation started from our prediction (it keeps at least one ``m<id>`` region,
  or names a ``parent_prediction``), the confident proposals it dropped are ``rejected``.

Identity: an annotation is (task id, annotation id); its version is ``updated_at`` (parsed,
so the webhook's and the export's spellings agree). The same or an older version is never
recorded twice (re-importing an export, or the webhook then the export, is a no-op); a
newer one replaces the rows the older one made. ``lead_time`` becomes one
``import_lead_time`` event per version (imported effort, ``engine.flywheel.effort``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db import masks as dbm
from db.annotation_imports import (
    add_import_event,
    confident_proposals,
    event_payloads,
    event_uuid_taken,
    find_mask,
)
from db.curation import accepted_masks
from db.errors import Conflict, InvalidInput
from db.models import Image, Mask
from engine.flywheel import events as event_kinds
from engine.interop.importers.common import FileOutcome, LabelPolicy, add_mask, service_user
from engine.interop.label_studio import region_to_mask
from engine.masks import decode_rle, encode_rle, mask_bbox

NAMESPACE = uuid.UUID("8a3c1f0e-5d2b-4e6f-9a7c-1b2d3e4f5a6b")
MASK_REGION = re.compile(r"^m(\d+)$")
NOT_MASKS = ("keypointlabels", "choices", "textarea", "labels", "relation", "rating")


def stamp(annotation: dict[str, Any]) -> str:
    """The annotation's version: ``updated_at`` (else ``created_at``) as UTC ISO, or ""."""
    raw = annotation.get("updated_at") or annotation.get("created_at") or ""
    try:
        when = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return str(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat()


def regions(
    results: list[Any], image: Image, outcome: FileOutcome, where: str
) -> list[tuple[np.ndarray, str | None, dict[str, Any]]]:
    """Results -> (HW bool mask, label, result) for every usable mask region; the rest are
    skipped with a reason. A rectangle repeating the box of a mask region with the same
    label is skipped (our exports with ``--boxes`` write both)."""
    out: list[tuple[np.ndarray, str | None, dict[str, Any]]] = []
    rects: list[tuple[np.ndarray, str | None, dict[str, Any]]] = []
    for k, res in enumerate(results):
        item = f"{where} region {res.get('id', k) if isinstance(res, dict) else k}"
        if not isinstance(res, dict):
            outcome.skip(item, "malformed region (not an object)")
            continue
        kind = str(res.get("type", "")).lower()
        if kind in NOT_MASKS:
            outcome.skip(item, f"{kind} is not a mask region")
            continue
        try:
            mask, label = region_to_mask(res, image.height, image.width)
        except (ValueError, KeyError, TypeError) as err:
            outcome.skip(item, f"malformed region: {err}")
            continue
        (rects if kind == "rectanglelabels" else out).append((mask, label, res))
    shapes = [(label, mask_bbox(m)) for m, label, _ in out]
    for mask, label, res in rects:
        box = mask_bbox(mask)
        if any(lbl == label and np.allclose(b, box, atol=1.0) for lbl, b in shapes):
            outcome.skip(
                f"{where} region {res.get('id')}", "rectangle repeats the box of a mask region"
            )
            continue
        out.append((mask, label, res))
    return out


def _not_older(seen: str, version: str) -> bool:
    """Whether a recorded version ``seen`` is the same as or newer than ``version``; an
    annotation without a version (a brush export) counts as recorded once any version is."""
    if not version:
        return True
    if not seen:
        return False
    try:
        return dt.datetime.fromisoformat(seen) >= dt.datetime.fromisoformat(version)
    except (TypeError, ValueError):
        return seen >= version


def _versions(session: Session, image_id: int, task_id: Any, ann_id: Any) -> list[str]:
    """The versions (stamps) of this annotation already recorded on the image."""
    rows = event_payloads(session, image_id=image_id, kind=event_kinds.IMPORT_LEAD_TIME)
    return [
        str(p.get("version") or p.get("updated_at") or "")
        for p in rows
        if isinstance(p, dict) and p.get("task_id") == task_id and p.get("annotation_id") == ann_id
    ]


def _made_by(session: Session, image_id: int, task_id: Any, ann_id: Any) -> list[Mask]:
    """Live masks an earlier version of this annotation made or decided."""
    out = []
    for m in accepted_masks(session, image_id=image_id):
        ls = (m.meta or {}).get("label_studio") or {}
        if ls.get("annotation_id") == ann_id and ls.get("task_id") == task_id:
            out.append(m)
    return out


def _current(session: Session, mask: Mask) -> Mask:
    """Follow ``superseded_by`` links to the live row of a mask."""
    seen = {mask.id}
    while mask.status == "superseded" and (nxt := (mask.meta or {}).get("superseded_by")):
        row = find_mask(session, mask_id=int(nxt))
        if row is None or row.id in seen:
            break
        seen.add(row.id)
        mask = row
    return mask


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
    """Store one Label Studio annotation of ``image`` (semantics in the module docstring).

    Returns the masks it accepted, fixed or added (empty if cancelled or already recorded).
    Counts go to ``outcome`` (``masks``, ``events``, and ``accepted``/``fixed`` in its log).
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
    version = stamp(annotation)
    event_uuid = str(uuid.uuid5(NAMESPACE, f"{image.id}:{task_id}:{ann_id}:{version}"))
    seen = _versions(session, image.id, task_id, ann_id) if ann_id is not None else []
    if event_uuid_taken(session, uuid=event_uuid) or any(_not_older(v, version) for v in seen):
        outcome.skip(where, "this version of the annotation was already imported")
        return []
    author = user_id if user_id is not None else service_user(session).id
    lead_time = annotation.get("lead_time")
    lead_time = float(lead_time) if isinstance(lead_time, int | float) else None
    ls_meta = {
        "task_id": task_id,
        "annotation_id": ann_id,
        "completed_by": annotation.get("completed_by"),
        "lead_time": lead_time,
        "version": version,
    }
    earlier = {m.id: m for m in _made_by(session, image.id, task_id, ann_id)}
    kept: set[int] = set()
    touched: list[Mask] = []
    from_prediction = annotation.get("parent_prediction") is not None
    for mask, label, res in regions(results, image, outcome, where):
        item = f"{where} region {res.get('id')}"
        if label is not None and (reason := labels.check(label)):
            outcome.skip(item, reason)
            continue
        meta = {**ls_meta, "region_id": res.get("id"), "type": str(res.get("type")).lower()}
        hit = MASK_REGION.match(str(res.get("id") or ""))
        target = find_mask(session, mask_id=int(hit.group(1))) if hit else None
        if target is not None and target.image_id == image.id:
            from_prediction = True
            row = _review(session, _current(session, target), mask, label, meta, author, outcome)
            if row is None:
                outcome.skip(item, f"mask {target.id} is {target.status}; region ignored")
                continue
            kept.add(row.id)
            touched.append(row)
            continue
        same = next(
            (
                m
                for m in earlier.values()
                if (m.meta or {}).get("label_studio", {}).get("region_id") == res.get("id")
                and m.label == label
                and np.array_equal(decode_rle(m.rle), mask)
            ),
            None,
        )
        if same is not None:
            kept.add(same.id)
            continue
        new = add_mask(
            session,
            image=image,
            mask=mask,
            label=label,
            meta={"label_studio": meta},
            author_id=user_id,
        )
        if isinstance(new, str):
            outcome.skip(item, new)
            continue
        touched.append(new)
    for old in earlier.values():  # rows of the older version that this one dropped
        if old.id not in kept:
            old.status = "rejected" if old.source == "model" else "superseded"
            old.version += 1
    if from_prediction:  # confident proposals the annotator deleted from our prediction
        for p in confident_proposals(session, image_id=image.id):
            if p.id not in kept:
                dbm.reject(session, mask_id=p.id, version=None, user_id=author)
    session.flush()
    outcome.masks += len(touched)
    add_import_event(
        session,
        uuid=event_uuid,
        user_id=author,
        image_id=image.id,
        session_id=f"label-studio:{task_id}:{ann_id}"[:64],
        kind=event_kinds.IMPORT_LEAD_TIME,
        payload={
            "seconds": lead_time,
            "task_id": task_id,
            "annotation_id": ann_id,
            "completed_by": annotation.get("completed_by"),
            "updated_at": annotation.get("updated_at") or annotation.get("created_at"),
            "version": version,
            "mask_ids": [m.id for m in touched],
        },
    )
    outcome.events += 1
    return touched


def _review(
    session: Session,
    target: Mask,
    mask: np.ndarray,
    label: str | None,
    meta: dict[str, Any],
    author: int,
    outcome: FileOutcome,
) -> Mask | None:
    """A region that is mask ``target``: accept (same pixels), fix (other pixels), or keep."""
    if target.status not in ("proposed", "accepted"):
        return None
    unchanged = np.array_equal(decode_rle(target.rle), mask)
    try:
        if unchanged and target.status == "proposed":
            row = dbm.accept(session, mask_id=target.id, version=None, user_id=author, label=label)
            outcome.accepted += 1
        elif unchanged:
            if label is not None and label != target.label:
                dbm.relabel(session, mask_id=target.id, version=None, label=label, user_id=author)
            row = target
        else:
            rle = encode_rle(mask)
            row = dbm.fix(
                session,
                mask_id=target.id,
                version=None,
                shape={"rle": rle, "bbox": mask_bbox(mask), "area": int(mask.sum())},
                user_id=author,
                label=label if label is not None else target.label,
            )
            outcome.fixed += 1
    except (Conflict, InvalidInput) as err:
        outcome.skip(f"mask {target.id}", str(err))
        return None
    row.meta = {**(row.meta or {}), "label_studio": meta}
    return row
