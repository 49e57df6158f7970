"""Which images and masks a mask export (COCO, SA-1B, Label Studio) contains.

- images: the project's ``ok`` images, in id order; with ``stage`` only those
  whose latest non-superseded curation decision in that stage is keep/pass.
- masks: ``include="final"`` -> status ``accepted``; ``include="all"`` -> also
  ``proposed`` (model proposals, exported with their scores).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import CurationDecision, Image, Mask, ModelVersion, Project

INCLUDE = {"final": ("accepted",), "all": ("accepted", "proposed")}


def statuses(options: dict[str, Any]) -> tuple[str, ...]:
    include = options.get("include", "final")
    if include not in INCLUDE:
        raise ValueError(f"include must be one of {', '.join(INCLUDE)}, got {include!r}")
    return INCLUDE[include]


def export_images(session: Session, *, project: Project, stage: str | None) -> list[Image]:
    images = list(
        session.scalars(
            select(Image)
            .where(Image.project_id == project.id, Image.status == "ok")
            .order_by(Image.id)
        )
    )
    if stage is None:
        return images
    latest: dict[int, str] = {}
    rows = session.execute(
        select(CurationDecision.image_id, CurationDecision.decision)
        .join(Image, Image.id == CurationDecision.image_id)
        .where(
            Image.project_id == project.id,
            CurationDecision.stage == stage,
            CurationDecision.superseded.is_(False),
        )
        .order_by(CurationDecision.id)
    )
    for image_id, decision in rows:
        latest[image_id] = decision
    return [im for im in images if latest.get(im.id) in ("keep", "pass")]


def export_masks(
    session: Session, *, images: list[Image], options: dict[str, Any]
) -> dict[int, list[Mask]]:
    """image id -> its exported masks (id order)."""
    wanted = statuses(options)
    out: dict[int, list[Mask]] = defaultdict(list)
    ids = [im.id for im in images]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for m in session.scalars(
            select(Mask).where(Mask.image_id.in_(chunk), Mask.status.in_(wanted)).order_by(Mask.id)
        ):
            out[m.image_id].append(m)
    return out


def file_names(images: list[Image]) -> dict[int, str]:
    """image id -> the file name exports use: the uri's basename, ``<id>_<name>`` when it repeats."""
    names = {im.id: PurePosixPath(im.uri.replace("\\", "/")).name for im in images}
    counts: dict[str, int] = defaultdict(int)
    for n in names.values():
        counts[n] += 1
    return {i: (n if counts[n] == 1 else f"{i}_{n}") for i, n in names.items()}


def model_names(session: Session) -> dict[int, str]:
    return {mv.id: mv.name for mv in session.scalars(select(ModelVersion))}


def score(mask: Mask) -> float | None:
    """The mask's confidence: calibrated if known, else predicted IoU; None for human masks."""
    if mask.calibrated_confidence is not None:
        return float(mask.calibrated_confidence)
    if mask.predicted_iou is not None:
        return float(mask.predicted_iou)
    return None
