"""The weight-free classical backend: prompts, refinement, proposals, real GrabCut images."""

from __future__ import annotations

import numpy as np
import pytest

from engine.flywheel.clicker import run_clicks
from engine.masks import mask_iou
from engine.segment.classical.segmenter import ClassicalSegmenter
from engine.segment.protocol import PromptError, Segmenter


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy textured background with a red disc and a blue square: (image, disc, square)."""
    rng = np.random.default_rng(seed)
    h, w = 180, 240
    img = np.clip(rng.normal(120, 12, (h, w, 3)), 0, 255)
    img[..., 1] += 40 * (np.arange(w)[None] / w)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 80) ** 2 + (xx - 80) ** 2 <= 40**2
    square = (yy >= 60) & (yy < 130) & (xx >= 150) & (xx < 215)
    img[disc] = np.clip(rng.normal((210, 40, 40), 10, (disc.sum(), 3)), 0, 255)
    img[square] = np.clip(rng.normal((40, 60, 200), 10, (square.sum(), 3)), 0, 255)
    return img.astype(np.uint8), disc, square


@pytest.fixture(scope="module")
def seg() -> ClassicalSegmenter:
    return ClassicalSegmenter(n_segments=800)


@pytest.fixture(scope="module")
def scene(seg):
    img, disc, square = _scene()
    return img, disc, square, seg.embed(img)


def test_implements_protocol(seg):
    assert isinstance(seg, Segmenter)
    assert seg.name == "classical"
    assert (
        seg.model_key.startswith("classical-") and seg.model_key != ClassicalSegmenter().model_key
    )


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="unknown classical parameters"):
        ClassicalSegmenter(n_segmentz=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "empty prompt"),
        ({"points": [[10.0, 10.0]], "labels": None}, "labels are required"),
        ({"points": [[500.0, 10.0]], "labels": [1]}, "inside the image"),
        ({"points": [[np.nan, 10.0]], "labels": [1]}, "NaN"),
        ({"points": [[10.0, 10.0]], "labels": [2]}, "0 \\(negative\\) or 1"),
        ({"box": [50, 50, 40, 60]}, "x1 > x0"),
        ({"box": [0, 0, 300, 100]}, "inside the image"),
        (
            {"points": [[10.0, 10.0]], "labels": [1], "mask_input": np.zeros(7, np.float32)},
            "superpixels",
        ),
    ],
)
def test_bad_prompts_raise_prompt_error(seg, scene, kwargs, message):
    with pytest.raises(PromptError, match=message):
        seg.decode(scene[3], **kwargs)


def test_one_click_segments_each_object(seg, scene):
    img, disc, square, emb = scene
    r = seg.decode(emb, points=[[80.0, 80.0]], labels=[1])
    assert r.mask.shape == img.shape[:2] and r.mask.dtype == bool
    assert mask_iou(r.mask, disc) > 0.9
    assert 0.0 <= r.score <= 1.0
    r2 = seg.decode(emb, points=[[180.0, 95.0]], labels=[1])
    assert mask_iou(r2.mask, square) > 0.85


def test_box_prompt(seg, scene):
    _, _, square, emb = scene
    r = seg.decode(emb, box=[140, 50, 225, 140])
    assert mask_iou(r.mask, square) > 0.85
    assert not r.mask[:, :130].any()  # nothing outside the box


def test_negative_click_shrinks_the_mask(seg, scene):
    _, disc, square, emb = scene
    both = seg.decode(emb, points=[[80.0, 80.0], [180.0, 95.0]], labels=[1, 1])
    assert mask_iou(both.mask, disc | square) > 0.85
    # the previous mask says "disc and square"; a negative click on the square removes it
    less = seg.decode(
        emb, points=[[80.0, 80.0], [185.0, 100.0]], labels=[1, 0], mask_input=both.logits
    )
    assert less.mask.sum() < both.mask.sum()
    assert mask_iou(less.mask, disc) > 0.85
    only_neg = seg.decode(emb, points=[[185.0, 100.0]], labels=[0])
    assert not only_neg.mask.any()


def test_mask_input_refines(seg, scene):
    _, disc, _, emb = scene
    r = seg.decode(emb, points=[[80.0, 80.0]], labels=[1])
    assert r.logits is not None and r.logits.dtype == np.float32
    assert (
        (r.logits > 0) == r.mask[emb.features["cy"].astype(int), emb.features["cx"].astype(int)]
    ).mean() > 0.95
    again = seg.decode(emb, points=[[80.0, 80.0]], labels=[1], mask_input=r.logits)
    assert mask_iou(again.mask, disc) > 0.9
    # a full-resolution map is accepted too (a stored mask from the UI)
    hw = np.where(disc, 1.0, -1.0).astype(np.float32)
    from_map = seg.decode(emb, points=[[80.0, 80.0]], labels=[1], mask_input=hw)
    assert mask_iou(from_map.mask, disc) > 0.9


def test_propose(seg, scene):
    img, disc, square, emb = scene
    props = seg.propose(img, emb)
    assert props
    h, w = img.shape[:2]
    for p in props:
        assert 0.0 <= p.predicted_iou <= 1.0 and 0.0 <= p.stability <= 1.0
        assert p.mask.shape == (h, w) and p.area == int(p.mask.sum()) > 0
        x, y, bw, bh = p.bbox
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert len(p.point_coords) == 1
    best = {
        name: max(mask_iou(p.mask, gt) for p in props)
        for name, gt in (("disc", disc), ("square", square))
    }
    assert best["disc"] > 0.85 and best["square"] > 0.85


def test_larger_images_are_worked_at_reduced_resolution():
    img, disc, _ = _scene()
    big = np.repeat(np.repeat(img, 4, 0), 4, 1)  # 720 x 960
    s = ClassicalSegmenter(n_segments=800, work_max=320)
    emb = s.embed(big)
    assert max(emb.features["sp"].shape) <= 320
    r = s.decode(emb, points=[[320.0, 320.0]], labels=[1])
    assert r.mask.shape == big.shape[:2]
    gt = np.repeat(np.repeat(disc, 4, 0), 4, 1)
    assert mask_iou(r.mask, gt) > 0.85


def test_real_grabcut_subset(shared_data):
    from PIL import Image

    from engine.imageio import load_rgb

    seg = ClassicalSegmenter()
    reached = 0
    stems = ["stone2", "banana1", "teddy", "person7"]
    for stem in stems:
        img = load_rgb(next((shared_data / "grabcut" / "images").glob(f"{stem}.*")))
        m = np.asarray(Image.open(shared_data / "grabcut" / "masks" / f"{stem}.bmp"))
        out = run_clicks(seg, seg.embed(img), m > 128, m == 128, max_clicks=10)
        reached += max(i for i, _ in out) >= 0.90
    assert reached >= 3


def test_region_hierarchy_merges_down_to_one_region(seg, scene):
    from engine.segment.classical.features import region_hierarchy

    img, disc, _square, emb = scene
    f = emb.features
    n = len(f["area"])
    regions = region_hierarchy(f)
    assert len(regions) == n - 1  # a connected superpixel graph merges into one region
    assert sorted(regions[-1].tolist()) == list(range(n))
    # some intermediate region is the disc (superpixel-level IoU)
    inside = np.bincount(f["sp"].ravel(), disc.ravel(), n) / f["area"] > 0.5
    best = max((inside[r].sum() / len(np.union1d(r, np.flatnonzero(inside)))) for r in regions)
    assert best > 0.9


def test_propose_scores_rank_objects_above_background(seg, scene):
    img, disc, square, emb = scene
    props = seg.propose(img, emb)
    good = [max(mask_iou(p.mask, disc), mask_iou(p.mask, square)) >= 0.85 for p in props]
    assert any(good) and not all(good)
    top = max(props, key=lambda p: p.predicted_iou)
    assert max(mask_iou(top.mask, disc), mask_iou(top.mask, square)) >= 0.85
