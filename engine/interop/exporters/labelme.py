"""labelme export: one labelme JSON (format 5) per image, every mask pixel-exact.

Layout::

    OUT/labelme/<stem>.json       one per exported image (even with no masks)
    OUT/labelme/<file_name>       the image, with ``copy_images`` (labelme opens the folder)
    OUT/manifest.json             counts and sha256 of every file

Each mask becomes, as labelme itself would draw it back (``labelme.utils.shape_to_mask``):

- ``polygon`` shapes, one per connected part, when the mask has no holes and labelme's
  rasterisation of those outlines (PIL, outline and fill) gives back exactly its pixels;
  a mask in several parts gets one ``group_id`` (labelme's "one instance");
- otherwise (holes, one-pixel-wide parts) a ``mask`` shape (labelme >= 5.2): its bbox
  corners as ``points`` and the bbox crop as a base64 1-bit PNG in ``mask``.

``imagePath`` is the image's file name when it is copied, else the original file's
absolute path (labelme resolves it from the JSON's folder). ``imageData`` is null.
Masks without a label get ``label`` "unlabeled". Each shape's ``description`` names
its mask (``dataengine mask <id>``) and, for proposals (``include="all"``), the score:
labelme has no score field.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy.orm import Session

from db.models import Mask, Project
from engine.interop.exporters.atomic import file_sha256, write_json
from engine.interop.exporters.images import ProgressFn, copier_for, write_manifest
from engine.interop.exporters.selection import pages, score, survey
from engine.masks import decode_rle
from engine.uris import uri_to_path

FOLDER = "labelme"
UNLABELED = "unlabeled"
LABELME_VERSION = "5.5.0"


def _draw_polygons(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    canvas = PILImage.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([(float(x), float(y)) for x, y in poly], outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def exact_polygons(mask: np.ndarray) -> list[np.ndarray] | None:
    """Outlines (each (N, 2) int pixel x, y) labelme redraws as exactly ``mask``, or None.

    None when the mask has holes or a part whose outline labelme would draw differently.
    """
    import cv2

    contours, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours or hierarchy is None:
        return None
    if (hierarchy[0][:, 3] >= 0).any():  # a contour with a parent is a hole
        return None
    polygons = [c.reshape(-1, 2) for c in contours]
    if any(len(p) < 3 for p in polygons):
        return None
    if not np.array_equal(_draw_polygons(polygons, *mask.shape), mask):
        return None
    return polygons


def mask_shape(mask: np.ndarray) -> tuple[list[list[float]], str]:
    """``mask`` as labelme's mask shape: (bbox corners [[x1, y1], [x2, y2]] inclusive, base64 PNG)."""
    ys, xs = np.nonzero(mask)
    y1, y2, x1, x2 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    buf = io.BytesIO()
    PILImage.fromarray(mask[y1 : y2 + 1, x1 : x2 + 1]).save(buf, format="PNG")
    return [[float(x1), float(y1)], [float(x2), float(y2)]], base64.b64encode(
        buf.getvalue()
    ).decode("ascii")


def shapes_for(m: Mask) -> list[dict[str, Any]]:
    """One mask -> its labelme shapes (see the module doc)."""
    mask = decode_rle(m.rle)
    s = score(m)
    common: dict[str, Any] = {
        "label": m.label if m.label is not None else UNLABELED,
        "description": f"dataengine mask {m.id}" + (f", score {s:.4f}" if s is not None else ""),
        "flags": {},
    }
    polygons = exact_polygons(mask)
    if polygons is not None:
        group = m.id if len(polygons) > 1 else None
        return [
            {**common, "group_id": group, "shape_type": "polygon", "mask": None,
             "points": [[float(x), float(y)] for x, y in poly]}
            for poly in polygons
        ]  # fmt: skip
    points, png = mask_shape(mask)
    return [{**common, "group_id": None, "shape_type": "mask", "points": points, "mask": png}]


def export_labelme(
    session: Session,
    *,
    project: Project,
    out: Path,
    stage: str | None,
    options: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``out/labelme/<stem>.json`` per image and ``out/manifest.json``; returns counts."""
    plan = survey(session, project=project, stage=stage, options=options)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    copier = copier_for(out, options, FOLDER)
    files: dict[str, str] = {}
    used: set[str] = set()
    n_images = n_masks = n_polygons = n_mask_shapes = 0
    for page in pages(session, project=project, stage=stage, options=options):
        for im in page.images:
            file_name = plan.file_name(im)
            stem = PurePosixPath(file_name).stem
            name = f"{stem}.json" if f"{stem}.json" not in used else f"{im.id}_{stem}.json"
            used.add(name)
            copied = copier.copy(im, file_name) if copier is not None else False
            shapes = []
            for m in page.masks[im.id]:
                got = shapes_for(m)
                n_masks += 1
                n_polygons += sum(sh["shape_type"] == "polygon" for sh in got)
                n_mask_shapes += sum(sh["shape_type"] == "mask" for sh in got)
                shapes += got
            doc = {
                "version": LABELME_VERSION,
                "flags": {},
                "shapes": shapes,
                "imagePath": file_name if copied else str(Path(uri_to_path(im.uri)).resolve()),
                "imageData": None,
                "imageHeight": im.height,
                "imageWidth": im.width,
            }
            write_json(folder / name, doc)
            files[f"{FOLDER}/{name}"] = file_sha256(folder / name)
            n_images += 1
            if progress is not None:
                progress(n_images, plan.images)
    counts: dict[str, Any] = {
        "images": n_images,
        "annotations": n_masks,
        "polygon_shapes": n_polygons,
        "mask_shapes": n_mask_shapes,
    }
    return write_manifest(
        out,
        fmt="labelme",
        project_name=project.name,
        stage=stage,
        options=options,
        counts=counts,
        files=files,
        copier=copier,
        subdir=FOLDER,
    )
