"""The RLE of a working-resolution mask scaled to the photo equals encoding the scaled array."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.masks import decode_rle, encode_rle
from engine.segment.classical.segmenter import ClassicalSegmenter
from engine.segment.classical.upscale import nearest_index, upscaled_mask, upscaled_rle


def _reference(small: np.ndarray, size: tuple[int, int]) -> dict:
    big = cv2.resize(small.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return encode_rle(big.astype(bool))


def test_nearest_index_is_opencvs_mapping() -> None:
    for n_src, n_dst in [(640, 4000), (427, 2669), (7, 3), (5, 5), (1, 9), (9, 1)]:
        ramp = np.arange(n_src, dtype=np.uint8 if n_src < 256 else np.uint16)[None, :]
        cv = cv2.resize(ramp, (n_dst, 1), interpolation=cv2.INTER_NEAREST)[0]
        np.testing.assert_array_equal(nearest_index(n_src, n_dst), cv)


def test_random_masks_up_and_down_scaled() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        size = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
        small = rng.random((h, w)) < rng.random()
        assert upscaled_rle(small, size) == _reference(small, size), (small.shape, size)


@pytest.mark.parametrize("fill", [0, 1])
def test_empty_full_and_corner_pixels(fill: int) -> None:
    small = np.full((4, 6), bool(fill))
    assert upscaled_rle(small, (13, 17)) == _reference(small, (13, 17))
    small[0, 0] = small[-1, -1] = not fill  # the first and last photo pixels
    assert upscaled_rle(small, (13, 17)) == _reference(small, (13, 17))
    assert decode_rle(upscaled_rle(small, (13, 17))).shape == (13, 17)


def test_photo_size_mask_and_identity() -> None:
    rng = np.random.default_rng(5)
    small = cv2.GaussianBlur(rng.random((427, 640)).astype(np.float32), (41, 41), 0) > 0.5
    assert upscaled_rle(small, (2669, 4000)) == _reference(small, (2669, 4000))
    assert upscaled_rle(small, small.shape) == encode_rle(small)
    assert upscaled_mask(small, small.shape) is small


def test_bad_input_names_the_shape() -> None:
    with pytest.raises(ValueError, match="non-empty 2-D"):
        upscaled_rle(np.zeros((0, 3), bool), (5, 5))
    with pytest.raises(ValueError, match="size must be positive"):
        upscaled_rle(np.zeros((3, 3), bool), (0, 5))


def test_decode_rle_is_decode_encoded() -> None:
    """The segmenter's RLE path gives the same mask, score and logits as ``decode``."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 15, (300, 451, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:300, :451]
    img[(yy - 150) ** 2 + (xx - 200) ** 2 < 70**2] = (200, 40, 40)
    seg = ClassicalSegmenter(n_segments=400, work_max=160)  # works at 160 x 106
    emb = seg.embed(img)
    prompts = [
        {"points": [[200.0, 150.0]], "labels": [1]},
        {"points": [[200.0, 150.0], [10.0, 10.0]], "labels": [1, 0]},
        {"box": [120.0, 70.0, 290.0, 230.0]},
        {"points": [[5.0, 5.0]], "labels": [0]},  # nothing is object
    ]
    for p in prompts:
        res = seg.decode(emb, **p)
        rle, score, logits = seg.decode_rle(emb, **p)
        assert rle == encode_rle(res.mask)
        assert score == res.score
        np.testing.assert_array_equal(logits, res.logits)
