"""COCO RLE codecs and mask geometry."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from engine.masks import (
    decode_rle,
    encode_rle,
    encode_rle_batch,
    mask_bbox,
    mask_iou,
    polygons_to_mask,
    rle_area,
    rle_bbox,
    rle_iou,
)


def test_round_trip_is_exact_and_json_safe() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((37, 53)) > 0.6
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert np.array_equal(decode_rle(rle), m)
    assert rle_area(rle) == m.sum()


def test_batch_equals_single() -> None:
    rng = np.random.default_rng(1)
    ms = rng.random((4, 20, 30)) > 0.5
    assert encode_rle_batch(ms) == [encode_rle(m) for m in ms]
    assert encode_rle_batch(np.zeros((0, 5, 5), bool)) == []


def test_uncompressed_counts_decode() -> None:
    m = np.zeros((4, 3), bool)
    m[1:3, 1] = True  # column-major runs: col0 4 zeros, col1 1 zero, 2 ones, 1 zero, col2 4 zeros
    assert np.array_equal(decode_rle({"size": [4, 3], "counts": [5, 2, 5]}), m)


def test_bbox_and_iou() -> None:
    a = np.zeros((10, 10), bool)
    a[2:5, 3:9] = True
    b = np.zeros((10, 10), bool)
    b[2:5, 6:9] = True
    assert mask_bbox(a) == [3.0, 2.0, 6.0, 3.0]
    assert rle_bbox(encode_rle(a)) == [3.0, 2.0, 6.0, 3.0]
    assert mask_iou(a, b) == pytest.approx(0.5)
    assert rle_iou([encode_rle(a)], [encode_rle(b)])[0, 0] == pytest.approx(0.5)
    ignore = np.zeros((10, 10), bool)
    ignore[:, 3:6] = True
    assert mask_iou(a, b, ignore) == 1.0
    assert mask_bbox(np.zeros((3, 3), bool)) == [0.0, 0.0, 0.0, 0.0]


def test_polygons_match_pycocotools() -> None:
    poly = [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]]
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 10, 12))).astype(bool)
    assert np.array_equal(polygons_to_mask(poly, 10, 12), ref)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="COCO RLE"):
        decode_rle({"counts": "abc"})
