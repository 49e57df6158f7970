"""One validation of every mask payload a client or a file sends, before anything decodes it.

Every check here runs in memory and time proportional to the *payload* (its bytes, runs or
vertices), never to the size the payload claims, and compares the payload with the image's
``(height, width)`` in full-resolution pixels first. Only a payload that passed is handed to
a decoder (pycocotools, the Label Studio SDK, PIL), so a 60-byte request can no longer make
the server allocate gigabytes or crash pycocotools.

Formats:
- COCO RLE ``{"size": [h, w], "counts": str | list[int]}`` (column-major runs starting with
  background; ``str`` is pycocotools' compressed form): ``size`` must equal the image's,
  every run must be >= 0 and the runs must sum to exactly ``h * w``. Compressed strings are
  parsed here (vectorised, bounded) with pycocotools' own rules (``rleFrString``).
- Label Studio brush RLE (list of byte values, ``label_studio_sdk.converter.brush``): the
  bit-packed header's declared value count must be ``h * w * 4`` (RGBA).
- PNG bytes: the header's width and height must be the expected ones.
- Polygons ``[[x0, y0, x1, y1, ...], ...]`` in pixels: finite, within a margin of the image,
  with a bounded outline length (pycocotools allocates per outline pixel).
- Scores: finite floats.

Every rejection raises ``MaskPayloadError`` (a ``ValueError``) whose message names the problem.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 1024 * 1024
"""Default bound on one mask payload: characters of a compressed RLE string, bytes of a brush
RLE or PNG, and half the number of runs / polygon coordinates (each costs >= 2 JSON bytes)."""

MAX_RUN = 2**32 - 1  # pycocotools stores runs as uint32
POLYGON_MARGIN = 1.0  # points may lie up to one image size outside the image
POLYGON_OUTLINE_FACTOR = 100  # outline length (L-inf pixels) <= factor * (h + w)


class MaskPayloadError(ValueError):
    """A mask payload that is malformed, too large or does not fit the image."""


def _image_size(height: Any, width: Any) -> tuple[int, int]:
    if not isinstance(height, int) or not isinstance(width, int) or height <= 0 or width <= 0:
        raise MaskPayloadError(
            f"the image has no valid size ({width}x{height}); it was probably rejected at "
            "ingest, so it cannot take masks"
        )
    return height, width


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_score(score: Any) -> float | None:
    """A finite float score, or None; NaN/Infinity and non-numbers raise MaskPayloadError."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int | float | np.floating | np.integer):
        raise MaskPayloadError(f"score must be a number, got {type(score).__name__}")
    value = float(score)
    if not math.isfinite(value):
        raise MaskPayloadError(f"score must be a finite number, got {value}")
    return value


# --- COCO RLE ---------------------------------------------------------------------------------


def parse_coco_counts(counts: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """pycocotools' compressed RLE string -> int64 runs (as ``rleFrString`` reads them).

    Each run is a little-endian sequence of 5-bit groups in characters ``'0'..'o'``
    (value + 48; bit 0x20 = more groups follow; bit 0x10 of the last group = negative),
    and run ``i > 2`` is stored as the difference to run ``i - 2``. Runs are returned
    exact (int64), so negative or > uint32 runs are visible to the caller. Memory and time
    O(len(counts)); raises MaskPayloadError for bad characters, a truncated last run, a
    run of more than 7 groups or a string longer than ``max_bytes``.
    """
    if len(counts) > max_bytes:
        raise MaskPayloadError(
            f"RLE counts string is {len(counts)} characters; the limit is {max_bytes} "
            "(DATAENGINE_MASK_PAYLOAD_MAX_BYTES)"
        )
    if not counts:
        return np.zeros(0, dtype=np.int64)
    try:
        raw = counts.encode("ascii")
    except UnicodeEncodeError as err:
        raise MaskPayloadError("RLE counts string has non-ASCII characters") from err
    c = np.frombuffer(raw, dtype=np.uint8)
    if c.min() < 48 or c.max() > 48 + 63:
        raise MaskPayloadError("RLE counts string has characters outside '0'..'o'")
    c = c - np.uint8(48)  # 0..63, one byte per character
    more = (c & 0x20) != 0
    if more[-1]:
        raise MaskPayloadError("RLE counts string ends inside a run (truncated)")
    ends = np.flatnonzero(~more).astype(np.int32 if len(c) < 2**31 else np.int64)
    del more, raw
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    groups = ends - starts + 1
    if int(groups.max()) > 7:
        raise MaskPayloadError("RLE counts string has a run longer than 7 characters")
    x = (c[starts] & 0x1F).astype(np.int64)
    for j in range(1, int(groups.max())):  # the j-th 5-bit group of every run that has one
        has = np.flatnonzero(groups > j).astype(starts.dtype)
        x[has] |= (c[starts[has] + j] & 0x1F).astype(np.int64) << (5 * j)
    negative = np.flatnonzero(c[ends] & 0x10)
    x[negative] -= np.int64(1) << (5 * groups[negative]).astype(np.int64)
    if len(x) > 3:  # run m > 2 is stored relative to run m - 2
        x[3::2] = x[1] + np.cumsum(x[3::2])
        if len(x) > 4:
            x[4::2] = x[2] + np.cumsum(x[4::2])
    return x


def check_coco_rle(
    rle: Any, *, height: int, width: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """A COCO RLE checked against an image of ``height`` x ``width`` pixels, before decoding.

    Returns ``{"size": [h, w], "counts": str | list[int]}`` (counts as given, list items as
    int), safe for ``engine.masks.decode_rle``. Raises MaskPayloadError when the RLE is not
    an object with ``size`` and ``counts``, ``size`` differs from the image's ``[h, w]``,
    a run is negative (or > 2**32 - 1), the runs do not sum to ``h * w``, or it is longer
    than ``max_bytes``.
    """
    height, width = _image_size(height, width)
    if not isinstance(rle, dict):
        raise MaskPayloadError("mask RLE must be an object {size: [h, w], counts}")
    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(map(_is_int, size)):
        raise MaskPayloadError("mask RLE 'size' must be [height, width] as two integers")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise MaskPayloadError(
            f"mask RLE size {[int(v) for v in size]} does not match image "
            f"[height, width] [{height}, {width}]"
        )
    total = height * width
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError as err:
            raise MaskPayloadError("RLE counts bytes are not ASCII") from err
    if isinstance(counts, str):
        runs = parse_coco_counts(counts, max_bytes=max_bytes)
        clean: str | list[int] = counts
    elif isinstance(counts, list | tuple):
        if len(counts) > max_bytes // 2:
            raise MaskPayloadError(
                f"RLE has {len(counts)} runs; the limit is {max_bytes // 2} "
                "(DATAENGINE_MASK_PAYLOAD_MAX_BYTES / 2)"
            )
        if not all(map(_is_int, counts)):
            raise MaskPayloadError("uncompressed RLE counts must be a list of integers")
        if any(abs(int(v)) > MAX_RUN for v in counts):
            raise MaskPayloadError(f"an RLE run is larger than {MAX_RUN}")
        runs = np.asarray([int(v) for v in counts], dtype=np.int64)
        clean = [int(v) for v in counts]
    else:
        raise MaskPayloadError("mask RLE 'counts' must be a string or a list of integers")
    if len(runs) and int(runs.min()) < 0:
        raise MaskPayloadError("mask RLE has a negative run")
    if len(runs) and int(runs.max()) > MAX_RUN:
        raise MaskPayloadError(f"an RLE run is larger than {MAX_RUN}")
    run_sum = int(runs.sum()) if len(runs) else 0
    if run_sum != total:
        raise MaskPayloadError(
            f"mask RLE runs sum to {run_sum} pixels; the image has {height}x{width} = {total}"
        )
    return {"size": [height, width], "counts": clean}


def rle_shape(
    rle: Any, *, height: int, width: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """A client's COCO RLE -> ``{"rle": RLE (str counts), "bbox": XYWH, "area": int}``.

    Checked by ``check_coco_rle`` first. Runs as ``encode_rle`` writes them (no empty run
    but the first) are re-encoded, and area and box read, from the runs alone (about 1 ms
    instead of 180 ms for a 4000 x 2669 image); any other RLE is decoded once (HW bool, full
    resolution) and encoded again. Raises MaskPayloadError naming the problem.
    """
    from pycocotools import mask as mask_utils

    from engine.masks import decode_rle, encode_rle, mask_bbox, rle_bbox

    checked = check_coco_rle(rle, height=height, width=width, max_bytes=max_bytes)
    counts = checked["counts"]
    runs = (
        parse_coco_counts(counts, max_bytes=max_bytes)
        if isinstance(counts, str)
        else np.asarray(counts, dtype=np.int64)
    )
    if len(runs) > 1 and not (runs[1:] == 0).any():
        coco = mask_utils.frPyObjects(
            {"size": [height, width], "counts": [int(v) for v in runs]}, height, width
        )
        clean = {"size": [height, width], "counts": coco["counts"].decode("ascii")}
        return {"rle": clean, "bbox": rle_bbox(clean), "area": int(runs[1::2].sum())}
    arr = decode_rle(checked)
    return {"rle": encode_rle(arr), "bbox": mask_bbox(arr), "area": int(np.count_nonzero(arr))}


# --- Label Studio brush RLE -----------------------------------------------------------------


def brush_header(rle: bytes) -> tuple[int, int, list[int]]:
    """(value count, word size, 4 run-length bit sizes) from a Label Studio brush RLE header.

    The header is bit-packed, most significant bit first: 32 bits value count, 5 bits
    word size - 1, then four 4-bit run-length sizes - 1 (``label_studio_sdk``'s
    ``converter/brush.py``, ported from thi.ng rle-pack). Needs 7 bytes.
    """
    if len(rle) < 7:
        raise MaskPayloadError(f"brush RLE is {len(rle)} bytes; its header alone needs 7")
    (num,) = struct.unpack(">I", rle[:4])
    rest = int.from_bytes(rle[4:7], "big")  # 24 bits: 5 word size + 4 x 4 run sizes + 3 data
    word = ((rest >> 19) & 0x1F) + 1
    sizes = [((rest >> (15 - 4 * i)) & 0xF) + 1 for i in range(4)]
    return num, word, sizes


def check_brush_rle(
    rle: Any, *, height: int, width: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """A Label Studio brush RLE (byte values) checked against the image, before decoding.

    Returns it as ``bytes``. Raises MaskPayloadError when it is not a non-empty list of
    0..255 (or bytes), longer than ``max_bytes``, or its header declares a value count other
    than ``h * w * 4`` (one RGBA bitmap of the image) or a word size above 8 bits.
    """
    height, width = _image_size(height, width)
    if isinstance(rle, list | tuple):
        if len(rle) > max_bytes:
            raise MaskPayloadError(
                f"brush RLE is {len(rle)} bytes; the limit is {max_bytes} "
                "(DATAENGINE_MASK_PAYLOAD_MAX_BYTES)"
            )
        if not all(_is_int(v) and 0 <= v < 256 for v in rle):
            raise MaskPayloadError("brush 'rle' values must be integers 0..255")
        data = bytes(rle)
    elif isinstance(rle, bytes):
        data = rle
    else:
        raise MaskPayloadError("brush 'rle' must be a non-empty list of byte values")
    if not data:
        raise MaskPayloadError("brush 'rle' must be a non-empty list of byte values")
    if len(data) > max_bytes:
        raise MaskPayloadError(f"brush RLE is {len(data)} bytes; the limit is {max_bytes}")
    num, word, _ = brush_header(data)
    if num != height * width * 4:
        raise MaskPayloadError(
            f"brush RLE declares {num} values ({num / 4:g} RGBA pixels) but the image is "
            f"{width}x{height} = {height * width} pixels"
        )
    if word > 8:
        raise MaskPayloadError(f"brush RLE word size is {word} bits; RGBA bytes need <= 8")
    return data


# --- PNG -------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk, without decoding anything."""
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise MaskPayloadError("mask is not a PNG (bad signature or no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    return int(height), int(width)


def check_png(data: Any, *, height: int, width: int, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """PNG bytes whose header declares exactly ``height`` x ``width``, before decoding."""
    height, width = _image_size(height, width)
    if not isinstance(data, bytes):
        raise MaskPayloadError("PNG mask must be bytes")
    if len(data) > max_bytes:
        raise MaskPayloadError(f"PNG mask is {len(data)} bytes; the limit is {max_bytes}")
    ph, pw = png_size(data)
    if (ph, pw) != (height, width):
        raise MaskPayloadError(f"PNG mask is {pw}x{ph}; expected {width}x{height}")
    return data


# --- polygons --------------------------------------------------------------------------------


def check_polygons(
    polygons: Any, *, height: int, width: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[list[float]]:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixels) checked before rasterising.

    Each polygon: a flat list of an even count >= 6 of finite numbers. All points lie
    within one image size outside the image, the total number of coordinates is at most
    ``max_bytes // 2`` and the total outline (L-inf pixels, what pycocotools allocates
    for) at most ``100 * (h + w)``. Returns the polygons as float lists.
    """
    height, width = _image_size(height, width)
    if not isinstance(polygons, list) or not polygons:
        raise MaskPayloadError("polygons must be a non-empty list of [x0, y0, x1, y1, ...]")
    out: list[list[float]] = []
    n_coords, outline = 0, 0.0
    lo_x, hi_x = -POLYGON_MARGIN * width, (1 + POLYGON_MARGIN) * width
    lo_y, hi_y = -POLYGON_MARGIN * height, (1 + POLYGON_MARGIN) * height
    for poly in polygons:
        if not isinstance(poly, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in poly
        ):
            raise MaskPayloadError("a polygon must be a flat list of numbers [x0, y0, x1, y1, ...]")
        if len(poly) % 2 or len(poly) < 6:
            raise MaskPayloadError(
                f"a polygon needs an even count of >= 6 numbers, got {len(poly)}"
            )
        n_coords += len(poly)
        if n_coords > max_bytes // 2:
            raise MaskPayloadError(
                f"polygons have more than {max_bytes // 2} coordinates "
                "(DATAENGINE_MASK_PAYLOAD_MAX_BYTES / 2)"
            )
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise MaskPayloadError("polygon has NaN or infinite coordinates")
        xs, ys = xy[:, 0], xy[:, 1]
        if xs.min() < lo_x or xs.max() > hi_x or ys.min() < lo_y or ys.max() > hi_y:
            raise MaskPayloadError(
                f"polygon point lies far outside the {width}x{height} image "
                f"(x must be in [{lo_x:g}, {hi_x:g}], y in [{lo_y:g}, {hi_y:g}])"
            )
        closed = np.vstack([xy, xy[:1]])
        outline += float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum())
        out.append([float(v) for v in poly])
    if outline > POLYGON_OUTLINE_FACTOR * (height + width):
        raise MaskPayloadError(
            f"polygon outline is {outline:.0f} pixels long; the limit for a {width}x{height} "
            f"image is {POLYGON_OUTLINE_FACTOR * (height + width)}"
        )
    return out


def check_points(
    points: list[tuple[float, float]], *, height: int, width: int
) -> list[tuple[float, float]]:
    """Finite pixel points within one image size outside a ``height`` x ``width`` image."""
    height, width = _image_size(height, width)
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise MaskPayloadError("a point has NaN or infinite coordinates")
        if not (-width <= x <= 2 * width and -height <= y <= 2 * height):
            raise MaskPayloadError(
                f"point ({x:g}, {y:g}) lies far outside the {width}x{height} image"
            )
    return points
