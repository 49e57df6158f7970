"""Hostile mask payloads are refused before any decoder sees them, in memory O(payload)."""

from __future__ import annotations

import base64
import io
import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.converter import brush as ls_brush
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from engine.interop.importers.coco import segmentation_to_mask
from engine.interop.importers.labelme import shape_to_mask
from engine.interop.label_studio import brush_to_mask, mask_to_brush, region_to_mask
from engine.mask_payload import (
    MaskPayloadError,
    brush_header,
    check_brush_rle,
    check_coco_rle,
    check_png,
    check_polygons,
    check_score,
    parse_coco_counts,
    rle_shape,
)
from engine.masks import decode_rle, encode_rle

H, W = 48, 64


def to_string(runs: list[int]) -> str:
    """Runs -> pycocotools' compressed string, written as its C ``rleToString`` does (any
    sign), so the tests can build strings pycocotools itself would never produce."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def peak_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(peak traced bytes, result or the exception raised) of ``fn()``."""
    tracemalloc.start()
    try:
        result: Any = fn()
    except Exception as err:  # noqa: BLE001 - the caller inspects what was raised
        result = err
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, result


def random_masks(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if i % 2:
            m = rng.random((h, w)) < rng.random()
        else:
            m = np.zeros((h, w), dtype=bool)
            m[h // 4 : h // 2 + 1, w // 3 : w - 1] = True
        out.append(m)
    return out


def test_counts_parser_reads_what_pycocotools_writes() -> None:
    for m in random_masks(200):
        rle = encode_rle(m)
        runs = parse_coco_counts(rle["counts"])
        assert int(runs.sum()) == m.size and runs.min() >= 0
        assert to_string([int(v) for v in runs]) == rle["counts"]  # the test helper agrees
        uncompressed = {"size": rle["size"], "counts": [int(v) for v in runs]}
        assert (decode_rle(uncompressed) == m).all()
        checked = check_coco_rle(rle, height=m.shape[0], width=m.shape[1])
        assert (decode_rle(checked) == m).all()


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [1099511627776, 2], "counts": [1]}, "does not match image"),
        ({"size": [20000, 20000], "counts": [400000000]}, "does not match image"),
        ({"size": [-48, -64], "counts": [1]}, "does not match image"),
        ({"size": [H, W], "counts": [-5, H * W + 5]}, "negative run"),
        ({"size": [H, W], "counts": to_string([10, -3, H * W - 7])}, "negative run"),
        ({"size": [H, W], "counts": [H * W, 1]}, "sum to"),
        ({"size": [H, W], "counts": [2**40]}, "larger than"),
        ({"size": [H, W], "counts": to_string([2**33, 0])}, "larger than"),
        ({"size": [H, W], "counts": to_string([400000000])}, "sum to"),
        ({"size": [H, W], "counts": "0" * 9}, "sum to"),
        ({"size": [H, W], "counts": "ooooooooo0"}, "longer than 7"),
        ({"size": [H, W], "counts": "1h"}, "truncated"),
        ({"size": [H, W], "counts": "1 2"}, "outside '0'..'o'"),
        ({"size": [H, W], "counts": "é"}, "non-ASCII"),
        ({"size": [H, W], "counts": 5}, "string or a list"),
        ({"size": [H, W], "counts": [1.5, 2]}, "list of integers"),
        ({"size": [H], "counts": []}, "two integers"),
        ({"size": [True, W], "counts": []}, "two integers"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_coco_rle_is_refused_with_the_reason(rle: Any, message: str) -> None:
    with pytest.raises(MaskPayloadError, match=message):
        check_coco_rle(rle, height=H, width=W)
    if isinstance(rle, dict):  # the COCO importer uses the same check
        with pytest.raises(ValueError, match=message):
            segmentation_to_mask(rle, H, W)


def test_an_image_without_size_takes_no_mask() -> None:
    with pytest.raises(MaskPayloadError, match="no valid size"):
        check_coco_rle({"size": [H, W], "counts": [H * W]}, height=None, width=None)  # type: ignore[arg-type]


def test_payload_length_is_bounded() -> None:
    long = to_string([1] * (H * W))  # 3072 runs of 1 pixel: a valid checkerboard-ish mask
    assert check_coco_rle({"size": [H, W], "counts": long}, height=H, width=W)
    with pytest.raises(MaskPayloadError, match="limit is 1000"):
        check_coco_rle({"size": [H, W], "counts": long}, height=H, width=W, max_bytes=1000)
    with pytest.raises(MaskPayloadError, match="limit is 500"):
        check_coco_rle({"size": [H, W], "counts": [1] * (H * W)}, height=H, width=W, max_bytes=1000)


def test_rejected_payloads_cost_memory_of_the_payload_not_of_the_claim() -> None:
    """The 60-byte request that cost ~760 MB: now a few kB, also when the size is right."""
    big = 20000
    cases = [
        lambda: check_coco_rle({"size": [big, big], "counts": [400000000]}, height=H, width=W),
        lambda: check_coco_rle(
            {"size": [H, W], "counts": to_string([400000000])}, height=H, width=W
        ),
        lambda: check_coco_rle({"size": [H, W], "counts": [400000000]}, height=H, width=W),
        lambda: check_coco_rle({"size": [1099511627776, 2], "counts": [1]}, height=H, width=W),
    ]
    for case in cases:
        peak, result = peak_bytes(case)
        assert isinstance(result, MaskPayloadError)
        assert peak < 64 * 1024, peak
    # a huge compressed string: memory stays a small multiple of its length
    huge = "1" * 1_000_000
    peak, result = peak_bytes(
        lambda: check_coco_rle({"size": [H, W], "counts": huge}, height=H, width=W)
    )
    assert isinstance(result, MaskPayloadError) and "sum to" in str(result)
    assert peak < 32 * len(huge), peak


def test_rle_shape_gives_box_and_area() -> None:
    m = np.zeros((H, W), dtype=bool)
    m[5:9, 10:20] = True
    shape = rle_shape(encode_rle(m), height=H, width=W)
    assert shape["area"] == 40 and shape["bbox"] == [10.0, 5.0, 10.0, 4.0]
    assert (decode_rle(shape["rle"]) == m).all()


# --- Label Studio brush ---------------------------------------------------------------------


def brush_bytes(num: int, word: int = 8, sizes: tuple[int, ...] = (3, 4, 8, 16)) -> list[int]:
    """A brush RLE header (plus one byte of data) declaring ``num`` values."""
    bits = f"{num:032b}{word - 1:05b}" + "".join(f"{s - 1:04b}" for s in sizes) + "0" * 11
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def test_brush_header_is_read_as_the_sdk_reads_it() -> None:
    m = np.zeros((H, W), dtype=bool)
    m[3:20, 7:30] = True
    data = bytes(mask_to_brush(m))
    num, word, sizes = brush_header(data)
    assert (num, word) == (H * W * 4, 8) and len(sizes) == 4
    assert ls_brush.decode_rle(data).size == num  # the SDK agrees on the count
    assert brush_header(bytes(brush_bytes(123456, 5, (1, 2, 3, 4)))) == (123456, 5, [1, 2, 3, 4])
    assert (brush_to_mask(list(data), H, W) == m).all()
    assert check_brush_rle(list(data), height=H, width=W) == data


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        (brush_bytes(2**32 - 1), "declares 4294967295 values"),
        (brush_bytes(20000 * 20000 * 4 % 2**32), "declares"),
        (brush_bytes(H * W * 4 + 4), "declares"),
        (brush_bytes(H * W * 4, word=16), "word size"),
        ([1, 2, 3], "header alone needs 7"),
        ([], "non-empty"),
        ([1, 256, 3, 4, 5, 6, 7], "0..255"),
        ([1, -1, 3, 4, 5, 6, 7], "0..255"),
        ("abc", "non-empty list"),
    ],
)
def test_bad_brush_is_refused_before_decoding(rle: Any, message: str) -> None:
    peak, result = peak_bytes(lambda: brush_to_mask(rle, H, W))
    assert isinstance(result, ValueError) and message in str(result), result
    assert peak < 64 * 1024, peak


def test_brush_length_is_bounded() -> None:
    with pytest.raises(MaskPayloadError, match="limit is 64"):
        check_brush_rle(brush_bytes(H * W * 4) + [0] * 100, height=H, width=W, max_bytes=64)


def test_brush_region_with_a_huge_header_is_skipped_not_decoded() -> None:
    region = {
        "type": "brushlabels",
        "original_width": W,
        "original_height": H,
        "value": {"format": "rle", "rle": brush_bytes(2**32 - 1), "brushlabels": ["cat"]},
    }
    with pytest.raises(ValueError, match="declares"):
        region_to_mask(region, H, W)


# --- polygons, PNG, scores ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("polygons", "message"),
    [
        ([[0, 0, 1e12, 0, 1e12, 1e12]], "far outside"),
        ([[-1e9, 0, 10, 0, 10, 10]], "far outside"),
        ([[0, 0, math.nan, 0, 10, 10]], "NaN"),
        ([[0, 0, math.inf, 0, 10, 10]], "NaN or infinite"),
        ([[0, 0, 10, 0]], ">= 6 numbers"),
        ([[0, 0, 10, 0, 10]], ">= 6 numbers"),
        ([["a", 0, 10, 0, 10, 10]], "flat list of numbers"),
        ([], "non-empty"),
        ([[0, 0, 2 * W, 0, 2 * W, 2 * H, 0, 2 * H] * 100], "outline"),
    ],
)
def test_bad_polygons_are_refused_before_rasterising(polygons: Any, message: str) -> None:
    peak, result = peak_bytes(lambda: segmentation_to_mask(polygons, H, W))
    assert isinstance(result, ValueError) and message in str(result), result
    assert peak < 1024 * 1024, peak


def test_polygon_count_is_bounded_and_good_polygons_pass() -> None:
    poly = [[2, 2, 20, 2, 20, 20, 2, 20]]
    assert check_polygons(poly, height=H, width=W) == [[float(v) for v in poly[0]]]
    assert segmentation_to_mask(poly, H, W).sum() == int(
        mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(poly, H, W)))
    )
    with pytest.raises(MaskPayloadError, match="more than 3 coordinates"):
        check_polygons(poly, height=H, width=W, max_bytes=6)


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.ones((height, width), dtype=np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def test_png_header_must_match_before_decoding() -> None:
    good = png(W, H)
    assert check_png(good, height=H, width=W) == good
    with pytest.raises(MaskPayloadError, match="expected 64x48"):
        check_png(png(W + 1, H), height=H, width=W)
    # a tiny PNG claiming 100000 x 100000 pixels: header patched, never decoded
    bomb = bytearray(good)
    bomb[16:24] = (100000).to_bytes(4, "big") * 2
    peak, result = peak_bytes(lambda: check_png(bytes(bomb), height=H, width=W))
    assert isinstance(result, MaskPayloadError) and "100000x100000" in str(result)
    assert peak < 64 * 1024
    with pytest.raises(MaskPayloadError, match="not a PNG"):
        check_png(b"GIF89a" + b"\0" * 30, height=H, width=W)
    with pytest.raises(MaskPayloadError, match="limit is 10"):
        check_png(good, height=H, width=W, max_bytes=10)


def test_labelme_mask_shape_checks_its_png_and_points() -> None:
    patch = base64.b64encode(png(10, 5)).decode()
    good = {"shape_type": "mask", "points": [[3, 4], [12, 8]], "mask": patch}
    assert shape_to_mask(good, H, W).sum() == 50
    bomb = bytearray(png(10, 5))
    bomb[16:24] = (60000).to_bytes(4, "big") * 2
    hostile = {**good, "mask": base64.b64encode(bytes(bomb)).decode()}
    with pytest.raises(ValueError, match="60000x60000"):
        shape_to_mask(hostile, H, W)
    far = {"shape_type": "circle", "points": [[10, 10], [1e9, 10]]}
    with pytest.raises(ValueError, match="far outside"):
        shape_to_mask(far, H, W)


def test_scores_must_be_finite() -> None:
    assert check_score(0.5) == 0.5 and check_score(None) is None and check_score(1) == 1.0
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(MaskPayloadError, match="finite"):
            check_score(bad)
    with pytest.raises(MaskPayloadError, match="a number"):
        check_score("0.5")
