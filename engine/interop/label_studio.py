"""The Label Studio format: brush RLE, percent geometry, label configs and task images.

Coordinate frames: Label Studio regions use *percent* of the original image
(x, y, width, height in 0..100; rectangle ``rotation`` in degrees clockwise
about its top-left corner); masks here are HW bool in pixels. Brush masks use
Label Studio's own RLE (``label_studio_sdk.converter.brush``) over the RGBA
bitmap, not COCO RLE: a pixel is foreground when its alpha is non-zero (as the
SDK's brush-to-COCO converter reads it).

Task images (documented convention): a task's ``data`` names its image by
``dataengine_sha256`` / ``dataengine_image_id`` (our exports write both), or by
its URL: ``/data/local-files/?d=<path>`` (the image whose uri ends with that
path), ``/data/upload/<project>/<8 hex>-<name>`` (by file name, the upload
prefix removed) or any other URL (by the last path component).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import numpy as np
from sqlalchemy.orm import Session

from db.images import find_ok_image, ok_images_named
from db.models import Image
from engine.mask_payload import check_brush_rle, check_polygons
from engine.masks import polygons_to_mask

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def _brush() -> Any:
    """label_studio_sdk's brush codec, imported on first use (the SDK takes seconds to import)."""
    from label_studio_sdk.converter import brush

    return brush


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """HW bool mask -> Label Studio brush RLE (list of byte values), via the SDK's encoder."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    return [int(v) for v in _brush().mask2rle(mask.astype(np.uint8) * 255)]


def brush_to_mask(rle: Any, height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> HW bool mask (alpha > 0), via the SDK's decoder.

    The header is checked first (``engine.mask_payload.check_brush_rle``: it must declare
    ``height * width * 4`` values), so a small payload never allocates a huge bitmap.
    """
    data = check_brush_rle(rle, height=height, width=width)
    try:
        flat = _brush().decode_rle(data)
    except (ValueError, IndexError) as err:
        raise ValueError(f"brush RLE does not decode: {err}") from err
    if flat.size != height * width * 4:
        raise ValueError(
            f"brush RLE holds {flat.size // 4} pixels but the image is {width}x{height}"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def _pct(value: dict[str, Any], key: str) -> float:
    v = float(value[key])
    if not math.isfinite(v):
        raise ValueError(f"{key} is not a finite number")
    return v


def rectangle_polygon(value: dict[str, Any], height: int, width: int) -> list[float]:
    """A RectangleLabels value (percent, rotation degrees about its top-left) -> pixel polygon."""
    x, y = _pct(value, "x") * width / 100, _pct(value, "y") * height / 100
    w, h = _pct(value, "width") * width / 100, _pct(value, "height") * height / 100
    if w <= 0 or h <= 0:
        raise ValueError("rectangle has no area")
    theta = math.radians(float(value.get("rotation") or 0.0))
    c, s = math.cos(theta), math.sin(theta)
    poly: list[float] = []
    for dx, dy in ((0, 0), (w, 0), (w, h), (0, h)):
        poly += [x + dx * c - dy * s, y + dx * s + dy * c]
    return poly


def rectangle_value(bbox_xywh: list[float], height: int, width: int) -> dict[str, float]:
    """COCO XYWH pixels -> RectangleLabels value in percent (no rotation, labels added by caller)."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    return {
        "x": 100.0 * x / width,
        "y": 100.0 * y / height,
        "width": 100.0 * w / width,
        "height": 100.0 * h / height,
        "rotation": 0.0,
    }


REGION_TYPES = {
    "brushlabels": "brushlabels",
    "polygonlabels": "polygonlabels",
    "rectanglelabels": "rectanglelabels",
}


def region_to_mask(
    result: dict[str, Any], height: int, width: int
) -> tuple[np.ndarray, str | None]:
    """One Label Studio result (brush / polygon / rectangle) -> (HW bool mask, label or None).

    ``height``/``width`` are the image's; the result's ``original_height``/``_width`` must
    agree when given. Raises ValueError naming what is wrong.
    """
    kind = str(result.get("type", "")).lower()
    if kind not in REGION_TYPES:
        raise ValueError(f"region type {kind or 'missing'!r} is not a mask region")
    value = result.get("value")
    if not isinstance(value, dict):
        raise ValueError("region has no 'value' object")
    ow, oh = result.get("original_width"), result.get("original_height")
    if ow is not None and oh is not None and (int(oh), int(ow)) != (height, width):
        raise ValueError(f"region was drawn on a {ow}x{oh} image; ours is {width}x{height}")
    names = value.get(kind) or []
    label = str(names[0]) if isinstance(names, list) and names else None
    if kind == "brushlabels":
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise ValueError("brush region needs value.format 'rle' and value.rle")
        return brush_to_mask(value["rle"], height, width), label
    if kind == "polygonlabels":
        pts = value.get("points")
        if not isinstance(pts, list) or len(pts) < 3:
            raise ValueError("polygon needs at least 3 points")
        poly: list[float] = []
        for p in pts:
            if not isinstance(p, list | tuple) or len(p) != 2:
                raise ValueError("each polygon point must be [x%, y%]")
            px, py = float(p[0]), float(p[1])
            if not (math.isfinite(px) and math.isfinite(py)):
                raise ValueError("polygon point is not finite")
            poly += [px * width / 100, py * height / 100]
        return polygons_to_mask(
            check_polygons([poly], height=height, width=width), height, width
        ), label
    rect = check_polygons([rectangle_polygon(value, height, width)], height=height, width=width)
    return polygons_to_mask(rect, height, width), label


@dataclass
class LabelConfig:
    """The tag names of a labeling config: ``from_name``/``to_name`` for results."""

    image: str = "image"
    image_value: str = "image"  # the task data key ($image -> "image")
    brush: str = "mask"
    rectangle: str | None = None
    labels: list[str] = field(default_factory=list)


def parse_label_config(xml: str | None) -> LabelConfig:
    """Find the Image, BrushLabels and RectangleLabels tags of a Label Studio config."""
    cfg = LabelConfig()
    if not xml:
        return cfg
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return cfg
    for el in root.iter():
        tag = el.tag.lower()
        if tag == "image" and el.get("name"):
            cfg.image = el.get("name", "image")
            cfg.image_value = el.get("value", "$image").lstrip("$")
        elif tag == "brushlabels" and el.get("name"):
            cfg.brush = el.get("name", "mask")
            cfg.labels = [lbl.get("value", "") for lbl in el if lbl.tag.lower() == "label"]
        elif tag == "rectanglelabels" and el.get("name") and not cfg.rectangle:
            cfg.rectangle = el.get("name")
    return cfg


def label_config_xml(labels: list[str], *, boxes: bool, interactive: bool = True) -> str:
    """A labeling config matching our exports: Image "image", BrushLabels "mask"[,
    RectangleLabels "box"]; with ``interactive`` also the prompt tools Label Studio sends to
    the ML backend (``smart`` KeyPointLabels "click" and RectangleLabels "prompt")."""
    opts = "".join(f'\n    <Label value="{_xml_attr(lbl)}"/>' for lbl in labels)
    parts = ['<View>\n  <Image name="image" value="$image" zoom="true"/>']
    parts.append(f'  <BrushLabels name="mask" toName="image">{opts}\n  </BrushLabels>')
    if boxes:
        parts.append(f'  <RectangleLabels name="box" toName="image">{opts}\n  </RectangleLabels>')
    if interactive:
        parts.append(
            f'  <KeyPointLabels name="click" toName="image" smart="true">{opts}\n'
            "  </KeyPointLabels>"
        )
        parts.append(
            f'  <RectangleLabels name="prompt" toName="image" smart="true">{opts}\n'
            "  </RectangleLabels>"
        )
    parts.append("</View>\n")
    return "\n".join(parts)


def _xml_attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def image_url(image: Image) -> str:
    """The task URL we export: Label Studio local-files serving, document root ``/``."""
    return "/data/local-files/?d=" + quote(image.uri.lstrip("/"))


def url_to_path(url: str) -> str:
    """A task image URL -> the path or file name we match against ``image.uri``."""
    parsed = urlparse(url)
    if parsed.path.rstrip("/").endswith("/data/local-files") and "d" in parse_qs(parsed.query):
        return parse_qs(parsed.query)["d"][0]
    name = PurePosixPath(unquote(parsed.path)).name
    if "/data/upload/" in parsed.path:
        name = UPLOAD_PREFIX.sub("", name)
    return name


def task_image_name(data: dict[str, Any], value_key: str | None = None) -> str | None:
    """The path/file name a task's image URL refers to (see ``url_to_path``), or None."""
    url = data.get(value_key or "image")
    if not isinstance(url, str):
        url = next((v for v in data.values() if isinstance(v, str) and v), None)
    if not url:
        return None
    # a local-files d= path is relative to Label Studio's document root; it is matched as a
    # suffix of ingested uris, never looked up on this server's filesystem (no existence probe)
    return url_to_path(url) or None


def find_task_image(
    session: Session,
    data: dict[str, Any],
    *,
    project_id: int | None = None,
    value_key: str | None = None,
) -> tuple[Image | None, str | None]:
    """The ingested image a task refers to (convention in the module docstring), or the reason not."""
    if not isinstance(data, dict):
        return None, "task has no 'data' object"
    sha = data.get("dataengine_sha256")
    if isinstance(sha, str) and sha:
        hit = find_ok_image(session, project_id=project_id, sha256=sha)
        if hit is not None:
            return hit, None
    image_id = data.get("dataengine_image_id")
    if isinstance(image_id, int) and not sha:
        hit = find_ok_image(session, project_id=project_id, image_id=image_id)
        if hit is not None:
            return hit, None
    name = task_image_name(data, value_key)
    if not name:
        return None, "task data names no image"
    base = PurePosixPath(name).name
    rows = ok_images_named(session, project_id=project_id, basename=base)
    rows = [
        r
        for r in rows
        if r.uri == name or r.uri.replace("\\", "/").endswith("/" + name.lstrip("/"))
    ] or [r for r in rows if PurePosixPath(r.uri.replace("\\", "/")).name == base]
    if not rows:
        return None, f"no ingested image matches {name!r} (ingest it first)"
    if len({r.sha256 for r in rows}) > 1:
        return None, f"{len(rows)} different ingested images match {name!r}; use dataengine_sha256"
    return rows[0], None
