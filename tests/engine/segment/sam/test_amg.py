"""Our automatic mask generator produces the reference ``SamAutomaticMaskGenerator``'s masks.

Same weights (vit_t architecture, seeded random weights written to a .pth and loaded
through ``load_checkpoint``), same parameters, real photos downscaled. Random weights
pass no default threshold, so the IoU and stability thresholds are set between observed
scores (in the middle of a gap, so float rounding cannot move a mask across them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator

from engine.masks import mask_iou
from engine.segment.sam.amg import FastAutomaticMaskGenerator
from engine.segment.sam.models import file_sha256, load_checkpoint, random_sam


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("ckpt") / "vit_t.pth"
    torch.save(random_sam("vit_t", seed=7, iou_offset=0.5).state_dict(), path)
    return load_checkpoint("vit_t", path, sha256=file_sha256(path))


def _photo(shared_data: Path, name: str, side: int) -> np.ndarray:
    img = Image.open(shared_data / "samples" / name).convert("RGB")
    img.thumbnail((side, side))
    return np.asarray(img)


def _gap_threshold(values: np.ndarray, quantile: float) -> float:
    """A threshold near ``quantile`` of ``values``, halfway inside the widest nearby gap."""
    v = np.sort(values[np.isfinite(values)])
    i = int(quantile * (len(v) - 1))
    lo, hi = max(i - 3, 0), min(i + 3, len(v) - 1)
    gaps = np.diff(v[lo : hi + 1])
    j = lo + int(np.argmax(gaps))
    return float((v[j] + v[j + 1]) / 2)


def _every_candidate(**params: object) -> dict[str, object]:
    """Generator parameters that keep every candidate: no thresholds, no suppression."""
    return {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0, **params}


def _match(a: list[dict], b: list[dict]) -> None:
    """Every record of ``a`` has one in ``b`` with mask IoU >= 0.99 and scores within 1e-3."""
    for ra in a:
        ious = [mask_iou(ra["segmentation"], rb["segmentation"]) for rb in b]
        rb = b[int(np.argmax(ious))]
        assert max(ious) >= 0.99
        assert abs(ra["predicted_iou"] - rb["predicted_iou"]) <= 1e-3
        assert abs(ra["stability_score"] - rb["stability_score"]) <= 1e-3
        assert ra["area"] == pytest.approx(rb["area"], rel=0.01)


@pytest.mark.parametrize(("name", "nms"), [("dog.jpg", 1.0), ("groceries.jpg", 0.7)])
def test_generator_matches_reference(
    model: torch.nn.Module, shared_data: Path, name: str, nms: float
) -> None:
    image = _photo(shared_data, name, 256)
    base = {"points_per_side": 5, "box_nms_thresh": nms}
    # every candidate (no thresholds, no suppression) to place the thresholds
    everything = FastAutomaticMaskGenerator(model, **_every_candidate(points_per_side=5)).generate(
        image
    )
    ious = np.array([r["predicted_iou"] for r in everything])
    iou_thr = _gap_threshold(ious, 0.6)
    assert iou_thr > 0  # the reference skips its IoU filter for thresholds <= 0
    stab = np.array([r["stability_score"] for r in everything if r["predicted_iou"] > iou_thr])
    stab_thr = _gap_threshold(stab, 0.3)
    params = dict(base, pred_iou_thresh=iou_thr, stability_score_thresh=stab_thr)

    ref = SamAutomaticMaskGenerator(model, **params).generate(image)
    ours = FastAutomaticMaskGenerator(model, **params).generate(image)

    assert len(ref) >= 1
    assert len(ours) == len(ref)
    _match(ref, ours)
    _match(ours, ref)
    for r in ours:
        assert r["segmentation"].shape == image.shape[:2]
        assert r["predicted_iou"] > iou_thr and r["stability_score"] >= stab_thr
    ref_boxes = sorted(tuple(r["bbox"]) for r in ref)
    assert sorted(tuple(r["bbox"]) for r in ours) == ref_boxes


@pytest.mark.slow
def test_generator_matches_reference_with_crops(model: torch.nn.Module, shared_data: Path) -> None:
    image = _photo(shared_data, "dogs.jpg", 256)
    params = _every_candidate(points_per_side=4, crop_n_layers=1, crop_nms_thresh=1.0)
    ref = SamAutomaticMaskGenerator(model, **params).generate(image)
    ours = FastAutomaticMaskGenerator(model, **params).generate(image)
    assert len(ours) == len(ref)
    _match(ref, ours)
    _match(ours, ref)


def test_parallel_workers_give_the_same_records_in_the_same_order(
    model: torch.nn.Module, shared_data: Path
) -> None:
    image = _photo(shared_data, "groceries.jpg", 192)
    params = _every_candidate(points_per_side=5)
    threads = torch.get_num_threads()
    one = FastAutomaticMaskGenerator(model, chunk=2, workers=1, **params).generate(image)
    two = FastAutomaticMaskGenerator(model, chunk=2, workers=2, **params).generate(image)
    assert torch.get_num_threads() == threads  # the decoder loop restores torch's setting
    assert len(one) == len(two) >= 10
    for a, b in zip(one, two, strict=True):
        assert a["point_coords"] == b["point_coords"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-5
        assert mask_iou(a["segmentation"], b["segmentation"]) >= 0.999


def test_workers_must_be_positive(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        FastAutomaticMaskGenerator(model, workers=0)


def test_concurrent_generators_restore_torch_threads(
    model: torch.nn.Module, shared_data: Path
) -> None:
    image = _photo(shared_data, "dog.jpg", 160)
    params = _every_candidate(points_per_side=4)
    gen = FastAutomaticMaskGenerator(model, chunk=1, workers=2, **params)
    alone = gen.generate(image)
    threads = torch.get_num_threads()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: gen.generate(image), range(3)))
    assert torch.get_num_threads() == threads
    with ThreadPoolExecutor(1) as fresh:  # a thread started now gets the process default
        assert fresh.submit(torch.get_num_threads).result() == threads
    for res in results:
        assert [r["point_coords"] for r in res] == [r["point_coords"] for r in alone]
