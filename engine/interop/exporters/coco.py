"""COCO instances export: ``annotations.json`` with compressed RLE masks, plus ``manifest.json``.

- ``images``: ``{id, file_name, width, height}``; ``id`` is our image id and
  ``file_name`` the uri's basename (``<id>_<name>`` when two share a name).
- ``categories``: the project taxonomy in order (ids from 1), then any other
  label a mask carries, then ``unlabeled`` for masks without a label.
- ``annotations``: ``{id (= mask id), image_id, category_id, segmentation
  (COCO RLE, counts as str), area, bbox (XYWH), iscrowd}``; with
  ``include="all"`` proposals come too, each with ``score``, ``predicted_iou``,
  ``stability_score``, ``status`` and ``source``.
Loads with ``pycocotools.coco.COCO``; ``annToMask`` gives exactly the stored pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Project
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.interop.exporters.selection import export_images, export_masks, file_names, score

UNLABELED = "unlabeled"


def categories_for(project: Project, labels_used: list[str | None]) -> list[dict[str, Any]]:
    names = list(dict.fromkeys(project.labels or []))
    names += [lbl for lbl in dict.fromkeys(labels_used) if lbl is not None and lbl not in names]
    if None in labels_used and UNLABELED not in names:
        names.append(UNLABELED)
    return [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(names, start=1)]


def export_coco(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write ``out/annotations.json`` and ``out/manifest.json``; returns counts."""
    include_all = options.get("include", "final") == "all"
    images = export_images(session, project=project, stage=stage)
    masks = export_masks(session, images=images, options=options)
    names = file_names(images)
    cats = categories_for(project, [m.label for ms in masks.values() for m in ms])
    cat_id = {c["name"]: c["id"] for c in cats}
    annotations = []
    for im in images:
        for m in masks.get(im.id, []):
            ann: dict[str, Any] = {
                "id": m.id,
                "image_id": im.id,
                "category_id": cat_id[m.label if m.label is not None else UNLABELED],
                "segmentation": {"size": list(m.rle["size"]), "counts": m.rle["counts"]},
                "area": int(m.area),
                "bbox": [float(v) for v in m.bbox],
                "iscrowd": int((m.meta or {}).get("iscrowd", 0)),
            }
            if include_all:
                ann.update(
                    score=score(m) if score(m) is not None else 1.0,
                    predicted_iou=m.predicted_iou,
                    stability_score=m.stability,
                    status=m.status,
                    source=m.source,
                )
            annotations.append(ann)
    doc = {
        "info": {
            "description": f"Data Engine export of project {project.name}",
            "version": "1.0",
            "include": options.get("include", "final"),
        },
        "licenses": [],
        "images": [
            {"id": im.id, "file_name": names[im.id], "width": im.width, "height": im.height}
            for im in images
        ],
        "annotations": annotations,
        "categories": cats,
    }
    write_json(out / "annotations.json", doc)
    counts = {
        "images": len(images),
        "images_with_masks": sum(1 for im in images if masks.get(im.id)),
        "annotations": len(annotations),
        "categories": len(cats),
    }
    write_json(
        out / "manifest.json",
        {
            "format": "coco",
            "project": project.name,
            "stage": stage,
            "options": dict(options),
            "counts": counts,
            "files": {"annotations.json": file_sha256(out / "annotations.json")},
        },
    )
    return counts
