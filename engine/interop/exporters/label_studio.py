"""Label Studio export: ``tasks.json`` (import it into Label Studio), ``label_config.xml``, ``manifest.json``.

One task per image::

    {"data": {"image": "/data/local-files/?d=<uri without leading />",
              "dataengine_image_id": int, "dataengine_sha256": str},
     "predictions": [{"model_version": str, "score": float, "result": [region, ...]}]}

Regions are ``brushlabels`` with ``value = {"format": "rle", "rle": <Label
Studio brush RLE from label_studio_sdk>, "brushlabels": [label]}``,
``original_width/height``, ``image_rotation`` 0 and a per-region ``score``
(calibrated confidence, else predicted IoU, else 1.0 for human masks). With
``boxes`` each mask also gets a ``rectanglelabels`` region (percent
coordinates of its bbox). Accepted masks form the prediction
``dataengine:final``; with ``include="all"`` the proposals form one
prediction per model version (``<model name>``). Masks without a label carry
``brushlabels: []``. Serve the images with Label Studio's local files
(``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``, document root ``/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Image, Mask, Project
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.interop.exporters.selection import model_names, pages, score
from engine.interop.label_studio import image_url, label_config_xml, mask_to_brush, rectangle_value
from engine.masks import decode_rle

FINAL = "dataengine:final"


def mask_regions(
    m: Mask,
    image: Image,
    *,
    boxes: bool,
    brush_name: str = "mask",
    box_name: str = "box",
    image_name: str = "image",
    label: str | None = None,
) -> list[dict[str, Any]]:
    """One mask -> its Label Studio result regions (brush, and a rectangle if ``boxes``)."""
    label = label if label is not None else m.label
    labels = [label] if label is not None else []
    s = score(m)
    common = {
        "original_width": image.width,
        "original_height": image.height,
        "image_rotation": 0,
        "to_name": image_name,
        "score": s if s is not None else 1.0,
        "readonly": False,
        "origin": "prediction",
    }
    regions = [
        {
            **common,
            "id": f"m{m.id}",
            "from_name": brush_name,
            "type": "brushlabels",
            "value": {
                "format": "rle",
                "rle": mask_to_brush(decode_rle(m.rle)),
                "brushlabels": labels,
            },
        }
    ]
    if boxes:
        regions.append(
            {
                **common,
                "id": f"m{m.id}b",
                "from_name": box_name,
                "type": "rectanglelabels",
                "value": {
                    **rectangle_value(m.bbox, image.height, image.width),
                    "rectanglelabels": labels,
                },
            }
        )
    return regions


def _prediction(version: str, regions: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["score"] for r in regions if r["type"] == "brushlabels"]
    return {
        "model_version": version,
        "score": sum(scores) / len(scores) if scores else 0.0,
        "result": regions,
    }


def export_label_studio(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write ``tasks.json``, ``label_config.xml`` and ``manifest.json``; returns counts."""
    boxes = bool(options.get("boxes"))
    versions = model_names(session)
    labels = list(dict.fromkeys(project.labels or []))
    n_tasks = n_masks = n_regions = 0
    # one keyset page at a time; compact JSON (brush RLE is long lists of small ints),
    # byte-identical to dumping the whole list at once
    with open(out / "tasks.json", "w", encoding="utf-8") as f:
        f.write("[")
        for page in pages(session, project=project, stage=stage, options=options):
            for im in page.images:
                groups: dict[str, list[dict[str, Any]]] = {}
                for m in page.masks[im.id]:
                    if m.status == "accepted":
                        key = FINAL
                    else:
                        key = versions.get(m.model_version_id or -1, f"dataengine:{m.source}")
                    groups.setdefault(key, []).extend(mask_regions(m, im, boxes=boxes))
                    if m.label is not None and m.label not in labels:
                        labels.append(m.label)
                    n_masks += 1
                n_regions += sum(len(r) for r in groups.values())
                task = {
                    "data": {
                        "image": image_url(im),
                        "dataengine_image_id": im.id,
                        "dataengine_sha256": im.sha256,
                    },
                    "predictions": [_prediction(v, r) for v, r in groups.items()],
                }
                f.write(("," if n_tasks else "") + json.dumps(
                    task, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                ))  # fmt: skip
                n_tasks += 1
        f.write("]\n")
    (out / "label_config.xml").write_text(label_config_xml(labels, boxes=boxes), encoding="utf-8")
    counts = {
        "tasks": n_tasks,
        "masks": n_masks,
        "regions": n_regions,
        "labels": len(labels),
    }
    write_json(
        out / "manifest.json",
        {
            "format": "label-studio",
            "project": project.name,
            "stage": stage,
            "options": dict(options),
            "counts": counts,
            "files": {name: file_sha256(out / name) for name in ("tasks.json", "label_config.xml")},
        },
    )
    return counts
