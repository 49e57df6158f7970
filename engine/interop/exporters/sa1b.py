"""SA-1B export: one ``sa_<image id>.json`` per image, plus ``manifest.json``.

Each file::

    {"image": {"image_id", "width", "height", "file_name"},
     "annotations": [{"id", "segmentation" (COCO RLE, counts str), "bbox" (XYWH),
                      "area", "predicted_iou", "stability_score",
                      "crop_box" (XYWH), "point_coords" ([[x, y]] pixels)}]}

As in SA-1B the masks are class-agnostic. Masks without model scores (human
masks) carry ``predicted_iou``/``stability_score`` null, ``crop_box`` the
whole image and ``point_coords`` []. Every exported image gets a file, even
with no masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Mask, Project
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.interop.exporters.selection import export_images, export_masks, file_names


def _annotation(m: Mask, width: int, height: int) -> dict[str, Any]:
    return {
        "id": m.id,
        "segmentation": {"size": list(m.rle["size"]), "counts": m.rle["counts"]},
        "bbox": [float(v) for v in m.bbox],
        "area": int(m.area),
        "predicted_iou": m.predicted_iou,
        "stability_score": m.stability,
        "crop_box": [float(v) for v in m.crop_box]
        if m.crop_box
        else [0.0, 0.0, float(width), float(height)],
        "point_coords": [[float(x), float(y)] for x, y in (m.point_coords or [])],
    }


def export_sa1b(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write one JSON per image and ``manifest.json`` into ``out``; returns counts."""
    images = export_images(session, project=project, stage=stage)
    masks = export_masks(session, images=images, options=options)
    names = file_names(images)
    files: dict[str, str] = {}
    n_masks = 0
    for im in images:
        doc = {
            "image": {
                "image_id": im.id,
                "width": im.width,
                "height": im.height,
                "file_name": names[im.id],
            },
            "annotations": [_annotation(m, im.width, im.height) for m in masks.get(im.id, [])],
        }
        n_masks += len(doc["annotations"])
        name = f"sa_{im.id}.json"
        write_json(out / name, doc)
        files[name] = file_sha256(out / name)
    counts = {"images": len(images), "annotations": n_masks}
    write_json(
        out / "manifest.json",
        {
            "format": "sa1b",
            "project": project.name,
            "stage": stage,
            "options": dict(options),
            "counts": counts,
            "files": files,
        },
    )
    return counts
