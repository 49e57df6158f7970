"""COCO instances export: ``annotations.json`` with compressed RLE masks, plus ``manifest.json``.

- ``images``: ``{id, file_name, width, height}`` (+ ``license``, ``coco_url``,
  ``flickr_url`` when the image was imported with them). ``id`` is the image's id in
  the COCO file it was imported from (``image.meta["coco"]["id"]``) when that id is
  unique in the export; the other images are numbered from above the largest kept id
  (with no source ids at all: our image id, as before). ``file_name`` is the uri's basename
  (``<id>_<name>`` when two share a name).
- ``categories``: the project taxonomy in order, then any other label a mask
  carries, then ``unlabeled`` for masks without a label. A name that came from an
  imported COCO file keeps that file's ``id`` and ``supercategory``; the others are
  numbered from 1 (or from above the largest kept id), as before.
- ``licenses``: the licence tables of imported COCO files (``project.settings``).
- ``annotations``: ``{id (= mask id), image_id, category_id, segmentation
  (COCO RLE, counts as str), area, bbox (XYWH), iscrowd}``; with
  ``include="all"`` proposals come too, each with ``score``, ``predicted_iou``,
  ``stability_score``, ``status`` and ``source``.
- ``copy_images``: the images are copied to ``data/<file_name>`` (FiftyOne's
  ``COCODetectionDataset`` layout with ``labels_path="annotations.json"``).
Written a keyset page at a time (O(page) memory). Loads with
``pycocotools.coco.COCO``; ``annToMask`` gives exactly the stored pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from db.models import Image, Mask, Project
from engine.interop.exporters.atomic import file_sha256
from engine.interop.exporters.images import ProgressFn, copier_for, write_manifest
from engine.interop.exporters.selection import Survey, pages, score, source_coco_id, survey

UNLABELED = "unlabeled"
IMAGES_DIR = "data"


def categories_for(project: Project, labels_used: list[str | None]) -> list[dict[str, Any]]:
    """The export's categories (see the module doc), in taxonomy order."""
    names = list(dict.fromkeys(project.labels or []))
    names += [lbl for lbl in dict.fromkeys(labels_used) if lbl is not None and lbl not in names]
    if None in labels_used and UNLABELED not in names:
        names.append(UNLABELED)
    source = {
        c["name"]: c
        for c in (project.settings or {}).get("coco_categories", [])
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    }
    kept = {n: source[n] for n in names if n in source}
    next_id = max((int(c["id"]) for c in kept.values()), default=0) + 1
    out = []
    for n in names:
        if n in kept:
            out.append(
                {"id": int(kept[n]["id"]), "name": n, "supercategory": kept[n]["supercategory"]}
            )
        else:
            out.append({"id": next_id, "name": n, "supercategory": ""})
            next_id += 1
    return out


class ImageIds:
    """Our image -> the COCO image id it is exported under (see the module doc)."""

    def __init__(self, plan: Survey) -> None:
        self.kept = {cid for cid, n in plan.coco_ids.items() if n == 1}
        self.next_free = max(self.kept, default=0) + 1

    def __call__(self, image: Image) -> int:
        cid = source_coco_id(image)
        if cid is not None and cid in self.kept:
            return cid
        if not self.kept:
            return image.id
        out = self.next_free
        self.next_free += 1
        return out


def _image_entry(im: Image, coco_id: int, file_name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": coco_id,
        "file_name": file_name,
        "width": im.width,
        "height": im.height,
    }
    meta = im.meta or {}
    for key in ("license", "coco_url", "flickr_url"):
        if key in meta:
            entry[key] = meta[key]
    return entry


def _annotation(m: Mask, image_id: int, category_id: int, include_all: bool) -> dict[str, Any]:
    ann: dict[str, Any] = {
        "id": m.id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": list(m.rle["size"]), "counts": m.rle["counts"]},
        "area": int(m.area),
        "bbox": [float(v) for v in m.bbox],
        "iscrowd": int((m.meta or {}).get("iscrowd", 0)),
    }
    if include_all:
        s = score(m)
        ann.update(
            score=s if s is not None else 1.0,
            predicted_iou=m.predicted_iou,
            stability_score=m.stability,
            status=m.status,
            source=m.source,
        )
    return ann


def _items(f: IO[str], key: str, first: bool) -> None:
    f.write(("" if first else "],\n") + f'  "{key}": [')


def _item(f: IO[str], item: Any, first: bool) -> None:
    f.write(
        ("\n" if first else ",\n") + "    " + json.dumps(item, sort_keys=True, ensure_ascii=False)
    )


def export_coco(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``out/annotations.json`` and ``out/manifest.json``; returns counts."""
    include_all = options.get("include", "final") == "all"
    plan = survey(session, project=project, stage=stage, options=options)
    cats = categories_for(project, plan.labels)
    cat_id = {c["name"]: c["id"] for c in cats}
    image_ids = ImageIds(plan)
    copier = copier_for(out, options, IMAGES_DIR)
    n_images = n_with_masks = n_anns = 0
    images_part = out / ".images.part"
    # keys in sorted order, one item a line: annotations, categories, images, info, licenses
    with (
        open(out / "annotations.json", "w", encoding="utf-8") as f,
        open(images_part, "w", encoding="utf-8") as fi,
    ):
        f.write("{\n")
        _items(f, "annotations", True)
        for page in pages(session, project=project, stage=stage, options=options):
            for im in page.images:
                coco_id = image_ids(im)
                file_name = plan.file_name(im)
                _item(fi, _image_entry(im, coco_id, file_name), n_images == 0)
                masks = page.masks[im.id]
                n_with_masks += bool(masks)
                for m in masks:
                    cid = cat_id[m.label if m.label is not None else UNLABELED]
                    _item(f, _annotation(m, coco_id, cid, include_all), n_anns == 0)
                    n_anns += 1
                if copier is not None:
                    copier.copy(im, file_name)
                n_images += 1
                if progress is not None:
                    progress(n_images, plan.images)
        _items(f, "categories", False)
        for i, c in enumerate(cats):
            _item(f, c, i == 0)
        _items(f, "images", False)
        fi.close()
        with open(images_part, encoding="utf-8") as src:
            shutil.copyfileobj(src, f)
        info = {
            "description": f"Data Engine export of project {project.name}",
            "version": "1.0",
            "include": options.get("include", "final"),
        }
        licenses = (project.settings or {}).get("licenses", [])
        f.write("],\n")
        f.write(f'  "info": {json.dumps(info, sort_keys=True, ensure_ascii=False)},\n')
        f.write(f'  "licenses": {json.dumps(licenses, sort_keys=True, ensure_ascii=False)}\n')
        f.write("}\n")
    images_part.unlink()
    counts: dict[str, Any] = {
        "images": n_images,
        "images_with_masks": n_with_masks,
        "annotations": n_anns,
        "categories": len(cats),
    }
    files = {"annotations.json": file_sha256(out / "annotations.json")}
    return write_manifest(
        out,
        fmt="coco",
        project_name=project.name,
        stage=stage,
        options=options,
        counts=counts,
        files=files,
        copier=copier,
        subdir=IMAGES_DIR,
    )
