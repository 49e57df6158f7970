"""Import labelme JSON (v4/v5) shapes as human masks, rasterised exactly as labelme does.

- ``polygon``, ``rectangle``, ``circle`` and ``mask`` shapes become masks, drawn
  with PIL like ``labelme.utils.shape_to_mask`` (outline and fill both set).
- Shapes that share a ``(label, group_id)`` with a non-null ``group_id`` are
  one instance (their union), as labelme2coco does.
- ``__ignore__`` shapes are never masks: their union is stored as the image's
  ignore region ``image.meta["ignore_rle"]`` (COCO RLE) for evaluation, and
  reported as ignored. ``_background_`` shapes are skipped too.
- ``line``, ``linestrip``, ``point`` have no area and are skipped with a reason.
The image is ``imagePath`` relative to the JSON file (ingested on the fly and
deduplicated by sha256), or an ingested image with that file name; when neither
exists and the file embeds the image (``imageData``, base64, as labelme saves it),
the bytes are checked with ``engine.imageio.open_image`` (format allowlist, pixel
limit) and stored in the managed image store (``options["image_store"]``, default
``<DATAENGINE_DATA_DIR>/images``, as ``<sha[:2]>/<sha256><ext>``) before ingest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy.orm import Session

from db.models import Project
from engine.imageio import ImageRejected, format_suffix, open_image
from engine.interop.importers.common import (
    FileOutcome,
    FileRejected,
    ImageResolver,
    LabelPolicy,
    add_mask,
)
from engine.mask_payload import DEFAULT_MAX_BYTES, check_coco_rle, check_png, check_points
from engine.masks import decode_rle, encode_rle

IGNORE = "__ignore__"
BACKGROUND = "_background_"
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
MAX_EMBEDDED_BYTES = 256 << 20  # decoded imageData larger than this is refused


def _image_store(options: dict[str, Any]) -> Path:
    store = options.get("image_store")
    if store:
        return Path(store)
    from engine.settings import Settings

    return Settings().image_store


def store_embedded_image(data: Any, store: Path) -> Path:
    """Check labelme's base64 ``imageData`` and write it to ``store``; returns the file.

    Raises FileRejected naming the problem (not base64, not an allowed image, too large).
    """
    if not isinstance(data, str) or not data.strip():
        raise FileRejected("'imageData' is not a base64 string")
    if len(data) > MAX_EMBEDDED_BYTES * 4 // 3 + 4:
        raise FileRejected(f"embedded imageData is larger than {MAX_EMBEDDED_BYTES} bytes")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise FileRejected(f"'imageData' is not valid base64: {err}") from err
    try:
        with open_image(io.BytesIO(raw)) as img:  # checked: allowlist, header size, bombs
            fmt = img.format
    except ImageRejected as err:
        raise FileRejected(f"embedded imageData is not a usable image: {err}") from err
    sha = hashlib.sha256(raw).hexdigest()
    dest = store / sha[:2] / f"{sha}{format_suffix(fmt)}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        tmp.write_bytes(raw)
        tmp.replace(dest)
    return dest.resolve()


def _points(shape: dict[str, Any]) -> list[tuple[float, float]]:
    pts = shape.get("points")
    if not isinstance(pts, list) or not pts:
        raise ValueError("no points")
    out = []
    for p in pts:
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise ValueError("each point must be [x, y]")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("a point has NaN or infinite coordinates")
        out.append((x, y))
    return out


def shape_to_mask(shape: dict[str, Any], height: int, width: int) -> np.ndarray:
    """One labelme shape -> HW bool mask (pixels). Raises ValueError for a malformed shape."""
    kind = shape.get("shape_type") or "polygon"
    xy = check_points(_points(shape), height=height, width=width)
    if kind == "mask":
        if len(xy) != 2 or not isinstance(shape.get("mask"), str):
            raise ValueError("a mask shape needs 2 points and a base64 PNG 'mask'")
        (x1, y1), (x2, y2) = [(int(x), int(y)) for x, y in xy]
        if x2 < x1 or y2 < y1:
            raise ValueError("a mask shape's points must be its box's top-left and bottom-right")
        if len(shape["mask"]) > DEFAULT_MAX_BYTES * 4 // 3 + 4:
            raise ValueError(f"mask PNG is larger than {DEFAULT_MAX_BYTES} bytes")
        try:
            data = base64.b64decode(shape["mask"], validate=True)
            check_png(data, height=y2 - y1 + 1, width=x2 - x1 + 1)  # header, before decoding
            with open_image(io.BytesIO(data), formats=("PNG",)) as png:  # checked: no bombs
                patch = np.asarray(png).astype(bool)
        except (ValueError, OSError) as err:  # ImageRejected is a ValueError
            raise ValueError(f"mask is not a base64 PNG of its box: {err}") from err
        if patch.ndim == 3:
            patch = patch.any(axis=2)
        if (y2 - y1 + 1, x2 - x1 + 1) != patch.shape:
            raise ValueError(
                f"mask PNG is {patch.shape[::-1]} but its box is {x2 - x1 + 1}x{y2 - y1 + 1}"
            )
        out = np.zeros((height, width), dtype=bool)
        ys, xs = slice(max(y1, 0), min(y2 + 1, height)), slice(max(x1, 0), min(x2 + 1, width))
        out[ys, xs] = patch[ys.start - y1 : ys.stop - y1, xs.start - x1 : xs.stop - x1]
        return out
    canvas = PILImage.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        if len(xy) != 2:
            raise ValueError("a circle needs 2 points (centre, a point on the rim)")
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == "rectangle":
        if len(xy) != 2:
            raise ValueError("a rectangle needs 2 points")
        (x0, y0), (x1, y1) = xy
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    elif kind == "polygon":
        if len(xy) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(xy)}")
        draw.polygon(xy, outline=1, fill=1)
    else:
        raise ValueError(f"shape type {kind!r} has no area")
    return np.asarray(canvas, dtype=bool)


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
    """Add one mask per labelme instance; see the module docstring."""
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise FileRejected("not a labelme file: needs an object with a 'shapes' list")
    image_path = doc.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise FileRejected("not a labelme file: 'imagePath' is missing")
    image, reason = resolver.find(
        image_path,
        outcome,
        base_dir=path.parent,
        width=doc.get("imageWidth"),
        height=doc.get("imageHeight"),
    )
    if image is None and doc.get("imageData"):
        stored = store_embedded_image(doc["imageData"], _image_store(options))
        image, reason = resolver.find(
            str(stored), outcome, width=doc.get("imageWidth"), height=doc.get("imageHeight")
        )
    if image is None:
        raise FileRejected(reason or f"image {image_path} not found")
    outcome.images += 1
    h, w = image.height, image.width
    instances: dict[tuple[str, Any], np.ndarray] = {}
    first_index: dict[tuple[str, Any], int] = {}
    ignore = np.zeros((h, w), dtype=bool)
    for i, shape in enumerate(doc["shapes"]):
        item = f"shape {i}"
        if not isinstance(shape, dict):
            outcome.skip(item, "malformed shape (not an object)")
            continue
        label = str(shape.get("label", "")).strip()
        item = f"shape {i} ({label or 'no label'}, {shape.get('shape_type') or 'polygon'})"
        kind = shape.get("shape_type") or "polygon"
        if kind not in AREA_SHAPES:
            outcome.skip(item, f"shape type {kind!r} has no area (not an object mask)")
            continue
        if label == BACKGROUND:
            outcome.skip(item, "_background_ is not an object")
            continue
        try:
            mask = shape_to_mask(shape, h, w)
        except ValueError as err:
            outcome.skip(item, f"malformed region: {err}")
            continue
        if label == IGNORE:
            ignore |= mask
            outcome.skip(
                item, "__ignore__ region: stored as the image's ignore mask, not an object"
            )
            continue
        reason = labels.check(label)
        if reason:
            outcome.skip(item, reason)
            continue
        group = shape.get("group_id")
        key = (label, group if group is not None else f"shape-{i}")
        if key in instances:
            instances[key] |= mask
        else:
            instances[key], first_index[key] = mask, i
    if ignore.any():
        meta = dict(image.meta or {})
        if "ignore_rle" in meta:
            ignore |= decode_rle(check_coco_rle(meta["ignore_rle"], height=h, width=w))
        meta["ignore_rle"] = encode_rle(ignore)
        image.meta = meta
    for key, mask in instances.items():
        label, group = key
        meta = {
            "import": {
                "format": "labelme",
                "file": path.name,
                "shape": first_index[key],
                "group_id": None if str(group).startswith("shape-") else group,
            }
        }
        row = add_mask(
            session,
            image=image,
            mask=mask,
            label=label,
            meta=meta,
            author_id=options.get("user_id"),
        )
        if isinstance(row, str):
            outcome.skip(f"instance {label}/{group}", row)
            continue
        outcome.masks += 1
    session.flush()
