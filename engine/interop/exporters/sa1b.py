"""SA-1B export, readable by Datumaro's ``segment_anything`` importer.

Layout::

    OUT/sa1b/sa_<image id>.json     one per exported image (even with no masks)
    OUT/sa1b/<file_name>            the image, with ``copy_images`` (as SA-1B ships them)
    OUT/manifest.json               counts and sha256 of every file; outside ``sa1b/``,
                                    whose every ``*.json`` readers parse as an image

Each ``sa_<id>.json``::

    {"image": {"image_id", "width", "height", "file_name"},
     "annotations": [{"id", "segmentation" (COCO RLE, counts str), "bbox" (XYWH),
                      "area", "predicted_iou", "stability_score",
                      "crop_box" (XYWH), "point_coords" ([[x, y]] pixels)}]}

As in SA-1B the masks are class-agnostic. ``predicted_iou``/``stability_score`` are
floats when the mask has them and are **omitted** otherwise (human masks; the format
has no null). Masks without a crop box get the whole image and ``point_coords`` [].
Read it with ``datumaro.Dataset.import_from("OUT/sa1b", "segment_anything")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Mask, Project
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.interop.exporters.images import ProgressFn, copier_for, write_manifest
from engine.interop.exporters.selection import pages, survey

FOLDER = "sa1b"


def _annotation(m: Mask, width: int, height: int) -> dict[str, Any]:
    ann: dict[str, Any] = {
        "id": m.id,
        "segmentation": {"size": list(m.rle["size"]), "counts": m.rle["counts"]},
        "bbox": [float(v) for v in m.bbox],
        "area": int(m.area),
        "crop_box": [float(v) for v in m.crop_box]
        if m.crop_box
        else [0.0, 0.0, float(width), float(height)],
        "point_coords": [[float(x), float(y)] for x, y in (m.point_coords or [])],
    }
    if m.predicted_iou is not None:
        ann["predicted_iou"] = float(m.predicted_iou)
    if m.stability is not None:
        ann["stability_score"] = float(m.stability)
    return ann


def export_sa1b(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``out/sa1b/sa_<id>.json`` per image and ``out/manifest.json``; returns counts."""
    plan = survey(session, project=project, stage=stage, options=options)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    copier = copier_for(out, options, FOLDER)
    files: dict[str, str] = {}
    n_images = n_masks = 0
    for page in pages(session, project=project, stage=stage, options=options):
        for im in page.images:
            file_name = plan.file_name(im)
            doc = {
                "image": {
                    "image_id": im.id,
                    "width": im.width,
                    "height": im.height,
                    "file_name": file_name,
                },
                "annotations": [_annotation(m, im.width, im.height) for m in page.masks[im.id]],
            }
            n_masks += len(doc["annotations"])
            name = f"sa_{im.id}.json"
            write_json(folder / name, doc)
            files[f"{FOLDER}/{name}"] = file_sha256(folder / name)
            if copier is not None:
                copier.copy(im, file_name)
            n_images += 1
            if progress is not None:
                progress(n_images, plan.images)
    counts: dict[str, Any] = {"images": n_images, "annotations": n_masks}
    return write_manifest(
        out,
        fmt="sa1b",
        project_name=project.name,
        stage=stage,
        options=options,
        counts=counts,
        files=files,
        copier=copier,
        subdir=FOLDER,
    )
