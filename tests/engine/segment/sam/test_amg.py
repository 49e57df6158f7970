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


# --- the GPU path --------------------------------------------------------------------------
# On this CPU-only machine these tests prove the device-agnostic code (every NMS call gets
# its boxes, scores and category ids on one device, batched embeddings equal single ones,
# the device decision); that CUDA itself runs is proven by test_cuda_generator_matches_cpu
# and scripts/bench_gpu.py on a machine with a GPU.


def test_generator_for_device() -> None:
    from engine.segment.sam.amg import generator_for_device

    assert generator_for_device("cpu") == "fast"
    assert generator_for_device(torch.device("cpu")) == "fast"
    assert generator_for_device("cuda") == "reference"
    assert generator_for_device(torch.device("cuda", 1)) == "reference"
    assert generator_for_device("mps") == "reference"


def test_every_nms_gets_one_device(
    model: torch.nn.Module, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.segment.sam import amg

    calls: list[tuple[torch.device, ...]] = []
    real = amg.batched_nms

    def spy(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float):
        calls.append((boxes.device, scores.device, idxs.device))
        assert boxes.dtype == scores.dtype == torch.float32 and idxs.dtype == torch.int64
        return real(boxes, scores, idxs, thr)

    monkeypatch.setattr(amg, "batched_nms", spy)
    image = _photo(shared_data, "dogs.jpg", 160)
    # crops (per-crop and cross-crop NMS) and small-region removal (its re-NMS)
    params = _every_candidate(points_per_side=3, crop_n_layers=1, min_mask_region_area=20)
    params["crop_nms_thresh"] = 0.9
    out = FastAutomaticMaskGenerator(model, **params).generate(image)
    assert out
    assert len(calls) >= 3  # whole image + crops, across crops, small regions
    assert all(len(set(c)) == 1 for c in calls), calls


def test_embed_batch_equals_single_embeds(model: torch.nn.Module, shared_data: Path) -> None:
    gen = FastAutomaticMaskGenerator(model)
    images = [_photo(shared_data, "dog.jpg", 200), _photo(shared_data, "groceries.jpg", 150)]
    batch = gen.embed_batch(images)
    assert batch.shape == (2, 256, 64, 64) and batch.dtype == torch.float32
    for i, image in enumerate(images):
        torch.testing.assert_close(batch[i : i + 1], gen.embed(image), atol=2e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least one image"):
        gen.embed_batch([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generator_matches_cpu(model: torch.nn.Module, shared_data: Path) -> None:
    import copy

    image = _photo(shared_data, "dog.jpg", 256)
    params = _every_candidate(points_per_side=5, box_nms_thresh=0.7)
    cpu = FastAutomaticMaskGenerator(model, **params).generate(image)
    gpu_model = copy.deepcopy(model).to("cuda")
    ours = FastAutomaticMaskGenerator(gpu_model, chunk=64, **params).generate(image)
    ref = SamAutomaticMaskGenerator(gpu_model, **params).generate(image)
    assert len(ours) == len(cpu) == len(ref)
    _match(cpu, ours)
    _match(ref, ours)
